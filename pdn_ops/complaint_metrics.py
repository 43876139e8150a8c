"""Prometheus view of complaints: open complaints by state and OPD, SLA at-risk and breached gauges.

A custom collector reading the current state at scrape time (bounded labels: state names and OPD codes, never
user text). The lead registers it in ``pdn_ops.metrics``::

    registry.register(ComplaintCollector(ctx.sessions, now=utcnow))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, sessionmaker

from pdn_ops.db.complaint_tables import ComplaintRow
from pdn_ops.db.tables import OpdRow, utcnow
from pdn_ops.domain.complaints import OPEN_STATES
from pdn_ops.domain.sla import SlaStatus

SLA_LEVELS = (SlaStatus.AT_RISK_50, SlaStatus.AT_RISK_80, SlaStatus.BREACHED)


def _snapshot(session: Session, now: datetime) -> tuple[list[tuple[str, str, int]], list[tuple[str, str, int]]]:
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


class ComplaintCollector(Collector):
    def __init__(self, sessions: sessionmaker[Session], now: Callable[[], datetime] = utcnow) -> None:
        self._sessions = sessions
        self._now = now

    def collect(self) -> Iterator[GaugeMetricFamily]:
        open_gauge = GaugeMetricFamily("pdn_complaints_open", "Open complaints by state and OPD",
                                       labels=["opd", "state"])
        sla_gauge = GaugeMetricFamily("pdn_complaints_sla", "Open complaints by SLA level (at_risk_50, at_risk_80, "
                                      "breached) and OPD", labels=["opd", "level"])
        with self._sessions() as session:
            by_state, by_level = _snapshot(session, self._now())
        for code, state, n in by_state:
            open_gauge.add_metric([code, state], n)
        for code, lv, n in by_level:
            if lv in {str(s) for s in SLA_LEVELS}:
                sla_gauge.add_metric([code, lv], n)
        yield open_gauge
        yield sla_gauge
