"""Site collector vs prometheus-blackbox-exporter: 2,000 loopback sites at concurrency 100, same run.

    .venv/bin/python -m bench.sites [--sites 2000] [--concurrency 100] [--rounds 3]

Each site is a distinct 127.1.X.Y address served by one server process (bench/site_server.py). Ours: the
whole pipeline in this process: check (Site models -> aiohttp fetch on a new connection -> status and keyword
-> SiteCheck), then store and evaluate (pdn_ops.health.service.record_site_checks into a migrated SQLite
database holding the 2,000 sites: raw results, health targets, state changes); its CPU is this process's CPU.
The peer: blackbox_exporter (Debian package) as a subprocess, driven with 2,000 /probe requests at
concurrency 100 (same keyword and status rules); its CPU is read from /proc.
Rounds alternate between the two tools so that machine load hits both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from sqlalchemy.orm import Session, sessionmaker

from bench.procstat import free_port, stop, tree_cpu_seconds, wait_port
from bench.site_server import address
from collectors.http.client import SiteClient
from collectors.http.collector import SiteCollector
from pdn_ops.core.db import migrate
from pdn_ops.core.db.engine import make_engine, make_sessionmaker, transaction
from pdn_ops.core.inventory import Inventory, Opd, Site
from pdn_ops.core.inventory_sync import sync_inventory
from pdn_ops.health.model import Thresholds
from pdn_ops.health.observations import SiteCheck
from pdn_ops.health.service import record_site_checks

ROOT = Path(__file__).resolve().parent.parent
KEYWORD = "Selamat datang"
BLACKBOX_CONFIG = f"""modules:
  http_keyword:
    prober: http
    timeout: 10s
    http:
      valid_status_codes: [200]
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
      fail_if_body_not_matches_regexp: ["{KEYWORD}"]
"""


def prepare_store(directory: Path, sites: list[Site]) -> sessionmaker[Session]:
    url = f"sqlite:///{directory / 'bench.sqlite3'}"
    migrate.upgrade(url)
    sessions = make_sessionmaker(make_engine(url))
    with transaction(sessions) as session:
        sync_inventory(session, Inventory(opds=[Opd(code="bench", name="Bench OPD")], sites=sites))
    return sessions


def ours_cycle(sites: list[Site], concurrency: int, sessions: sessionmaker[Session] | None,
               ) -> tuple[float, float, int, float]:
    """(wall, CPU, checks ok, of which store+evaluate wall): check all sites, then record them in one transaction."""

    async def check() -> list[SiteCheck]:
        async with SiteClient(concurrency=concurrency) as client:
            return await SiteCollector(client, concurrency=concurrency).collect(sites)

    cpu0, t0 = time.process_time(), time.perf_counter()
    checks = asyncio.run(check())
    t1 = time.perf_counter()
    if sessions is not None:
        with transaction(sessions) as session:
            record_site_checks(session, checks, thresholds=Thresholds())
    end = time.perf_counter()
    return end - t0, time.process_time() - cpu0, sum(c.ok for c in checks), end - t1


async def blackbox_cycle(pid: int, base: str, targets: list[str], concurrency: int) -> tuple[float, float, int]:
    gate = asyncio.Semaphore(concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), timeout=timeout) as http:

        async def probe(target: str) -> bool:
            async with gate, http.get(base, params={"module": "http_keyword", "target": target}) as answer:
                return "\nprobe_success 1\n" in "\n" + await answer.text()

        cpu0, t0 = tree_cpu_seconds(pid), time.perf_counter()
        results = await asyncio.gather(*(probe(t) for t in targets))
        wall = time.perf_counter() - t0
        return wall, tree_cpu_seconds(pid) - cpu0, sum(results)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sites", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    binary = shutil.which("prometheus-blackbox-exporter")
    if binary is None:
        sys.exit("install the Debian package prometheus-blackbox-exporter first")
    port = free_port(address(0))
    urls = [f"http://{address(i)}:{port}/" for i in range(args.sites)]
    sites = [Site(url=u, opd="bench", keyword=KEYWORD, timeout=10) for u in urls]
    with tempfile.TemporaryDirectory(prefix="pdn-bench-sites-") as tmpdir:
        config = Path(tmpdir) / "blackbox.yml"
        config.write_text(BLACKBOX_CONFIG)
        server = subprocess.Popen([sys.executable, str(ROOT / "bench" / "site_server.py"), "--count",
                                   str(args.sites), "--port", str(port)], stdout=subprocess.PIPE, text=True)
        bb_port = free_port()
        blackbox = subprocess.Popen([binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{bb_port}"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            wait_port("127.0.0.1", bb_port)
            base = f"http://127.0.0.1:{bb_port}/probe"
            sessions = prepare_store(Path(tmpdir), sites)
            # warm-up of both (imports, first allocations), not measured
            ours_cycle(sites[:200], args.concurrency, None)
            asyncio.run(blackbox_cycle(blackbox.pid, base, urls[:200], args.concurrency))
            mine, peer = [], []
            for _ in range(args.rounds):
                mine.append(ours_cycle(sites, args.concurrency, sessions))
                peer.append(asyncio.run(blackbox_cycle(blackbox.pid, base, urls, args.concurrency)))
        finally:
            stop(blackbox)
            stop(server)
    n = args.sites

    def row(name: str, runs: list[tuple[float, float, int]] | list[tuple[float, float, int, float]],
            ) -> tuple[float, float]:
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        ok = min(r[2] for r in runs)
        print(f"| {name} | {wall:.2f} | {cpu / n * 1000:.2f} | {ok}/{n} |")
        return wall, cpu

    print(f"Sites: {n} loopback sites on distinct addresses, concurrency {args.concurrency}, "
          f"median of {args.rounds} alternating rounds")
    print("| tool | cycle wall s | CPU s per 1,000 checks | checks ok (worst round) |")
    print("| --- | ---: | ---: | ---: |")
    our_wall, our_cpu = row("pdn-ops check + store + evaluate (aiohttp, SQLite)", mine)
    bb_wall, bb_cpu = row("prometheus-blackbox-exporter 0.23 (Go)", peer)
    store = statistics.median(r[3] for r in mine)
    print(f"of which store + evaluate (one transaction, {n} checks): {store:.2f} s wall")
    print(f"ratios: cycle time ours/blackbox {our_wall / bb_wall:.2f}, CPU per check ours/blackbox "
          f"{our_cpu / bb_cpu:.2f}; goal: cycle <= 3 s and CPU ratio <= 1")


if __name__ == "__main__":
    main()
