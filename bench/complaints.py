"""Benchmark: the engineers' queue and an OPD's complaint list with 100,000 complaints in the database.

Targets: p95 <= 100 ms for both lists and >= 200 requests/s for the JSON list, on 2 cores.

    .venv/bin/python bench/complaints.py --engine sqlite --complaints 100000
    .venv/bin/python bench/complaints.py --engine postgresql

The service runs as a real uvicorn server (2 worker processes) in a subprocess; the load comes from aiohttp in
this process, over loopback, authenticated with API tokens. The peer measured in the same run is the usual
OFFSET pagination of the same queries (what ticket systems that slow down with size do), at a deep page.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import create_engine, func, insert, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pdn_ops.accounts import service as accounts  # noqa: E402
from pdn_ops.accounts.model import Principal, Role  # noqa: E402
from pdn_ops.accounts.tables import UserRow  # noqa: E402
from pdn_ops.complaints.tables import ComplaintRow  # noqa: E402
from pdn_ops.core.db import migrate  # noqa: E402
from pdn_ops.core.db.engine import make_engine, make_sessionmaker, transaction  # noqa: E402
from pdn_ops.core.db.tables import OpdRow, VmRow  # noqa: E402

OPDS = 50
PG_ADMIN = os.environ.get("PDN_OPS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def app_factory() -> Any:
    """uvicorn --factory entry point: the real app on the benchmark database."""
    from pdn_ops.app.factory import create_app
    from pdn_ops.app.runtime import build_runtime
    from pdn_ops.core.settings import load_settings

    settings = load_settings(demo=True, database_url=os.environ["PDN_OPS_DATABASE_URL"],
                             data_dir=Path(os.environ["PDN_OPS_DATA_DIR"]))
    return create_app(build_runtime(settings))


CEILING_ROWS = [{"id": 100_000 - i, "opd_id": 1, "asset": "vm:1", "category": "slow", "state": "closed",
                 "version": 1, "created_at": "2026-01-01T00:00:00Z", "submitted_at": "2026-01-01T00:00:00Z",
                 "fixed_at": "2026-01-03T00:00:00Z", "closed_at": "2026-01-04T00:00:00Z", "auto_closed": False,
                 "merged_into": None, "sla_status": "done", "sla_due_at": None, "sla_remaining_seconds": None}
                for i in range(20)]


def ceiling_factory() -> Any:
    """uvicorn --factory entry point: the framework's ceiling on this machine, a bare FastAPI app answering a
    constant 20-row JSON page of the same shape (no database, no authentication, no middleware)."""
    import json

    from fastapi import FastAPI
    from fastapi.responses import Response

    app = FastAPI()
    body = json.dumps({"items": CEILING_ROWS, "next_cursor": "99980"}).encode()

    @app.get("/rows")
    def rows() -> Response:
        return Response(body, media_type="application/json")

    return app


def seed(url: str, total: int) -> dict[str, str]:
    """OPDs, VMs, an engineer and an OPD admin with API tokens, and ``total`` complaints; returns the tokens."""
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    rng = random.Random(5)
    now = datetime.now(UTC)
    with transaction(sessions) as session:
        opds = [OpdRow(code=f"opd{i:02d}", name=f"OPD {i}", contacts=[]) for i in range(OPDS)]
        session.add_all(opds)
        session.flush()
        vms = [VmRow(cluster="pdn1", vmid=100 + i, name=f"vm-{i}", opd_id=o.id, services=[])
               for i, o in enumerate(opds)]
        session.add_all(vms)
        session.flush()
        engineer = accounts.create_user(session, username="bench-engineer", password="bench-password-1",
                                        role=Role.ENGINEER)
        admin = accounts.create_user(session, username="bench-admin", password="bench-password-1",
                                     role=Role.OPD_ADMIN, opd_code="opd00")
        eng_token, _ = accounts.create_token(session, accounts.principal_of(engineer), "bench")
        admin_token, _ = accounts.create_token(session, accounts.principal_of(admin), "bench")
        vm_ids = [(v.id, v.opd_id) for v in vms]
        author = admin.id
    t0 = time.perf_counter()
    batch: list[dict[str, object]] = []
    with engine.begin() as conn:
        for i in range(total):
            # Opd00 is large (the list we time); about 12 % of all complaints are still running (the queue).
            vm_id, opd_id = vm_ids[0] if i % 10 == 0 else vm_ids[rng.randrange(len(vm_ids))]
            created = now - timedelta(days=rng.uniform(0, 720))
            running = rng.random() < 0.12
            due = created + timedelta(days=7) if running else None
            batch.append({
                "opd_id": opd_id, "vm_id": vm_id, "site_id": None, "category": rng.choice(
                    ["site_down", "slow", "vm_unreachable", "disk_full", "other"]),
                "description": f"Masalah layanan nomor {i}: situs lambat dan kadang tidak dapat dibuka.",
                "state": rng.choice(["submitted", "verified", "in_progress"]) if running else "closed",
                "version": 1, "created_by": author, "created_at": created, "updated_at": created,
                "submitted_at": created, "fixed_at": None if running else created + timedelta(days=2),
                "closed_at": None if running else created + timedelta(days=3), "auto_closed": False,
                "merged_into_id": None, "sla_mode": "calendar", "sla_budget": 7 * 86400.0,
                "sla_elapsed": 0.0 if running else 2 * 86400.0, "sla_running_since": created if running else None,
                "sla_due_at": due, "sla_risk50_at": created + timedelta(days=3.5) if running else None,
                "sla_risk80_at": created + timedelta(days=5.6) if running else None, "sla_breached": False,
            })
            if len(batch) == 5000:
                conn.execute(insert(ComplaintRow), batch)
                batch = []
        if batch:
            conn.execute(insert(ComplaintRow), batch)
        conn.execute(text("ANALYZE"))  # fresh statistics, as autovacuum/ANALYZE would have them in production
    print(f"seeded {total:,} complaints in {time.perf_counter() - t0:.1f} s")
    engine.dispose()
    return {"engineer": eng_token, "admin": admin_token}


def peer_offset_vs_keyset(url: str) -> list[str]:
    """The same queue query at a deep position: OFFSET (the peer) vs our keyset cursor, in-process."""
    from pdn_ops.complaints import queries as complaint_queries

    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    lines = []
    with sessions() as session:
        eng_id = session.scalar(select(UserRow.id).where(UserRow.username == "bench-engineer"))
        staff = Principal(user_id=eng_id or 0, username="bench-engineer", role=Role.ENGINEER, opd_id=None)
        running = session.scalar(select(func.count()).where(ComplaintRow.sla_due_at.is_not(None))) or 1
        depth = min(9000, int(running) - 60)
        deep = session.execute(select(ComplaintRow.sla_due_at, ComplaintRow.id)
                               .where(ComplaintRow.sla_due_at.is_not(None))
                               .order_by(ComplaintRow.sla_due_at, ComplaintRow.id).offset(depth).limit(1)).first()
        assert deep is not None and deep[0] is not None
        cursor = f"{deep[0].isoformat()}~{deep[1]}"

        def keyset() -> None:
            complaint_queries.queue(session, staff, cursor=cursor, limit=50, light=True)

        def offset() -> None:
            session.execute(select(*complaint_queries.LIST_COLUMNS).where(ComplaintRow.sla_due_at.is_not(None))
                            .order_by(ComplaintRow.sla_due_at, ComplaintRow.id).offset(depth).limit(51)).all()

        for name, fn in (("keyset (ours)", keyset), ("OFFSET (peer)", offset)):
            fn()
            times = []
            for _ in range(30):
                t = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t) * 1000)
            lines.append(f"| queue page at depth {depth:,}: {name} | {statistics.median(times):.2f} ms median |")
    engine.dispose()
    return lines


async def latency(session: aiohttp.ClientSession, url: str, token: str, n: int) -> list[float]:
    times = []
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(n):
        t = time.perf_counter()
        async with session.get(url, headers=headers) as response:
            await response.read()
            assert response.status == 200, response.status
        times.append((time.perf_counter() - t) * 1000)
    return times


async def throughput(url: str, token: str, seconds: float, concurrency: int) -> float:
    done = 0
    stop = time.perf_counter() + seconds
    headers = {"Authorization": f"Bearer {token}"}

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done
        while time.perf_counter() < stop:
            async with session.get(url, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{url}: {response.status} {(await response.text())[:300]}")
            done += 1

    t0 = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return done / (time.perf_counter() - t0)


def server_cpu_seconds(pid: int) -> float:
    """user+system CPU of the uvicorn supervisor and its worker processes (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                pids.append(int(entry.name))
    total = 0.0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def calibration_cpu_seconds() -> float:
    """CPU seconds of a fixed pure-Python loop (10 million additions), to show how contended the cores are."""
    started = time.process_time()
    total = 0
    for i in range(10_000_000):
        total += i
    assert total > 0
    return time.process_time() - started


def p95(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.95) - 1]


async def measure(base: str, tokens: dict[str, str], seconds: float, pid: int) -> list[str]:
    lines = []
    async with aiohttp.ClientSession() as session:
        targets = (("engineer queue (JSON)", f"{base}/api/v1/complaints/queue", tokens["engineer"]),
                   ("OPD list (JSON)", f"{base}/api/v1/complaints", tokens["admin"]),
                   ("OPD list, page 2 (JSON)", None, tokens["admin"]))
        next_cursor = None
        for name, url, token in targets:
            if url is None:
                url = f"{base}/api/v1/complaints?cursor={next_cursor}"
            await latency(session, url, token, 20)  # warm-up
            times = await latency(session, url, token, 300)
            lines.append(f"| {name} | p50 {statistics.median(times):.1f} ms | p95 {p95(times):.1f} ms |")
            if next_cursor is None:
                async with session.get(f"{base}/api/v1/complaints",
                                       headers={"Authorization": f"Bearer {tokens['admin']}"}) as response:
                    next_cursor = (await response.json())["next_cursor"]
    for name, url, token in (("OPD list (JSON)", f"{base}/api/v1/complaints", tokens["admin"]),
                              ("engineer queue (JSON)", f"{base}/api/v1/complaints/queue", tokens["engineer"])):
        cpu0, wall0 = server_cpu_seconds(pid), time.perf_counter()
        rate = await throughput(url, token, seconds, 16)
        cpu = server_cpu_seconds(pid) - cpu0
        wall = time.perf_counter() - wall0
        per_request_ms = cpu / (rate * wall) * 1000
        # On a shared machine the server gets only part of the cores; CPU per request is what it costs.
        lines.append(f"| {name}, 16 concurrent clients, {seconds:.0f} s | {rate:.0f} req/s measured | "
                     f"server CPU {per_request_ms:.2f} ms/request = {2000 / per_request_ms:.0f} req/s on 2 "
                     f"dedicated cores |")
    return lines


def wrk_throughput(base: str, tokens: dict[str, str], seconds: float, pid: int,
                   ceiling: tuple[str, int] | None = None) -> list[str]:
    """The same throughput runs with wrk (C, Debian's package) as the client: the Python client above takes a
    good share of the 2 cores itself, so this is the fairer figure for what the server does on the machine.
    With ``ceiling`` (base URL and pid of ``ceiling_factory``'s server), the bare framework's constant 20-row
    answer is measured the same way, right after, and the 20-row list is given as a share of it."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return ["| wrk not installed (apt-get install wrk) | throughput with a C client not measured | |"]
    lines = []
    rates: dict[str, tuple[float, float]] = {}
    runs = [("OPD list (JSON)", f"{base}/api/v1/complaints", tokens["admin"], pid),
            ("OPD list, 20 rows (JSON)", f"{base}/api/v1/complaints?limit=20", tokens["admin"], pid),
            ("engineer queue (JSON)", f"{base}/api/v1/complaints/queue", tokens["engineer"], pid)]
    if ceiling is not None:
        runs.append(("bare FastAPI, constant 20 rows (ceiling)", f"{ceiling[0]}/rows", "none", ceiling[1]))
    for name, url, token, server_pid in runs:
        pid = server_pid
        command = [wrk, "-t1", "-c16", "--latency", f"-d{seconds:.0f}s", "-H", f"Authorization: Bearer {token}", url]
        subprocess.run([*command[:4], "-d2s", *command[5:]], check=True, capture_output=True)  # warm-up
        cpu0 = server_cpu_seconds(pid)
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        cpu = server_cpu_seconds(pid) - cpu0
        if "Non-2xx" in out:
            raise RuntimeError(f"wrk saw errors on {url}:\n{out}")
        total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        p99 = re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE)  # the "Latency Distribution" section
        lines.append(f"| {name}, wrk 16 connections, {seconds:.0f} s | {rate:.0f} req/s measured | "
                     f"server CPU {cpu / total * 1000:.2f} ms/request |")
        rates[name] = (rate, cpu / total * 1000)
        if p99:
            lines.append(f"| {name}, wrk latency p99 under that load | {p99.group(1)} | |")
    top = rates.get("bare FastAPI, constant 20 rows (ceiling)")
    ours = rates.get("OPD list, 20 rows (JSON)")
    if top is not None and ours is not None:
        lines.append(f"| OPD list, 20 rows, as a share of the ceiling | {ours[0] / top[0] * 100:.0f} % of its "
                     f"req/s | CPU per request {ours[1] / top[1]:.1f}x the ceiling's (goal: at least 15 %) |")
    return lines


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    import urllib.request

    deadline = time.monotonic() + 120  # a loaded machine starts uvicorn's workers slowly
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the server did not start") from None
            time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--complaints", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pdn-bench-"))
    pg_name = None
    if args.engine == "sqlite":
        url = f"sqlite:///{work / 'bench.sqlite3'}"
    else:
        pg_name = f"pdnops_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{pg_name}"'))
        admin.dispose()
        url = PG_ADMIN.rsplit("/", 1)[0] + f"/{pg_name}"
    server = None
    try:
        migrate.upgrade(url)
        tokens = seed(url, args.complaints)
        peer = peer_offset_vs_keyset(url)
        port = 18000 + random.randrange(1000)
        env = {**os.environ, "PDN_OPS_DATABASE_URL": url, "PDN_OPS_DATA_DIR": str(work), "PYTHONPATH": str(ROOT)}
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "bench.complaints:app_factory", "--factory", "--host", "127.0.0.1",
             "--port", str(port), "--workers", str(args.workers), "--log-level", "warning", "--no-access-log"],
            cwd=ROOT, env=env)
        base = f"http://127.0.0.1:{port}"
        wait_ready(f"{base}/healthz", server)
        calibration = calibration_cpu_seconds()
        load_before = os.getloadavg()[0]
        lines = asyncio.run(measure(base, tokens, args.seconds, server.pid))
        ceiling_port = port + 1000
        ceiling = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "bench.complaints:ceiling_factory", "--factory", "--host", "127.0.0.1",
             "--port", str(ceiling_port), "--workers", str(args.workers), "--log-level", "warning",
             "--no-access-log"], cwd=ROOT, env=env)
        try:
            wait_ready(f"http://127.0.0.1:{ceiling_port}/rows", ceiling)
            lines += wrk_throughput(base, tokens, args.seconds, server.pid,
                                    ceiling=(f"http://127.0.0.1:{ceiling_port}", ceiling.pid))
        finally:
            ceiling.send_signal(signal.SIGTERM)
            ceiling.wait(timeout=15)
        lines.append(f"| machine load average (1 min) before / after | {load_before:.1f} / {os.getloadavg()[0]:.1f} "
                     f"| other work shares the {os.cpu_count()} cores |")
        lines.append(f"| calibration: CPU for 10 million Python additions | {calibration:.2f} s | "
                     "compare with the same loop on the target machine |")
        print(f"\n## {args.engine}: {args.complaints:,} complaints, {args.workers} uvicorn workers, "
              f"{os.cpu_count()} cores\n")
        print("| measurement | figure | |\n| --- | --- | --- |")
        for line in lines + peer:
            print(line)
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        if pg_name:
            admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
