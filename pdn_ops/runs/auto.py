"""Automatic remediation in the product: signals from the health model, the scheduled evaluation of the rules, and
the staff's management of rules, maintenance windows and the global off switch.

The scheduler's ``remediation:auto-rules`` job (``pdn_ops.health.jobs.remediation_jobs``) calls
``evaluate_all`` in one transaction: for every VM with an enabled rule it reads what the collectors recorded
(``signals_for``) and hands it to ``remediation.evaluate_rules``, which applies the policy (opt-in, cooldown,
attempts per hour, the global switch, maintenance windows, one active run per target) and only *enqueues*; the
worker executes, and closure confirms the fix from the same checks.

Rules are never deleted: a deleted rule is retired (disabled, hidden from the list, its runs keep naming it).
The rules table has no column for that, so retirement is the rule's latest life-cycle entry in the audit log
(``remediation.rule_retired``); creating the same rule again restores the row with the same id.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pdn_ops.core.db.tables import AuditRow, utcnow
from pdn_ops.core.errors import Conflict, NotFound, PolicyRefused, Refused, RuleInvalid, WindowInvalid
from pdn_ops.core.inventory import Inventory
from pdn_ops.health import HealthCheckRow, Reason, guest_findings
from pdn_ops.runs import model as rem
from pdn_ops.runs import service as svc
from pdn_ops.runs.closure import linked_targets
from pdn_ops.runs.tables import AutoRuleRow, MaintenanceWindowRow, RemediationRunRow
from remediation import registry

log = logging.getLogger(__name__)

# Guest findings a rule may act on, and the most checks in a row a rule may ask for (the form's bound too).
_GUEST_REASONS = (Reason.DISK_FULL, Reason.SERVICE_INACTIVE)
MAX_CHECKS = 100
RULE_SUBJECT = "remediation_rule:"
WINDOW_SUBJECT = "maintenance_window:"
_LIFECYCLE = ("remediation.rule_created", "remediation.rule_restored", "remediation.rule_enabled",
              "remediation.rule_disabled", "remediation.rule_retired")


# --- signals from the health model -------------------------------------------------------------------------------

def signals_for(session: Session, target: str) -> rem.Signals:
    """What the collectors last recorded for the VM ``target`` ("cluster/vmid"), its guest and its sites.

    Failed checks in a row: the worst of its sites; without a site, its guest's; without SSH either, the VM's own
    (Proxmox reporting it stopped counts as a failed check at every cycle).

    Counts come from the health model's own consecutive-failure counters (reset when evidence goes missing, so
    stale checks never add up); the guest's findings are counted over its latest checks.
    """
    rows = linked_targets(session, target)
    sites = [r for r in rows if r.kind == "site"]
    guest = next((r for r in rows if r.kind == "guest"), None)
    vm = next((r for r in rows if r.kind == "vm"), None)
    # The service the OPD sees: its worst site; a VM that hosts no site is judged by its guest's checks, and one
    # without SSH by what Proxmox says of it.
    witnesses = sites or [r for r in (guest, vm) if r is not None][:1]
    failed = max((r.failures for r in witnesses), default=0)
    status = None
    if vm is not None and vm.state != "unknown":
        raw = (vm.values or {}).get("status")
        status = raw if isinstance(raw, str) else None
    problems: dict[str, int] = {}
    inactive: frozenset[str] = frozenset()
    if guest is not None:
        checks = list(session.scalars(select(HealthCheckRow).where(HealthCheckRow.target_id == guest.id)
                                      .order_by(HealthCheckRow.at.desc()).limit(MAX_CHECKS)))
        counting = set(_GUEST_REASONS)
        for index, check in enumerate(checks):
            # A failed guest check says nothing about its disk or services: it ends every streak.
            findings = guest_findings(check.detail) if check.ok else {}
            if index == 0:
                inactive = findings.get(Reason.SERVICE_INACTIVE, frozenset())
            for reason in list(counting):
                if reason in findings:
                    problems[reason.value] = problems.get(reason.value, 0) + 1
                else:
                    counting.discard(reason)
            if not counting:
                break
    seen = [r.last_check_at for r in rows if r.last_check_at is not None]
    return rem.Signals(consecutive_failed_checks=failed, vm_status=status, guest_problems=problems,
                       inactive_services=inactive, observed_at=max(seen) if seen else None)


@dataclass(frozen=True, slots=True)
class Evaluation:
    target: str
    run_id: int | None  # the run this evaluation enqueued
    reason: str


def evaluate_all(session: Session, inventory: Inventory, *, policy: rem.Policy, now: datetime,
                 base_dir: Any = None) -> list[Evaluation]:
    """The scheduled job: evaluate every target that has an enabled rule; returns what was decided and why.

    One target's refusal (a rule whose parameters the inventory no longer allows) is recorded in its own
    savepoint and does not stop the others.
    """
    if not policy.auto_enabled or not svc.auto_enabled(session):
        return []
    targets = sorted(set(session.scalars(select(AutoRuleRow.target).where(AutoRuleRow.enabled.is_(True)))))
    results: list[Evaluation] = []
    for target in targets:
        if inventory.vm(target) is None:
            results.append(Evaluation(target, None, "the VM is no longer in the inventory"))
            continue
        signals = signals_for(session, target)
        try:
            with session.begin_nested():
                run, why = svc.evaluate_rules(session, inventory, target=target, signals=signals, policy=policy,
                                              now=now, base_dir=base_dir)
        except (PolicyRefused, NotFound, Conflict) as exc:
            log.warning("automatic rule for %s refused: %s", target, exc)
            results.append(Evaluation(target, None, f"refused: {exc}"))
            continue
        if run is not None:
            log.info("automatic rule enqueued run #%s (%s on %s, %s): %s", run.id, run.playbook, target, run.state,
                     why)
        results.append(Evaluation(target, run.id if run is not None else None, why))
    return results


# --- rules ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleView:
    id: int
    target: str
    playbook: str
    min_failed_checks: int
    vm_status: str | None
    params: dict[str, Any]
    enabled: bool
    needs_approval: bool  # its runs wait for an engineer (the risk policy), they do not run by themselves
    created_by: str
    created_at: datetime
    retired: bool = False


def _retired(session: Session, rule_ids: list[int]) -> set[int]:
    """Rules whose latest life-cycle entry in the audit log is a retirement."""
    if not rule_ids:
        return set()
    latest: dict[str, str] = {}
    subjects = [f"{RULE_SUBJECT}{i}" for i in rule_ids]
    for subject, action in session.execute(select(AuditRow.subject, AuditRow.action).where(
            AuditRow.subject.in_(subjects), AuditRow.action.in_(_LIFECYCLE)).order_by(AuditRow.id)):
        latest[subject] = action
    return {int(s.removeprefix(RULE_SUBJECT)) for s, a in latest.items() if a == "remediation.rule_retired"}


def _view(row: AutoRuleRow, policy: rem.Policy, *, retired: bool = False) -> RuleView:
    risk = registry.playbook(row.playbook).risk if row.playbook in registry.PLAYBOOKS else rem.Risk.HIGH
    rule = rem.AutoRule(target=row.target, playbook=row.playbook, vm_status=row.vm_status)
    return RuleView(row.id, row.target, row.playbook, row.min_failed_checks, row.vm_status, dict(row.params or {}),
                    row.enabled, rem.auto_approvals_needed(rule, risk, policy) > 0, row.created_by, row.created_at,
                    retired)


def list_rules(session: Session, *, policy: rem.Policy) -> list[RuleView]:
    rows = list(session.scalars(select(AutoRuleRow).order_by(AutoRuleRow.target, AutoRuleRow.id)))
    retired = _retired(session, [r.id for r in rows])
    return [_view(r, policy) for r in rows if r.id not in retired]


def _rule(session: Session, rule_id: int, *, for_update: bool = False) -> tuple[AutoRuleRow, bool]:
    """The rule and whether it is retired (a retired rule still exists: its runs name it)."""
    stmt = select(AutoRuleRow).where(AutoRuleRow.id == rule_id)
    row = session.scalar(stmt.with_for_update() if for_update else stmt)
    if row is None:
        raise NotFound(f"no automatic rule #{rule_id}")
    return row, rule_id in _retired(session, [rule_id])


def get_rule(session: Session, rule_id: int, *, policy: rem.Policy) -> RuleView:
    row, retired = _rule(session, rule_id)
    return _view(row, policy, retired=retired)


def _audit(session: Session, actor: str, action: str, subject: str, detail: str, now: datetime) -> None:
    session.add(AuditRow(at=now, actor=actor, action=action, subject=subject, detail=detail[:2000]))


def _rule_detail(row: AutoRuleRow) -> str:
    return (f"{row.playbook} on {row.target} after {row.min_failed_checks} checks, VM {row.vm_status or 'any'}, "
            f"params {row.params}")


def create_rule(session: Session, inventory: Inventory, *, target: str, playbook: str, min_failed_checks: object,
                vm_status: str | None, params: Mapping[str, object], created_by: str, policy: rem.Policy,
                now: datetime | None = None) -> RuleView:
    """Validate every field at once (``RuleInvalid``), then the parameters as the playbook will (``PolicyRefused``:
    refused now rather than when the rule fires). A retired rule for the same target and playbook comes back with
    its id; a live one is a ``RuleInvalid`` on the playbook."""
    now = now or utcnow()
    errors: dict[str, str] = {}
    if inventory.vm(target) is None:
        errors["target"] = "remediation.auto.error.target"
    if playbook not in registry.PLAYBOOKS:
        errors["playbook"] = "remediation.auto.error.playbook"
    checks = _whole_number(min_failed_checks)
    if checks is None or not 1 <= checks <= MAX_CHECKS:
        errors["min_failed_checks"] = "remediation.auto.error.checks"
    status = vm_status or None
    if status is not None and status not in rem.VM_STATUSES:
        errors["vm_status"] = "remediation.auto.error.vm_status"
    existing = None
    if "target" not in errors and "playbook" not in errors:
        existing = session.scalar(select(AutoRuleRow).where(AutoRuleRow.target == target,
                                                            AutoRuleRow.playbook == playbook).with_for_update())
        if existing is not None and existing.id not in _retired(session, [existing.id]):
            errors["playbook"] = "remediation.auto.error.duplicate"
    if errors:
        raise RuleInvalid(errors)
    assert checks is not None
    vm = svc.vm_target(inventory, target)
    raw = dict(params)
    registry.playbook(playbook).validate(raw, vm, policy)  # PolicyRefused: the parameters are wrong
    if existing is None:
        try:
            with session.begin_nested():
                row = svc.add_rule(session, inventory, target=target, playbook=playbook, min_failed_checks=checks,
                                   vm_status=status, params=raw, created_by=created_by, policy=policy)
        except IntegrityError:  # the same rule, created at the same moment by another engineer
            raise RuleInvalid({"playbook": "remediation.auto.error.duplicate"}) from None
        action = "remediation.rule_created"
    else:
        row = existing
        row.min_failed_checks, row.vm_status, row.params, row.enabled = checks, status, raw, True
        row.created_by, row.created_at = created_by, now
        action = "remediation.rule_restored"
    session.flush()
    _audit(session, created_by, action, f"{RULE_SUBJECT}{row.id}", _rule_detail(row), now)
    return _view(row, policy)


def _whole_number(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 6:
        return int(value.strip())
    return None


def set_rule_enabled(session: Session, rule_id: int, enabled: bool, *, actor: str, policy: rem.Policy,
                     now: datetime | None = None) -> RuleView:
    row, retired = _rule(session, rule_id, for_update=True)
    if retired:
        raise Conflict(f"automatic rule #{rule_id} is deleted (retired); create it again instead")
    if row.enabled != enabled:
        row.enabled = enabled
        _audit(session, actor, "remediation.rule_enabled" if enabled else "remediation.rule_disabled",
               f"{RULE_SUBJECT}{row.id}", _rule_detail(row), now or utcnow())
    return _view(row, policy)


def retire_rule(session: Session, rule_id: int, *, actor: str, now: datetime | None = None) -> None:
    """Delete = retire: the rule stops firing and leaves the list; the row and its history stay. Idempotent."""
    row, retired = _rule(session, rule_id, for_update=True)
    if retired:
        return
    row.enabled = False
    _audit(session, actor, "remediation.rule_retired", f"{RULE_SUBJECT}{row.id}", _rule_detail(row), now or utcnow())


# --- maintenance windows -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WindowView:
    id: int
    target: str | None  # None: the whole data centre
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str
    status: str  # upcoming | active | ended | cancelled


def _window_view(row: MaintenanceWindowRow, now: datetime) -> WindowView:
    starts, ends = row.starts_at, row.ends_at
    if ends <= starts:
        status = "cancelled"
    elif now < starts:
        status = "upcoming"
    elif now < ends:
        status = "active"
    else:
        status = "ended"
    return WindowView(row.id, row.target, starts, ends, row.reason, row.created_by, status)


def list_windows(session: Session, *, now: datetime | None = None,
                 ended_within: timedelta = timedelta(days=7)) -> list[WindowView]:
    """Upcoming and active windows, and those that ended (or were cancelled) in the last week, soonest first."""
    now = now or utcnow()
    rows = session.scalars(select(MaintenanceWindowRow).where(MaintenanceWindowRow.ends_at > now - ended_within)
                           .order_by(MaintenanceWindowRow.starts_at, MaintenanceWindowRow.id))
    return [_window_view(r, now) for r in rows]


def create_window(session: Session, inventory: Inventory | None, *, starts_at: datetime | None,
                  ends_at: datetime | None, target: str | None, reason: str, created_by: str,
                  now: datetime | None = None) -> WindowView:
    """A declared maintenance window: no automatic run starts on its target (or anywhere, without a target)."""
    now = now or utcnow()
    errors: dict[str, str] = {}
    target = target or None
    if target is not None and (inventory is None or inventory.vm(target) is None):
        errors["target"] = "remediation.auto.error.target"
    if starts_at is None:
        errors["starts_at"] = "remediation.window.error.time"
    if ends_at is None:
        errors["ends_at"] = "remediation.window.error.time"
    if len(reason) > 500:
        errors["reason"] = "remediation.window.error.reason"
    if starts_at is not None and ends_at is not None:
        try:
            rem.validate_window(starts_at, ends_at)
        except Refused:
            errors["ends_at"] = ("remediation.window.error.order" if ends_at <= starts_at
                                 else "remediation.window.error.length")
        else:
            if ends_at <= now:
                errors["ends_at"] = "remediation.window.error.past"
    if errors:
        raise WindowInvalid(errors)
    assert starts_at is not None and ends_at is not None
    row = svc.add_window(session, starts_at=starts_at, ends_at=ends_at, target=target, reason=reason,
                         created_by=created_by)
    _audit(session, created_by, "remediation.window_created", f"{WINDOW_SUBJECT}{row.id}",
           f"{target or 'all targets'} {starts_at.isoformat()} - {ends_at.isoformat()}: {reason}", now)
    return _window_view(row, now)


def end_window(session: Session, window_id: int, *, actor: str, now: datetime | None = None) -> WindowView:
    """End an active window now, or cancel one that has not begun; the row stays (never deleted)."""
    now = now or utcnow()
    row = session.scalar(select(MaintenanceWindowRow).where(MaintenanceWindowRow.id == window_id).with_for_update())
    if row is None:
        raise NotFound(f"no maintenance window #{window_id}")
    view = _window_view(row, now)
    if view.status in ("ended", "cancelled"):
        raise Conflict(f"maintenance window #{window_id} is already over")
    old_end = view.ends_at
    # A cancelled window keeps its start and ends there: empty, it covers no instant (starts_at <= now < ends_at).
    row.ends_at = view.starts_at if view.status == "upcoming" else now
    action = "remediation.window_cancelled" if view.status == "upcoming" else "remediation.window_ended"
    _audit(session, actor, action, f"{WINDOW_SUBJECT}{row.id}", f"was to end {old_end.isoformat()}", now)
    session.flush()
    return _window_view(row, now)


def attention(session: Session, *, since: datetime) -> list[RemediationRunRow]:
    """Runs that need a person: failed, unknown or ineffective since ``since`` (the runs page's banner)."""
    return list(session.scalars(select(RemediationRunRow).where(
        RemediationRunRow.state.in_([rem.State.FAILED.value, rem.State.UNKNOWN.value, rem.State.INEFFECTIVE.value]),
        RemediationRunRow.started_at.is_not(None), RemediationRunRow.finished_at >= since)
        .order_by(RemediationRunRow.id.desc()).limit(20)))
