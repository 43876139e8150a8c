"""A recorded health world on top of the example inventory, for page, metrics and Prometheus tests.

pdn1: node pve1 online; VM 101 (web-dinkes) running with an SSH guest whose / is 95 % full and php-fpm inactive;
VM 102 (simpeg-disdik) stopped, so its site https://127.0.10.2/ is down *because of* the VM; VM 103 running.
Site http://127.0.10.1/ answers in 42 ms. Two job runs: proxmox:pdn1 succeeded, sites:60s failed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy.orm import Session

from pdn_ops.core.db.tables import JobStatusRow, utcnow
from pdn_ops.core.inventory import load_inventory
from pdn_ops.core.inventory_sync import sync_inventory
from pdn_ops.health import service as health
from pdn_ops.health.model import Thresholds
from pdn_ops.health.observations import (
    BackupObservation,
    ClusterObservation,
    FailureClass,
    GuestObservation,
    Mount,
    NodeObservation,
    NodePressure,
    SiteCheck,
    SshObservation,
    StorageObservation,
)
from pdn_ops.health.tables import StorageRollupRow

ROOT = Path(__file__).resolve().parent.parent
TH = Thresholds(down_after=2, up_after=2)
SITE_A, SITE_B = "http://127.0.10.1/", "https://127.0.10.2/"
TLS_EXPIRY = datetime(2027, 1, 1, tzinfo=UTC)
GiB = 2**30


def record_world(session: Session, now: datetime | None = None) -> None:
    now = now or utcnow()
    sync_inventory(session, load_inventory(ROOT / "inventory.example.yaml"), now=now - timedelta(minutes=10))
    for step in range(3):
        at = now - timedelta(minutes=3 - step)
        guests = tuple(
            GuestObservation(cluster="pdn1", vmid=vmid, node="pve1", name=f"vm{vmid}", type="qemu",
                             status="stopped" if vmid == 102 else "running", cpu=0.125, maxcpu=2,
                             mem=768 * 2**20, maxmem=2**31, disk=10 * 2**30, maxdisk=32 * 2**30, uptime=3600)
            for vmid in (101, 102, 103))
        health.record_cluster(session, ClusterObservation(
            cluster="pdn1", at=at, ok=True, quorate=True, nodes=(NodeObservation("pdn1", "pve1", True, 0.2),),
            guests=guests, api_calls=2, duration_s=0.05), thresholds=TH)
        health.record_site_checks(session, [
            SiteCheck(url=SITE_A, at=at, ok=True, status_code=200, total_s=0.042, ttfb_s=0.03, keyword_found=True),
            SiteCheck(url=SITE_B, at=at, ok=True, status_code=200, total_s=0.08, tls_expires_at=TLS_EXPIRY,
                      tls_days_left=(TLS_EXPIRY - at).total_seconds() / 86400) if step == 0 else
            SiteCheck(url=SITE_B, at=at, ok=False, failure=FailureClass.REFUSED, detail="connection refused"),
        ], thresholds=TH)
        health.record_ssh(session, [SshObservation(
            cluster="pdn1", vmid=101, at=at, ok=True, mounts=(Mount("/", 100 * 2**30, 95 * 2**30, 5 * 2**30),
                                                               Mount("/boot", 2**30, 2**28, 3 * 2**28)),
            mem_total_bytes=2**31, mem_available_bytes=2**30, load1=0.42,
            services={"nginx.service": "active", "php8.2-fpm.service": "inactive"})], thresholds=TH)
    session.add_all([
        JobStatusRow(job="proxmox:pdn1", kind="proxmox", runs_total=12, errors_total=0, last_started_at=now,
                     last_finished_at=now, last_success_at=now, last_duration_s=0.05, last_ok=True, last_error=""),
        JobStatusRow(job="sites:60s", kind="sites", runs_total=7, errors_total=2, last_started_at=now,
                     last_finished_at=now, last_success_at=now - timedelta(minutes=5), last_duration_s=1.5,
                     last_ok=False, last_error="TimeoutError: "),
    ])
    session.flush()


class Served:
    def __init__(self, app: Any, port: int) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 60.0
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                pytest.fail("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60.0)


def record_safety_net(session: Session) -> None:
    """On top of the world: VM 101 backed up 3 h ago, VM 103's backup failed and no task holds its lock (for 30 s:
    not yet stale), VM 102 in no job; local-lvm 95% full and filling for four hours (a forecast), nas for backups;
    pve1 short of memory, swapping and overloaded."""
    now = utcnow()
    hour = now.replace(minute=0, second=0, microsecond=0)
    session.add_all([StorageRollupRow(cluster="pdn1", node="pve1", storage="local-lvm", hour=hour - timedelta(hours=h),
                                      used=(95 - h) * GiB, total=100 * GiB, samples=1) for h in (4, 3, 2, 1)])
    session.flush()
    guests = tuple(GuestObservation(cluster="pdn1", vmid=v, node="pve1", name=f"vm{v}", type="qemu",
                                    status="stopped" if v == 102 else "running", cpu=0.125, maxcpu=2,
                                    mem=768 * 2**20, maxmem=2**31, disk=10 * GiB, maxdisk=32 * GiB, uptime=3600,
                                    lock="backup" if v == 103 else None, lock_free_s=30.0 if v == 103 else None)
                   for v in (101, 102, 103))
    storages = (StorageObservation(node="pve1", storage="local-lvm", plugintype="lvmthin",
                                   content=("images", "rootdir"), used=95 * GiB, total=100 * GiB,
                                   thin_data=0.95, thin_metadata=0.4),
                StorageObservation(node="pve1", storage="nas", plugintype="nfs", content=("backup",), shared=True,
                                   used=10 * GiB, total=1000 * GiB))
    backups = (BackupObservation(vmid=101, jobs=("daily",), last_ok_at=now - timedelta(hours=3), last_ok_size=5 * GiB,
                                 last_ok_storage="nas"),
               BackupObservation(vmid=102),
               BackupObservation(vmid=103, jobs=("daily",), last_ok_at=now - timedelta(days=2),
                                 last_failed_at=now - timedelta(hours=1), failed_storage="nas",
                                 failure_log="ERROR: Backup of VM 103 failed - interrupted by signal"))
    pressure = NodePressure(cpu=0.5, cpus=4, load1=8.0, mem_used=97 * GiB, mem_total=100 * GiB, swap_used=6 * GiB,
                            swap_total=10 * GiB, rootfs_used=GiB, rootfs_total=10 * GiB)
    health.record_cluster(session, ClusterObservation(
        cluster="pdn1", at=now, ok=True, quorate=True,
        nodes=(NodeObservation("pdn1", "pve1", True, 0.5, pressure=pressure),), guests=guests, storages=storages,
        backups=backups, api_calls=2, duration_s=0.05), thresholds=TH)
    session.flush()


@contextmanager
def world_app(directory: Path, *record: Callable[[Session], None]) -> Iterator[FastAPI]:
    """The demo app on a fresh SQLite database of the example inventory, holding what ``record`` writes."""
    from pdn_ops.app.factory import create_app
    from pdn_ops.app.runtime import build_runtime
    from pdn_ops.core.db import migrate
    from pdn_ops.core.db.engine import transaction
    from pdn_ops.core.settings import load_settings

    url = f"sqlite:///{directory / 'world.sqlite3'}"
    migrate.upgrade(url)
    settings = load_settings(demo=True, database_url=url, inventory=ROOT / "inventory.example.yaml",
                             run_scheduler=False)
    app = create_app(build_runtime(settings))
    with transaction(app.state.runtime.sessions) as session:
        for write in record:
            write(session)
    try:
        yield app
    finally:
        app.state.runtime.engine.dispose()
