"""The runs linked to a complaint, as facts for its timeline (``pdn_ops.complaints.timeline.RunFact``).

The complaint feature's ``LinkedRuns`` seam: one query, however many runs and steps (an outer join, only the
columns the timeline shows: a run's evidence can be large).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pdn_ops.complaints import RunFact, StepFact
from pdn_ops.runs import model as rem
from pdn_ops.runs.messages import run_facts, summary_message
from pdn_ops.runs.tables import RemediationRunRow, RemediationStepRow


def linked_runs(session: Session, complaint_id: int) -> list[RunFact]:
    run, step = RemediationRunRow, RemediationStepRow
    runs: dict[int, RunFact] = {}
    steps: dict[int, list[StepFact]] = {}
    facts: dict[int, list[Any]] = {}
    ends: dict[int, tuple[str | None, str]] = {}
    for r in session.execute(
            select(run.id, run.playbook, run.params, run.requested_by, run.trigger, run.approvals_needed, run.plan,
                   run.claimed_by, run.attempt, run.created_at, run.started_at, run.state.label("run_state"),
                   run.closure, run.finished_at, run.evidence, run.approvals, step.position, step.name,
                   step.intent, step.state.label("step_state"), step.upid, step.stdout, step.stderr, step.detail,
                   step.reconciled, step.intent_at, step.finished_at.label("step_finished_at"),
                   step.facts, run.outcome, run.summary.label("run_summary"))
            .outerjoin(step, step.run_id == run.id).where(run.complaint_id == complaint_id)
            .order_by(run.id, step.position)):
        if r.id not in runs:
            runs[r.id] = RunFact(
                id=r.id, playbook=r.playbook, params=r.params or {}, requested_by=r.requested_by, trigger=r.trigger,
                approvals_needed=r.approvals_needed, plan=r.plan or [], claimed_by=r.claimed_by, attempt=r.attempt,
                created_at=r.created_at, started_at=r.started_at, state=r.run_state, closure=r.closure,
                finished_at=r.finished_at, evidence=r.evidence or {},
                approvers=tuple(a.get("by", "") for a in (r.approvals or [])))
            steps[r.id] = []
            facts[r.id] = []
            ends[r.id] = (r.outcome, r.run_summary or "")
        if r.position is not None:
            facts[r.id].append(r)
            intent_by, result_by = rem.step_workers(r.facts)
            steps[r.id].append(StepFact(
                position=r.position, name=r.name, intent=r.intent, state=r.step_state, upid=r.upid, stdout=r.stdout,
                stderr=r.stderr, detail=r.detail, reconciled=r.reconciled, intent_at=r.intent_at,
                finished_at=r.step_finished_at, intent_by=intent_by, result_by=result_by))
    return [replace(fact, steps=tuple(steps[fact.id]), summary=summary_message(
        playbook=fact.playbook, state=fact.state, outcome=ends[fact.id][0], facts=run_facts(facts[fact.id]),
        stored=ends[fact.id][1])) for fact in runs.values()]
