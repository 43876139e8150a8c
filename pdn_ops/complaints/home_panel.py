"""The complaints part of each home: the queue with SLA bars and "assigned to me" for engineers, SLA compliance
and the load per engineer for the supervisor, and for an OPD its complaints and what waits for it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import Request
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pdn_ops import accounts
from pdn_ops.complaints import queries as complaint_queries
from pdn_ops.complaints import reports as complaint_reports
from pdn_ops.complaints import service as complaints
from pdn_ops.complaints.model import RUNNING_STATES, State
from pdn_ops.complaints.parts import ComplaintsParts
from pdn_ops.complaints.tables import ComplaintRow
from pdn_ops.core import fleet
from pdn_ops.core.db.tables import utcnow
from pdn_ops.web import charts

SHOWN = 5


def _rows(session: Session, rows: list[ComplaintRow], now: datetime, policy: Any) -> dict[str, Any]:
    return {"rows": rows, "labels": {r.id: complaints.asset_label(session, r) for r in rows},
            "opd_names": fleet.opd_names(session, {r.opd_id for r in rows}),
            "sla": {r.id: complaints.sla_view(r, now, policy) for r in rows}}


def panel(request: Request, session: Session, user: Any) -> tuple[str, dict[str, Any]] | None:
    parts = request.app.state.runtime.complaints
    assert isinstance(parts, ComplaintsParts)
    policy = parts.config.policy
    now = utcnow()
    if user.is_staff:
        queue = complaint_queries.queue(session, user, limit=SHOWN).rows
        mine = complaint_queries.queue(session, user, limit=SHOWN, assignee_id=user.user_id).rows
        context: dict[str, Any] = {"queue": _rows(session, queue, now, policy),
                                   "mine": _rows(session, mine, now, policy), "charts": charts}
        if user.role == accounts.Role.SUPERVISOR:
            month = now.astimezone(policy.tz).strftime("%Y-%m")
            context["report"] = complaint_reports.monthly(session, user, month=month, tz=policy.tz, policy=policy,
                                                          now=now)
            load: dict[int | None, int] = {uid: int(n) for uid, n in session.execute(
                select(ComplaintRow.assignee_id, func.count()).where(
                    ComplaintRow.state.in_([str(s) for s in RUNNING_STATES]))
                .group_by(ComplaintRow.assignee_id))}
            names = dict(accounts.staff_members(session))
            context["load"] = [(names.get(uid, "–") if uid is not None else None, n) for uid, n in
                               sorted(load.items(), key=lambda kv: -kv[1])]
        return "home_complaints.html", context
    waiting = []
    if user.role == accounts.Role.OPD_ADMIN:
        waiting += [("returned", r) for r in complaint_queries.listing(session, user, state=State.RETURNED,
                                                                        limit=SHOWN).rows]
    waiting += [("fixed", r) for r in complaint_queries.listing(session, user, state=State.FIXED, limit=SHOWN).rows]
    recent = complaint_queries.listing(session, user, limit=SHOWN).rows
    return "home_complaints.html", {"waiting": waiting, "recent": _rows(session, recent, now, policy)}
