"""A real ``pdn-ops serve`` under more load than it has room for: it refuses with 503 + Retry-After, keeps
answering /healthz, recovers by itself, and stops on SIGTERM within seconds."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine

from bench import load_mixed, serverproc
from tests.load.conftest import Prepared, no_traceback

# Two connections: a request may hold one while a cache (the procedure's terms, every 5 s) takes a second.
TINY_POOL = {"PDN_OPS_DB_POOL_SIZE": "2", "PDN_OPS_DB_MAX_OVERFLOW": "0", "PDN_OPS_DB_POOL_TIMEOUT": "0.3",
             "PDN_OPS_WORKER_THREADS": "16", "PDN_OPS_MAX_REQUESTS_IN_FLIGHT": "60"}


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return int(answer.status)


@contextmanager
def stalled(url: str, seconds: float) -> Iterator[None]:
    """From outside the server, hold a lock its requests need for ``seconds``: the requests that hit it hold
    their pool connections meanwhile (the way a slow database exhausts a pool), the others find none free."""
    engine = create_engine(url)
    done = threading.Event()

    def hold() -> None:
        with engine.connect() as conn:
            if url.startswith("sqlite"):
                conn.exec_driver_sql("BEGIN EXCLUSIVE")  # writers (logins, filings) wait for it
            else:
                conn.exec_driver_sql("BEGIN")
                conn.exec_driver_sql("LOCK TABLE web_sessions IN ACCESS EXCLUSIVE MODE")  # every lookup waits
            done.wait(seconds)
            conn.rollback()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        yield
    finally:
        done.set()
        holder.join(10)
        engine.dispose()


def test_a_tiny_pool_under_load_keeps_answering_healthz_and_recovers_by_itself(
        prepared: Prepared, serve: Callable[..., serverproc.Server]) -> None:
    url, data_dir, world = prepared
    server = serve(url, data_dir, extra_env=TINY_POOL)
    results: list[load_mixed.Stats] = []
    load = threading.Thread(target=lambda: results.append(asyncio.run(
        load_mixed.drive(server.url, world, users=40, seconds=10, limit=15, ramp=1))))
    load.start()
    time.sleep(2)
    # Longer than SQLite's busy timeout (5 s): writers waiting for the lock give up with "database is locked".
    with stalled(url, 6.5):
        time.sleep(6.5)
    load.join(60)
    stats = results[0]
    # No 500, no timeout, no refusal without Retry-After; /healthz answered every probe, quickly.
    assert stats.failures == [], stats.failures[:5]
    assert stats.healthz_failures == 0
    assert max(stats.healthz) < 5.0
    assert sum(stats.refusals.values()) > 0, "the tiny pool should have refused some requests"
    # Recovered without a restart: a fresh session logs in and lists, the service says it is ready.
    after = asyncio.run(load_mixed.drive(server.url, world, users=2, seconds=1.5, limit=10, ramp=0.1))
    assert after.failures == [] and not after.refusals
    assert _get(server.url + "/readyz") == 200
    found = load_mixed.audit(url, data_dir, {**stats.acknowledged, **after.acknowledged})
    assert found.clean, found
    no_traceback(server.log())


def test_sigterm_stops_the_server_within_seconds_under_load(
        prepared: Prepared, serve: Callable[..., serverproc.Server]) -> None:
    url, data_dir, world = prepared
    server = serve(url, data_dir)
    load = threading.Thread(target=lambda: asyncio.run(
        load_mixed.drive(server.url, world, users=60, seconds=5, limit=10, ramp=0.5)))
    load.start()
    time.sleep(3)
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=20)
    stopped_after = time.monotonic() - started
    load.join(30)
    assert stopped_after < 8, f"SIGTERM took {stopped_after:.1f} s"
