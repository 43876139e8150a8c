"""Prometheus view of complaints: open complaints by state and OPD, SLA at-risk and breached gauges.

A custom collector that reads the current state at scrape time (bounded labels: state names and OPD codes, never
user text). The composition root registers it with /metrics (``HealthParts.area_collectors``) over
``pdn_ops.complaints.stats.reader(sessions)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pdn_ops.complaints.sla import SlaStatus
from pdn_ops.complaints.stats import ComplaintSnapshot
from pdn_ops.core.metric_names import gauge

SLA_LEVELS = frozenset({str(SlaStatus.AT_RISK_50), str(SlaStatus.AT_RISK_80), str(SlaStatus.BREACHED)})


class ComplaintCollector(Collector):
    def __init__(self, read: Callable[[], ComplaintSnapshot]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        open_gauge, sla_gauge = gauge("pdn_complaints_open"), gauge("pdn_complaints_sla")
        found = self._read()
        for code, state, n in found.by_state:
            open_gauge.add_metric([code, state], n)
        for code, level, n in found.by_level:
            if level in SLA_LEVELS:
                sla_gauge.add_metric([code, level], n)
        yield open_gauge
        yield sla_gauge
