"""Faults answered clearly, on a real ``pdn-ops serve``: a 20 s PostgreSQL outage, a full disk, a SIGKILL in the
middle of a filing burst. Each ends with nothing lost, no orphan file, and recovery without a restart (the
SIGKILL by nature needs one: its recovery is that the restarted process settles what the dead one left)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench import load_mixed, serverproc
from pdn_ops.complaints import service as complaints
from pdn_ops.core.db.engine import make_engine, make_sessionmaker, transaction
from tests.load.conftest import Prepared, no_traceback
from tests.load.tcp_proxy import TcpProxy
from tests.support import missing, throwaway_database


def _status(url: str, **kwargs: object) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, **kwargs)  # type: ignore[arg-type]
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status), {k.lower(): v for k, v in answer.headers.items()}, answer.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), {k.lower(): v for k, v in error.headers.items()}, error.read().decode()


def _settle_photos(url: str, data_dir: Path) -> None:
    """What the janitor does (every 15 min, and at start): files of a filing whose COMMIT failed with the
    connection are kept until then, since only the database knows whether the rows were stored."""
    engine = make_engine(url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            complaints.sweep_photos(session, data_dir, min_age_s=0)
    finally:
        engine.dispose()


@pytest.fixture
def pg_world(pg_server_url: str, tmp_path: Path) -> Iterator[Prepared]:
    with throwaway_database(pg_server_url, "pdnops_fault") as url:
        data_dir = tmp_path / "data"
        yield url, data_dir, serverproc.prepare(url, data_dir, admins_per_opd=3, engineers=2)


def test_a_20_second_postgresql_outage_answers_503_logs_once_and_recovers_without_a_restart(
        pg_world: Prepared, serve: Callable[..., serverproc.Server]) -> None:
    url, data_dir, world = pg_world
    upstream = re.search(r"@([^:/]+):(\d+)/", url)
    assert upstream is not None
    proxy = TcpProxy((upstream.group(1), int(upstream.group(2))))
    try:
        proxied = url.replace(f"@{upstream.group(1)}:{upstream.group(2)}/", f"@127.0.0.1:{proxy.port}/")
        server = serve(proxied, data_dir, extra_env={"PDN_OPS_DB_POOL_TIMEOUT": "2"})
        results: list[load_mixed.Stats] = []
        load = threading.Thread(target=lambda: results.append(asyncio.run(
            load_mixed.drive(server.url, world, users=20, seconds=32, limit=15, ramp=1))))
        load.start()
        time.sleep(5)
        proxy.cut()
        time.sleep(10)
        ready, headers, _ = _status(server.url + "/readyz")
        assert ready == 503 and "retry-after" in headers
        page, headers, body = _status(server.url + "/complaints", headers={"Cookie": "pdn_session=x"})
        assert page == 503 and headers.get("retry-after") and "Basis data sedang tidak dapat dihubungi" in body
        time.sleep(10)
        proxy.restore()
        load.join(90)
        stats = results[0]
        assert stats.failures == [], stats.failures[:5]  # every refusal a 503 with Retry-After, no 500
        assert stats.healthz_failures == 0 and max(stats.healthz) < 5
        assert sum(stats.refusals.values()) > 0
        # Recovered by itself: new logins, lists and filings work; the service says it is ready.
        after = asyncio.run(load_mixed.drive(server.url, world, users=2, seconds=1.5, limit=10, ramp=0.1))
        assert after.failures == [] and not after.refusals
        assert _status(server.url + "/readyz")[0] == 200
        log = server.log()
        server.stop()
    finally:
        proxy.close()
    no_traceback(log)
    started = [line for line in log.splitlines() if "until it passes" in line]
    # One line when it started for the web shell, one for the remediation worker; nothing per request.
    assert 1 <= len(started) <= 4, started
    assert any("over after" in line for line in log.splitlines())
    _settle_photos(url, data_dir)
    found = load_mixed.audit(url, data_dir, {**stats.acknowledged, **after.acknowledged})
    assert found.clean, found


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: a real file system that fills up (ENOSPC from the kernel, as on a full disk)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        missing("tmpfs mount", "needs root (mount -t tmpfs)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        missing("tmpfs mount", done.stderr.strip())
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(folder: Path) -> Path:
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 512, 1):  # every last byte
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                continue
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_answers_507_keeps_logins_and_recovers_without_a_restart(
        prepared: Prepared, small_disk: Path, serve: Callable[..., serverproc.Server]) -> None:
    url, _, world = prepared
    data_dir = small_disk  # the photos' disk is full; the database (elsewhere) can still write
    server = serve(url, data_dir, extra_env={"PDN_OPS_MIN_FREE_DISK_MB": "1"})
    assert _status(server.url + "/readyz")[0] == 200
    filler = _fill(data_dir)
    try:
        ready, _, body = _status(server.url + "/readyz")
        assert ready == 503 and "disk" in body
        stats = asyncio.run(load_mixed.drive(server.url, world, users=4, seconds=3, limit=10, ramp=0.2))
        # Logins and lists still work; every filing is refused 507 with Retry-After; nothing half-stored.
        assert stats.failures == [], stats.failures[:5]
        assert stats.statuses and any(k.startswith("POST login 303") for k in stats.statuses)
        assert set(stats.refusals) == {"507 file"}, stats.refusals
        assert not stats.acknowledged
        refused = asyncio.run(_one_filing(server.url, world))
        assert refused[0] == 507 and refused[1] and "Penyimpanan server penuh" in refused[2]
        attachments = data_dir / "attachments"
        leftovers = [p for p in attachments.rglob("*") if p.is_file()] if attachments.exists() else []
        assert leftovers == [], "no zero-byte or partial photo, nothing staged"
    finally:
        filler.unlink()
    # Space again: filings work and the service is ready, without a restart.
    assert _status(server.url + "/readyz")[0] == 200
    after = asyncio.run(load_mixed.drive(server.url, world, users=2, seconds=1.5, limit=10, ramp=0.1))
    assert after.failures == [] and not after.refusals and after.acknowledged
    server.stop()
    no_traceback(server.log())
    found = load_mixed.audit(url, data_dir, after.acknowledged)
    assert found.clean, found


async def _one_filing(base: str, world: serverproc.World) -> tuple[int, str | None, str]:
    import aiohttp

    stats = load_mixed.Stats()
    client = load_mixed.Client(base, stats, 10)
    try:
        opd = sorted(world.admins)[0]
        await client.login(world.admins[opd][0])
        _, form, _ = await client.request("form", "GET", "/complaints/new")
        csrf = load_mixed.CSRF_FIELD.search(form)
        data = aiohttp.FormData()
        data.add_field("csrf_token", csrf.group(1) if csrf else "")
        data.add_field("asset", world.assets[opd][0])
        data.add_field("category", "other")
        data.add_field("description", "Disk penuh, coba ajukan")
        data.add_field("photo", load_mixed.photo_bytes(1), filename="a.jpg", content_type="image/jpeg")
        async with client.session.post(base + "/complaints", data=data, allow_redirects=False) as answer:
            return answer.status, answer.headers.get("retry-after"), await answer.text()
    finally:
        await client.close()


def test_sigkill_in_a_filing_burst_loses_nothing_and_the_restarted_server_settles_the_rest(
        prepared: Prepared, serve: Callable[..., serverproc.Server]) -> None:
    url, data_dir, world = prepared
    env = {"PDN_OPS_PHOTO_JANITOR_MIN_AGE_S": "0"}
    server = serve(url, data_dir, extra_env=env)
    port = int(server.url.rsplit(":", 1)[1])
    results: list[load_mixed.Stats] = []
    load = threading.Thread(target=lambda: results.append(asyncio.run(
        load_mixed.drive(server.url, world, users=30, seconds=16, limit=10, ramp=0.5))))
    load.start()
    time.sleep(4)
    server.kill()  # SIGKILL: no cleanup of any kind
    restarted = serve(url, data_dir, extra_env=env, port=port)
    load.join(60)
    stats = results[0]
    # Filings cut by the kill were retried with their key by the clients once the server was back.
    assert stats.acknowledged
    restarted.stop()
    no_traceback(restarted.log())
    found = load_mixed.audit(url, data_dir, stats.acknowledged)
    # Every acknowledged complaint exactly once with its photo; nothing staged or unnamed left behind.
    assert found.clean, found
