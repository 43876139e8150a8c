"""The remediation part of an engineer's or supervisor's home: runs in progress, approvals waiting for me."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from pdn_ops.runs import model as rem
from pdn_ops.runs.parts import runs_of
from pdn_ops.runs.tables import RemediationRunRow

SHOWN = 10


def panel(request: Request, session: Session, user: Any) -> tuple[str, dict[str, Any]] | None:
    if not user.is_staff:
        return None
    policy = runs_of(request.app.state.runtime).policy
    active = list(session.scalars(select(RemediationRunRow).where(
        RemediationRunRow.state.in_([str(s) for s in rem.ACTIVE_STATES])).order_by(RemediationRunRow.id.desc())
        .limit(50)))
    waiting = [r for r in active if r.state == rem.State.AWAITING_APPROVAL and rem.may_approve(
        user.username, requested_by=r.requested_by, approvers=[a.get("by", "") for a in r.approvals], policy=policy)]
    moving = [r for r in active if r.state != rem.State.AWAITING_APPROVAL]
    return "home_runs.html", {"waiting": waiting[:SHOWN], "moving": moving[:SHOWN]}
