"""The health model: observations become per-target states, state changes become events. Pure, standard library.

Targets and their keys (``kind:ref``)::

    cluster:pdn1            one Proxmox cluster (its API answered, it is quorate)
    node:pdn1/pve1          one Proxmox node (online in /cluster/status)
    vm:pdn1/101             one guest as Proxmox sees it (running or not, cpu/memory/disk)
    storage:pdn1/pve1/local one storage on one node (only as a cause: its use is a value of its cluster)
    guest:pdn1/101          the same guest from the inside, over SSH (disk, memory, declared services)
    site:https://x.go.id/   one website check (status, keyword, timing, TLS)

States: UP, DEGRADED (works, but something needs attention), DOWN (failing), UNKNOWN (no evidence yet, or the
only source of evidence is itself failing). Flapping is damped by thresholds: a target goes DOWN after
``down_after`` consecutive failures and comes back from DOWN after ``up_after`` consecutive successes. A
*definitive* failure (Proxmox itself says the guest is stopped or the node is offline) needs no second opinion.

Dependencies (site -> vm -> node -> cluster, guest -> vm; a VM in ``io-error`` -> the storages of its disks)
decide the root cause, from evidence only (``attribute``): a target's failure is blamed on an upstream only when a
*working* witness observed that upstream failing (a stopped VM reported by an answering API, a node reported
offline by a quorate cluster, a full storage under a VM frozen in io-error) and the target
has no independent evidence of its own (an answer with a bad certificate or a 500 is the target's own failure; a
guest that answers over SSH shows its VM runs). An upstream we cannot see (its witness is failing) never hides
an observed failure: the target stays its own incident, marked "cause unknown".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from pdn_ops.health.observations import (
    BackupObservation,
    ClusterObservation,
    FailureClass,
    GuestObservation,
    NodeObservation,
    SiteCheck,
    SshObservation,
    StorageObservation,
)


class State(StrEnum):
    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"
    UNKNOWN = "unknown"

    @property
    def is_problem(self) -> bool:
        return self is not State.UP


class Kind(StrEnum):
    CLUSTER = "cluster"
    NODE = "node"
    VM = "vm"
    GUEST = "guest"
    SITE = "site"
    STORAGE = "storage"  # a cause only (a VM frozen on a full storage); not a target of its own


class Reason(StrEnum):
    """Why a target is not UP; bounded, so it may be a metric label and a catalogue key suffix."""

    OK = "ok"
    CHECK_FAILED = "check_failed"  # detail in ``failure``
    VM_STOPPED = "vm_stopped"
    VM_MISSING = "vm_missing"
    NODE_OFFLINE = "node_offline"
    NOT_QUORATE = "not_quorate"
    SLOW_RESPONSE = "slow_response"
    TLS_EXPIRING = "tls_expiring"
    DISK_FULL = "disk_full"
    MEMORY_LOW = "memory_low"
    SERVICE_INACTIVE = "service_inactive"
    FAILED_UNITS = "failed_units"
    SOURCE_FAILING = "source_failing"  # the collector that would tell us is itself failing
    STALE = "stale"  # no observation for too long
    HOST_KEY = "host_key"
    IO_ERROR = "io_error"  # QEMU paused the VM on a failed disk write (qmpstatus io-error)
    STORAGE_FULL = "storage_full"  # the cause of an io-error: a storage of the VM's disks is full
    STALE_LOCK = "stale_lock"  # the VM's lock (backup, snapshot, migrate...) outlived every task that could hold it


@dataclass(frozen=True, slots=True)
class Thresholds:
    down_after: int = 2
    up_after: int = 2
    slow_response_s: float = 3.0
    tls_warning_days: float = 14.0
    disk_used_ratio: float = 0.90
    memory_available_ratio: float = 0.05
    backup_max_age_h: float = 26.0  # a daily job plus its run time
    storage_used_ratio: float = 0.90
    storage_full_ratio: float = 0.98  # "full" as a cause of io-error (a pool at 90% still takes writes)
    stale_lock_s: float = 600.0  # a lock no running task holds for this long is stuck
    forecast_window_h: int = 7 * 24  # hours of storage rollups the days-until-full slope is fitted over
    forecast_min_points: int = 3  # never a guess from two points

    def __post_init__(self) -> None:
        if self.down_after < 1 or self.up_after < 1:
            raise ValueError("down_after and up_after must be at least 1")
        if self.backup_max_age_h <= 0:
            raise ValueError("backup_max_age_h must be positive")
        if not 0 < self.disk_used_ratio <= 1 or not 0 <= self.memory_available_ratio < 1:
            raise ValueError("ratios must lie between 0 and 1")


def target_key(kind: Kind, ref: str) -> str:
    return f"{kind.value}:{ref}"


def split_key(key: str) -> tuple[Kind, str]:
    kind, _, ref = key.partition(":")
    return Kind(kind), ref


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one observation says about one target, before thresholds and dependencies."""

    ok: bool
    reason: Reason = Reason.OK
    failure: FailureClass | None = None
    detail: str = ""
    degraded: tuple[Reason, ...] = ()
    definitive: bool = False  # the authority on this target says so; skip the down_after damping
    unknown: bool = False  # the authority says it cannot know (a VM on an offline node): UNKNOWN with ``reason``


@dataclass(frozen=True, slots=True)
class Cause:
    key: str  # the root target, e.g. "vm:pdn1/101"
    reason: Reason


@dataclass(frozen=True, slots=True)
class TargetState:
    key: str
    state: State = State.UNKNOWN
    since: datetime | None = None
    reason: Reason = Reason.OK
    failure: FailureClass | None = None
    detail: str = ""
    degraded: tuple[Reason, ...] = ()
    failures: int = 0  # consecutive
    successes: int = 0  # consecutive
    last_check_at: datetime | None = None
    cause: Cause | None = None

    @property
    def is_root_problem(self) -> bool:
        return self.state.is_problem and self.cause is None


@dataclass(frozen=True, slots=True)
class StateChange:
    key: str
    at: datetime
    old: State
    new: State
    reason: Reason
    detail: str = ""
    cause: Cause | None = None


def step(previous: TargetState, verdict: Verdict, at: datetime, thresholds: Thresholds) -> TargetState:
    """Fold one verdict into a target's state, applying the down/up thresholds."""
    if verdict.unknown:
        return replace(unknown(previous, at, verdict.reason, verdict.detail), last_check_at=at)
    if verdict.ok:
        successes, failures = previous.successes + 1, 0
        recovering = previous.state is State.DOWN and successes < thresholds.up_after
        if recovering:
            new_state, reason = State.DOWN, previous.reason
        elif verdict.degraded:
            new_state, reason = State.DEGRADED, verdict.degraded[0]
        else:
            new_state, reason = State.UP, Reason.OK
        return replace(
            previous,
            state=new_state,
            since=previous.since if new_state is previous.state else at,
            reason=reason,
            failure=previous.failure if recovering else None,
            detail=previous.detail if recovering else verdict.detail,
            degraded=verdict.degraded,
            failures=failures,
            successes=successes,
            last_check_at=at,
        )
    failures, successes = previous.failures + 1, 0
    # One failure is not yet evidence: below the threshold the target keeps what we knew.
    down = verdict.definitive or failures >= thresholds.down_after
    new_state = State.DOWN if down else previous.state
    return replace(
        previous,
        state=new_state,
        since=previous.since if new_state is previous.state else at,
        reason=verdict.reason if new_state is State.DOWN else previous.reason,
        failure=verdict.failure,
        detail=verdict.detail,
        degraded=(),
        failures=failures,
        successes=successes,
        last_check_at=at,
    )


def unknown(previous: TargetState, at: datetime, reason: Reason, detail: str = "") -> TargetState:
    """Evidence is missing (the source is failing, or the target is stale): forget the counters."""
    return replace(
        previous,
        state=State.UNKNOWN,
        since=previous.since if previous.state is State.UNKNOWN else at,
        reason=reason,
        failure=None,
        detail=detail,
        degraded=(),
        failures=0,
        successes=0,
    )


def change_of(old: TargetState, new: TargetState, at: datetime) -> StateChange | None:
    if old.state is new.state:
        return None
    return StateChange(key=new.key, at=at, old=old.state, new=new.state, reason=new.reason, detail=new.detail,
                       cause=new.cause)


# --- verdicts per observation kind -----------------------------------------------------------------------------


def assess_site(check: SiteCheck, thresholds: Thresholds, *, tls_warning_days: float | None = None) -> Verdict:
    if not check.ok:
        return Verdict(ok=False, reason=Reason.CHECK_FAILED, failure=check.failure or FailureClass.ERROR,
                       detail=check.detail)
    degraded: list[Reason] = []
    if check.total_s is not None and check.total_s > thresholds.slow_response_s:
        degraded.append(Reason.SLOW_RESPONSE)
    warn_days = thresholds.tls_warning_days if tls_warning_days is None else tls_warning_days
    if check.tls_days_left is not None and check.tls_days_left < warn_days:
        degraded.append(Reason.TLS_EXPIRING)
    return Verdict(ok=True, degraded=tuple(degraded), detail=check.detail)


def assess_vm(guest: GuestObservation | None, thresholds: Thresholds, *, node_online: bool = True) -> Verdict:
    if guest is None:
        return Verdict(ok=False, reason=Reason.VM_MISSING, failure=FailureClass.EMPTY, definitive=True,
                       detail="not in the cluster's resource list")
    if not node_online or guest.status == "unknown":
        # Proxmox cannot reach the node: it does not know whether the guest runs, and neither do we.
        return Verdict(ok=False, reason=Reason.NODE_OFFLINE, unknown=True, detail=guest.node)
    if guest.status != "running":
        return Verdict(ok=False, reason=Reason.VM_STOPPED, detail=guest.status, definitive=True)
    if guest.qmpstatus == "io-error":
        # The QEMU process runs, but the guest is frozen: as down as a stopped VM, and Proxmox says so itself.
        return Verdict(ok=False, reason=Reason.IO_ERROR, detail=", ".join(guest.disk_storages) or guest.qmpstatus,
                       definitive=True)
    degraded: list[Reason] = []
    # The guest agent's filesystems when it answers; Proxmox's own figure otherwise (0 for QEMU without agent).
    used, total = (guest.fs_used, guest.fs_total) if guest.fs_total and guest.fs_used is not None else (
        guest.disk, guest.maxdisk)
    if total and used / total > thresholds.disk_used_ratio:
        degraded.append(Reason.DISK_FULL)
    if guest.lock and guest.lock_free_s is not None and guest.lock_free_s >= thresholds.stale_lock_s:
        degraded.append(Reason.STALE_LOCK)
    return Verdict(ok=True, degraded=tuple(degraded))


def assess_node(node: NodeObservation) -> Verdict:
    if not node.online:
        return Verdict(ok=False, reason=Reason.NODE_OFFLINE, failure=FailureClass.NODE_OFFLINE, definitive=True)
    return Verdict(ok=True)


def assess_cluster(observation: ClusterObservation) -> Verdict:
    if not observation.ok:
        return Verdict(ok=False, reason=Reason.CHECK_FAILED, failure=observation.failure or FailureClass.ERROR,
                       detail=observation.detail)
    if observation.quorate is False:
        return Verdict(ok=True, degraded=(Reason.NOT_QUORATE,))
    return Verdict(ok=True)


class BackupState(StrEnum):
    """A guest's backups; bounded, so it may be a metric label."""

    OK = "ok"
    FAILED = "failed"  # the newest attempt failed (after the newest good backup)
    TOO_OLD = "too_old"  # covered by a job, but no good backup within the threshold
    UNPROTECTED = "unprotected"  # no enabled job includes it


def assess_backup(backup: BackupObservation, now: datetime, thresholds: Thresholds) -> BackupState:
    """Failed outranks unprotected (a failure is news), unprotected outranks too old (no job will fix it). Times
    are whole seconds: a failure in the same second as the newest good backup counts as the newer."""
    if backup.last_failed_at is not None and (backup.last_ok_at is None or backup.last_failed_at >= backup.last_ok_at):
        return BackupState.FAILED
    if not backup.jobs:
        return BackupState.UNPROTECTED
    if backup.last_ok_at is None or (now - backup.last_ok_at).total_seconds() > thresholds.backup_max_age_h * 3600:
        return BackupState.TOO_OLD
    return BackupState.OK


def days_until_full(points: Iterable[tuple[float, float]], total: float, *, min_points: int = 3) -> float | None:
    """Days until a storage is full from its use over time: the least-squares line through ``points`` (unix
    seconds, bytes used), extended from its value at the newest point to ``total``. None when there are fewer
    than ``min_points`` distinct times or the use does not grow (it never fills at this rate); 0 when full."""
    pts = list(points)
    if len({t for t, _ in pts}) < max(min_points, 2) or total <= 0:
        return None
    n = len(pts)
    mean_t = sum(t for t, _ in pts) / n
    mean_u = sum(u for _, u in pts) / n
    sxx = sum((t - mean_t) ** 2 for t, _ in pts)
    slope = sum((t - mean_t) * (u - mean_u) for t, u in pts) / sxx  # bytes per second
    if slope <= 0:
        return None
    fitted_now = mean_u + slope * (max(t for t, _ in pts) - mean_t)
    return max(total - fitted_now, 0.0) / slope / 86400


# How a guest check's detail names each finding ("inactive: nginx.service; full: /"): written by assess_ssh, read
# back by guest_findings (the policy engine counts checks in a row with the same finding).
_GUEST_FINDING: dict[Reason, str] = {Reason.SERVICE_INACTIVE: "inactive: ", Reason.FAILED_UNITS: "failed: ",
                                     Reason.DISK_FULL: "full: "}


def guest_findings(detail: str) -> dict[Reason, frozenset[str]]:
    """The findings of one successful guest check from its detail: reason -> the units or mounts it names."""
    found: dict[Reason, frozenset[str]] = {}
    for part in detail.split("; "):
        for reason, prefix in _GUEST_FINDING.items():
            if part.startswith(prefix):
                found[reason] = frozenset(name.strip() for name in part[len(prefix):].split(",") if name.strip())
    return found


def assess_ssh(observation: SshObservation, declared_services: Iterable[str], thresholds: Thresholds) -> Verdict:
    if not observation.ok:
        reason = Reason.HOST_KEY if observation.failure is FailureClass.HOST_KEY else Reason.CHECK_FAILED
        return Verdict(ok=False, reason=reason, failure=observation.failure or FailureClass.ERROR,
                       detail=observation.detail)
    degraded: list[Reason] = []
    details: list[str] = []
    inactive = [unit for unit in declared_services if observation.services.get(unit) != "active"]
    if inactive:
        degraded.append(Reason.SERVICE_INACTIVE)
        details.append(_GUEST_FINDING[Reason.SERVICE_INACTIVE] + ", ".join(sorted(inactive)))
    if observation.failed_units:
        degraded.append(Reason.FAILED_UNITS)
        details.append(_GUEST_FINDING[Reason.FAILED_UNITS] + ", ".join(sorted(observation.failed_units)))
    full = [m.mount for m in observation.mounts if m.used_ratio > thresholds.disk_used_ratio]
    if full:
        degraded.append(Reason.DISK_FULL)
        details.append(_GUEST_FINDING[Reason.DISK_FULL] + ", ".join(sorted(full)))
    total, available = observation.mem_total_bytes, observation.mem_available_bytes
    if total and available is not None and available / total < thresholds.memory_available_ratio:
        degraded.append(Reason.MEMORY_LOW)
    return Verdict(ok=True, degraded=tuple(degraded), detail="; ".join(details))


# --- dependencies ------------------------------------------------------------------------------------------------


# Failure classes that show the target itself answered (a bad certificate, a 500, a wrong keyword, a refused
# key): whatever its upstream does, this failure is the target's own.
OWN_FAILURES = frozenset({FailureClass.TLS, FailureClass.STATUS, FailureClass.KEYWORD, FailureClass.PROTOCOL,
                          FailureClass.HOST_KEY, FailureClass.AUTH})
# How an upstream is observed failing by its witness (the Proxmox API of its cluster, answering).
OBSERVED_DOWN: dict[Kind, frozenset[Reason]] = {
    Kind.VM: frozenset({Reason.VM_STOPPED, Reason.VM_MISSING, Reason.IO_ERROR}),
    Kind.NODE: frozenset({Reason.NODE_OFFLINE}),
    Kind.STORAGE: frozenset({Reason.STORAGE_FULL}),
}
CAUSE_UNKNOWN = Reason.SOURCE_FAILING  # stored as the reason of an attribution without a cause


@dataclass(frozen=True, slots=True)
class Attribution:
    """Why a target that is not UP is not: an observed upstream ``cause``, or its own problem; ``blind`` names
    an upstream whose witness is failing (so the cause may lie there, unknown): then the target stays its own
    incident, annotated "Proxmox API unreachable: cause unknown"."""

    cause: Cause | None = None
    blind: str | None = None


def _kind_of(key: str) -> Kind | None:
    kind = key.partition(":")[0]
    return Kind(kind) if kind in Kind._value2member_map_ else None


def _witness_works(cluster: TargetState | None, kind: Kind) -> bool:
    """Whether the cluster's API, as last seen, is a working witness for a VM or node state it reports."""
    if cluster is None:
        return True  # absent means healthy (only targets that are not UP are passed in)
    if cluster.state in (State.DOWN, State.UNKNOWN):
        return False
    # A cluster without quorum may see its own partition as the whole: its "node offline" is not evidence.
    return not (kind is Kind.NODE and Reason.NOT_QUORATE in (cluster.reason, *cluster.degraded))


def storage_key(cluster: str, node: str, storage: str) -> str:
    return target_key(Kind.STORAGE, f"{cluster}/{node}/{storage}")


def storage_full(store: StorageObservation, thresholds: Thresholds) -> bool:
    return store.available and store.fill >= thresholds.storage_full_ratio


def _storage_cause(vm_key: str, states: Mapping[str, TargetState], storages: Mapping[str, Iterable[str]],
                   cluster: TargetState | None) -> Cause | None:
    """A VM frozen in io-error is down because of a storage of its disks only when that storage is observed full
    (by an answering API): an io-error on a storage with room is the VM's own (a failing disk, a lost mount)."""
    vm = states.get(vm_key)
    if vm is None or vm.state is not State.DOWN or vm.reason is not Reason.IO_ERROR:
        return None
    if not _witness_works(cluster, Kind.STORAGE):
        return None
    for key in storages.get(vm_key, ()):
        store = states.get(key)
        if store is not None and store.state is State.DOWN and store.reason is Reason.STORAGE_FULL:
            return Cause(key=key, reason=Reason.STORAGE_FULL)
    return None


def attribute(states: Mapping[str, TargetState], parents: Mapping[str, str | None], *,
              alive: frozenset[str] = frozenset(),
              storages: Mapping[str, Iterable[str]] | None = None) -> dict[str, Attribution]:
    """The one root-cause rule: for every target that is not UP, its observed upstream cause, if any.

    ``states`` needs to hold only targets that are not UP (an absent ancestor counts as healthy). ``parents``
    maps a key to its dependency (site -> vm, guest -> vm, vm -> node, node -> cluster). ``alive`` holds upstream
    keys another witness shows running (a VM whose guest answers over SSH). ``storages`` maps a VM's key to the
    storage keys of its disks; a storage observed full is in ``states`` as DOWN with ``STORAGE_FULL``: it is the
    root cause of a VM in io-error on it, and of what fails because of that VM. Cycles are cut.
    """
    disks = storages or {}
    result: dict[str, Attribution] = {}
    for key, state in states.items():
        if not state.state.is_problem:
            continue
        if state.state is State.DOWN and state.failure in OWN_FAILURES:
            result[key] = Attribution()  # it answered: its failure is its own, whatever lies upstream
            continue
        chain: list[str] = []
        seen = {key}
        parent = parents.get(key)
        while parent is not None and parent not in seen:
            seen.add(parent)
            chain.append(parent)
            parent = parents.get(parent)
        cluster_key = next((k for k in reversed(chain) if k.startswith(Kind.CLUSTER.value + ":")), None)
        cluster = states.get(cluster_key) if cluster_key is not None else None
        root: TargetState | None = None
        blind: str | None = None
        confirmed = False  # another witness shows an upstream runs: nothing from there up explains the failure
        for ancestor_key in chain:
            confirmed = confirmed or ancestor_key in alive
            ancestor = states.get(ancestor_key)
            if ancestor is None:
                continue
            kind = _kind_of(ancestor_key)
            if kind is Kind.CLUSTER:
                if ancestor.state in (State.DOWN, State.UNKNOWN):
                    blind = blind or ancestor_key
                continue  # an API that fails takes nothing down with it: it only stops seeing
            evidence = OBSERVED_DOWN.get(kind, frozenset()) if kind is not None else frozenset()
            reported_down = ancestor.state is State.DOWN and bool(evidence)
            if (reported_down and kind is not None and _witness_works(cluster, kind)
                    and ancestor.reason in evidence):
                if not confirmed:
                    root = ancestor
            elif reported_down or (ancestor.state is State.UNKNOWN
                                   and ancestor.reason in (Reason.SOURCE_FAILING, Reason.STALE)):
                # Reported by a witness that no longer works, or not seen at all: the cause may be here, unknown.
                blind = blind or cluster_key or ancestor_key
        own = _storage_cause(key, states, disks, cluster) if _kind_of(key) is Kind.VM else None
        if own is not None:
            result[key] = Attribution(cause=own)
        elif root is not None:
            deeper = _storage_cause(root.key, states, disks, cluster) if _kind_of(root.key) is Kind.VM else None
            result[key] = Attribution(cause=deeper or Cause(key=root.key, reason=root.reason))
        else:
            result[key] = Attribution(blind=blind)
    return result


def root_causes(states: Mapping[str, TargetState], parents: Mapping[str, str | None], *,
                alive: frozenset[str] = frozenset(),
                storages: Mapping[str, Iterable[str]] | None = None) -> dict[str, Cause | None]:
    """For every target that is not UP: its observed root cause, or None when it is its own root (``attribute``)."""
    return {key: a.cause for key, a in attribute(states, parents, alive=alive, storages=storages).items()}


def uptime_ratio(up_seconds: float, observed_seconds: float) -> float | None:
    return None if observed_seconds <= 0 else max(0.0, min(1.0, up_seconds / observed_seconds))
