"""The read side of health: the state snapshot /metrics renders, the fleet view per OPD, per-target details.

Nothing here reads history per scrape: ``health_snapshot`` is one query over ``health_targets`` (one row per
target) plus one over ``job_status`` (one row per job). Pages may read recent history for one target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from pdn_ops.core.db.tables import JobStatusRow, OpdRow, SiteRow, VmRow, utcnow
from pdn_ops.core.errors import NotFound
from pdn_ops.health import service as health_service
from pdn_ops.health.model import CAUSE_UNKNOWN
from pdn_ops.health.tables import HealthAlertRow, HealthCheckRow, HealthEventRow, HealthTargetRow

RECENT = 20


# --- /metrics snapshot -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TargetSnapshot:
    kind: str
    ref: str
    state: str
    reason: str
    opd: str | None
    vm_id: int | None
    site_id: int | None
    caused_by: str | None
    values: dict[str, Any]
    cause_unknown: bool = False
    failure: str | None = None
    id: int | None = None  # health_targets.id: what an incremental update of the snapshot replaces


@dataclass(frozen=True, slots=True)
class JobSnapshot:
    job: str
    kind: str
    runs_total: int
    errors_total: int
    last_duration_s: float | None
    last_ok: bool | None
    last_success_at: datetime | None
    last_failure: str | None = None
    interval_s: float | None = None


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    taken_at: datetime
    targets: tuple[TargetSnapshot, ...] = ()
    jobs: tuple[JobSnapshot, ...] = ()
    incidents: dict[str, int] = field(default_factory=dict)  # open incidents per OPD code ("" infrastructure)


def open_incidents(session: Session, *, opd_id: int | None = None) -> dict[str, int]:
    """Open incidents per OPD code ("" for clusters and nodes): the one query behind the fleet page's count and
    ``pdn_open_incidents`` (the dashboard's), so the two cannot disagree.

    An incident is a target of an active OPD, VM or site that is not UP and has no observed cause (a target
    caused by another is part of that one's incident, pdn_ops.health.model.attribute)."""
    t = HealthTargetRow
    stmt = (select(OpdRow.code, func.count()).select_from(t).outerjoin(OpdRow, OpdRow.id == t.opd_id)
            .outerjoin(VmRow, VmRow.id == t.vm_id).outerjoin(SiteRow, SiteRow.id == t.site_id)
            .where(t.state != "up", t.cause_key.is_(None), OpdRow.retired_at.is_(None), VmRow.retired_at.is_(None),
                   SiteRow.retired_at.is_(None))
            .group_by(OpdRow.code))
    if opd_id is not None:
        stmt = stmt.where(t.opd_id == opd_id)
    return {code or "": int(count) for code, count in session.execute(stmt)}


def health_snapshot(session: Session) -> HealthSnapshot:
    t = HealthTargetRow
    stmt = select(t.kind, t.ref, t.state, t.reason, OpdRow.code, t.vm_id, t.site_id, t.cause_key, t.values,
                  t.cause_reason, t.failure, t.id).outerjoin(OpdRow, OpdRow.id == t.opd_id)
    targets = tuple(TargetSnapshot(kind, ref, state, reason, opd, vm_id, site_id, cause, values or {},
                                   cause is None and cause_reason == CAUSE_UNKNOWN.value, failure, target_id)
                    for kind, ref, state, reason, opd, vm_id, site_id, cause, values, cause_reason, failure, target_id
                    in session.execute(stmt))
    return HealthSnapshot(taken_at=utcnow(), targets=targets, jobs=job_snapshots(session),
                          incidents=open_incidents(session))


def job_snapshots(session: Session) -> tuple[JobSnapshot, ...]:
    j = JobStatusRow
    return tuple(JobSnapshot(*row) for row in session.execute(
        select(j.job, j.kind, j.runs_total, j.errors_total, j.last_duration_s, j.last_ok, j.last_success_at,
               j.last_failure, j.interval_s)))


@dataclass(frozen=True, slots=True)
class SnapshotDelta:
    """What an incremental update of the snapshot reads after a job: the small tables only (``job_status`` and
    the incident counts, plus the OPD codes when a written target names an OPD not seen yet); the written
    targets themselves come from the job, in memory."""

    jobs: tuple[JobSnapshot, ...]
    incidents: dict[str, int] | None  # None: not re-read (no health data written)
    opd_codes: dict[int, str] | None  # None: not re-read


def target_snapshot(target: health_service.Target, opd_codes: dict[int, str]) -> TargetSnapshot:
    """A target as a job wrote it, in the snapshot's shape (what the snapshot query would have read back)."""
    return TargetSnapshot(target.kind, target.ref, target.state, target.reason,
                          opd_codes.get(target.opd_id) if target.opd_id is not None else None, target.vm_id,
                          target.site_id, target.cause_key, target.values or {},
                          target.cause_key is None and target.cause_reason == CAUSE_UNKNOWN.value, target.failure,
                          target.id)


# --- alerts received from Alertmanager ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlertView:
    alertname: str
    severity: str
    status: str
    starts_at: datetime
    ends_at: datetime | None
    target_key: str | None
    summary: str


ALERTS_SHOWN = 50


def alert_views(session: Session, *, opd_id: int | None = None, target_keys: list[str] | None = None,
                firing_only: bool = True) -> tuple[AlertView, ...]:
    """Alerts Alertmanager reported (pdn_ops.alerts), newest first: what the fleet and incident pages show."""
    a = HealthAlertRow
    stmt = select(a).order_by(a.starts_at.desc(), a.id.desc()).limit(ALERTS_SHOWN)
    if firing_only:
        stmt = stmt.where(a.status == "firing")
    if opd_id is not None:
        stmt = stmt.where(a.opd_id == opd_id)
    if target_keys is not None:
        stmt = stmt.where(a.target_key.in_(target_keys))
    return tuple(AlertView(r.alertname, r.severity, r.status, r.starts_at, r.ends_at, r.target_key,
                           str((r.annotations or {}).get("summary", ""))) for r in session.scalars(stmt))


# --- fleet view --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TargetView:
    kind: str
    ref: str
    target_id: int | None  # health_targets.id; None while never observed
    state: str = "unknown"
    reason: str = "ok"
    failure: str | None = None
    detail: str = ""
    degraded: tuple[str, ...] = ()
    since: datetime | None = None
    last_check_at: datetime | None = None
    cause_key: str | None = None
    cause_reason: str | None = None
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def is_problem(self) -> bool:
        """Not UP, once observed: a target never checked yet is UNKNOWN but not an incident."""
        return self.state != "up" and self.target_id is not None


@dataclass(frozen=True, slots=True)
class VmView:
    id: int
    name: str
    cluster: str
    vmid: int
    opd_id: int
    health: TargetView  # as Proxmox sees it
    guest: TargetView | None  # over SSH, when the VM has SSH access


@dataclass(frozen=True, slots=True)
class SiteView:
    id: int
    url: str
    name: str | None
    opd_id: int
    vm_id: int | None
    health: TargetView


@dataclass(frozen=True, slots=True)
class Incident:
    """A target that is not UP, linked to the page that explains it."""

    kind: str
    label: str
    href: str | None
    health: TargetView

    @property
    def is_root(self) -> bool:
        return self.health.cause_key is None


@dataclass(frozen=True, slots=True)
class OpdFleet:
    id: int
    code: str
    name: str
    vms: tuple[VmView, ...]
    sites: tuple[SiteView, ...]
    incidents: tuple[Incident, ...]


@dataclass(frozen=True, slots=True)
class FleetView:
    opds: tuple[OpdFleet, ...]
    infrastructure: tuple[Incident, ...]  # clusters and nodes not UP (staff only)
    counts: dict[str, int]
    open_incidents: int = 0  # root incidents, from open_incidents(): the dashboard's figure
    alerts: tuple[AlertView, ...] = ()  # firing alerts Alertmanager reported

    @property
    def incidents(self) -> tuple[Incident, ...]:
        return self.infrastructure + tuple(i for opd in self.opds for i in opd.incidents)


def _view(row: HealthTargetRow | None, kind: str, ref: str) -> TargetView:
    if row is None:
        return TargetView(kind=kind, ref=ref, target_id=None)
    return TargetView(kind=row.kind, ref=row.ref, target_id=row.id, state=row.state, reason=row.reason,
                      failure=row.failure, detail=row.detail, degraded=tuple(row.degraded or ()), since=row.since,
                      last_check_at=row.last_check_at, cause_key=row.cause_key, cause_reason=row.cause_reason,
                      values=dict(row.values or {}))


def _rows(session: Session, opd_id: int | None) -> dict[tuple[str, str], HealthTargetRow]:
    stmt = select(HealthTargetRow)
    if opd_id is not None:
        stmt = stmt.where(HealthTargetRow.opd_id == opd_id)
    return {(row.kind, row.ref): row for row in session.scalars(stmt)}


def fleet(session: Session, *, opd_id: int | None = None) -> FleetView:
    """Every active OPD with its VMs and sites and their live state; ``opd_id`` limits it to one OPD."""
    opd_stmt = select(OpdRow).where(OpdRow.retired_at.is_(None)).order_by(OpdRow.name)
    if opd_id is not None:
        opd_stmt = opd_stmt.where(OpdRow.id == opd_id)
    opd_rows = list(session.scalars(opd_stmt))
    opds, counts = _opds(session, opd_rows, _rows(session, opd_id), only=opd_id)
    return _view_of(session, opds, counts, opd_id)


def fleet_page(session: Session, *, offset: int, limit: int) -> tuple[FleetView, int | None]:
    """``limit`` OPDs from position ``offset`` (by name), built alone: only their VMs, sites and health rows are
    read and turned into views. The counts, the open incidents and the alerts stay the whole fleet's (counted from
    bare columns, no view built). Returns the view and the position of the next page (None on the last)."""
    opd_rows = list(session.scalars(select(OpdRow).where(OpdRow.retired_at.is_(None))
                                    .order_by(OpdRow.name, OpdRow.id).offset(offset).limit(limit + 1)))
    more = offset + limit if len(opd_rows) > limit else None
    opd_rows = opd_rows[:limit]
    ids = [o.id for o in opd_rows]
    rows = {(row.kind, row.ref): row for row in session.scalars(
        select(HealthTargetRow).where(HealthTargetRow.opd_id.in_(ids)))} if ids else {}
    opds, _ = _opds(session, opd_rows, rows, ids=ids)
    return _view_of(session, opds, _fleet_counts(session), None), more


def _fleet_counts(session: Session) -> dict[str, int]:
    """The states of every active VM, guest (VMs with SSH) and site, as ``fleet`` counts them (no row: unknown)."""
    states = {(kind, ref): state for kind, ref, state in session.execute(
        select(HealthTargetRow.kind, HealthTargetRow.ref, HealthTargetRow.state)
        .where(HealthTargetRow.kind.in_(("vm", "guest", "site"))))}
    counts = {"up": 0, "degraded": 0, "down": 0, "unknown": 0}

    def add(key: tuple[str, str]) -> None:
        state = states.get(key, "unknown")
        counts[state] = counts.get(state, 0) + 1

    active_opds = select(OpdRow.id).where(OpdRow.retired_at.is_(None))
    for cluster, vmid, has_ssh in session.execute(select(VmRow.cluster, VmRow.vmid, VmRow.has_ssh).where(
            VmRow.retired_at.is_(None), VmRow.opd_id.in_(active_opds))):
        add(("vm", f"{cluster}/{vmid}"))
        if has_ssh:
            add(("guest", f"{cluster}/{vmid}"))
    for (url,) in session.execute(select(SiteRow.url).where(SiteRow.retired_at.is_(None),
                                                            SiteRow.opd_id.in_(active_opds))):
        add(("site", url))
    return counts


def _opds(session: Session, opd_rows: list[OpdRow], rows: dict[tuple[str, str], HealthTargetRow], *,
          only: int | None = None, ids: list[int] | None = None) -> tuple[list[OpdFleet], dict[str, int]]:
    vm_stmt = select(VmRow).where(VmRow.retired_at.is_(None)).order_by(VmRow.name)
    site_stmt = select(SiteRow).where(SiteRow.retired_at.is_(None)).order_by(SiteRow.url)
    if only is not None:
        vm_stmt = vm_stmt.where(VmRow.opd_id == only)
        site_stmt = site_stmt.where(SiteRow.opd_id == only)
    if ids is not None:
        vm_stmt = vm_stmt.where(VmRow.opd_id.in_(ids))
        site_stmt = site_stmt.where(SiteRow.opd_id.in_(ids))
    vms_by_opd: dict[int, list[VmView]] = {}
    sites_by_opd: dict[int, list[SiteView]] = {}
    if opd_rows:
        for vm in session.scalars(vm_stmt):
            ref = f"{vm.cluster}/{vm.vmid}"
            guest = _view(rows.get(("guest", ref)), "guest", ref) if vm.has_ssh else None
            vms_by_opd.setdefault(vm.opd_id, []).append(
                VmView(vm.id, vm.name, vm.cluster, vm.vmid, vm.opd_id, _view(rows.get(("vm", ref)), "vm", ref),
                       guest))
        for site in session.scalars(site_stmt):
            sites_by_opd.setdefault(site.opd_id, []).append(
                SiteView(site.id, site.url, site.name, site.opd_id, site.vm_id,
                         _view(rows.get(("site", site.url)), "site", site.url)))
    counts = {"up": 0, "degraded": 0, "down": 0, "unknown": 0}
    opds: list[OpdFleet] = []
    for opd in opd_rows:
        vms = tuple(vms_by_opd.get(opd.id, ()))
        sites = tuple(sites_by_opd.get(opd.id, ()))
        incidents: list[Incident] = []
        for vm_view in vms:
            for view in (vm_view.health, vm_view.guest):
                if view is None:
                    continue
                counts[view.state] = counts.get(view.state, 0) + 1
                if view.is_problem:
                    incidents.append(Incident(view.kind, vm_view.name, f"/fleet/vm/{vm_view.id}", view))
        for site_view in sites:
            health = site_view.health
            counts[health.state] = counts.get(health.state, 0) + 1
            if health.is_problem:
                incidents.append(Incident("site", site_view.name or site_view.url, f"/fleet/site/{site_view.id}",
                                          health))
        incidents.sort(key=lambda i: (not i.is_root, i.health.state != "down", i.label))
        opds.append(OpdFleet(opd.id, opd.code, opd.name, vms, sites, tuple(incidents)))
    return opds, counts


def _view_of(session: Session, opds: list[OpdFleet], counts: dict[str, int], opd_id: int | None) -> FleetView:
    infrastructure: tuple[Incident, ...] = ()
    if opd_id is None:
        infra_rows = session.scalars(select(HealthTargetRow).where(HealthTargetRow.kind.in_(("cluster", "node")),
                                                                   HealthTargetRow.state != "up"))
        infrastructure = tuple(Incident(row.kind, row.ref, None, _view(row, row.kind, row.ref))
                               for row in sorted(infra_rows, key=lambda r: (r.kind, r.ref)))
    return FleetView(opds=tuple(opds), infrastructure=infrastructure, counts=counts,
                     open_incidents=sum(open_incidents(session, opd_id=opd_id).values()),
                     alerts=alert_views(session, opd_id=opd_id))


# --- per-target detail -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckView:
    kind: str  # which target of the page: "vm", "guest" or "site"
    at: datetime
    ok: bool
    failure: str | None
    duration_s: float | None
    detail: str


@dataclass(frozen=True, slots=True)
class EventView:
    at: datetime
    event: str
    old_state: str | None
    new_state: str | None
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class TargetDetail:
    kind: str  # "vm" or "site"
    id: int
    label: str
    opd_id: int
    opd_name: str
    targets: tuple[TargetView, ...]  # vm: the Proxmox view and the guest; site: the site
    checks: tuple[CheckView, ...]
    events: tuple[EventView, ...]
    uptime_7d: float | None
    related: tuple[tuple[str, str], ...] = ()  # (label, href): the site's VM, or the VM's sites
    alerts: tuple[AlertView, ...] = ()  # alerts Alertmanager reported about these targets, firing or not


def _history(session: Session, kinds: dict[int, str]) -> tuple[tuple[CheckView, ...], tuple[EventView, ...]]:
    target_ids = list(kinds)
    if not target_ids:
        return (), ()
    checks = session.scalars(select(HealthCheckRow).where(HealthCheckRow.target_id.in_(target_ids))
                             .order_by(HealthCheckRow.at.desc(), HealthCheckRow.id.desc()).limit(RECENT))
    events = session.scalars(select(HealthEventRow).where(HealthEventRow.target_id.in_(target_ids))
                             .order_by(HealthEventRow.at.desc(), HealthEventRow.id.desc()).limit(RECENT))
    return (tuple(CheckView(kinds[c.target_id], c.at, c.ok, c.failure, c.duration_s, c.detail) for c in checks),
            tuple(EventView(e.at, e.event, e.old_state, e.new_state, e.reason, e.detail) for e in events))


def _target_rows(session: Session, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], HealthTargetRow]:
    found: dict[tuple[str, str], HealthTargetRow] = {}
    for kind, ref in pairs:
        row = session.scalar(select(HealthTargetRow).where(HealthTargetRow.kind == kind, HealthTargetRow.ref == ref))
        if row is not None:
            found[(kind, ref)] = row
    return found


def _uptime(session: Session, rows: list[HealthTargetRow]) -> float | None:
    if not rows:
        return None
    now = utcnow()
    return health_service.uptime(session, target_id=rows[0].id, since=now - timedelta(days=7), until=now)


def vm_detail(session: Session, vm_id: int, *, opd_id: int | None = None) -> TargetDetail:
    """One VM with its Proxmox and guest state, recent checks and events; NotFound outside ``opd_id``."""
    vm = session.get(VmRow, vm_id)
    if vm is None or (opd_id is not None and vm.opd_id != opd_id):
        raise NotFound(f"vm {vm_id}")
    ref = f"{vm.cluster}/{vm.vmid}"
    pairs = [("vm", ref)] + ([("guest", ref)] if vm.has_ssh else [])
    rows = _target_rows(session, pairs)
    checks, events = _history(session, {r.id: r.kind for r in rows.values()})
    sites = session.scalars(select(SiteRow).where(SiteRow.vm_id == vm.id, SiteRow.retired_at.is_(None)))
    return TargetDetail(kind="vm", id=vm.id, label=vm.name, opd_id=vm.opd_id, opd_name=vm.opd.name,
                        targets=tuple(_view(rows.get(p), *p) for p in pairs), checks=checks, events=events,
                        uptime_7d=_uptime(session, [r for p, r in rows.items() if p[0] == "vm"]),
                        related=tuple((s.name or s.url, f"/fleet/site/{s.id}") for s in sites),
                        alerts=alert_views(session, target_keys=[f"vm:{ref}"], firing_only=False))


def site_detail(session: Session, site_id: int, *, opd_id: int | None = None) -> TargetDetail:
    """One site with its state, cause, recent checks and events; NotFound outside ``opd_id``."""
    site = session.get(SiteRow, site_id)
    if site is None or (opd_id is not None and site.opd_id != opd_id):
        raise NotFound(f"site {site_id}")
    rows = _target_rows(session, [("site", site.url)])
    checks, events = _history(session, {r.id: r.kind for r in rows.values()})
    related = ((site.vm.name, f"/fleet/vm/{site.vm.id}"),) if site.vm is not None else ()
    return TargetDetail(kind="site", id=site.id, label=site.name or site.url, opd_id=site.opd_id,
                        opd_name=site.opd.name, targets=(_view(rows.get(("site", site.url)), "site", site.url),),
                        checks=checks, events=events, uptime_7d=_uptime(session, list(rows.values())),
                        related=related,
                        alerts=alert_views(session, target_keys=[f"site:{site.url}"], firing_only=False))


def load_snapshot(sessions: sessionmaker[Session]) -> HealthSnapshot:
    """The snapshot in its own short read-only session (what /metrics calls through its cache)."""
    with sessions() as session:
        return health_snapshot(session)


def load_delta(sessions: sessionmaker[Session], *, targets_written: bool, opds: bool) -> SnapshotDelta:
    """The small reads of an incremental update (``SnapshotDelta``), in one short session."""
    with sessions() as session:
        return SnapshotDelta(
            jobs=job_snapshots(session),
            incidents=open_incidents(session) if targets_written else None,
            opd_codes={opd_id: code for opd_id, code in session.execute(select(OpdRow.id, OpdRow.code))}
            if opds else None)
