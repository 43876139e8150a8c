"""Benchmark: the remediation series of /metrics with 100,000 runs in the journal, aggregated in SQL vs per run.

The peer is the code path /metrics used before: read every finished run's start and finish times on every scrape
and build the duration histogram in Python (``per_run_counts`` and ``PerRunCollector`` below, kept verbatim so
the comparison runs in the same process on the same database). Both render through prometheus_client's
``generate_latest`` from their own registry; the output is checked to be the same series first.

Usage: .venv/bin/python -m bench.remediation_metrics [--runs 100000] [--rounds 5] [--postgres ADMIN_URL]
(--postgres creates a throwaway database on that server and drops it afterwards; default: SQLite in a temp dir)
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from pdn_ops.core.db import migrate
from pdn_ops.core.db.engine import make_engine, make_sessionmaker, transaction
from pdn_ops.runs import model as rem
from pdn_ops.runs.metrics import RemediationCollector
from pdn_ops.runs.service import DURATION_BUCKETS
from pdn_ops.runs.tables import RemediationRunRow

PLAYBOOKS = ("restart_vm", "resize_vm", "restore_snapshot", "restart_service", "free_disk")
OUTCOMES = ("succeeded", "succeeded", "succeeded", "failed", "unknown", "ineffective")
T0 = datetime(2026, 1, 5, 1, 0, tzinfo=UTC)


# --- the peer: the per-run code path of pdn_ops.runs.service before the SQL aggregate --------------------

def per_run_counts(sessions: Callable[[], Session]) -> tuple[dict[tuple[str, str], int], dict[str, int],
                                                                dict[str, list[float]]]:
    with sessions() as session:
        outcomes = {(p, str(o)): int(n) for p, o, n in session.execute(
            select(RemediationRunRow.playbook, RemediationRunRow.outcome, func.count())
            .where(RemediationRunRow.outcome.is_not(None))
            .group_by(RemediationRunRow.playbook, RemediationRunRow.outcome))}
        running = {p: int(n) for p, n in session.execute(
            select(RemediationRunRow.playbook, func.count())
            .where(RemediationRunRow.state.in_([rem.State.RUNNING.value, rem.State.INTERRUPTED.value]))
            .group_by(RemediationRunRow.playbook))}
        durations: dict[str, list[float]] = {}
        for playbook, started, finished in session.execute(
                select(RemediationRunRow.playbook, RemediationRunRow.started_at, RemediationRunRow.finished_at)
                .where(RemediationRunRow.started_at.is_not(None), RemediationRunRow.finished_at.is_not(None))):
            if started is not None and finished is not None:
                durations.setdefault(playbook, []).append(max((finished - started).total_seconds(), 0.0))
    return outcomes, running, durations


class PerRunCollector(Collector):
    """The collector as it was: the histogram built in Python from every finished run."""

    def __init__(self, sessions: Callable[[], Session]) -> None:
        self._sessions = sessions

    def describe(self) -> Iterable[Metric]:
        return ()

    def collect(self) -> Iterator[Metric]:
        outcomes, running_counts, durations = per_run_counts(self._sessions)
        runs = CounterMetricFamily("pdn_remediation_runs", "Remediation runs by playbook and outcome.",
                                   labels=["playbook", "outcome"])
        for (playbook, outcome), value in sorted(outcomes.items()):
            runs.add_metric([playbook, outcome], value)
        running = GaugeMetricFamily("pdn_remediation_running", "Remediation runs in progress.", labels=["playbook"])
        for playbook, value in sorted(running_counts.items()):
            running.add_metric([playbook], value)
        duration = HistogramMetricFamily("pdn_remediation_run_duration_seconds",
                                         "Time from a worker claiming a run to its outcome.", labels=["playbook"])
        for playbook, values in sorted(durations.items()):
            buckets = [(str(b), float(sum(1 for v in values if v <= b))) for b in DURATION_BUCKETS]
            buckets.append(("+Inf", float(len(values))))
            duration.add_metric([playbook], buckets, sum(values))
        yield from (runs, running, duration)


def registry_of(collector: Collector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def sql_registry(sessions: sessionmaker[Session]) -> CollectorRegistry:
    """The collector /metrics uses now."""
    return registry_of(RemediationCollector(sessions))


# --- a journal ------------------------------------------------------------------------------------------------

def seed(sessions: sessionmaker[Session], runs: int, *, micros: Callable[[int], int] | None = None,
         batch: int = 5000, first: int = 0) -> None:
    """``runs`` runs over the playbooks: mostly finished (durations from ``micros(i)``), some running or queued;
    numbered from ``first`` (to add more runs to a journal)."""
    def duration(i: int) -> int:
        # Spread over every bucket, with exact bucket bounds and a finish before the start (clock skew) too.
        return (i * 7919) % 2_400_000_000 - 1_000_000 if i % 97 else int(DURATION_BUCKETS[i % 9] * 1_000_000)

    pick = micros or duration
    rows: list[dict[str, Any]] = []
    for i in range(first, first + runs):
        started = T0 + timedelta(seconds=i)
        state = "running" if i % 1000 == 1 else "pending" if i % 1000 == 2 else OUTCOMES[i % len(OUTCOMES)]
        done = state not in ("running", "pending")
        rows.append(dict(playbook=PLAYBOOKS[i % len(PLAYBOOKS)], target=f"pve/{100 + i}", opd_code="dinkes",
                         params={}, risk="low", requested_by="bench", trigger="manual", approvals_needed=0,
                         approvals=[], idempotency_key=f"bench-{i}", state=state, outcome=state if done else None,
                         summary="", plan=[], attempt=1, evidence={}, created_at=started,
                         started_at=started if state != "pending" else None,
                         finished_at=started + timedelta(microseconds=pick(i)) if done else None))
        if len(rows) >= batch:
            with transaction(sessions) as session:
                session.execute(insert(RemediationRunRow), rows)
            rows = []
    if rows:
        with transaction(sessions) as session:
            session.execute(insert(RemediationRunRow), rows)


def timed(fn: Callable[[], object], rounds: int) -> tuple[float, float]:
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples), max(samples)


def run(url: str, runs: int, rounds: int) -> None:
    migrate.upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    t0 = time.perf_counter()
    seed(sessions, runs)
    seeded = time.perf_counter() - t0
    ours, peer = sql_registry(sessions), registry_of(PerRunCollector(sessions))
    new_body, old_body = generate_latest(ours).decode(), generate_latest(peer).decode()

    def series(body: str) -> dict[str, float]:
        return {line.rpartition(" ")[0]: float(line.rpartition(" ")[2]) for line in body.splitlines()
                if line and not line.startswith("#")}

    new, old = series(new_body), series(old_body)
    assert new.keys() == old.keys(), sorted(new.keys() ^ old.keys())
    differ = [k for k in new if new[k] != old[k] and not ("_sum" in k and abs(new[k] - old[k]) <= 1e-9 * old[k])]
    assert not differ, differ
    n_med, n_max = timed(lambda: generate_latest(ours), rounds)
    o_med, o_max = timed(lambda: generate_latest(peer), rounds)
    print(f"database: {url.split(':', 1)[0]}; runs in the journal: {runs} (seeded in {seeded:.1f} s); "
          f"series: {len(new)}; identical series: yes (sums within 1e-9 relative)")
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print(f"scrape, SQL aggregate (now):       median {n_med:8.1f} ms  max {n_max:8.1f} ms")
    print(f"scrape, per-run histogram (peer):  median {o_med:8.1f} ms  max {o_max:8.1f} ms")
    print(f"ratio peer / ours:                 {o_med / n_med:.1f}x")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--postgres", default="", help="admin URL, e.g. postgresql+psycopg://postgres@127.0.0.1/test")
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory()
    url = f"sqlite:///{Path(tmp.name) / 'bench.sqlite3'}"
    admin = None
    name = f"pdnops_bench_{uuid.uuid4().hex[:8]}"
    if args.postgres:
        admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = args.postgres.rsplit("/", 1)[0] + f"/{name}"
    try:
        run(url, args.runs, args.rounds)
    finally:
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        tmp.cleanup()


if __name__ == "__main__":
    main()
