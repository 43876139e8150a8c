"""/metrics' remediation series come from SQL aggregates, the same as the per-run computation they replace.

The per-run code path (every finished run's times read on each scrape, the histogram built in Python) is kept in
``bench.remediation_metrics`` as the benchmark's peer; here it is the oracle, on a seeded journal on both engines.
"""

from __future__ import annotations

import subprocess
from fractions import Fraction
from typing import Any

import pytest
from prometheus_client import generate_latest
from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

from bench.remediation_metrics import PerRunCollector, per_run_counts, registry_of, seed, sql_registry
from pdn_ops.runs.service import DURATION_BUCKETS, metric_counts
from tests.support import require_binary


def dyadic(i: int) -> int:
    """Durations in 1/64 s (exact as floats, so the old float sum is exact too), bucket bounds exactly, and
    finishes before the start (clock skew between hosts: counted as 0 s)."""
    if i % 11 == 0:
        return int(DURATION_BUCKETS[i % len(DURATION_BUCKETS)] * 1_000_000)
    return ((i * 7919) % 160_000 - 2_000) * 15_625


def ragged(i: int) -> int:
    """Any microsecond, with one microsecond either side of every bound and fractions near a whole second."""
    if i % 7 == 0:
        return int(DURATION_BUCKETS[i % len(DURATION_BUCKETS)] * 1_000_000) + (i % 3) - 1
    return (i * 104_729_993) % 2_000_000_000 - 500_000


def test_sql_histogram_renders_byte_for_byte_what_the_per_run_computation_rendered(
        sessions: sessionmaker[Session]) -> None:
    seed(sessions, 2000, micros=dyadic, batch=500)
    ours = generate_latest(sql_registry(sessions)).decode()
    peer = generate_latest(registry_of(PerRunCollector(sessions))).decode()
    assert ours == peer
    assert 'pdn_remediation_run_duration_seconds_bucket{le="5.0",playbook="restart_vm"}' in ours
    assert 'pdn_remediation_running{playbook="resize_vm"} 2.0' in ours
    check = subprocess.run([require_binary("promtool", "/usr/bin/promtool"), "check", "metrics"], input=ours,
                           text=True, capture_output=True, timeout=60, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def test_any_microsecond_lands_in_the_same_bucket_and_the_sum_is_exact(sessions: sessionmaker[Session]) -> None:
    seed(sessions, 1500, micros=ragged, batch=500)
    outcomes, running, durations = per_run_counts(sessions)
    counts = metric_counts(sessions)
    assert counts.outcomes == outcomes and counts.running == running
    assert counts.durations.keys() == durations.keys()
    for playbook, values in durations.items():
        histogram = counts.durations[playbook]
        assert histogram.buckets == tuple(sum(1 for v in values if v <= b) for b in DURATION_BUCKETS)
        assert histogram.count == len(values)
        # The SQL sum is exact (integer microseconds, one division); the old float sum drifts in its last digits.
        assert histogram.sum_seconds == float(sum(Fraction(v) for v in values))
        assert histogram.sum_seconds == pytest.approx(sum(values), rel=1e-12)


def test_a_scrape_reads_rows_per_playbook_and_outcome_not_per_run(sessions: sessionmaker[Session]) -> None:
    fetched: list[int] = []

    def count_rows(state: ORMExecuteState) -> Any:
        if not state.is_select:
            return None  # the seeding INSERTs
        frozen = state.invoke_statement().freeze()
        fetched.append(len(frozen().all()))
        return frozen()

    event.listen(sessions, "do_orm_execute", count_rows)
    seed(sessions, 300, micros=dyadic)
    metric_counts(sessions)
    small = list(fetched)
    fetched.clear()
    seed(sessions, 3000, micros=dyadic, first=300)  # the same database, eleven times the journal
    metric_counts(sessions)
    assert len(fetched) == len(small) == 2, "two GROUP BY queries per scrape"
    # 5 playbooks x (4 outcomes + unfinished) and 5 playbooks running: the same however many runs.
    assert fetched == small and sum(fetched) <= 5 * 5 + 5
