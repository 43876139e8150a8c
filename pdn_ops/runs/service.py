"""Remediation requests, approvals, dry runs, windows, rules and closure: the only layer mixing db, domain, plug-ins.

Routes and the policy engine only *enqueue* (``request_run``); the worker (``remediation_worker``) executes. Every
refusal here happens before any SSH connection or API call: parameters are validated against the inventory and
the policy with no I/O, and a run linked to a complaint must act on that complaint's own VM (the VM it is about,
or the VM hosting the site it is about) of the complaint's OPD: the run's closure marks the complaint fixed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, and_, case, cast, extract, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pdn_ops.complaints import ComplaintRow
from pdn_ops.core.db.tables import AuditRow, OpdRow, SiteRow, VmRow, utcnow
from pdn_ops.core.errors import ConfigError, Conflict, NotFound, PolicyRefused
from pdn_ops.core.inventory import Inventory, resolve_secret_path
from pdn_ops.runs import model as rem
from pdn_ops.runs.problem import problem_started_at
from pdn_ops.runs.tables import AutoRuleRow, MaintenanceWindowRow, RemediationRunRow, RemediationSwitchRow
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


def check_complaint(session: Session, target: VmTarget, complaint_id: int) -> ComplaintRow:
    """The complaint a run is linked to: it exists, it is the OPD's that owns the VM, and it is about that VM or
    about a site that VM hosts. Anything else would let a run's closure mark another OPD's (or another
    problem's) complaint fixed."""
    row = session.get(ComplaintRow, complaint_id)
    if row is None:
        raise NotFound(f"no complaint #{complaint_id}")
    opd = session.scalar(select(OpdRow.code).where(OpdRow.id == row.opd_id))
    if opd != target.opd:
        raise PolicyRefused(f"VM {target.key} belongs to another OPD than complaint #{complaint_id}")
    vm_id = session.scalar(select(VmRow.id).where(VmRow.cluster == target.cluster, VmRow.vmid == target.vmid))
    if row.vm_id is not None:
        if row.vm_id != vm_id:
            about = session.get(VmRow, row.vm_id)
            raise PolicyRefused(f"complaint #{complaint_id} is about VM {about.key if about else row.vm_id}, "
                                f"not {target.key}")
    else:
        site = session.get(SiteRow, row.site_id) if row.site_id is not None else None
        if site is None or site.vm_id is None:
            raise PolicyRefused(f"complaint #{complaint_id} is about a site hosted on no VM pdn-ops knows; "
                                f"it cannot be linked to a run on {target.key}")
        if site.vm_id != vm_id:
            raise PolicyRefused(f"complaint #{complaint_id} is about {site.url}, which VM {target.key} does not host")
    return row


def dry_run(inventory: Inventory, *, playbook: str, target: str, params: Mapping[str, object],
            policy: rem.Policy, requester: Requester, base_dir: Any = None, session: Session | None = None,
            complaint_id: int | None = None,
            known_snapshots: Callable[[str], Sequence[str] | None] | None = None) -> tuple[dict[str, Any], list[str]]:
    """Validate and show the exact plan (API calls and commands) without any I/O outside the database; with a
    ``complaint_id`` (and a session), the complaint must fit the target (``check_complaint``).

    ``known_snapshots(target)`` gives the target VM's snapshot names as last read from Proxmox (None: not known):
    a snapshot parameter must name one of them, so another VM's snapshot is refused here, at the dry run and the
    request, not only later by the worker."""
    vm = vm_target(inventory, target, base_dir)
    _check_scope(vm, requester)
    if complaint_id is not None:
        if session is None:
            raise ValueError("a complaint is checked against the database: pass the session")
        check_complaint(session, vm, complaint_id)
    book = registry.playbook(playbook)
    clean = book.validate(params, vm, policy)
    if "snapshot" in clean and known_snapshots is not None:
        names = known_snapshots(target)
        if names is not None:
            rem.validate_snapshot_name(clean["snapshot"], names)
    ctx = RunContext(run_id=0, target=vm, params=clean, policy=policy)
    return clean, runner.plan(book, ctx)


def request_run(session: Session, inventory: Inventory, *, playbook: str, target: str,
                params: Mapping[str, object], requester: Requester, idempotency_key: str, policy: rem.Policy,
                complaint_id: int | None = None, trigger: str = "manual", base_dir: Any = None,
                now: datetime | None = None, approvals_needed: int | None = None,
                known_snapshots: Callable[[str], Sequence[str] | None] | None = None) -> RemediationRunRow:
    """Enqueue a run. The same idempotency key with the same request returns the same run (with another request:
    a Conflict naming what differs); an active run on the target is a 409; a complaint must fit the target.

    ``approvals_needed``: the policy engine's decision for an automatic run (``rem.auto_approvals_needed``);
    without it a manual request needs what the playbook's risk needs and any other trigger none.
    """
    if not idempotency_key or len(idempotency_key) > 200:
        raise PolicyRefused("an idempotency key of 1 to 200 characters is required")
    existing = session.scalar(select(RemediationRunRow).where(RemediationRunRow.idempotency_key == idempotency_key))
    if existing is not None:
        _same_request(existing, idempotency_key, playbook=playbook, target=target, complaint_id=complaint_id)
    clean, plan = dry_run(inventory, playbook=playbook, target=target, params=params, policy=policy,
                          requester=requester, base_dir=base_dir, session=session, complaint_id=complaint_id,
                          known_snapshots=known_snapshots)
    if existing is not None:
        _same_request(existing, idempotency_key, params=_as_filled(existing, playbook, clean))
        return existing
    clean = fill_problem_start(session, playbook, target, clean, complaint_id)
    book = registry.playbook(playbook)
    if approvals_needed is not None:
        needed = approvals_needed
    else:
        needed = rem.approvals_needed(book.risk, policy, playbook) if trigger == "manual" else 0
    needed = max(needed, playbook_approvals(playbook, clean))
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


def fill_problem_start(session: Session, playbook: str, target: str, params: dict[str, Any],
                       complaint_id: int | None) -> dict[str, Any]:
    """A playbook that names a ``problem_start_param`` (restore_backup's ``before``) and was not given it, nor a
    backup, gets when the VM's problem began (``problem.problem_started_at``: the first failed check of the
    current failure, or the complaint's filing), so that what it suggests is the last good one from before."""
    key = getattr(registry.playbook(playbook), "problem_start_param", None)
    if not key or key in params or "backup" in params:
        return params
    complaint = session.get(ComplaintRow, complaint_id) if complaint_id is not None else None
    began = problem_started_at(session, target, complaint=complaint)
    if began is None:
        return params
    began = began if began.tzinfo is not None else began.replace(tzinfo=UTC)
    return {**params, key: int(began.timestamp())}


def _as_filled(existing: RemediationRunRow, playbook: str, clean: dict[str, Any]) -> dict[str, Any]:
    """A retried request compares as the stored one did before ``fill_problem_start`` added the problem's start."""
    key = getattr(registry.playbook(playbook), "problem_start_param", None)
    if key and key not in clean and key in (existing.params or {}):
        return {**clean, key: existing.params[key]}
    return clean


def playbook_approvals(playbook: str, params: Mapping[str, Any]) -> int:
    """The approvals a playbook itself asks for these parameters, whatever the trigger and the risk policy (a
    restore over the VM itself: two engineers); 0 when it asks for none."""
    asks = getattr(registry.playbook(playbook), "approvals_for", None)
    return int(asks(params)) if callable(asks) else 0


_REQUEST_FIELDS = {"playbook": "playbook", "target": "target", "complaint_id": "complaint", "params": "parameters"}


def _same_request(existing: RemediationRunRow, key: str, **asked: Any) -> None:
    """A retried request (same idempotency key) must be the same request: otherwise say what differs, rather
    than answer with a run that does something else than what was asked now."""
    if "params" in asked:
        asked["params"] = json.loads(json.dumps(asked["params"]))  # as the JSON column gives them back
    differs = []
    for name, value in asked.items():
        old = getattr(existing, name)
        if old != value:
            shown = json.dumps(old, sort_keys=True)[:200] if name == "params" else old
            differs.append(f"{_REQUEST_FIELDS[name]} ({shown})")
    if differs:
        raise Conflict(f"idempotency key {key!r} was already used for run #{existing.id}, which differs in "
                       f"{'; '.join(differs)}: a new request needs a new key")


def get_run(session: Session, run_id: int) -> RemediationRunRow:
    row = session.get(RemediationRunRow, run_id)
    if row is None:
        raise NotFound(f"no run #{run_id}")
    return row


def list_runs(session: Session, *, target: str | None = None, limit: int = 100,
              before: int | None = None) -> list[RemediationRunRow]:
    """The newest runs first; ``before`` (a run id) continues a list where its previous page ended."""
    stmt = select(RemediationRunRow).order_by(RemediationRunRow.id.desc()).limit(limit)
    if target is not None:
        stmt = stmt.where(RemediationRunRow.target == target)
    if before is not None:
        stmt = stmt.where(RemediationRunRow.id < before)
    return list(session.scalars(stmt))


def approve(session: Session, run_id: int, *, engineer: str, now: datetime | None = None,
            policy: rem.Policy | None = None) -> RemediationRunRow:
    row = get_run(session, run_id)
    if row.state != rem.State.AWAITING_APPROVAL:
        raise PolicyRefused(f"run #{run_id} is {row.state}, not awaiting approval")
    approvers = [a["by"] for a in row.approvals]
    with refusals():
        approvers, done = rem.add_approval(approvers, engineer, row.approvals_needed,
                                           requested_by=row.requested_by, policy=policy)
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
                   policy: rem.Policy, now: datetime, base_dir: Any = None) -> tuple[RemediationRunRow | None, str]:
    """The policy engine's entry: enqueue the rule's playbook if the rule allows it now; always say why.

    Returns the run only when this call created it. The idempotency key names the rule and the newest check behind
    the signals, so evaluating the same signals again (a second scheduler during a leader hand-over, a job run
    twice) never enqueues a second run; the one-active-run constraint stops a concurrent evaluation too.
    """
    rules = list(session.scalars(select(AutoRuleRow).where(AutoRuleRow.target == target).order_by(AutoRuleRow.id)))
    if not rules:
        return None, "no automatic rule for this target (automatic remediation is opt-in)"
    effective = replace(policy, auto_enabled=policy.auto_enabled and auto_enabled(session))
    recent = list(session.scalars(select(RemediationRunRow.created_at).where(
        RemediationRunRow.target == target, RemediationRunRow.created_at > now - timedelta(hours=1))))
    active = session.scalar(select(RemediationRunRow.id).where(
        RemediationRunRow.target == target, RemediationRunRow.state.in_([s.value for s in rem.ACTIVE_STATES])))
    reason = ""
    for rule_row in rules:
        unit = rule_row.params.get("unit") if isinstance(rule_row.params, dict) else None
        rule = rem.AutoRule(target=target, playbook=rule_row.playbook, min_failed_checks=rule_row.min_failed_checks,
                            vm_status=rule_row.vm_status, enabled=rule_row.enabled,
                            unit=unit if isinstance(unit, str) else None)
        decision = rem.auto_decision(rule, signals, effective, now=now, recent_runs=recent,
                                     windows=windows(session, now), active_run=active is not None)
        reason = decision.reason
        if not decision.allowed:
            continue
        key = f"rule:{rule_row.id}:{(signals.observed_at or now).isoformat()}"
        earlier = session.scalar(select(RemediationRunRow.id).where(RemediationRunRow.idempotency_key == key))
        if earlier is not None:
            return None, f"run #{earlier} was already requested for these signals"
        needed = rem.auto_approvals_needed(rule, registry.playbook(rule_row.playbook).risk, policy)
        try:
            run = request_run(session, inventory, playbook=rule_row.playbook, target=target, params=rule_row.params,
                              requester=Requester("policy-engine"), idempotency_key=key, policy=policy,
                              trigger=f"rule:{rule_row.id}", now=now, base_dir=base_dir, approvals_needed=needed)
        except ActiveRunConflict as exc:  # a concurrent evaluation (or an engineer) was first
            return None, str(exc)
        return run, decision.reason
    return None, reason


# --- health-confirmed closure ----------------------------------------------------------------------------------

Confirm = Callable[[str], bool]  # target -> did its checks pass this time
ComplaintLink = Callable[[int, dict[str, Any]], None]  # complaint id, evidence -> resolved-awaiting-confirmation


def _audit(session: Session, actor: str, action: str, row: RemediationRunRow, detail: str) -> None:
    session.add(AuditRow(actor=actor, action=action, subject=f"remediation_run:{row.id}", detail=detail[:2000]))


# --- metrics ---------------------------------------------------------------------------------------------------

# Upper bounds (seconds) of the run-duration histogram: from a quick SSH restart to a long snapshot rollback.
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


@dataclass(frozen=True, slots=True)
class DurationHistogram:
    """One playbook's finished runs: cumulative counts per bound of ``DURATION_BUCKETS``, count and sum."""

    buckets: tuple[int, ...]
    count: int
    sum_seconds: float


@dataclass(frozen=True, slots=True)
class MetricCounts:
    outcomes: dict[tuple[str, str], int]  # (playbook, outcome) -> runs
    running: dict[str, int]  # playbook -> runs in progress
    durations: dict[str, DurationHistogram]  # playbook -> claim-to-outcome histogram of finished runs


def duration_micros(dialect: str) -> ColumnElement[int]:
    """A run's claim-to-outcome time in whole microseconds, computed by the database; negative clamps to 0.

    Integer microseconds keep the bucket comparisons and the sum exact on both engines: PostgreSQL's EXTRACT(EPOCH)
    of an interval is an exact numeric. SQLite has no interval type and its date functions keep only milliseconds,
    so the whole seconds come from strftime('%s') of the stored text's first 19 characters and the microseconds
    from characters 21-26 (SQLAlchemy stores "YYYY-MM-DD HH:MM:SS.ffffff"; a value without them counts 0).
    """
    started, finished = RemediationRunRow.started_at, RemediationRunRow.finished_at
    if dialect == "postgresql":
        return func.greatest(cast(extract("epoch", finished - started) * 1_000_000, BigInteger), 0)
    if dialect == "sqlite":
        def seconds(column: Any) -> ColumnElement[int]:
            # Only "YYYY-MM-DD HH:MM:SS": SQLite rounds the fraction to milliseconds, so 09.9999 would read as 10.
            return cast(func.strftime("%s", func.substr(column, 1, 19)), BigInteger)

        def fraction(column: Any) -> ColumnElement[int]:
            return cast(func.substr(column, 21, 6), BigInteger)

        micros = (seconds(finished) - seconds(started)) * 1_000_000 + fraction(finished) - fraction(started)
        return func.max(micros, 0)  # with two arguments SQLite's max() is the scalar one, like GREATEST
    raise ConfigError(f"no run-duration expression for the {dialect} database")


def metric_counts(sessions: Callable[[], Session]) -> MetricCounts:
    """What /metrics shows, read from the journal so every worker process is counted, whoever serves the scrape.

    Two GROUP BY queries: a scrape reads O(playbooks x outcomes) rows whatever the number of runs in the journal.
    One scan of the runs gives both the outcome counters and the duration histogram: its cumulative buckets are
    ``SUM(CASE WHEN duration <= bound ...)`` per (playbook, outcome), added up per playbook here.
    """
    run = RemediationRunRow
    with sessions() as session:
        finished = and_(run.started_at.is_not(None), run.finished_at.is_not(None))
        # OFFSET 0 fences the subquery on both engines (SQLite does not flatten a subquery with an OFFSET, for
        # PostgreSQL it is the usual optimisation fence): the duration is computed once per run, not once per
        # aggregate below. Without it SQLite re-parses the dates for each of the eleven sums (about 8x slower).
        scan = (select(run.playbook.label("playbook"), run.outcome.label("outcome"),
                       case((finished, duration_micros(session.get_bind().dialect.name))).label("us"))
                .where(or_(run.outcome.is_not(None), finished)).offset(0).subquery())
        # The bounds as integer microseconds: exact, and the same as the float comparison ``seconds <= bound``.
        per_bucket = [func.sum(case((scan.c.us <= int(bound * 1_000_000), 1), else_=0)) for bound in DURATION_BUCKETS]
        outcomes: dict[tuple[str, str], int] = {}
        sums: dict[str, tuple[int, int, list[int]]] = {}  # playbook -> (count, microseconds, cumulative buckets)
        for playbook, outcome, runs, count, total, *cumulative in session.execute(
                select(scan.c.playbook, scan.c.outcome, func.count(), func.count(scan.c.us), func.sum(scan.c.us),
                       *per_bucket).group_by(scan.c.playbook, scan.c.outcome)):
            if outcome is not None:
                outcomes[(playbook, str(outcome))] = int(runs)
            if count:
                # int(): PostgreSQL sums BIGINT as NUMERIC.
                n, us, buckets = sums.get(playbook, (0, 0, [0] * len(DURATION_BUCKETS)))
                sums[playbook] = (n + int(count), us + int(total),
                                  [a + int(b) for a, b in zip(buckets, cumulative, strict=True)])
        running = {p: int(n) for p, n in session.execute(
            select(run.playbook, func.count())
            .where(run.state.in_([rem.State.RUNNING.value, rem.State.INTERRUPTED.value]))
            .group_by(run.playbook))}
    # One division of the exact integer total: the sum is correctly rounded (adding floats run by run is not).
    durations = {p: DurationHistogram(tuple(buckets), n, us / 1_000_000) for p, (n, us, buckets) in sums.items()}
    return MetricCounts(outcomes, running, durations)
