"""Prometheus view of complaints: open complaints by state and OPD, SLA at-risk and breached gauges.

A custom collector over a reader callable (``pdn_ops.services.complaint_stats.reader``) that runs two grouped
counts on the open complaints at scrape time; bounded labels: state names and OPD codes, never user text.
Registered in ``pdn_ops.metrics.AREA_COLLECTORS``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pdn_ops.domain.sla import SlaStatus

SLA_LEVELS = (SlaStatus.AT_RISK_50, SlaStatus.AT_RISK_80, SlaStatus.BREACHED)


class ComplaintCollector(Collector):
    def __init__(self, read: Callable[[], tuple[list[tuple[str, str, int]], list[tuple[str, str, int]]]]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        open_gauge = GaugeMetricFamily("pdn_complaints_open", "Open complaints by state and OPD",
                                       labels=["opd", "state"])
        sla_gauge = GaugeMetricFamily("pdn_complaints_sla", "Open complaints by SLA level (at_risk_50, at_risk_80, "
                                      "breached) and OPD", labels=["opd", "level"])
        by_state, by_level = self._read()
        for code, state, n in by_state:
            open_gauge.add_metric([code, state], n)
        for code, lv, n in by_level:
            if lv in {str(s) for s in SLA_LEVELS}:
                sla_gauge.add_metric([code, lv], n)
        yield open_gauge
        yield sla_gauge
