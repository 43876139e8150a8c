"""Health-confirmed closure: a succeeded run counts only when the target's real checks pass again.

The collectors keep checking on their schedule; this reads the checks recorded *after* the run finished for every
health target linked to the run's VM (the VM itself, its guest, the sites it hosts). When *every one* of them has
passed ``needed`` times in a row before the deadline, the run is confirmed and the linked complaint becomes
resolved-awaiting-OPD-confirmation with the evidence (checks before and after, the run log). A target not checked
since the run (a site with a long interval) is not confirmed yet; a run with no linked target cannot be confirmed.
If the deadline passes first, the run is ineffective and engineers are alerted. Incidents without a complaint
close the same way (only the complaint link is skipped).

Each run is decided on its own (a savepoint per run): a run whose closure breaks (a complaint that cannot be
updated, a target pdn-ops cannot read) has the failure recorded on it, is not tried again, and does not stop the
others, nor the worker that evaluates them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from pdn_ops import complaints
from pdn_ops.core.db.tables import AuditRow, SiteRow, VmRow, utcnow
from pdn_ops.health import HealthCheckRow, HealthTargetRow
from pdn_ops.runs import model as rem
from pdn_ops.runs.tables import RemediationRunRow

log = logging.getLogger(__name__)

# complaint id, evidence, session -> mark the complaint resolved-awaiting-confirmation (wired by the complaints area)
ComplaintLink = Callable[[int, dict[str, Any], Session], None]
Alert = Callable[[RemediationRunRow, Session], None]


@dataclass(frozen=True, slots=True)
class ClosurePolicy:
    needed: int = 3  # consecutive passing checks per linked target
    deadline: timedelta = timedelta(minutes=15)


def linked_targets(session: Session, target: str) -> list[HealthTargetRow]:
    cluster, _, vmid = target.partition("/")
    vm = session.scalar(select(VmRow).where(VmRow.cluster == cluster, VmRow.vmid == int(vmid)))
    clauses = [HealthTargetRow.ref == target]
    if vm is not None:
        site_ids = list(session.scalars(select(SiteRow.id).where(SiteRow.vm_id == vm.id, SiteRow.retired_at.is_(None))))
        if site_ids:
            clauses.append(HealthTargetRow.site_id.in_(site_ids))
    rows = session.scalars(select(HealthTargetRow).where(or_(*clauses)))
    # A guest is checked over SSH only while the inventory declares SSH for the VM: a guest target left from
    # before is never checked again, and must not hold a closure back for ever.
    kinds = ("vm", "guest", "site") if vm is None or vm.has_ssh else ("vm", "site")
    return [r for r in rows if r.kind in kinds]


def _checks(session: Session, target_id: int, *, after: datetime | None = None, before: datetime | None = None,
            limit: int = 50) -> list[HealthCheckRow]:
    """Checks of one target, oldest first: the latest ``limit`` of those after ``after`` and before ``before``."""
    stmt = select(HealthCheckRow).where(HealthCheckRow.target_id == target_id)
    if after is not None:
        stmt = stmt.where(HealthCheckRow.at > after)
    if before is not None:
        stmt = stmt.where(HealthCheckRow.at < before)
    return list(reversed(session.scalars(stmt.order_by(HealthCheckRow.at.desc()).limit(limit)).all()))


def evaluate_closures(session: Session, *, policy: ClosurePolicy | None = None, now: datetime | None = None,
                      complaint_link: ComplaintLink | None = None, alert: Alert | None = None) -> list[tuple[int, str]]:
    """Confirm or give up on every succeeded run still waiting; returns (run id, closure) for those decided."""
    policy = policy or ClosurePolicy()
    now = now or utcnow()
    decided: list[tuple[int, str]] = []
    # Claimed with row locks: on PostgreSQL a run another process is deciding is skipped (its decision commits
    # first, then the run no longer waits), so two workers or serve processes never write its audit rows, complaint
    # link or alerts twice. SQLite ignores FOR UPDATE; there the caller's BEGIN IMMEDIATE serialises the decisions.
    waiting = list(session.scalars(select(RemediationRunRow).where(
        RemediationRunRow.state == rem.State.SUCCEEDED.value,
        or_(RemediationRunRow.closure.is_(None), RemediationRunRow.closure == "confirming"))
        .order_by(RemediationRunRow.id).with_for_update(skip_locked=True)))
    for run in waiting:
        try:
            with session.begin_nested():
                closure = _evaluate(session, run, policy, now, complaint_link, alert)
        except Exception as exc:  # one run's broken closure must not stop the others, nor be retried blindly
            log.exception("closure of remediation run %s failed", run.id)
            session.expire(run)
            with session.begin_nested():
                run.closure = "error"
                session.add(AuditRow(at=utcnow(), actor="pdn-ops", action="remediation.closure_error",
                                     subject=f"remediation_run:{run.id}",
                                     detail=f"the closure could not be evaluated ({type(exc).__name__}: "
                                            f"{str(exc)[:300]}); nothing was changed"))
            decided.append((run.id, "error"))
            continue
        if closure is not None:
            decided.append((run.id, closure))
    return decided


def _evaluate(session: Session, run: RemediationRunRow, policy: ClosurePolicy, now: datetime,
              complaint_link: ComplaintLink | None, alert: Alert | None) -> str | None:
    finished = run.finished_at or run.created_at
    deadline = finished + policy.deadline
    targets = linked_targets(session, run.target)
    # Only checks made before the deadline count: a worker that was down must not confirm with later ones.
    after = {t.id: _checks(session, t.id, after=finished, before=deadline) for t in targets}
    results = {t.key: [c.ok for c in after[t.id]] for t in targets}
    # Every linked target must pass: one not checked since the run is not confirmed yet.
    confirmed = bool(targets) and all(rem.confirmation_passed(v, policy.needed) for v in results.values())
    if not confirmed and now < deadline:
        run.closure = "confirming"
        return None
    started = run.started_at or run.created_at
    run.evidence = {
        **run.evidence,
        "needed": policy.needed,
        "checks_before": {t.key: [{"at": c.at.isoformat(), "ok": c.ok, "failure": c.failure}
                                  for c in _checks(session, t.id, before=started, limit=5)]
                          for t in targets},
        "checks_after": {t.key: [{"at": c.at.isoformat(), "ok": c.ok, "failure": c.failure}
                                 for c in after[t.id]] for t in targets},
        "run_log": [{"step": s.name, "intent": s.intent, "state": s.state, "upid": s.upid, "detail": s.detail}
                    for s in run.steps],
        "summary": run.summary,
    }
    run.closure = "confirmed" if confirmed else "ineffective"
    # Recorded (and timed) before its consequences, so the complaint's timeline reads cause, then effect.
    session.add(AuditRow(at=utcnow(), actor="pdn-ops", action=f"remediation.{run.closure}",
                         subject=f"remediation_run:{run.id}", detail=str(results)[:2000]))
    if confirmed:
        if complaint_link is not None and run.complaint_id is not None:
            _link(session, run, complaint_link)
    else:
        run.state = rem.check_transition(run.state, rem.State.INEFFECTIVE).value
        if alert is not None:
            alert(run, session)
    return run.closure


def _link(session: Session, run: RemediationRunRow, complaint_link: ComplaintLink) -> None:
    """The confirmed run's complaint becomes fixed; if that fails, the run stays confirmed (its checks passed) and
    the engineers see why the complaint was left alone."""
    assert run.complaint_id is not None
    try:
        with session.begin_nested():
            complaint_link(run.complaint_id, run.evidence, session)
    except Exception as exc:
        log.exception("remediation run %s: complaint #%s not updated", run.id, run.complaint_id)
        run.evidence = {**run.evidence, "complaint_not_updated": f"{type(exc).__name__}: {str(exc)[:300]}"}
        session.add(AuditRow(actor="pdn-ops", action="remediation.complaint_not_updated",
                             subject=f"complaint:{run.complaint_id}",
                             detail=f"run #{run.id} confirmed, but the complaint could not be updated "
                                    f"({type(exc).__name__}: {str(exc)[:300]})"))


def complaint_link(config: Any) -> ComplaintLink:
    """The link to the complaints service: a confirmed run marks its complaint fixed (resolved, awaiting the
    OPD's confirmation), which notifies the OPD.

    No reason text: a fix's reason goes to the OPD's inbox, and all pdn-ops could write there is English machine
    text naming internal targets. The OPD reads "fixed" in their language; the evidence (checks before and after,
    the run log) stays on the run, and the complaint's timeline shows the run's confirmation just before the fix.
    """
    from pdn_ops.accounts import Principal, Role
    from pdn_ops.complaints import Action, State

    system = Principal(user_id=0, username="pdn-ops", role=Role.ENGINEER, opd_id=None)

    def link(complaint_id: int, evidence: dict[str, Any], session: Session) -> None:
        row = complaints.get(session, system, complaint_id, for_update=True)
        if row.state not in (State.VERIFIED, State.IN_PROGRESS):
            # Already fixed, closed or not yet verified by an engineer: the run's evidence stays on the run.
            session.add(AuditRow(actor="pdn-ops", action="remediation.complaint_not_updated",
                                 subject=f"complaint:{complaint_id}", detail=f"complaint is {row.state}"))
            return
        complaints.act(session, system, complaint_id, Action.FIX, config=config)
    return link
