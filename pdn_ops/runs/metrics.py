"""Remediation series for /metrics, aggregated by the database from the run journal at scrape time (every worker
process counted; a scrape reads a few rows per playbook however long the journal grows).

    pdn_remediation_runs_total{playbook,outcome}         counter: finished runs by outcome
    pdn_remediation_running{playbook}                    gauge: runs in progress (or being reconciled)
    pdn_remediation_run_duration_seconds{playbook}       histogram: claim to outcome

Labels are bounded: playbook names come from the registry, outcomes from the domain's states; no user text.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from pdn_ops.core.metric_names import counter, gauge, histogram
from pdn_ops.runs.service import DURATION_BUCKETS as BUCKETS
from pdn_ops.runs.service import metric_counts


class RemediationCollector(Collector):
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def describe(self) -> Iterable[Metric]:
        return ()  # nothing at registration time: that would query the database

    def collect(self) -> Iterator[Metric]:
        counts = metric_counts(self._sessions)
        runs = counter("pdn_remediation_runs")
        for (playbook, outcome), value in sorted(counts.outcomes.items()):
            runs.add_metric([playbook, outcome], value)
        running = gauge("pdn_remediation_running")
        for playbook, value in sorted(counts.running.items()):
            running.add_metric([playbook], value)
        duration = histogram("pdn_remediation_run_duration_seconds")
        for playbook, observed in sorted(counts.durations.items()):
            buckets = [(str(b), float(n)) for b, n in zip(BUCKETS, observed.buckets, strict=True)]
            buckets.append(("+Inf", float(observed.count)))
            duration.add_metric([playbook], buckets, observed.sum_seconds)
        yield from (runs, running, duration)
