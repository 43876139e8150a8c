"""What the scheduler runs: job specs built from the inventory and a collector factory.

The seam for the real collectors is ``CollectorFactory``: given inventory records it returns plain callables
that do the network I/O and return observations (``pdn_ops.domain.observations``). They run in the job's own
thread, outside any database session; an async collector wraps itself (``asyncio.run``) inside its callable.
Recording the observations is the services layer's job, inside the wrapper's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy.orm import Session

from pdn_ops.domain.health import Thresholds
from pdn_ops.domain.observations import ClusterObservation, SiteCheck, SshObservation
from pdn_ops.inventory import Cluster, Inventory, Site, Vm
from pdn_ops.services import health as health_service
from pdn_ops.settings import Settings


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
            ),
            raw_retention=timedelta(days=settings.health_raw_retention_days),
            stale_after=timedelta(seconds=settings.health_stale_after_seconds),
        )


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One scheduled job: ``collect`` does the I/O (no session), ``record`` stores its result in one transaction."""

    name: str  # bounded and stable: it is the ``collector`` label of the metrics
    kind: str  # proxmox | sites | ssh | maintenance
    interval_s: float
    collect: Callable[[], Any]
    record: Callable[[Session, Any], object]
    misfire_grace_s: float = 0.0  # 0 means: half the interval

    @property
    def misfire_grace(self) -> int:
        # A run that missed its slot by more than half an interval is dropped; the next one is due soon anyway.
        return max(1, int(self.misfire_grace_s or self.interval_s / 2))


def _nothing() -> None:
    return None


def maintenance_jobs(config: HealthConfig, longest_interval_s: float = 0.0) -> list[JobSpec]:
    # Silence means UNKNOWN only after three missed runs of the slowest collector: an hourly site check must not
    # flap to UNKNOWN between its runs.
    stale_after = max(config.stale_after, timedelta(seconds=3 * longest_interval_s))

    def purge(session: Session, _: object) -> object:
        return health_service.purge_raw(session, retention=config.raw_retention)

    def stale(session: Session, _: object) -> object:
        return health_service.mark_stale(session, max_age=stale_after)

    return [
        JobSpec("health:rollup-retention", "maintenance", config.maintenance_interval_s, _nothing, purge),
        JobSpec("health:stale", "maintenance", config.maintenance_interval_s, _nothing, stale),
    ]


def build_jobs(inventory: Inventory, factory: CollectorFactory | None, config: HealthConfig) -> list[JobSpec]:
    """The seam: one Proxmox job per cluster, one site job and one SSH job per distinct interval, maintenance."""
    thresholds = config.thresholds
    if factory is None:
        return maintenance_jobs(config)
    jobs: list[JobSpec] = []

    def record_cluster(session: Session, observation: ClusterObservation) -> object:
        return health_service.record_cluster(session, observation, thresholds=thresholds)

    def record_sites(session: Session, checks: Sequence[SiteCheck]) -> object:
        return health_service.record_site_checks(session, checks, thresholds=thresholds)

    def record_ssh(session: Session, observations: Sequence[SshObservation]) -> object:
        return health_service.record_ssh(session, observations, thresholds=thresholds)

    for cluster in inventory.clusters:
        jobs.append(JobSpec(f"proxmox:{cluster.name}", "proxmox", cluster.interval, factory.proxmox(cluster),
                            record_cluster))
    by_interval: dict[int, list[Site]] = {}
    for site in inventory.sites:
        by_interval.setdefault(site.interval, []).append(site)
    for interval, sites in sorted(by_interval.items()):
        jobs.append(JobSpec(f"sites:{interval}s", "sites", interval, factory.sites(sites), record_sites))
    ssh_by_interval: dict[int, list[Vm]] = {}
    for vm in inventory.vms:
        if vm.ssh is not None:
            ssh_by_interval.setdefault(vm.ssh.interval, []).append(vm)
    for interval, vms in sorted(ssh_by_interval.items()):
        jobs.append(JobSpec(f"ssh:{interval}s", "ssh", interval, factory.ssh(vms), record_ssh))
    return maintenance_jobs(config, max((job.interval_s for job in jobs), default=0.0)) + jobs


COMPLAINT_SWEEP_INTERVAL_S = 900.0
# At-risk marks sit at 50 % and 80 % of a days-long SLA: five minutes late is still early enough to act.
SLA_AT_RISK_INTERVAL_S = 300.0


def complaint_jobs(config: Any, public_url: str | None = None) -> list[JobSpec]:
    """Step 6 of the procedure: fixed complaints the OPD never answered close after the configured period.

    With ``public_url`` (the links in messages), also the engineers' SLA-at-risk alerts: every active engineer
    with a WhatsApp number or e-mail address on their account (set on the supervisor's users screen) gets one
    message per complaint, level (50 or 80 %) and complaint version, however often the job runs.
    """
    from pdn_ops.db.tables import utcnow
    from pdn_ops.services import complaint_notifications, complaints

    def close_stale(session: Session, _: object) -> object:
        return complaints.close_stale(session, utcnow(), config=config)

    jobs = [JobSpec("complaints:close-stale", "maintenance", COMPLAINT_SWEEP_INTERVAL_S, _nothing, close_stale)]
    if public_url is not None:
        def sla_at_risk(session: Session, _: object) -> object:
            engineers = complaint_notifications.engineer_recipients(session)
            return complaint_notifications.enqueue_sla_at_risk(session, utcnow(), engineers=engineers,
                                                               public_url=public_url)

        jobs.append(JobSpec("complaints:sla-at-risk", "maintenance", SLA_AT_RISK_INTERVAL_S, _nothing, sla_at_risk))
    return jobs


# The policy engine reads what the collectors recorded; a quarter of the shortest default check interval (60 s)
# keeps "detection within two check intervals" for the rules.
AUTO_RULES_INTERVAL_S = 15.0
REMEDIATION_ALERTS_INTERVAL_S = 60.0


def remediation_jobs(inventory: Inventory, *, policy: Any = None, base_dir: Any = None,
                     public_url: str | None = None) -> list[JobSpec]:
    """Automatic remediation (issue 6): every enabled rule evaluated against the health model, and the engineers'
    alerts for runs that failed, ended unknown or were ineffective (``public_url``: the links in the alerts).

    Only the leader schedules these, so exactly one process evaluates the rules; the idempotency key and the
    one-active-run constraint keep a hand-over between two leaders from enqueueing a run twice.
    """
    from pdn_ops.db.tables import utcnow
    from pdn_ops.domain.remediation import Policy
    from pdn_ops.services import remediation_alerts, remediation_auto

    chosen = policy if isinstance(policy, Policy) else Policy()

    def auto_rules(session: Session, _: object) -> object:
        return remediation_auto.evaluate_all(session, inventory, policy=chosen, now=utcnow(), base_dir=base_dir)

    jobs = [JobSpec("remediation:auto-rules", "maintenance", AUTO_RULES_INTERVAL_S, _nothing, auto_rules)]
    if public_url is not None:
        def alerts(session: Session, _: object) -> object:
            return remediation_alerts.sweep(session, public_url=public_url, now=utcnow())

        jobs.append(JobSpec("remediation:alerts", "maintenance", REMEDIATION_ALERTS_INTERVAL_S, _nothing, alerts))
    return jobs
