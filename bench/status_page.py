"""An OPD status page under load, side by side with a static file served by the same server.

A real ``pdn-ops serve`` process (bench/serverproc.py) on SQLite with the example inventory; Dinas Kesehatan's
status page is public and shows its sites, each with 90 days of hourly rollups (a few hours down here and there,
so the bars have every colour). Then, for ``--seconds`` each, ``--clients`` concurrent keep-alive clients ask
for ``/status/dinkes`` and for ``/static/app.css`` (Starlette's StaticFiles, the same middleware stack):
requests per second, latency percentiles, non-200 answers.

    .venv/bin/python -m bench.status_page --clients 32 --seconds 15

The client (aiohttp, one process) shares the two cores with the server; its CPU time is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

from bench import serverproc


def seed(database_url: str) -> int:
    """Dinas Kesehatan's public page with its sites and 90 days of hourly rollups; returns the rollup count."""
    from sqlalchemy import select

    from pdn_ops.core.db.engine import make_engine, make_sessionmaker, transaction
    from pdn_ops.core.db.tables import OpdRow, SiteRow
    from pdn_ops.health.tables import HealthRollupRow, HealthTargetRow
    from pdn_ops.public.tables import StatusPageRow

    engine = make_engine(database_url)
    rng = random.Random(15)
    rows = 0
    try:
        with transaction(make_sessionmaker(engine)) as session:
            opd_id = session.scalar(select(OpdRow.id).where(OpdRow.code == "dinkes"))
            assert opd_id is not None
            sites = session.execute(select(SiteRow.id, SiteRow.url).where(SiteRow.opd_id == opd_id)).all()
            now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
            for site_id, url in sites:
                target = HealthTargetRow(kind="site", ref=url, opd_id=opd_id, site_id=site_id, state="up")
                session.add(target)
                session.flush()
                for h in range(90 * 24):
                    down = rng.random() < 0.004
                    session.add(HealthRollupRow(target_id=target.id, hour=now - timedelta(hours=h), checks=60,
                                                failures=60 if down else 0, up_seconds=0.0 if down else 3600.0))
                    rows += 1
            session.add(StatusPageRow(opd_id=opd_id, enabled=True, public=True, share_token="bench-share-token",
                                      show_addresses=False, site_ids=[s for s, _ in sites], updated_by="bench"))
    finally:
        engine.dispose()
    return rows


async def hammer(url: str, clients: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def one() -> None:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                async with session.get(url) as answer:
                    await answer.read()
                    statuses[answer.status] = statuses.get(answer.status, 0) + 1
                latencies.append(time.perf_counter() - started)

        began = time.monotonic()
        await asyncio.gather(*(one() for _ in range(clients)))
        took = time.monotonic() - began
    latencies.sort()
    return {"requests": len(latencies), "rps": len(latencies) / took,
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[int(len(latencies) * 0.99) - 1],
            "non_200": sum(n for s, n in statuses.items() if s != 200)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pdn-status-bench-") as tmp:
        data_dir = Path(tmp)
        url = f"sqlite:///{data_dir / 'bench.sqlite3'}"
        serverproc.prepare(url, data_dir, admins_per_opd=1, engineers=1)
        rollups = seed(url)
        with serverproc.running(url, data_dir) as server:
            page = f"{server.url}/status/dinkes"
            static = f"{server.url}/static/app.css"
            asyncio.run(hammer(page, 4, 1.0))  # warm: the first request builds and keeps the page
            asyncio.run(hammer(static, 4, 1.0))
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            results = {}
            for name, target in (("status page", page), ("static file", static)):
                results[name] = asyncio.run(hammer(target, args.clients, args.seconds))
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
            size_page = len(__import__("urllib.request").request.urlopen(page).read())
            size_static = len(__import__("urllib.request").request.urlopen(static).read())
    print(f"{rollups} hourly rollups seeded; {args.clients} clients, {args.seconds:g} s each; "
          f"client CPU {cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime:.1f} s")
    print("| target | bytes | requests | req/s | p50 ms | p99 ms | non-200 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (name, r), size in zip(results.items(), (size_page, size_static), strict=True):
        print(f"| {name} | {size} | {r['requests']:.0f} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
              f"| {r['non_200']:.0f} |")
    ratio = results["status page"]["rps"] / results["static file"]["rps"]
    print(f"status page / static file: {ratio:.2f}")


if __name__ == "__main__":
    main()
