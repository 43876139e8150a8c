"""The health feature's scheduled jobs: collectors built from the inventory through a collector factory,
and the maintenance jobs (rollups, retention, staleness)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from sqlalchemy.orm import Session

from pdn_ops.core.inventory import Cluster, Inventory, Site, Vm
from pdn_ops.core.jobs import JobSpec, RunFailure, collect_nothing
from pdn_ops.core.settings import Settings
from pdn_ops.health import service as health_service
from pdn_ops.health.model import Thresholds
from pdn_ops.health.observations import ClusterObservation, FailureClass, SiteCheck, SshObservation

# SSH failures that say our access is refused, not that the guest is down: when every guest refuses us, the run
# produced no usable data and the collector itself is failing.
REFUSED = frozenset({FailureClass.AUTH, FailureClass.HOST_KEY})


def run_failure_of_cluster(observation: ClusterObservation) -> RunFailure | None:
    """A Proxmox cycle that failed (401/403, timeout, empty answer...) is a failed run, with its class."""
    if observation.ok:
        return None
    return RunFailure((observation.failure or FailureClass.ERROR).value, observation.detail)


def run_failure_of_ssh(observations: Sequence[SshObservation]) -> RunFailure | None:
    """An SSH round in which every guest refused our access produced nothing usable: a failed run."""
    if not observations or any(o.ok or o.failure not in REFUSED for o in observations):
        return None
    failure = observations[0].failure or FailureClass.ERROR
    return RunFailure(failure.value, f"{len(observations)} guest(s) refused access")


def run_failure_of_sites(checks: Sequence[SiteCheck], expected: int) -> RunFailure | None:
    """A site round that returned no result at all for sites it should check is a failed run."""
    if expected and not checks:
        return RunFailure(FailureClass.EMPTY.value, f"no result for {expected} site(s)")
    return None


class CollectorFactory(Protocol):
    """Builds the collectors for the scheduler; the lead's wiring implements it over collectors/<kind>."""

    def proxmox(self, cluster: Cluster) -> Callable[[], ClusterObservation]:
        """One cycle for one cluster; returns a ClusterObservation with ok=False instead of raising on faults."""
        ...

    def sites(self, sites: Sequence[Site]) -> Callable[[], Sequence[SiteCheck]]:
        """One round of checks over these sites (bounded concurrency inside)."""
        ...

    def ssh(self, vms: Sequence[Vm]) -> Callable[[], Sequence[SshObservation]]:
        """One round of SSH checks over these VMs (all have ``ssh`` set)."""
        ...


@dataclass(frozen=True, slots=True)
class HealthConfig:
    thresholds: Thresholds = field(default_factory=Thresholds)
    raw_retention: timedelta = timedelta(days=14)
    stale_after: timedelta = timedelta(minutes=15)
    maintenance_interval_s: float = 300.0

    @classmethod
    def from_settings(cls, settings: Settings) -> HealthConfig:
        return cls(
            thresholds=Thresholds(
                down_after=settings.health_down_after,
                up_after=settings.health_up_after,
                slow_response_s=settings.health_slow_response_seconds,
                disk_used_ratio=settings.health_disk_used_ratio,
                backup_max_age_h=settings.health_backup_max_age_hours,
            ),
            raw_retention=timedelta(days=settings.health_raw_retention_days),
            stale_after=timedelta(seconds=settings.health_stale_after_seconds),
        )


def maintenance_jobs(config: HealthConfig, longest_interval_s: float = 0.0) -> list[JobSpec]:
    # Silence means UNKNOWN only after three missed runs of the slowest collector: an hourly site check must not
    # flap to UNKNOWN between its runs.
    stale_after = max(config.stale_after, timedelta(seconds=3 * longest_interval_s))

    def purge(session: Session, _: object) -> object:
        return health_service.purge_raw(session, retention=config.raw_retention)

    def stale(session: Session, _: object) -> object:
        return health_service.mark_stale(session, max_age=stale_after)

    return [
        JobSpec("health:rollup-retention", "maintenance", config.maintenance_interval_s, collect_nothing, purge),
        JobSpec("health:stale", "maintenance", config.maintenance_interval_s, collect_nothing, stale),
    ]


def build_jobs(inventory: Inventory, factory: CollectorFactory | None, config: HealthConfig) -> list[JobSpec]:
    """The seam: one Proxmox job per cluster, one site job and one SSH job per distinct interval, maintenance."""
    thresholds = config.thresholds
    if factory is None:
        return maintenance_jobs(config)
    jobs: list[JobSpec] = []

    def record_cluster(session: Session, observation: ClusterObservation) -> object:
        recorded = health_service.record_cluster(session, observation, thresholds=thresholds)
        return run_failure_of_cluster(observation) or recorded

    def record_sites_of(expected: int) -> Callable[[Session, Sequence[SiteCheck]], object]:
        def record_sites(session: Session, checks: Sequence[SiteCheck]) -> object:
            recorded = health_service.record_site_checks(session, checks, thresholds=thresholds)
            return run_failure_of_sites(checks, expected) or recorded

        return record_sites

    def record_ssh(session: Session, observations: Sequence[SshObservation]) -> object:
        recorded = health_service.record_ssh(session, observations, thresholds=thresholds)
        return run_failure_of_ssh(observations) or recorded

    for cluster in inventory.clusters:
        jobs.append(JobSpec(f"proxmox:{cluster.name}", "proxmox", cluster.interval, factory.proxmox(cluster),
                            record_cluster))
    by_interval: dict[int, list[Site]] = {}
    for site in inventory.sites:
        by_interval.setdefault(site.interval, []).append(site)
    for interval, sites in sorted(by_interval.items()):
        jobs.append(JobSpec(f"sites:{interval}s", "sites", interval, factory.sites(sites),
                            record_sites_of(len(sites))))
    ssh_by_interval: dict[int, list[Vm]] = {}
    for vm in inventory.vms:
        if vm.ssh is not None:
            ssh_by_interval.setdefault(vm.ssh.interval, []).append(vm)
    for interval, vms in sorted(ssh_by_interval.items()):
        jobs.append(JobSpec(f"ssh:{interval}s", "ssh", interval, factory.ssh(vms), record_ssh))
    return maintenance_jobs(config, max((job.interval_s for job in jobs), default=0.0)) + jobs


# --- the fast lane: a few targets checked at a fraction of the interval --------------------------------------------

FAST_DIVISOR = 6  # the fast lane's cadence: the shortest check interval over this
FAST_MIN_S = 1.0
FAST_JOB = "health:fast-lane"


def fast_interval(inventory: Inventory) -> float:
    """The fast lane's cadence for this inventory: a sixth of its shortest check interval, at least a second."""
    intervals = [float(c.interval) for c in inventory.clusters] + [float(s.interval) for s in inventory.sites]
    intervals += [float(vm.ssh.interval) for vm in inventory.vms if vm.ssh is not None]
    return max(FAST_MIN_S, min(intervals, default=30.0) / FAST_DIVISOR)


def split_keys(keys: Sequence[str]) -> tuple[set[str], set[str], set[str]]:
    """Health target keys -> (site URLs, VM refs for Proxmox, guest refs for SSH); other kinds are not checked."""
    sites: set[str] = set()
    vms: set[str] = set()
    guests: set[str] = set()
    for key in keys:
        kind, _, ref = key.partition(":")
        {"site": sites, "vm": vms, "guest": guests}.get(kind, set()).add(ref)
    return sites, vms, guests


@dataclass(frozen=True, slots=True)
class FastRound:
    """One fast-lane cycle: the keys it was asked to check and what the collectors returned for them."""

    keys: tuple[str, ...] = ()
    sites: tuple[SiteCheck, ...] = ()
    clusters: tuple[ClusterObservation, ...] = ()
    guests: tuple[SshObservation, ...] = ()

    @property
    def failing(self) -> bool:
        return (any(not c.ok for c in self.sites) or any(not o.ok for o in self.guests)
                or any(not o.ok for o in self.clusters))


Watched = Callable[[Session], Sequence[str]]  # the health target keys to check now (``pdn_ops.runs.watch``)
AfterFast = Callable[[Session, FastRound], object]  # in the record transaction, after the checks are stored


def fast_lane_job(inventory: Inventory, factory: CollectorFactory, config: HealthConfig, *,
                  sessions: Callable[[], Session], watched: Watched, after_record: AfterFast | None = None,
                  interval_s: float | None = None) -> JobSpec:
    """The fast lane: each cycle reads which targets to check (``watched``, in its own short read), checks only
    those with the same collectors and records them like the regular jobs do, then calls ``after_record``.

    A VM target is checked through its cluster's Proxmox collector (two API calls for the whole cluster), with a
    collector of its own so the regular job's change tracking is untouched; the whole cluster's answer is
    recorded, as the regular job records it. A cycle with nothing to watch does no I/O.
    """
    thresholds = config.thresholds
    site_by_url = {s.url: s for s in inventory.sites}
    vm_by_key = {vm.key: vm for vm in inventory.vms}
    clusters = {c.name: c for c in inventory.clusters}
    proxmox: dict[str, Callable[[], ClusterObservation]] = {}

    def collect() -> FastRound:
        with sessions() as session:
            keys = tuple(watched(session))
        if not keys:
            return FastRound()
        urls, vm_refs, guest_refs = split_keys(keys)
        sites = [site_by_url[u] for u in sorted(urls) if u in site_by_url]
        guests = [vm_by_key[r] for r in sorted(guest_refs) if r in vm_by_key and vm_by_key[r].ssh is not None]
        names = sorted({vm_by_key[r].cluster for r in vm_refs if r in vm_by_key} & clusters.keys())
        for name in names:
            if name not in proxmox:
                proxmox[name] = factory.proxmox(clusters[name])
        # The three kinds side by side: the cycle lasts as long as its slowest check, not their sum.
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="pdn-ops-fast") as pool:
            site_checks = pool.submit(factory.sites(sites)) if sites else None
            ssh_checks = pool.submit(factory.ssh(guests)) if guests else None
            cluster_checks = [pool.submit(proxmox[name]) for name in names]
            return FastRound(keys=keys, sites=tuple(site_checks.result()) if site_checks else (),
                             guests=tuple(ssh_checks.result()) if ssh_checks else (),
                             clusters=tuple(f.result() for f in cluster_checks))

    def record(session: Session, fast: FastRound) -> object:
        if not fast.keys:
            return None
        for observation in fast.clusters:
            health_service.record_cluster(session, observation, thresholds=thresholds)
        if fast.sites:
            health_service.record_site_checks(session, fast.sites, thresholds=thresholds)
        if fast.guests:
            health_service.record_ssh(session, fast.guests, thresholds=thresholds)
        if after_record is not None:
            after_record(session, fast)
        return len(fast.keys)

    return JobSpec(FAST_JOB, "fast", interval_s or fast_interval(inventory), collect, record)
