"""A busy morning: N concurrent users against a real ``pdn-ops demo`` (SQLite: the demo as `make run` starts it,
with its lab, scheduler and workers; ``--serve`` for a bare ``pdn-ops serve`` instead) or ``pdn-ops serve``
(PostgreSQL) process, then a check of what was stored.

Mixed workload (each virtual user loops until the end, with 0.2-1 s think time, like a person clicking):
- OPD admins (80 %): log in, list their complaints, open the form, file a complaint with one photo (an
  idempotency key per filing; a refused or lost answer is retried with the same key), open it.
- Engineers (20 %): log in, read the queue, open a complaint, verify it (a 409 when a colleague was first).
A prober asks /healthz twice a second throughout and after the load.

Afterwards, from the database and the photo store: every acknowledged complaint exists exactly once (by the
unique token in its description) with its photo; no file in the store that no attachment names (orphans).

Answers counted as failures: any 5xx other than 503/507 with Retry-After, a 503/507 without Retry-After, a
timeout beyond ``--timeout`` seconds, a connection error. Refusals (503 + Retry-After) are counted apart.

    .venv/bin/python -m bench.load_mixed --engine sqlite --users 200 --seconds 60
    .venv/bin/python -m bench.load_mixed --engine postgresql --users 200 --seconds 60

A client in Python (aiohttp) because the flows need logins, CSRF tokens and uploads; it runs in its own process
and its CPU use is reported, since it shares the two cores with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import re
import resource
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench import serverproc

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]*)"')
IDEMPOTENCY_FIELD = re.compile(r'name="idempotency_key" value="([^"]*)"')
COMPLAINT_LINK = re.compile(r'href="/complaints/(\d+)"')


def photo_bytes(seed: int) -> bytes:
    from PIL import Image

    image = Image.new("RGB", (64, 48), ((seed * 37) % 256, (seed * 11) % 256, 120))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)  # 503/507 with Retry-After, by path kind
    failures: list[str] = field(default_factory=list)
    acknowledged: dict[str, int] = field(default_factory=dict)  # description token -> complaint id
    retried_filings: int = 0
    healthz: list[float] = field(default_factory=list)
    healthz_failures: int = 0

    def all_latencies(self) -> list[float]:
        return [x for values in self.latencies.values() for x in values]


class Refused(Exception):
    def __init__(self, status: int, retry_after: float) -> None:
        self.status = status
        self.retry_after = retry_after


class Client:
    def __init__(self, base: str, stats: Stats, timeout: float) -> None:
        self.base = base
        self.stats = stats
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=self.timeout)

    async def close(self) -> None:
        await self.session.close()

    async def request(self, kind: str, method: str, path: str, **kwargs: Any) -> tuple[int, str, str]:
        started = time.monotonic()
        try:
            async with self.session.request(method, self.base + path, allow_redirects=False, **kwargs) as answer:
                body = await answer.text()
                status = answer.status
                location = answer.headers.get("location", "")
                retry_after = answer.headers.get("retry-after")
        except TimeoutError:
            self.stats.failures.append(f"timeout {method} {kind}")
            raise
        except aiohttp.ClientError as exc:
            self.stats.failures.append(f"connection {method} {kind}: {type(exc).__name__}")
            raise
        elapsed = time.monotonic() - started
        self.stats.latencies[kind].append(elapsed)
        self.stats.statuses[f"{method} {kind} {status}"] += 1
        if status in (503, 507):
            if retry_after is None:
                self.stats.failures.append(f"{status} without Retry-After on {method} {kind}")
            else:
                self.stats.refusals[f"{status} {kind}"] += 1
            raise Refused(status, float(retry_after or 1))
        if status >= 500:
            self.stats.failures.append(f"{status} on {method} {kind}")
            raise Refused(status, 1)
        return status, body, location

    async def login(self, username: str) -> None:
        while True:
            _, page, _ = await self.request("login_page", "GET", "/login")
            token = CSRF_FIELD.search(page)
            status, _, _ = await self.request("login", "POST", "/login", data={
                "username": username, "password": serverproc.PASSWORD, "next": "/complaints",
                "csrf_token": token.group(1) if token else ""})
            if status == 303:
                return
            raise RuntimeError(f"login of {username} answered {status}")


async def think() -> None:
    await asyncio.sleep(random.uniform(0.2, 1.0))


async def opd_admin(client: Client, username: str, assets: list[str], deadline: float, seq: list[int]) -> None:
    await client.login(username)
    while time.monotonic() < deadline:
        await client.request("list", "GET", "/complaints")
        await think()
        _, form, _ = await client.request("form", "GET", "/complaints/new")
        csrf = CSRF_FIELD.search(form)
        key_match = IDEMPOTENCY_FIELD.search(form)
        key = key_match.group(1) if key_match else uuid.uuid4().hex
        await think()
        token = uuid.uuid4().hex
        seq[0] += 1
        photo = photo_bytes(seq[0])
        # The same key on every retry: a lost or refused answer never files it twice.
        for attempt in range(6):
            data = aiohttp.FormData()
            data.add_field("csrf_token", csrf.group(1) if csrf else "")
            data.add_field("idempotency_key", key)
            data.add_field("asset", random.choice(assets))
            data.add_field("category", "other")
            data.add_field("description", f"Situs tidak bisa dibuka sejak pagi. token={token}")
            data.add_field("photo", photo, filename="layar.jpg", content_type="image/jpeg")
            try:
                status, _, location = await client.request("file", "POST", "/complaints", data=data)
            except Refused as refused:
                if refused.status == 507:
                    break  # storage full: a person gives up for now (nothing was filed)
                client.stats.retried_filings += attempt == 0
                await asyncio.sleep(min(refused.retry_after, 5) * random.uniform(0.5, 1.5))
                continue
            except (TimeoutError, aiohttp.ClientError):
                await asyncio.sleep(1)
                continue
            match = re.search(r"/complaints/(\d+)", location)
            if status == 303 and match:
                client.stats.acknowledged[token] = int(match.group(1))
                await client.request("detail", "GET", location)
            else:
                client.stats.failures.append(f"filing answered {status}")
            break
        await think()


async def engineer(client: Client, username: str, deadline: float) -> None:
    await client.login(username)
    while time.monotonic() < deadline:
        _, queue, _ = await client.request("queue", "GET", "/complaints/queue")
        ids = COMPLAINT_LINK.findall(queue)
        await think()
        if ids:
            chosen = random.choice(ids)
            _, page, _ = await client.request("detail", "GET", f"/complaints/{chosen}")
            csrf = CSRF_FIELD.search(page)
            if csrf and "/actions/verify" in page:
                await client.request("verify", "POST", f"/complaints/{chosen}/actions/verify",
                                     data={"csrf_token": csrf.group(1)})
        await think()


async def user_loop(role: str, base: str, stats: Stats, limit: float, deadline: float, name: str,
                    assets: list[str], seq: list[int]) -> None:
    client = Client(base, stats, limit)
    try:
        while time.monotonic() < deadline:
            try:
                if role == "admin":
                    await opd_admin(client, name, assets, deadline, seq)
                else:
                    await engineer(client, name, deadline)
            except Refused as refused:
                await asyncio.sleep(min(refused.retry_after, 5) * random.uniform(0.5, 1.5))
            except (TimeoutError, aiohttp.ClientError):
                await asyncio.sleep(1)
    finally:
        await client.close()


async def prober(base: str, stats: Stats, stop: asyncio.Event) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while not stop.is_set():
            started = time.monotonic()
            try:
                async with session.get(base + "/healthz") as answer:
                    await answer.read()
                    if answer.status != 200:
                        stats.healthz_failures += 1
            except (TimeoutError, aiohttp.ClientError):
                stats.healthz_failures += 1
            stats.healthz.append(time.monotonic() - started)
            await asyncio.sleep(0.5)


async def drive(base: str, world: serverproc.World, *, users: int, seconds: float, limit: float,
                ramp: float = 5.0) -> Stats:
    stats = Stats()
    deadline = time.monotonic() + seconds
    stop = asyncio.Event()
    probe = asyncio.create_task(prober(base, stats, stop))
    seq = [0]
    tasks = []
    opds = sorted(world.admins)
    for n in range(users):
        if n % 5 == 4 and world.engineers:
            role, name, assets = "engineer", world.engineers[n % len(world.engineers)], []
        else:
            opd = opds[n % len(opds)]
            role, name, assets = "admin", world.admins[opd][(n // len(opds)) % len(world.admins[opd])], \
                world.assets[opd]
        tasks.append(asyncio.create_task(user_loop(role, base, stats, limit, deadline, name, assets, seq)))
        await asyncio.sleep(ramp / users)
    await asyncio.gather(*tasks)
    await asyncio.sleep(2)  # /healthz after the load, too
    stop.set()
    await probe
    return stats


@dataclass
class Audit:
    acknowledged: int
    missing: list[int]
    duplicated: list[str]
    without_photo: list[int]
    missing_files: list[str]
    orphans: list[str]
    stored_total: int

    @property
    def clean(self) -> bool:
        return not (self.missing or self.duplicated or self.without_photo or self.missing_files or self.orphans)


def audit(database_url: str, data_dir: Path, acknowledged: dict[str, int]) -> Audit:
    """Every acknowledged complaint exactly once with its photo; every file named by an attachment; no others."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, description FROM complaints")).all()
            attachments = conn.execute(text(
                "SELECT complaint_id, stored_name, thumb_name FROM complaint_attachments")).all()
    finally:
        engine.dispose()
    by_token: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        found = re.search(r"token=([0-9a-f]{32})", row.description or "")
        if found:
            by_token[found.group(1)].append(row.id)
    photos_of: dict[int, int] = Counter(a.complaint_id for a in attachments)
    missing = [cid for token, cid in acknowledged.items() if cid not in by_token.get(token, [])]
    duplicated = [token for token, ids in by_token.items() if len(ids) > 1]
    without_photo = [cid for cid in acknowledged.values() if photos_of.get(cid, 0) < 1]
    store = data_dir / "attachments"
    on_disk = {p.name for p in store.iterdir() if p.is_file()} if store.exists() else set()
    # A file still in staging after the server stopped is an orphan too (a filing neither published nor undone).
    staged = {f".staging/{p.name}" for p in (store / ".staging").iterdir()} if (store / ".staging").exists() else set()
    named = {a.stored_name for a in attachments} | {a.thumb_name for a in attachments}
    return Audit(acknowledged=len(acknowledged), missing=missing, duplicated=duplicated,
                 without_photo=without_photo, missing_files=sorted(named - on_disk),
                 orphans=sorted((on_disk - named) | staged), stored_total=len(rows))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def summary(stats: Stats, seconds: float, found: Audit) -> dict[str, Any]:
    latencies = stats.all_latencies()
    return {
        "requests": len(latencies), "throughput_rps": round(len(latencies) / seconds, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 1), "p95_ms": round(percentile(latencies, 95) * 1000, 1),
        "p99_ms": round(percentile(latencies, 99) * 1000, 1), "max_ms": round(max(latencies or [0]) * 1000, 1),
        "by_kind_p95_ms": {k: round(percentile(v, 95) * 1000, 1) for k, v in sorted(stats.latencies.items())},
        "refusals": dict(stats.refusals), "failures": Counter(stats.failures).most_common(10),
        "filings_acknowledged": found.acknowledged, "filings_retried": stats.retried_filings,
        "complaints_stored": found.stored_total,
        "healthz_max_ms": round(max(stats.healthz or [0]) * 1000, 1), "healthz_failures": stats.healthz_failures,
        "audit_clean": found.clean, "missing": found.missing[:5], "duplicated": found.duplicated[:5],
        "without_photo": found.without_photo[:5], "missing_files": found.missing_files[:5],
        "orphans": found.orphans[:5],
    }


def run(engine: str, users: int, seconds: float, timeout: float, pg_url: str,
        extra_env: dict[str, str] | None = None, demo: bool = True) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="pdn-load-"))
    data_dir = work / "data"
    drop = None
    if engine == "sqlite":
        url = f"sqlite:///{work / 'load.sqlite3'}"
    else:
        from sqlalchemy import create_engine, text

        name = f"pdnops_load_{uuid.uuid4().hex[:8]}"
        admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = pg_url.rsplit("/", 1)[0] + f"/{name}"

        def drop() -> None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    try:
        admins_per_opd, engineers = max(2, users // 4), max(1, users // 20)
        if engine == "sqlite" and demo:
            # The demo as `make run` starts it (its SQLite database, the lab, the scheduler and the workers in the
            # same process): it migrates and syncs its lab's inventory; the accounts are added once it answers.
            env = {"PDN_OPS_DEMO": "1", "PDN_OPS_RUN_SCHEDULER": "1", "PDN_OPS_NOTIFY_WORKER": "1", **(extra_env or {})}
            server = serverproc.start(url, data_dir, extra_env=env, command=("demo",), start_timeout=120)
            world = serverproc.prepare(url, data_dir, sync=False, admins_per_opd=admins_per_opd,
                                       engineers=engineers)
        else:
            world = serverproc.prepare(url, data_dir, admins_per_opd=admins_per_opd, engineers=engineers)
            server = serverproc.start(url, data_dir, extra_env=extra_env)
        load_before = os.getloadavg()
        try:
            cpu_before = resource.getrusage(resource.RUSAGE_SELF)
            started = time.monotonic()
            stats = asyncio.run(drive(server.url, world, users=users, seconds=seconds, limit=timeout))
            elapsed = time.monotonic() - started
            cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        finally:
            stop_seconds = server.stop()
        found = audit(url, data_dir, stats.acknowledged)
        result = summary(stats, elapsed, found)
        result.update({"engine": engine, "users": users, "seconds": seconds,
                       "process": "demo" if engine == "sqlite" and demo else "serve",
                       "client_cpu_s": round(cpu_after.ru_utime + cpu_after.ru_stime
                                             - cpu_before.ru_utime - cpu_before.ru_stime, 1),
                       "loadavg_before": [round(x, 2) for x in load_before],
                       "loadavg_after": [round(x, 2) for x in os.getloadavg()],
                       "sigterm_stop_s": round(stop_seconds, 2),
                       "server_tracebacks": server.log().count("Traceback")})
        return result
    finally:
        if drop is not None:
            drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--timeout", type=float, default=30, help="the stated bound on any answer, seconds")
    parser.add_argument("--pg-url", default=os.environ.get("PDN_OPS_TEST_PG_URL",
                                                           "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--serve", action="store_true",
                        help="on SQLite, run `pdn-ops serve` instead of `pdn-ops demo` (the default there)")
    args = parser.parse_args()
    print(json.dumps(run(args.engine, args.users, args.seconds, args.timeout, args.pg_url, demo=not args.serve),
                     indent=2))


if __name__ == "__main__":
    main()
