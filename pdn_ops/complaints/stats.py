"""Counts of open complaints by OPD and state, and by OPD and SLA level, for the metrics collector."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, sessionmaker

from pdn_ops.complaints.model import OPEN_STATES, State
from pdn_ops.complaints.tables import ComplaintRow
from pdn_ops.core.db.tables import OpdRow, utcnow


@dataclass(frozen=True, slots=True)
class ComplaintSnapshot:
    by_state: list[tuple[str, str, int]]  # (opd code, state, count)
    by_level: list[tuple[str, str, int]]  # (opd code, ok | at_risk_50 | at_risk_80 | breached, count)


def snapshot(session: Session, now: datetime) -> ComplaintSnapshot:
    open_states = [str(s) for s in OPEN_STATES]
    by_state = session.execute(
        select(OpdRow.code, ComplaintRow.state, func.count()).join(OpdRow, OpdRow.id == ComplaintRow.opd_id)
        .where(ComplaintRow.state.in_(open_states)).group_by(OpdRow.code, ComplaintRow.state)).all()
    # Running complaints: compare now with the stored instants. Paused (returned) ones: the share used so far.
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
    # A fixed complaint's clock has stopped: it is no longer at risk.
    sla_states = [s for s in open_states if s != State.FIXED]
    by_level = session.execute(
        select(OpdRow.code, level, func.count()).join(OpdRow, OpdRow.id == ComplaintRow.opd_id)
        .where(ComplaintRow.state.in_(sla_states)).group_by(OpdRow.code, level)).all()
    return ComplaintSnapshot([(c, s, int(n)) for c, s, n in by_state], [(c, lv, int(n)) for c, lv, n in by_level])


def reader(sessions: sessionmaker[Session], now: Callable[[], datetime] = utcnow) -> Callable[[], ComplaintSnapshot]:
    """A zero-argument function for the collector: one short read-only session per scrape."""
    def read() -> ComplaintSnapshot:
        with sessions() as session:
            return snapshot(session, now())
    return read
