"""A complaint's timeline: its own audit entries and every remediation run linked to it, for two audiences.

The service reads the facts (audit rows, runs, steps: two queries) and this module, pure, orders them into
entries with who and when:

    remediation.requested      an engineer (or the policy engine) asked for a playbook, with its parameters
    remediation.plan           the dry run's plan the requester saw: every API call and command
    remediation.approved       engineer n of the approvals needed (the first, the second)
    remediation.cancelled      withdrawn before it started
    remediation.started        a worker claimed it (that worker, also when another one finished the run)
    remediation.step_intent    a step's exact call or command, written before acting, by the worker that wrote it
    remediation.step_result    succeeded | failed | unknown | skipped, the UPID, a capped output summary,
                               whether it was reconciled after a crash, by the worker that wrote it
    remediation.interrupted    the worker died; another one reconciles the cut-off step (never repeated blindly)
    remediation.succeeded | .failed | .unknown    the run's outcome
    remediation.confirmed | .ineffective          health-confirmed closure, or the checks did not pass in time

**What an OPD user sees, and why.** Staff see all of the above, with the run page linked. An OPD user sees that
work happened and how it ended: requested (which playbook, by whom), approved, started, interrupted, the outcome
and the closure, each as a sentence of the catalogue in their language. They do not see the plan, the steps'
intents, UPIDs, command output, parameters, worker names, security events or the English text pdn-ops writes into
details, because:

- it is internal topology: node and host names (UPIDs start ``UPID:<node>:``, worker names are ``host:pid``),
  cluster/VM keys, unit names and file paths in output. It helps nobody at an OPD and helps whoever misuses an OPD
  account; the same holds for the text of Diskominfo's work notes, which were already staff-only on the page;
- it is English machine text and tool output, while the OPD reads Bahasa Indonesia: a translated sentence says
  more to them than ``restart VM: succeeded; graceful shutdown; final state running``;
- the run page is staff-only: a link would be a dead end (404) for them.
Engineers' names stay visible to the OPD, as on every other entry of the complaint's timeline.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pdn_ops.core.i18n.message import Message

SYSTEM_ACTOR = "pdn-ops"  # how the OPD sees any machine actor (workers, the policy engine, the closure job)
OUTPUT_SUMMARY_CHARS = 300
RUN_SUBJECT = "remediation_run:"
COMPLAINT_SUBJECT = "complaint:"
# Parameters are validated against each playbook's schema and hold no secret today; a future parameter whose name
# looks like one is masked anyway, because a timeline is read far more widely than the run page.
_SECRET_NAME = re.compile(r"pass|secret|token|credential|private|key", re.IGNORECASE)
# Written by workers and the closure job: the OPD sees them with the system as actor and without the English detail.
_MACHINE_EVENTS = frozenset(f"remediation.{e}" for e in ("interrupted", "succeeded", "failed", "unknown", "confirmed",
                                                           "ineffective"))
_OUTCOMES = frozenset(f"remediation.{e}" for e in ("succeeded", "failed", "unknown"))


class Audience(StrEnum):
    STAFF = "staff"
    OPD = "opd"


@dataclass(frozen=True, slots=True)
class AuditFact:
    at: datetime
    actor: str
    action: str
    subject: str
    detail: str


@dataclass(frozen=True, slots=True)
class StepFact:
    position: int
    name: str
    intent: str
    state: str
    upid: str | None
    stdout: str
    stderr: str
    detail: str
    reconciled: bool
    intent_at: datetime
    finished_at: datetime | None
    intent_by: str | None = None  # the worker that wrote the intent (None: not recorded, older runs)
    result_by: str | None = None  # the worker that wrote the result; another one after a takeover


@dataclass(frozen=True, slots=True)
class RunFact:
    id: int
    playbook: str
    params: Mapping[str, Any]
    requested_by: str
    trigger: str
    approvals_needed: int
    plan: Sequence[str]
    claimed_by: str | None
    attempt: int
    created_at: datetime
    started_at: datetime | None
    steps: Sequence[StepFact] = ()
    # For the resolution report: how the run ended and the health evidence that closed it.
    state: str = ""
    closure: str | None = None
    finished_at: datetime | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    approvers: Sequence[str] = ()
    # How it ended as a sentence of the catalogue, not yet worded (it names nodes and tasks: staff only).
    summary: Message | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of the timeline. Fields an audience may not see are None (or empty) in its entries."""

    at: datetime
    actor: str
    action: str
    detail: str = ""
    run_id: int | None = None  # staff only: the run page to link
    playbook: str | None = None
    automatic: bool = False  # requested by a rule of the policy engine, not an engineer
    step: int | None = None  # 1-based
    step_name: str | None = None
    state: str | None = None  # a step's result
    intent: str | None = None
    upid: str | None = None
    output: str | None = None
    reconciled: bool = False
    approval: int | None = None  # this approval is the n-th ...
    approvals_needed: int | None = None  # ... of this many
    plan: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    outcome: Message | None = None  # staff only: the run's summary on its outcome, in place of the English detail


def output_summary(stdout: str, stderr: str, limit: int = OUTPUT_SUMMARY_CHARS) -> str:
    """The tail of a step's output (the cause of a failure is usually at the end), at most ``limit`` characters."""
    text = "\n".join(part.strip() for part in (stdout, stderr) if part.strip())
    return text if len(text) <= limit else "…" + text[-(limit - 1):]


def shown_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as requested, a secret-looking name masked at any depth."""
    return {k: "***" if _SECRET_NAME.search(k) else shown_params(v) if isinstance(v, Mapping) else v
            for k, v in params.items()}


def run_id_of(subject: str) -> int | None:
    raw = subject.removeprefix(RUN_SUBJECT)
    return int(raw) if subject.startswith(RUN_SUBJECT) and raw.isdigit() else None


def build(audits: Iterable[AuditFact], runs: Sequence[RunFact], audience: Audience) -> list[Entry]:
    """The complaint's own entries and its runs', oldest first; ties keep the order in which things happen."""
    staff = audience is Audience.STAFF
    by_run: dict[int, list[AuditFact]] = {r.id: [] for r in runs}
    entries: list[Entry] = []
    for audit in audits:
        run_id = run_id_of(audit.subject)
        if run_id is not None:
            if run_id in by_run:
                by_run[run_id].append(audit)
        else:
            entries.extend(_complaint_entry(audit, staff))
    for run in runs:
        entries.extend(_run_entries(run, by_run[run.id], staff))
    # sorted() is stable: entries of the same instant stay in the order they were built in (requested, then plan).
    return sorted(entries, key=lambda e: e.at)


def _complaint_entry(audit: AuditFact, staff: bool) -> list[Entry]:
    if staff:
        return [Entry(audit.at, audit.actor, audit.action, audit.detail)]
    if audit.action == "remediation.complaint_not_updated":
        return []  # the closure's note to the engineers that it left the complaint alone
    # Details are what a person wrote for the OPD (a return or reopen reason, a fix note); work notes are staff
    # working papers, and what pdn-ops itself writes (the closure's fix reason) is English machine text.
    person = audit.actor not in ("system", SYSTEM_ACTOR)
    known = audit.action.startswith("complaint.") and audit.action != "complaint.note"
    detail = audit.detail if person and known else ""
    return [Entry(audit.at, audit.actor, audit.action, detail)]


def _run_entries(run: RunFact, audits: list[AuditFact], staff: bool) -> list[Entry]:
    automatic = run.trigger != "manual"
    # The run row names only its last worker: right for a run one worker did, not after a takeover. Workers record
    # who started a run (an audit entry) and who wrote each step; runs older than that fall back to this.
    machine = run.claimed_by if run.attempt <= 1 and run.claimed_by else SYSTEM_ACTOR

    def who(actor: str, *, person: bool) -> str:
        return actor if staff or person else SYSTEM_ACTOR

    def entry(at: datetime, actor: str, action: str, **extra: Any) -> Entry:
        return Entry(at, actor, action, run_id=run.id if staff else None, playbook=run.playbook, **extra)

    requested = next((a for a in audits if a.action == "remediation.requested"), None)
    at = requested.at if requested is not None else run.created_at
    out = [entry(at, who(run.requested_by, person=not automatic), "remediation.requested", automatic=automatic,
                 params=shown_params(run.params) if staff else {})]
    if staff and run.plan:
        out.append(entry(at, run.requested_by, "remediation.plan", plan=tuple(run.plan)))
    approvals = 0
    started = False
    for audit in audits:
        if audit.action == "remediation.started":
            started = True
            out.append(entry(audit.at, who(audit.actor, person=False), audit.action))
        elif audit.action == "remediation.approved":
            approvals += 1
            out.append(entry(audit.at, audit.actor, audit.action, approval=approvals,
                             approvals_needed=run.approvals_needed))
        elif audit.action == "remediation.cancelled":
            out.append(entry(audit.at, audit.actor, audit.action))
        elif audit.action in _OUTCOMES and staff and run.summary is not None:
            out.append(entry(audit.at, audit.actor, audit.action, outcome=run.summary))
        elif audit.action in _MACHINE_EVENTS:
            out.append(entry(audit.at, who(audit.actor, person=False), audit.action,
                             detail=audit.detail if staff else ""))
        elif staff and audit.action != "remediation.requested":
            out.append(entry(audit.at, audit.actor, audit.action, detail=audit.detail))  # e.g. a changed host key
    if run.started_at is not None and not started:
        out.append(entry(run.started_at, who(machine, person=False), "remediation.started"))
    if staff:
        for step in run.steps:
            out.extend(_step_entries(step, machine, entry))
    return out


def _step_entries(step: StepFact, actor: str, entry: Callable[..., Entry]) -> list[Entry]:
    common = dict(step=step.position + 1, step_name=step.name, intent=step.intent)
    out = []
    if step.state != "skipped":
        out.append(entry(step.intent_at, step.intent_by or actor, "remediation.step_intent", **common))
    if step.finished_at is not None:
        out.append(entry(step.finished_at, step.result_by or actor, "remediation.step_result", state=step.state,
                         upid=step.upid,
                         output=output_summary(step.stdout, step.stderr), detail=step.detail,
                         reconciled=step.reconciled, **common))
    return out
