"""The orchestrator: runs a playbook's steps against a journal, resuming safely after a crash.

For each step, in order:
- a step the journal already finished is not run again; its facts are restored;
- a step whose intent was journaled but has no result was cut off by a crash: it is *reconciled*. If it is proved
  not to have happened it runs now; if it happened, its reconciled result is journaled; if nobody can tell, the
  run ends ``unknown`` and a person decides. A step is never repeated blindly;
- otherwise: skip it if its condition does not hold, else journal the intent, act, journal the result.
The journal is the persistence seam (the worker implements it over the database); this module has no database.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pdn_ops.runs.model import Outcome, StepStatus
from remediation.playbooks.base import Playbook, RunContext, Step, StepRecord


class Journal(Protocol):
    def records(self) -> list[StepRecord]: ...

    def intent(self, position: int, step: Step, text: str) -> None: ...

    def upid(self, position: int, node: str, upid: str) -> None: ...

    def result(self, position: int, outcome: Outcome, facts: dict[str, Any], *, reconciled: bool = False) -> None:
        ...


@dataclass(frozen=True, slots=True)
class RunResult:
    status: StepStatus  # succeeded | failed | unknown
    summary: str
    facts: dict[str, Any]
    security_event: bool = False


Boundary = Callable[[str], None]


def _noop(_label: str) -> None:
    return None


def plan(playbook: Playbook, ctx: RunContext) -> list[str]:
    """The dry run: every step with its exact API call or command (``{node}`` until the VM is located)."""
    lines = []
    for step in playbook.steps(ctx.params):
        marker = "act" if step.side_effect else "read"
        lines.append(f"[{marker}] {step.name}: {step.describe(ctx)}")
    return lines


def run(playbook: Playbook, ctx: RunContext, journal: Journal, boundary: Boundary = _noop) -> RunResult:
    done = {r.position: r for r in journal.records()}
    journaled_upids = {r.upid for r in done.values() if r.upid}
    for position, step in enumerate(playbook.steps(ctx.params)):
        record = done.get(position)
        if record is not None and record.state != StepStatus.RUNNING:
            ctx.facts.update(record.facts)
            if record.state in (StepStatus.SUCCEEDED, StepStatus.SKIPPED):
                continue
            return _finish(playbook, ctx, StepStatus(record.state))
        if record is not None:  # intent without result: the worker died inside this step
            outcome = step.reconcile(ctx, record, journaled_upids - {record.upid})
            if outcome.status is not StepStatus.NOT_STARTED:
                journal.result(position, outcome, {}, reconciled=True)
                boundary(_label(step, "reconciled"))
                if not outcome.ok:
                    return _finish(playbook, ctx, outcome.status, outcome.security_event)
                continue
        elif not step.applies(ctx):
            journal.intent(position, step, step.describe(ctx))
            journal.result(position, Outcome(StepStatus.SKIPPED, detail="condition not met"), {})
            continue
        else:
            journal.intent(position, step, step.describe(ctx))
        boundary(_label(step, "intent"))

        def on_upid(upid: str, position: int = position, step: Step = step) -> None:
            boundary(_label(step, "called"))  # the API answered; the UPID is not journaled yet
            journal.upid(position, ctx.node, upid)
            journaled_upids.add(upid)
            boundary(_label(step, "upid"))

        outcome, facts = step.execute(ctx, on_upid)
        if outcome.status is StepStatus.UNKNOWN and step.side_effect and step.kind == "api":
            # A 500 or a timeout before the UPID arrived: ask the node's task list what happened.
            current = StepRecord(position, step.name, StepStatus.RUNNING, outcome.upid, _intent_at(journal, position),
                                 {})
            resolved = step.reconcile(ctx, current, journaled_upids - {outcome.upid})
            if resolved.status is StepStatus.NOT_STARTED:
                # A server that answered 5xx refused the call; after a timeout the task may still appear later,
                # so without a task in the list we cannot say it did not happen.
                verdict = StepStatus.FAILED if outcome.exit_code is not None else StepStatus.UNKNOWN
                resolved = Outcome(verdict, detail=f"{outcome.detail}; the node shows no such task")
            outcome = Outcome(resolved.status, stdout=resolved.stdout, upid=resolved.upid,
                              exit_code=resolved.exit_code, detail=f"{outcome.detail}; {resolved.detail}")
        ctx.facts.update(facts)
        journal.result(position, outcome, facts)
        boundary(_label(step, "result"))
        if not outcome.ok:
            return _finish(playbook, ctx, outcome.status, outcome.security_event, outcome.detail)
    return _finish(playbook, ctx, StepStatus.SUCCEEDED)


def _label(step: Step, point: str) -> str:
    """``act:start:intent``: boundaries of side-effecting steps start with ``act``, of reads with ``read``."""
    return f"{'act' if step.side_effect else 'read'}:{step.name}:{point}"


def _intent_at(journal: Journal, position: int) -> Any:
    return next(r.intent_at for r in journal.records() if r.position == position)


def _finish(playbook: Playbook, ctx: RunContext, status: StepStatus, security: bool = False,
            detail: str = "") -> RunResult:
    final = status if status in (StepStatus.SUCCEEDED, StepStatus.FAILED) else StepStatus.UNKNOWN
    summary = playbook.summary(ctx.facts, final)
    if detail and final is not StepStatus.SUCCEEDED:
        summary = f"{summary} ({detail})"
    return RunResult(final, summary, dict(ctx.facts), security)
