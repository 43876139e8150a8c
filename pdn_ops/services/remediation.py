"""Remediation requests, approvals, dry runs, windows, rules and closure: the only layer mixing db, domain, plug-ins.

Routes and the policy engine only *enqueue* (``request_run``); the worker (``remediation_worker``) executes. Every
refusal here happens before any SSH connection or API call: parameters are validated against the inventory and
the policy with no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pdn_ops.db.remediation_tables import (
    AutoRuleRow,
    MaintenanceWindowRow,
    RemediationRunRow,
    RemediationSwitchRow,
)
from pdn_ops.db.tables import AuditRow, utcnow
from pdn_ops.domain import remediation as rem
from pdn_ops.errors import Conflict, NotFound, PolicyRefused
from pdn_ops.inventory import Inventory, resolve_secret_path
from remediation import registry, runner
from remediation.executors.ssh import SshTarget
from remediation.playbooks.base import RunContext, VmTarget, refusals


class ActiveRunConflict(Conflict):
    """Another run holds the target; ``run_id`` names it (the web layer answers 409 with it)."""

    def __init__(self, run_id: int, playbook: str, state: str, target: str) -> None:
        self.run_id = run_id
        super().__init__(f"run #{run_id} ({playbook}, {state}) is already active on {target}")


@dataclass(frozen=True, slots=True)
class Requester:
    """Who asks: an engineer's username, or the policy engine; ``opd`` limits the target for complaint links."""

    name: str
    is_staff: bool = True
    opd: str | None = None


def vm_target(inventory: Inventory, key: str, base_dir: Any = None) -> VmTarget:
    vm = inventory.vm(key)
    if vm is None:
        raise NotFound(f"no VM {key!r} in the inventory")
    ssh = None
    if vm.ssh is not None:
        ssh = SshTarget(host=vm.ssh.host, port=vm.ssh.port, user=vm.ssh.user,
                        key_path=resolve_secret_path(vm.ssh.key, base_dir), host_key=vm.ssh.host_key,
                        timeout=vm.ssh.timeout)
    return VmTarget(cluster=vm.cluster, vmid=vm.vmid, opd=vm.opd, services=tuple(vm.services),
                    cleanup={c.name: tuple(c.argv) for c in vm.cleanup}, ssh=ssh)


def _check_scope(target: VmTarget, requester: Requester) -> None:
    if not requester.is_staff:
        # OPD users never start remediation; they must not learn which targets exist either.
        raise NotFound(f"no VM {target.key!r}")
    if requester.opd is not None and requester.opd != target.opd:
        raise PolicyRefused(f"VM {target.key} belongs to another OPD than the complaint")


def dry_run(inventory: Inventory, *, playbook: str, target: str, params: Mapping[str, object],
            policy: rem.Policy, requester: Requester, base_dir: Any = None) -> tuple[dict[str, Any], list[str]]:
    """Validate and show the exact plan (API calls and commands) without any I/O."""
    vm = vm_target(inventory, target, base_dir)
    _check_scope(vm, requester)
    book = registry.playbook(playbook)
    clean = book.validate(params, vm, policy)
    ctx = RunContext(run_id=0, target=vm, params=clean, policy=policy)
    return clean, runner.plan(book, ctx)


def request_run(session: Session, inventory: Inventory, *, playbook: str, target: str,
                params: Mapping[str, object], requester: Requester, idempotency_key: str, policy: rem.Policy,
                complaint_id: int | None = None, trigger: str = "manual", base_dir: Any = None,
                now: datetime | None = None) -> RemediationRunRow:
    """Enqueue a run. The same idempotency key returns the same run; an active run on the target is a 409."""
    if not idempotency_key or len(idempotency_key) > 200:
        raise PolicyRefused("an idempotency key of 1 to 200 characters is required")
    existing = session.scalar(select(RemediationRunRow).where(RemediationRunRow.idempotency_key == idempotency_key))
    if existing is not None:
        if (existing.playbook, existing.target) != (playbook, target):
            raise Conflict("this idempotency key was used for another request")
        return existing
    clean, plan = dry_run(inventory, playbook=playbook, target=target, params=params, policy=policy,
                          requester=requester, base_dir=base_dir)
    book = registry.playbook(playbook)
    needed = rem.approvals_needed(book.risk, policy) if trigger == "manual" else 0
    row = RemediationRunRow(
        playbook=playbook, target=target, opd_code=vm_target(inventory, target, base_dir).opd, params=clean,
        risk=book.risk.value, requested_by=requester.name, trigger=trigger, approvals_needed=needed, approvals=[],
        idempotency_key=idempotency_key, plan=plan, complaint_id=complaint_id, created_at=now or utcnow(),
        state=(rem.State.AWAITING_APPROVAL if needed else rem.State.PENDING).value)
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        active = session.scalar(select(RemediationRunRow).where(
            RemediationRunRow.target == target,
            RemediationRunRow.state.in_([s.value for s in rem.ACTIVE_STATES])))
        if active is None:  # the idempotency key raced with an identical request: return that one
            again = session.scalar(
                select(RemediationRunRow).where(RemediationRunRow.idempotency_key == idempotency_key))
            if again is not None:
                return again
            raise
        raise ActiveRunConflict(active.id, active.playbook, active.state, target) from None
    _audit(session, requester.name, "remediation.requested", row, f"{playbook} {clean}")
    return row


def get_run(session: Session, run_id: int) -> RemediationRunRow:
    row = session.get(RemediationRunRow, run_id)
    if row is None:
        raise NotFound(f"no run #{run_id}")
    return row


def list_runs(session: Session, *, target: str | None = None, limit: int = 100) -> list[RemediationRunRow]:
    stmt = select(RemediationRunRow).order_by(RemediationRunRow.id.desc()).limit(limit)
    if target is not None:
        stmt = stmt.where(RemediationRunRow.target == target)
    return list(session.scalars(stmt))


def approve(session: Session, run_id: int, *, engineer: str, now: datetime | None = None) -> RemediationRunRow:
    row = get_run(session, run_id)
    if row.state != rem.State.AWAITING_APPROVAL:
        raise PolicyRefused(f"run #{run_id} is {row.state}, not awaiting approval")
    approvers = [a["by"] for a in row.approvals]
    with refusals():
        approvers, done = rem.add_approval(approvers, engineer, row.approvals_needed)
    when = now or utcnow()
    row.approvals = [*row.approvals, {"by": engineer, "at": when.isoformat()}]
    if done:
        row.state = rem.check_transition(row.state, rem.State.APPROVED).value
        row.approved_at = when
    _audit(session, engineer, "remediation.approved", row, f"{len(approvers)}/{row.approvals_needed}")
    return row


def cancel(session: Session, run_id: int, *, engineer: str) -> RemediationRunRow:
    """Withdraw a run nobody has started yet (it ends failed, with the reason)."""
    row = get_run(session, run_id)
    if row.state not in (rem.State.AWAITING_APPROVAL, rem.State.PENDING, rem.State.APPROVED):
        raise PolicyRefused(f"run #{run_id} is {row.state}; only a run not yet started can be cancelled")
    row.state = rem.State.FAILED.value
    row.outcome = rem.State.FAILED.value
    row.summary = f"cancelled by {engineer} before it started"
    row.finished_at = utcnow()
    _audit(session, engineer, "remediation.cancelled", row, "")
    return row


# --- maintenance windows, automatic rules, the global switch -----------------------------------------------------

def add_window(session: Session, *, starts_at: datetime, ends_at: datetime, target: str | None, reason: str,
               created_by: str) -> MaintenanceWindowRow:
    with refusals():
        rem.validate_window(starts_at, ends_at)
    row = MaintenanceWindowRow(starts_at=starts_at, ends_at=ends_at, target=target, reason=reason[:500],
                               created_by=created_by)
    session.add(row)
    session.flush()
    return row


def windows(session: Session, now: datetime) -> list[rem.MaintenanceWindow]:
    rows = session.scalars(select(MaintenanceWindowRow).where(MaintenanceWindowRow.ends_at > now))
    return [rem.MaintenanceWindow(r.starts_at, r.ends_at, r.target, r.reason) for r in rows]


def set_auto_enabled(session: Session, enabled: bool, *, changed_by: str) -> None:
    row = session.get(RemediationSwitchRow, "auto")
    if row is None:
        row = RemediationSwitchRow(name="auto")
        session.add(row)
    row.enabled, row.changed_by, row.changed_at = enabled, changed_by, utcnow()
    session.add(AuditRow(actor=changed_by, action="remediation.auto_switch", subject="remediation",
                         detail="on" if enabled else "off"))
    session.flush()


def auto_enabled(session: Session) -> bool:
    row = session.get(RemediationSwitchRow, "auto")
    return True if row is None else row.enabled


def add_rule(session: Session, inventory: Inventory, *, target: str, playbook: str, min_failed_checks: int = 3,
             vm_status: str | None = "stopped", params: Mapping[str, object] | None = None, created_by: str,
             policy: rem.Policy) -> AutoRuleRow:
    vm = vm_target(inventory, target)
    raw = dict(params or {})
    registry.playbook(playbook).validate(raw, vm, policy)  # refused now rather than when the rule fires
    if not 1 <= min_failed_checks <= 100:
        raise PolicyRefused("the number of failed checks must be between 1 and 100")
    # The request's own parameters are kept, not their validated form: the rule's runs are requested with them
    # and validated again then (resize_vm's validated form is not a valid request).
    row = AutoRuleRow(target=target, playbook=playbook, min_failed_checks=min_failed_checks, vm_status=vm_status,
                      params=raw, created_by=created_by)
    session.add(row)
    session.flush()
    return row


def evaluate_rules(session: Session, inventory: Inventory, *, target: str, signals: rem.Signals,
                   policy: rem.Policy, now: datetime) -> tuple[RemediationRunRow | None, str]:
    """The policy engine's entry: enqueue the rule's playbook if the rule allows it now; always say why."""
    rules = list(session.scalars(select(AutoRuleRow).where(AutoRuleRow.target == target)))
    if not rules:
        return None, "no automatic rule for this target (automatic remediation is opt-in)"
    effective = replace(policy, auto_enabled=policy.auto_enabled and auto_enabled(session))
    recent = list(session.scalars(select(RemediationRunRow.created_at).where(
        RemediationRunRow.target == target, RemediationRunRow.created_at > now - timedelta(hours=1))))
    active = session.scalar(select(RemediationRunRow.id).where(
        RemediationRunRow.target == target, RemediationRunRow.state.in_([s.value for s in rem.ACTIVE_STATES])))
    reason = ""
    for rule_row in rules:
        rule = rem.AutoRule(target=target, playbook=rule_row.playbook, min_failed_checks=rule_row.min_failed_checks,
                            vm_status=rule_row.vm_status, enabled=rule_row.enabled)
        decision = rem.auto_decision(rule, signals, effective, now=now, recent_runs=recent,
                                     windows=windows(session, now), active_run=active is not None)
        reason = decision.reason
        if decision.allowed:
            key = f"rule:{rule_row.id}:{now.isoformat()}"
            run = request_run(session, inventory, playbook=rule_row.playbook, target=target,
                              params=rule_row.params, requester=Requester("policy-engine"), idempotency_key=key,
                              policy=policy, trigger=f"rule:{rule_row.id}", now=now)
            return run, decision.reason
    return None, reason


# --- health-confirmed closure ----------------------------------------------------------------------------------

Confirm = Callable[[str], bool]  # target -> did its checks pass this time
ComplaintLink = Callable[[int, dict[str, Any]], None]  # complaint id, evidence -> resolved-awaiting-confirmation


def confirm_closure(session: Session, run_id: int, *, confirm: Confirm, needed: int, attempts: int,
                    wait: Callable[[], None], complaint_link: ComplaintLink | None = None,
                    alert: Callable[[RemediationRunRow], None] | None = None) -> RemediationRunRow:
    """After a succeeded run: the target's checks must pass ``needed`` times in a row within ``attempts`` tries.

    Confirmed: the linked complaint becomes resolved-awaiting-OPD-confirmation with the evidence. Otherwise the run
    is marked ineffective and engineers are alerted.
    """
    row = get_run(session, run_id)
    if row.state != rem.State.SUCCEEDED:
        raise PolicyRefused(f"run #{run_id} is {row.state}; only a succeeded run is confirmed")
    results: list[bool] = []
    for attempt in range(attempts):
        results.append(bool(confirm(row.target)))
        if rem.confirmation_passed(results, needed) or attempts - attempt - 1 < needed - _streak(results):
            break
        wait()
    evidence = {**row.evidence, "checks_after": results, "needed": needed,
                "steps": [{"name": s.name, "state": s.state, "intent": s.intent, "detail": s.detail}
                          for s in row.steps]}
    row.evidence = evidence
    if rem.confirmation_passed(results, needed):
        row.closure = "confirmed"
        if complaint_link is not None and row.complaint_id is not None:
            complaint_link(row.complaint_id, evidence)
    else:
        row.closure = "ineffective"
        row.state = rem.check_transition(row.state, rem.State.INEFFECTIVE).value
        if alert is not None:
            alert(row)
    _audit(session, "pdn-ops", f"remediation.{row.closure}", row, f"checks {results}")
    return row


def _streak(results: list[bool]) -> int:
    count = 0
    for passed in reversed(results):
        if not passed:
            break
        count += 1
    return count


def _audit(session: Session, actor: str, action: str, row: RemediationRunRow, detail: str) -> None:
    session.add(AuditRow(actor=actor, action=action, subject=f"remediation_run:{row.id}", detail=detail[:2000]))


# --- metrics ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class MetricCounts:
    outcomes: dict[tuple[str, str], int]  # (playbook, outcome) -> runs
    running: dict[str, int]  # playbook -> runs in progress
    durations: dict[str, list[float]]  # playbook -> seconds of finished runs


def metric_counts(sessions: Callable[[], Session]) -> MetricCounts:
    """What /metrics shows, read from the journal so every worker process is counted, whoever serves the scrape."""
    from sqlalchemy import func

    with sessions() as session:
        outcomes = {(p, str(o)): int(n) for p, o, n in session.execute(
            select(RemediationRunRow.playbook, RemediationRunRow.outcome, func.count())
            .where(RemediationRunRow.outcome.is_not(None))
            .group_by(RemediationRunRow.playbook, RemediationRunRow.outcome))}
        running = {p: int(n) for p, n in session.execute(
            select(RemediationRunRow.playbook, func.count())
            .where(RemediationRunRow.state.in_([rem.State.RUNNING.value, rem.State.INTERRUPTED.value]))
            .group_by(RemediationRunRow.playbook))}
        durations: dict[str, list[float]] = {}
        for playbook, started, finished in session.execute(
                select(RemediationRunRow.playbook, RemediationRunRow.started_at, RemediationRunRow.finished_at)
                .where(RemediationRunRow.started_at.is_not(None), RemediationRunRow.finished_at.is_not(None))):
            if started is not None and finished is not None:
                durations.setdefault(playbook, []).append(max((finished - started).total_seconds(), 0.0))
    return MetricCounts(outcomes, running, durations)
