"""Record observations, evaluate them with the health model, keep history: the write side of health.

Collectors hand over immutable observations (``pdn_ops.health.observations``); these functions fold them into
``health_targets`` (one row per target), append raw ``health_checks``, write ``health_events`` for state changes
and security events, and re-resolve root causes. Maintenance (hourly rollups, retention, staleness) lives here too.
Read-side queries for pages and /metrics are in ``pdn_ops.health.queries``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, delete, func, insert, or_, select, tuple_, update
from sqlalchemy.orm import Session

from pdn_ops.core.db.tables import OpdRow, SiteRow, VmRow, utcnow
from pdn_ops.health import model
from pdn_ops.health.model import Cause, Kind, Reason, State, StateChange, TargetState, Thresholds, Verdict
from pdn_ops.health.observations import (
    BackupObservation,
    ClusterObservation,
    FailureClass,
    GuestObservation,
    SiteCheck,
    SshObservation,
)
from pdn_ops.health.tables import (
    HealthAlertRow,
    HealthCheckRow,
    HealthEventRow,
    HealthRollupRow,
    HealthTargetRow,
    StorageRollupRow,
    VmResourceRollupRow,
)

STORAGE_ROLLUP_DAYS = 35

DETAIL_MAX = 500  # raw detail is diagnostic text from peers: capped so one bad answer cannot bloat the table
ALERT_RETENTION = timedelta(days=90)  # resolved alerts received from Alertmanager (health_alerts)
MAX_MOUNTS = 10  # per guest, the fullest ones: keeps metric label sets bounded


@dataclass(frozen=True, slots=True)
class Recorded:
    """What one record_* call changed: state changes (for notifications) and security events."""

    changes: tuple[StateChange, ...] = ()
    security_events: int = 0


# --- working copies of health_targets rows ----------------------------------------------------------------------
# Rows are read as plain columns and written back with one executemany UPDATE: for thousands of targets per cycle
# the ORM's unit of work (entities, change tracking, one flush) costs more than the evaluation itself.

MUTABLE = ("opd_id", "vm_id", "site_id", "parent_key", "state", "since", "reason", "failure", "detail", "degraded",
           "failures", "successes", "last_check_at", "cause_key", "cause_reason", "values")
COLUMNS = (HealthTargetRow.id, HealthTargetRow.kind, HealthTargetRow.ref,
           *(getattr(HealthTargetRow, name) for name in MUTABLE))


# The tables themselves, for Core bulk statements (see _conn).
_TARGETS = cast(Table, HealthTargetRow.__table__)
_CHECKS = cast(Table, HealthCheckRow.__table__)
_EVENTS = cast(Table, HealthEventRow.__table__)


@dataclass(slots=True)
class Target:
    id: int
    kind: str
    ref: str
    opd_id: int | None
    vm_id: int | None
    site_id: int | None
    parent_key: str | None
    state: str
    since: datetime | None
    reason: str
    failure: str | None
    detail: str
    degraded: list[str]
    failures: int
    successes: int
    last_check_at: datetime | None
    cause_key: str | None
    cause_reason: str | None
    values: dict[str, Any]

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.ref}"


# Targets written in a session's transaction, by id (the latest copy wins): once it commits, the job hands them to
# the /metrics snapshot, which then updates those targets only (pdn_ops.health.metrics.SnapshotCache).
WRITTEN = "pdn_health_written"


def _note_written(session: Session, targets: Iterable[Target]) -> None:
    written = session.info.setdefault(WRITTEN, {})
    for target in targets:
        written[target.id] = target


def written_targets(session: Session) -> list[Target]:
    """The health targets this session's transaction wrote (inserted or updated), as written."""
    return list(session.info.get(WRITTEN, {}).values())


def _conn(session: Session) -> Connection:
    """The session's connection for plain-column reads and bulk writes: the ORM's loading and bulk machinery cost
    more than the evaluation itself at thousands of rows (pending ORM changes are flushed first, as a query
    through the session would)."""
    if session.new or session.dirty or session.deleted:
        session.flush()
    return session.connection()


def _load(session: Session, *where: Any) -> list[Target]:
    return [Target(*row) for row in _conn(session).execute(select(*COLUMNS).where(*where))]


@cache
def _update_statement(names: tuple[str, ...]) -> Any:
    table = _TARGETS
    return (update(table).where(table.c.id == bindparam("p_id"))
            .values({name: bindparam(f"p_{name}") for name in (*names, "updated_at")}))


def _save(session: Session, targets: Iterable[Target], now: datetime, names: Sequence[str] = MUTABLE) -> None:
    targets = list(targets)
    if not targets:
        return
    keys = [(name, f"p_{name}") for name in names]
    rows = [{"p_id": t.id, "p_updated_at": now, **{key: getattr(t, name) for name, key in keys}} for t in targets]
    _conn(session).execute(_update_statement(tuple(names)), rows)
    _note_written(session, targets)
    # ORM entities of these rows loaded earlier in this session would now be stale.
    for obj in list(session.identity_map.values()):
        if isinstance(obj, HealthTargetRow):
            session.expire(obj)


def _to_state(row: Target) -> TargetState:
    return TargetState(
        key=row.key,
        state=State(row.state),
        since=row.since,
        reason=Reason(row.reason),
        failure=FailureClass(row.failure) if row.failure else None,
        detail=row.detail,
        degraded=tuple(Reason(r) for r in row.degraded or ()),
        failures=row.failures,
        successes=row.successes,
        last_check_at=row.last_check_at,
        cause=Cause(row.cause_key, Reason(row.cause_reason or "ok")) if row.cause_key else None,
    )


def _apply_state(row: Target, state: TargetState) -> None:
    row.state = state.state.value
    row.since = state.since
    row.reason = state.reason.value
    row.failure = state.failure.value if state.failure else None
    row.detail = state.detail[:DETAIL_MAX]
    row.degraded = [r.value for r in state.degraded]
    row.failures = state.failures
    row.successes = state.successes
    row.last_check_at = state.last_check_at
    if not state.state.is_problem:
        row.cause_key = row.cause_reason = None


def _targets(session: Session, kind: Kind, refs: Iterable[str] | None = None, *,
             prefix: str | None = None) -> dict[str, Target]:
    """The targets of ``kind`` (those whose ref starts with ``prefix``, e.g. one cluster's VMs: a cycle reads its
    own, not the fleet's), with a new UNKNOWN row for each of ``refs`` not seen yet."""
    where = [HealthTargetRow.kind == kind.value]
    if prefix:
        # A range of the (kind, ref) unique index: everything that starts with the prefix.
        where += [HealthTargetRow.ref >= prefix, HealthTargetRow.ref < prefix[:-1] + chr(ord(prefix[-1]) + 1)]
    rows = {row.ref: row for row in _load(session, *where)}
    new = list(dict.fromkeys(ref for ref in refs or () if ref not in rows))
    if new:
        now = utcnow()
        _conn(session).execute(insert(_TARGETS), [
            {"kind": kind.value, "ref": ref, "state": State.UNKNOWN.value, "reason": Reason.OK.value, "detail": "",
             "degraded": [], "failures": 0, "successes": 0, "values": {}, "updated_at": now} for ref in new])
        for start in range(0, len(new), 500):
            chunk = new[start:start + 500]
            added = _load(session, HealthTargetRow.kind == kind.value, HealthTargetRow.ref.in_(chunk))
            rows.update((row.ref, row) for row in added)
            _note_written(session, added)
    return rows


class _Batch:
    """Collects target updates, raw check rows and events of one recording, written in bulk at the end."""

    def __init__(self, session: Session, now: datetime) -> None:
        self.session = session
        self.now = now
        self.touched: dict[int, Target] = {}
        self.checks: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.changes: list[StateChange] = []
        self.security = 0

    def fold(self, row: Target, verdict: Verdict, at: datetime, thresholds: Thresholds,
             duration_s: float | None = None) -> None:
        old = _to_state(row)
        new = model.step(old, verdict, at, thresholds)
        self._commit(row, old, new, at)
        self.checks.append({"target_id": row.id, "at": at, "ok": verdict.ok,
                            "failure": verdict.failure.value if verdict.failure else None,
                            "duration_s": duration_s, "detail": verdict.detail[:DETAIL_MAX]})

    def mark_unknown(self, row: Target, at: datetime, reason: Reason, detail: str = "") -> None:
        old = _to_state(row)
        self._commit(row, old, model.unknown(old, at, reason, detail), at)

    def security_event(self, row: Target, at: datetime, reason: Reason, detail: str) -> None:
        self.security += 1
        self.events.append({"target_id": row.id, "at": at, "event": "security", "old_state": None,
                            "new_state": None, "reason": reason.value, "detail": detail[:DETAIL_MAX],
                            "cause_key": None})

    def _commit(self, row: Target, old: TargetState, new: TargetState, at: datetime) -> None:
        _apply_state(row, new)
        self.touched[row.id] = row
        change = model.change_of(old, new, at)
        if change is not None:
            self.changes.append(change)
            self.events.append({"target_id": row.id, "at": at, "event": "state", "old_state": change.old.value,
                                "new_state": change.new.value, "reason": change.reason.value,
                                "detail": change.detail[:DETAIL_MAX], "cause_key": None})

    def finish(self) -> Recorded:
        _save(self.session, self.touched.values(), self.now)
        if self.checks:
            _conn(self.session).execute(insert(_CHECKS), self.checks)
        if self.events:
            _conn(self.session).execute(insert(_EVENTS), self.events)
        resolve_causes(self.session, now=self.now)
        return Recorded(changes=tuple(self.changes), security_events=self.security)


# --- recording ---------------------------------------------------------------------------------------------------


def record_site_checks(session: Session, checks: Sequence[SiteCheck], *, thresholds: Thresholds,
                       now: datetime | None = None) -> Recorded:
    """Fold site checks in; a check for a URL that is not an active inventory site is ignored."""
    now = now or utcnow()
    batch = _Batch(session, now)
    urls = {c.url for c in checks}
    if not urls:
        return batch.finish()
    # Plain column reads: thousands of ORM entities would cost more than the evaluation itself.
    sites = {url: (site_id, opd_id, vm_id, settings) for site_id, url, opd_id, vm_id, settings in session.execute(
        select(SiteRow.id, SiteRow.url, SiteRow.opd_id, SiteRow.vm_id, SiteRow.settings)
        .where(SiteRow.retired_at.is_(None)))}
    vm_refs = {vm_id: f"{cluster}/{vmid}" for vm_id, cluster, vmid in session.execute(
        select(VmRow.id, VmRow.cluster, VmRow.vmid))}
    known = [c for c in checks if c.url in sites]
    rows = _targets(session, Kind.SITE, {c.url for c in known})
    for check in known:
        (site_id, opd_id, vm_id, settings), row = sites[check.url], rows[check.url]
        row.site_id, row.opd_id, row.vm_id = site_id, opd_id, vm_id
        row.parent_key = model.target_key(Kind.VM, vm_refs[vm_id]) if vm_id in vm_refs else None
        warning = settings.get("tls_warning_days") if isinstance(settings, dict) else None
        verdict = model.assess_site(check, thresholds,
                                    tls_warning_days=float(warning) if isinstance(warning, int | float) else None)
        previous = row.values or {}
        tls_known = check.tls_expires_at is not None or check.ok
        row.values = {
            "status_code": check.status_code,
            "response_s": check.total_s,
            "ttfb_s": check.ttfb_s,
            # A failed check says nothing about the certificate: keep what the last good one saw.
            "tls_expiry_ts": (check.tls_expires_at.timestamp() if check.tls_expires_at else None) if tls_known
            else previous.get("tls_expiry_ts"),
            "tls_days_left": check.tls_days_left if tls_known else previous.get("tls_days_left"),
        }
        batch.fold(row, verdict, check.at, thresholds, duration_s=check.total_s)
    return batch.finish()


def record_cluster(session: Session, observation: ClusterObservation, *, thresholds: Thresholds,
                   now: datetime | None = None) -> Recorded:
    """Fold one Proxmox cycle in: the cluster, its nodes and the inventory's VMs on it."""
    now = now or utcnow()
    batch = _Batch(session, now)
    cluster_ref = observation.cluster
    cluster_row = _targets(session, Kind.CLUSTER, [cluster_ref])[cluster_ref]
    forecasts = _storage_rollups(session, observation, thresholds) if observation.ok else {}
    cluster_row.values = {"api_calls": observation.api_calls, "duration_s": observation.duration_s,
                          "quorate": observation.quorate,
                          "storages": [{"node": s.node, "storage": s.storage, "type": s.plugintype,
                                        "backup": "backup" in s.content, "available": s.available, "used": s.used,
                                        "total": s.total, "days_until_full": forecasts.get((s.node, s.storage)),
                                        "full": model.storage_full(s, thresholds),
                                        **({"thin": {"data": s.thin_data, "metadata": s.thin_metadata}}
                                           if s.thin_data is not None or s.thin_metadata is not None else {})}
                                       for s in observation.storages]}
    batch.fold(cluster_row, model.assess_cluster(observation), observation.at, thresholds,
               duration_s=observation.duration_s)
    vms: dict[int, tuple[int, int]] = {}
    max_age: dict[int, float] = {}  # the VM's own threshold, else its OPD's (else the global one)
    for vm_id, vmid, opd_id, own_age, opd_age in session.execute(_vm_columns(cluster_ref)):
        vms[vmid] = (vm_id, opd_id)
        if own_age is not None or opd_age is not None:
            max_age[vmid] = own_age if own_age is not None else opd_age
    vm_rows = _targets(session, Kind.VM, [f"{cluster_ref}/{vmid}" for vmid in vms], prefix=f"{cluster_ref}/")
    node_rows = _targets(session, Kind.NODE, [f"{cluster_ref}/{n.node}" for n in observation.nodes],
                         prefix=f"{cluster_ref}/")
    cluster_key = model.target_key(Kind.CLUSTER, cluster_ref)

    if not observation.ok:
        if State(cluster_row.state) is State.DOWN:
            # The only witness is failing: we do not know the guests' state, we do not claim they are down.
            for ref, row in {**vm_rows, **node_rows}.items():
                if ref.startswith(cluster_ref + "/"):
                    batch.mark_unknown(row, observation.at, Reason.SOURCE_FAILING, observation.detail)
        return batch.finish()

    for node in observation.nodes:
        row = node_rows[f"{cluster_ref}/{node.node}"]
        row.parent_key = cluster_key
        row.values = {"cpu": node.cpu, "mem": node.mem, "maxmem": node.maxmem}
        if node.pressure is not None:
            p = node.pressure
            row.values = {**row.values, "cpus": p.cpus, "load1": p.load1, "mem_used": p.mem_used,
                          "mem_total": p.mem_total, "swap_used": p.swap_used, "swap_total": p.swap_total,
                          "ksm_shared": p.ksm_shared, "rootfs_used": p.rootfs_used, "rootfs_total": p.rootfs_total}
        batch.fold(row, model.assess_node(node), observation.at, thresholds)
    guests = {g.vmid: g for g in observation.guests if g.cluster == cluster_ref}
    online = {n.node: n.online for n in observation.nodes}
    backups = {b.vmid: b for b in observation.backups or ()}
    samples: dict[int, tuple[float | None, float | None, float | None]] = {}
    for vmid, (vm_id, opd_id) in vms.items():
        row = vm_rows[f"{cluster_ref}/{vmid}"]
        row.vm_id, row.opd_id = vm_id, opd_id
        guest = guests.get(vmid)
        if guest is not None and guest.status == "running":
            samples[row.id] = _resource_use(guest)
        if guest is not None:
            row.parent_key = model.target_key(Kind.NODE, f"{cluster_ref}/{guest.node}")
            row.values = {"status": guest.status, "node": guest.node, "cpu": guest.cpu, "maxcpu": guest.maxcpu,
                          "mem": guest.mem, "maxmem": guest.maxmem, "disk": guest.disk, "maxdisk": guest.maxdisk,
                          "fs_used": guest.fs_used, "fs_total": guest.fs_total,
                          "uptime": guest.uptime, "qmpstatus": guest.qmpstatus,
                          "disk_storages": list(guest.disk_storages), "lock": guest.lock,
                          "lock_free_s": guest.lock_free_s}
            backup = backups.get(vmid)
            if backup is not None:
                own = replace(thresholds, backup_max_age_h=max_age[vmid]) if vmid in max_age else thresholds
                row.values = {**row.values, **_backup_values(backup, observation.at, own)}
        node_online = guest is None or online.get(guest.node, True)
        batch.fold(row, model.assess_vm(guest, thresholds, node_online=node_online), observation.at, thresholds)
    _resource_rollups(session, samples, observation.at)
    return batch.finish()


def _share(used: float | None, total: float | None) -> float | None:
    if used is None or not total:
        return None
    return max(0.0, min(1.0, float(used) / float(total)))


def _resource_use(guest: GuestObservation) -> tuple[float | None, float | None, float | None]:
    """CPU, memory and disk in use, as fractions of what the VM is given. Proxmox's ``cpu`` already is one (of
    the VM's cores); the disk is the guest agent's file systems when it reports them, else Proxmox's own figure
    (0 for most qemu disks, so 0 of a known size stays unknown)."""
    cpu = max(0.0, min(1.0, float(guest.cpu))) if guest.cpu is not None else None
    disk = _share(guest.fs_used, guest.fs_total)
    if disk is None and guest.disk:
        disk = _share(guest.disk, guest.maxdisk)
    return cpu, _share(guest.mem, guest.maxmem), disk


def _resource_rollups(session: Session, samples: dict[int, tuple[float | None, float | None, float | None]],
                      at: datetime) -> None:
    """Fold this cycle's samples into each VM's row for the hour (a running mean): one read, one executemany
    per insert and update, as for the targets themselves (thousands of VMs per cycle)."""
    if not samples:
        return
    hour = _hour(at)
    table = VmResourceRollupRow
    current = {target_id: (cpu, mem, disk, n) for target_id, cpu, mem, disk, n in session.execute(
        select(table.target_id, table.cpu, table.mem, table.disk, table.samples).where(
            table.hour == hour, table.target_id.in_(list(samples))))}
    added, changed = [], []
    for target_id, (cpu, mem, disk) in samples.items():
        if target_id not in current:
            added.append({"target_id": target_id, "hour": hour, "cpu": cpu, "mem": mem, "disk": disk, "samples": 1})
            continue
        old_cpu, old_mem, old_disk, n = current[target_id]
        changed.append({"target_id": target_id, "hour": hour, "cpu": _mean(old_cpu, cpu, n),
                        "mem": _mean(old_mem, mem, n), "disk": _mean(old_disk, disk, n), "samples": n + 1})
    if added:
        session.execute(insert(table), added)
    if changed:
        session.execute(update(table), changed)


def _mean(previous: float | None, value: float | None, n: int) -> float | None:
    if value is None:
        return previous
    if previous is None:
        return value
    return (previous * n + value) / (n + 1)


def _vm_columns(cluster: str) -> Any:
    """The cluster's inventory VMs: id, VMID, OPD and the backup-age thresholds of the VM and of its OPD."""
    return (select(VmRow.id, VmRow.vmid, VmRow.opd_id, VmRow.backup_max_age_h, OpdRow.backup_max_age_h)
            .join(OpdRow, OpdRow.id == VmRow.opd_id).where(VmRow.cluster == cluster, VmRow.retired_at.is_(None)))


def _storage_rollups(session: Session, observation: ClusterObservation,
                     thresholds: Thresholds) -> dict[tuple[str, str], float | None]:
    """Fold this cycle's storage use into the hour's rollup (a running mean) and forecast each storage's days
    until full from the rollups of the window: one read and one write per storage, three queries in all."""
    cluster, hour = observation.cluster, _hour(observation.at)
    since = hour - timedelta(hours=thresholds.forecast_window_h)
    rows: dict[tuple[str, str], list[StorageRollupRow]] = defaultdict(list)
    for row in session.scalars(select(StorageRollupRow).where(StorageRollupRow.cluster == cluster,
                                                             StorageRollupRow.hour > since)):
        rows[(row.node, row.storage)].append(row)
    for store in observation.storages:
        if not store.available or not store.total:
            continue
        current = next((r for r in rows[(store.node, store.storage)] if _hour(r.hour) == hour), None)
        if current is None:
            current = StorageRollupRow(cluster=cluster, node=store.node, storage=store.storage, hour=hour,
                                       used=store.used, total=store.total, samples=1)
            session.add(current)
            rows[(store.node, store.storage)].append(current)
        else:
            current.used = (current.used * current.samples + store.used) // (current.samples + 1)
            current.total, current.samples = store.total, current.samples + 1
    session.execute(delete(StorageRollupRow).where(
        StorageRollupRow.cluster == cluster, StorageRollupRow.hour < hour - timedelta(days=STORAGE_ROLLUP_DAYS)))
    session.flush()
    forecasts: dict[tuple[str, str], float | None] = {}
    for store in observation.storages:
        points = [(_hour(r.hour).timestamp(), float(r.used)) for r in rows.get((store.node, store.storage), [])]
        forecast = model.days_until_full(points, float(store.total), min_points=thresholds.forecast_min_points)
        forecasts[(store.node, store.storage)] = round(forecast, 3) if forecast is not None else None
    return forecasts


def _backup_values(backup: BackupObservation, at: datetime, thresholds: Thresholds) -> dict[str, object]:
    """A guest's backups as its VM target keeps them (fleet pages, metrics)."""
    return {
        "backup_state": model.assess_backup(backup, at, thresholds).value,
        "backup_max_age_h": thresholds.backup_max_age_h,
        "backup_jobs": list(backup.jobs),
        "backup_ok_ts": backup.last_ok_at.timestamp() if backup.last_ok_at else None,
        "backup_size": backup.last_ok_size, "backup_storage": backup.last_ok_storage,
        "backup_failed_ts": backup.last_failed_at.timestamp() if backup.last_failed_at else None,
        "backup_failed_storage": backup.failed_storage, "backup_failure": backup.failure_log or None,
    }


def record_ssh(session: Session, observations: Sequence[SshObservation], *, thresholds: Thresholds,
               now: datetime | None = None) -> Recorded:
    """Fold SSH checks in (target kind "guest"); a changed host key is also a security event."""
    now = now or utcnow()
    batch = _Batch(session, now)
    refs = {f"{o.cluster}/{o.vmid}" for o in observations}
    if not refs:
        return batch.finish()
    # The observed VMs only, as plain columns: one SSH round must not read the whole inventory as ORM objects.
    pairs = sorted({(o.cluster, o.vmid) for o in observations})
    vms: dict[str, Any] = {}
    for start in range(0, len(pairs), 500):
        vms.update((f"{vm.cluster}/{vm.vmid}", vm) for vm in _conn(session).execute(
            select(VmRow.id, VmRow.cluster, VmRow.vmid, VmRow.opd_id, VmRow.services).where(
                VmRow.retired_at.is_(None), tuple_(VmRow.cluster, VmRow.vmid).in_(pairs[start:start + 500]))))
    rows = _targets(session, Kind.GUEST, [ref for ref in refs if ref in vms])
    for obs in observations:
        ref = f"{obs.cluster}/{obs.vmid}"
        if ref not in vms:
            continue
        vm, row = vms[ref], rows[ref]
        row.vm_id, row.opd_id = vm.id, vm.opd_id
        row.parent_key = model.target_key(Kind.VM, ref)
        verdict = model.assess_ssh(obs, vm.services or (), thresholds)
        if obs.ok:
            mounts = sorted(obs.mounts, key=lambda m: m.used_ratio, reverse=True)[:MAX_MOUNTS]
            row.values = {
                "mounts": [{"mount": m.mount, "used_ratio": round(m.used_ratio, 6), "size": m.size_bytes,
                            "used": m.used_bytes} for m in mounts],
                "mem_total": obs.mem_total_bytes,
                "mem_available": obs.mem_available_bytes,
                "load1": obs.load1,
                "services_inactive": sum(1 for u in vm.services or () if obs.services.get(u) != "active"),
                "failed_units": len(obs.failed_units),
            }
        if obs.failure is FailureClass.HOST_KEY and row.failure != FailureClass.HOST_KEY.value:
            # One event when the key changes, not one per refused run while it stays changed.
            batch.security_event(row, obs.at, Reason.HOST_KEY, obs.detail)
        batch.fold(row, verdict, obs.at, thresholds)
    return batch.finish()


def resolve_causes(session: Session, *, now: datetime | None = None) -> int:
    """Re-attach root causes to every target that is not UP; returns how many rows changed their cause."""
    rows = {row.key: row for row in _load(session, or_(HealthTargetRow.state != State.UP.value,
                                                        HealthTargetRow.cause_key.is_not(None)))}
    states = {key: _to_state(row) for key, row in rows.items() if State(row.state).is_problem}
    parents = {key: row.parent_key for key, row in rows.items()}
    # Ancestors that are UP are not loaded; their parent links are needed only to walk past them.
    missing = {p for p in parents.values() if p and p not in rows}
    while missing:
        kinds_refs = sorted((k.value, r) for k, r in (model.split_key(key) for key in missing))
        new_parents: dict[str, str | None] = {}
        for start in range(0, len(kinds_refs), 500):
            # One bound tuple list per chunk: a statement of the same shape each time, not an OR per ancestor.
            new_parents.update((f"{kind}:{ref}", parent) for kind, ref, parent in _conn(session).execute(
                select(HealthTargetRow.kind, HealthTargetRow.ref, HealthTargetRow.parent_key).where(
                    tuple_(HealthTargetRow.kind, HealthTargetRow.ref).in_(kinds_refs[start:start + 500]))))
        parents.update(new_parents)
        for key in missing - set(new_parents):
            parents[key] = None
        missing = {p for p in new_parents.values() if p and p not in parents}
    # Another witness of a VM: its guest answering over SSH shows it runs, whatever the API last said.
    vm_refs = [model.split_key(key)[1] for key in states if key.startswith(Kind.VM.value + ":")]
    alive = frozenset(f"{Kind.VM.value}:{ref}" for ref in session.scalars(
        select(HealthTargetRow.ref).where(HealthTargetRow.kind == Kind.GUEST.value, HealthTargetRow.ref.in_(vm_refs),
                                          HealthTargetRow.state.in_((State.UP.value, State.DEGRADED.value))))
    ) if vm_refs else frozenset()
    storages = _io_error_storages(session, rows, states)
    attributions = model.attribute(states, parents, alive=alive, storages=storages)
    changed: list[Target] = []
    for key, row in rows.items():
        attribution = attributions.get(key)
        cause_key: str | None = None
        cause_reason: str | None = None
        if attribution is not None and attribution.cause is not None:
            cause_key, cause_reason = attribution.cause.key, attribution.cause.reason.value
        elif attribution is not None and attribution.blind is not None:
            cause_reason = model.CAUSE_UNKNOWN.value  # no cause key: the target stays its own incident
        if (row.cause_key, row.cause_reason) != (cause_key, cause_reason):
            row.cause_key, row.cause_reason = cause_key, cause_reason
            changed.append(row)
    _save(session, changed, now or utcnow(), ("cause_key", "cause_reason"))
    return len(changed)


def _io_error_storages(session: Session, rows: dict[str, Target], states: dict[str, TargetState]) -> dict[
        str, list[str]]:
    """For VMs in io-error: the storage keys of their disks (on their node), and the full storages as DOWN
    targets added to ``states`` (read from their clusters' last answers): the evidence of the storage rule."""
    frozen = {key: row for key, row in rows.items()
              if key in states and row.kind == Kind.VM.value and row.reason == Reason.IO_ERROR.value}
    if not frozen:
        return {}
    out: dict[str, list[str]] = {}
    for key, row in frozen.items():
        cluster = row.ref.partition("/")[0]
        node, names = row.values.get("node"), row.values.get("disk_storages") or []
        if isinstance(node, str) and isinstance(names, list):
            out[key] = [model.storage_key(cluster, node, str(name)) for name in names]
    clusters = {row.ref.partition("/")[0] for row in frozen.values()}
    for ref, values in session.execute(select(HealthTargetRow.ref, HealthTargetRow.values).where(
            HealthTargetRow.kind == Kind.CLUSTER.value, HealthTargetRow.ref.in_(clusters))):
        for item in (values or {}).get("storages") or ():
            if isinstance(item, dict) and item.get("full"):
                key = model.storage_key(ref, str(item.get("node")), str(item.get("storage")))
                states[key] = TargetState(key=key, state=State.DOWN, reason=Reason.STORAGE_FULL)
    return out


# --- maintenance -------------------------------------------------------------------------------------------------


def _hour(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def rollup(session: Session, *, now: datetime | None = None) -> int:
    """Roll raw checks of every complete hour not rolled yet into ``health_rollups``; returns hours written.

    UP seconds are sample-weighted: an hour with 58 good checks out of 60 counts 3,480 s UP. Idempotent.
    """
    now = now or utcnow()
    end = _hour(now)
    last = session.scalar(select(func.max(HealthRollupRow.hour)))
    if last is not None:
        start = _hour(last) + timedelta(hours=1)
    else:
        first = session.scalar(select(func.min(HealthCheckRow.at)))
        if first is None:
            return 0
        start = _hour(first)
    hours = 0
    while start < end:
        stop = start + timedelta(hours=1)
        counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        stmt = select(HealthCheckRow.target_id, HealthCheckRow.ok).where(HealthCheckRow.at >= start,
                                                                         HealthCheckRow.at < stop)
        for target_id, ok in session.execute(stmt):
            counts[target_id][0] += 1
            counts[target_id][1] += 0 if ok else 1
        session.execute(delete(HealthRollupRow).where(HealthRollupRow.hour == start))
        if counts:
            session.execute(insert(HealthRollupRow), [
                {"target_id": tid, "hour": start, "checks": n, "failures": bad,
                 "up_seconds": 3600.0 * (n - bad) / n} for tid, (n, bad) in counts.items()])
        hours += 1
        start = stop
    session.flush()
    return hours


def purge_raw(session: Session, *, retention: timedelta, now: datetime | None = None) -> int:
    """Delete raw checks older than the retention period, after rolling them up; returns rows deleted."""
    now = now or utcnow()
    rollup(session, now=now)
    horizon = min(now - retention, _hour(now))
    result = session.execute(delete(HealthCheckRow).where(HealthCheckRow.at < horizon))
    session.execute(delete(VmResourceRollupRow).where(VmResourceRollupRow.hour < horizon))
    # Resolved alerts are history the pages show for a while; an alert still firing is never purged.
    session.execute(delete(HealthAlertRow).where(HealthAlertRow.status == "resolved",
                                                 HealthAlertRow.updated_at < now - ALERT_RETENTION))
    return int(getattr(result, "rowcount", 0) or 0)


def mark_stale(session: Session, *, max_age: timedelta, now: datetime | None = None) -> Recorded:
    """Targets not observed for ``max_age`` become UNKNOWN (stale): silence is not health."""
    now = now or utcnow()
    batch = _Batch(session, now)
    for row in _load(session, HealthTargetRow.state != State.UNKNOWN.value,
                     HealthTargetRow.last_check_at < now - max_age):
        batch.mark_unknown(row, now, Reason.STALE)
    return batch.finish()


def uptime(session: Session, *, target_id: int, since: datetime, until: datetime) -> float | None:
    """UP ratio of one target from the hourly rollups (None when nothing was observed)."""
    stmt = select(func.coalesce(func.sum(HealthRollupRow.up_seconds), 0.0), func.count()).where(
        HealthRollupRow.target_id == target_id, HealthRollupRow.hour >= _hour(since), HealthRollupRow.hour < until)
    up, hours = session.execute(stmt).one()
    return model.uptime_ratio(float(up), 3600.0 * int(hours))
