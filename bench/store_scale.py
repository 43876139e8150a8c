"""Store and evaluate at size and with history: is the cost per check and per guest flat?

    .venv/bin/python -m bench.store_scale [--postgres ADMIN_URL] [--sizes 2000,8000] [--days 0,1,3.5,7,14]
                                          [--history-sites 2000] [--rounds 3] [--profile FILE]

No network: the observations are generated (a few per cent failing, so state changes and causes are exercised)
and folded in through the real services into a migrated database (SQLite in a temp dir, or a throwaway
PostgreSQL database created on ADMIN_URL and dropped afterwards).

1. Fleet size: per size N, N sites checked (record_site_checks) and one cluster of N guests
   (record_cluster), median ms per cycle and microseconds per check / per guest, on a fresh database.
2. History length: at --history-sites sites checked every --interval seconds (60, the inventory's default), the
   raw-check table is filled to D days of history (D x 1,440 checks per site at 60 s; by INSERT .. SELECT, as the
   retention job would leave it) and the site cycle is timed again at each D, up to the 14-day retention.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from pdn_ops.core.db import migrate
from pdn_ops.core.db.engine import make_engine, make_sessionmaker, transaction
from pdn_ops.core.inventory import Cluster, Inventory, Opd, Site, Tls, Vm
from pdn_ops.core.inventory_sync import sync_inventory
from pdn_ops.health import service as health
from pdn_ops.health.model import Thresholds
from pdn_ops.health.observations import ClusterObservation, GuestObservation, NodeObservation, SiteCheck

CLUSTER = "pve-bench"
NODES = 8
TH = Thresholds()
START = datetime(2026, 1, 1, tzinfo=UTC)


def site_url(i: int) -> str:
    return f"https://s{i}.bench.go.id/"


def inventory(n_sites: int, n_vms: int) -> Inventory:
    opds = [Opd(code=f"opd{i}", name=f"OPD {i}") for i in range(40)]
    cluster = Cluster(name=CLUSTER, api_url="https://127.0.0.1:8006", token_id="bench@pve!t",
                      token_secret="env:BENCH_SECRET",
                      tls=Tls(fingerprint="AA:" * 31 + "AA"))
    vms = [Vm(cluster=CLUSTER, vmid=100 + i, name=f"vm{i}", opd=f"opd{i % 40}") for i in range(n_vms)]
    sites = [Site(url=site_url(i), opd=f"opd{i % 40}") for i in range(n_sites)]
    return Inventory(opds=opds, clusters=[cluster] if n_vms else [], vms=vms, sites=sites)


def site_checks(n: int, cycle: int) -> list[SiteCheck]:
    at = START + timedelta(seconds=30 * cycle)
    # 2 % of sites fail, a different set each few cycles: state changes and cause resolution run as in service.
    return [SiteCheck(url=site_url(i), at=at, ok=(i + cycle // 3) % 50 != 0, status_code=200, total_s=0.05,
                      ttfb_s=0.03, tls_expires_at=START + timedelta(days=60), tls_days_left=60.0)
            for i in range(n)]


def cluster_observation(n: int, cycle: int) -> ClusterObservation:
    at = START + timedelta(seconds=30 * cycle)
    nodes = tuple(NodeObservation(cluster=CLUSTER, node=f"pve{k}", online=True, cpu=0.2, mem=2 << 30, maxmem=64 << 30)
                  for k in range(NODES))
    guests = tuple(GuestObservation(cluster=CLUSTER, vmid=100 + i, node=f"pve{i % NODES}",
                                    name=f"vm{i}", type="qemu",
                                    status="stopped" if (i + cycle // 3) % 50 == 0 else "running", cpu=0.1,
                                    maxcpu=2, mem=1 << 30, maxmem=4 << 30, disk=0,
                                    maxdisk=32 << 30, uptime=1000) for i in range(n))
    return ClusterObservation(cluster=CLUSTER, at=at, ok=True, api_calls=2, duration_s=0.1, nodes=nodes,
                              guests=guests)


def sites_cycle(checks: dict[int, list[SiteCheck]]) -> Callable[[Session, int], object]:
    return lambda session, cycle: health.record_site_checks(session, checks[cycle], thresholds=TH)


def cluster_cycle(observations: dict[int, ClusterObservation]) -> Callable[[Session, int], object]:
    return lambda session, cycle: health.record_cluster(session, observations[cycle], thresholds=TH)


def database(admin: str | None, tmp: str) -> tuple[str, Callable[[], None]]:
    if admin is None:
        return f"sqlite:///{tmp}/store.sqlite3", lambda: None
    name = f"pdn_bench_{uuid.uuid4().hex[:8]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()

    return admin.rsplit("/", 1)[0] + f"/{name}", drop


def prepared(url: str, n_sites: int, n_vms: int) -> sessionmaker[Session]:
    migrate.upgrade(url)
    sessions = make_sessionmaker(make_engine(url))
    with transaction(sessions) as session:
        sync_inventory(session, inventory(n_sites, n_vms))
    return sessions


def timed_cycles(sessions: sessionmaker[Session], call: Callable[[Session, int], object], first: int,
                 rounds: int, profile: cProfile.Profile | None = None) -> float:
    """Median seconds of ``rounds`` cycles after one warm-up cycle (the first creates the target rows)."""
    times = []
    for cycle in range(first, first + rounds + 1):
        t0 = time.perf_counter()
        if profile is not None and cycle > first:
            profile.enable()
        with transaction(sessions) as session:
            call(session, cycle)
        if profile is not None:
            profile.disable()
        if cycle > first:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def fill_history(sessions: sessionmaker[Session], since_days: float, days: float, interval_s: int) -> int:
    """Raw site checks, one per site target every ``interval_s``, from ``days`` to ``since_days`` before START
    (added to what is there), in one INSERT .. SELECT; the indexes of the raw-check table are dropped for the
    fill and built again after it (as they stand after weeks of service: the same B-trees, built faster)."""
    per_day = 86400 // interval_s
    first, last = int(since_days * per_day) + 1, int(days * per_day)
    with transaction(sessions) as session:
        dialect = session.get_bind().dialect.name
        if last >= first:
            session.execute(text("DROP INDEX ix_health_checks_target_at"))
            session.execute(text("DROP INDEX ix_health_checks_at"))
            if dialect == "sqlite":
                session.execute(text(
                    "WITH RECURSIVE k(i) AS (SELECT :first UNION ALL SELECT i + 1 FROM k WHERE i < :last) "
                    "INSERT INTO health_checks (target_id, at, ok, failure, duration_s, detail) "
                    "SELECT t.id, datetime(:start, printf('-%d seconds', :step * k.i)), 1, NULL, 0.05, '' "
                    "FROM k CROSS JOIN health_targets t WHERE t.kind = 'site'"),
                    {"first": first, "last": last, "step": interval_s, "start": START.strftime("%Y-%m-%d %H:%M:%S")})
            else:
                session.execute(text(
                    "INSERT INTO health_checks (target_id, at, ok, failure, duration_s, detail) "
                    "SELECT t.id, :start - make_interval(secs => :step * k), true, NULL, 0.05, '' "
                    "FROM generate_series(:first, :last) AS k CROSS JOIN health_targets t WHERE t.kind = 'site'"),
                    {"first": first, "last": last, "step": interval_s, "start": START})
            session.execute(text("CREATE INDEX ix_health_checks_target_at ON health_checks (target_id, at)"))
            session.execute(text("CREATE INDEX ix_health_checks_at ON health_checks (at)"))
        count = session.execute(text("SELECT count(*) FROM health_checks")).scalar_one()
    if last >= first:
        # The fill's own write-back is not part of a cycle: the WAL checkpointed, PostgreSQL's statistics fresh.
        with sessions.kw["bind"].connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE health_checks" if dialect == "postgresql"
                              else "PRAGMA wal_checkpoint(TRUNCATE)"))
    return int(count)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", help="admin URL of a PostgreSQL server (default: SQLite)")
    parser.add_argument("--sizes", default="2000,8000")
    parser.add_argument("--days", default="0,1,3.5,7,14")
    parser.add_argument("--history-sites", type=int, default=2000)
    parser.add_argument("--interval", type=int, default=60, help="seconds between two checks of a site (history)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", help="write cProfile stats of the timed cycles to this file")
    args = parser.parse_args()
    profile = cProfile.Profile() if args.profile else None
    print(f"engine: {'postgresql' if args.postgres else 'sqlite'}; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print("| size | sites cycle ms | us per check | cluster cycle ms | us per guest |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for size in (int(s) for s in args.sizes.split(",") if s):
        with tempfile.TemporaryDirectory(prefix="pdn-bench-store-") as tmp:
            url, drop = database(args.postgres, tmp)
            try:
                sessions = prepared(url, size, size)
                s = timed_cycles(sessions, sites_cycle({c: site_checks(size, c) for c in range(args.rounds + 1)}),
                                 0, args.rounds, profile)
                v = timed_cycles(sessions, cluster_cycle({c: cluster_observation(size, c)
                                                          for c in range(args.rounds + 1)}), 0, args.rounds, profile)
                print(f"| {size} | {s * 1000:.0f} | {s / size * 1e6:.1f} | {v * 1000:.0f} | {v / size * 1e6:.1f} |")
                sessions.kw["bind"].dispose()
            finally:
                drop()
    days = [float(d) for d in args.days.split(",") if d]
    if days:
        n = args.history_sites
        print(f"\nhistory: {n} sites every {args.interval} s")
        print("| days of raw history | stored checks | sites cycle ms | us per check |")
        print("| ---: | ---: | ---: | ---: |")
        with tempfile.TemporaryDirectory(prefix="pdn-bench-store-") as tmp:
            url, drop = database(args.postgres, tmp)
            try:
                sessions = prepared(url, n, 0)
                timed_cycles(sessions, sites_cycle({c: site_checks(n, c) for c in range(2)}), 0, 1)
                cycle, filled = 10, 0.0
                for d in days:
                    stored = fill_history(sessions, filled, d, args.interval)
                    filled = max(filled, d)
                    checks = {c: site_checks(n, c) for c in range(cycle, cycle + args.rounds + 1)}
                    s = timed_cycles(sessions, sites_cycle(checks), cycle, args.rounds, profile)
                    cycle += args.rounds + 2
                    print(f"| {d:g} | {stored:,} | {s * 1000:.0f} | {s / n * 1e6:.1f} |", flush=True)
                sessions.kw["bind"].dispose()
            finally:
                drop()
    if profile is not None:
        profile.dump_stats(args.profile)


if __name__ == "__main__":
    main()
