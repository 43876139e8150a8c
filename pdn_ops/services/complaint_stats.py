"""Counts of open complaints for /metrics: by OPD and state, and by OPD and SLA level."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, sessionmaker

from pdn_ops.db.complaint_tables import ComplaintRow
from pdn_ops.db.tables import OpdRow, utcnow
from pdn_ops.domain.complaints import OPEN_STATES

Counts = tuple[list[tuple[str, str, int]], list[tuple[str, str, int]]]


def counts(session: Session, now: datetime) -> Counts:
    open_states = [str(s) for s in OPEN_STATES]
    by_state = session.execute(
        select(OpdRow.code, ComplaintRow.state, func.count()).join(OpdRow, OpdRow.id == ComplaintRow.opd_id)
        .where(ComplaintRow.state.in_(open_states)).group_by(OpdRow.code, ComplaintRow.state)).all()
    # Running complaints: compare now with the stored instants. Paused (returned) ones: the elapsed share.
    paused = ComplaintRow.sla_running_since.is_(None)
    share = ComplaintRow.sla_elapsed / ComplaintRow.sla_budget
    level = case(
        (ComplaintRow.sla_due_at <= now, "breached"),
        (ComplaintRow.sla_risk80_at <= now, "at_risk_80"),
        (ComplaintRow.sla_risk50_at <= now, "at_risk_50"),
        (paused & (share >= 1.0), "breached"),
        (paused & (share >= 0.8), "at_risk_80"),
        (paused & (share >= 0.5), "at_risk_50"),
        else_="ok",
    )
    sla_states = [s for s in open_states if s != "fixed"]
    by_level = session.execute(
        select(OpdRow.code, level, func.count()).join(OpdRow, OpdRow.id == ComplaintRow.opd_id)
        .where(ComplaintRow.state.in_(sla_states)).group_by(OpdRow.code, level)).all()
    return ([(c, s, int(n)) for c, s, n in by_state], [(c, lv, int(n)) for c, lv, n in by_level])



def reader(sessions: sessionmaker[Session], now: Callable[[], datetime] = utcnow) -> Callable[[], Counts]:
    def read() -> Counts:
        with sessions() as session:
            return counts(session, now())

    return read
