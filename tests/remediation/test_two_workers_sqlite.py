"""A second worker never takes a live worker's run for an orphan, and takes it over once that worker is gone.

(The 100-run exactly-once test for both engines is test_two_workers_pg.py.) On SQLite the claim runs in a BEGIN IMMEDIATE transaction (claims queue for the
write lock instead of failing) and a live worker's run is protected by an flock on a per-run file next to the
database (released by the kernel when the worker dies), so a second worker starting never takes a run in progress
for an orphan.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from pdn_ops.core.db import migrate
from pdn_ops.core.db.engine import make_engine, make_sessionmaker, transaction
from pdn_ops.core.db.tables import AuditRow
from pdn_ops.runs import model as rem
from pdn_ops.runs import service as svc
from pdn_ops.runs.tables import RemediationRunRow
from pdn_ops.runs.worker import Clients, Worker, WorkerConfig
from tests.remediation.pve_support import executor, tasks
from tests.remediation.world import add_vms, inventory, write_inventory

pytestmark = pytest.mark.slow


def worker_process(url: str, inventory_path: Path, name: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PDN_OPS_REMEDIATION_KILL")}
    done = subprocess.run([sys.executable, "-c", "from pdn_ops.app.cli import main; main()", "remediation", "worker",
                           "--once", "--database-url", url, "--inventory", str(inventory_path), "--worker-id", name],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


@pytest.mark.parametrize("engine_name", ["sqlite", "postgresql"])
def test_a_second_worker_leaves_a_live_workers_run_alone_and_recovers_it_once_that_worker_is_gone(
        fresh_db_url: str, fakepve: Any, fakepve_cafile: str, tmp_path: Path) -> None:
    migrate.upgrade(fresh_db_url)
    add_vms(fakepve, [101], status="stopped")
    path = write_inventory(tmp_path, fakepve, fakepve_cafile, vmids=[101])
    world = inventory(path)
    engine = make_engine(fresh_db_url)
    sessions = make_sessionmaker(engine)
    try:
        with transaction(sessions) as session:
            run_id = svc.request_run(session, world, playbook="restart_vm", target="pve/101", params={},
                                     requester=svc.Requester("policy-engine"), idempotency_key="live",
                                     policy=rem.Policy(), trigger="rule:0").id
        alive = Worker(engine, sessions, world, Clients(proxmox=lambda _c: executor(fakepve, fakepve_cafile)),
                       WorkerConfig(worker_id="alive"))
        try:
            assert alive.claim() == run_id  # from here on "alive" is executing it, as far as anyone can tell
            assert worker_process(fresh_db_url, path, "second") == "second: executed 0 run(s)"
            with sessions() as session:
                run = session.get(RemediationRunRow, run_id)
                assert run is not None and (run.state, run.claimed_by, run.attempt) == ("running", "alive", 1)
        finally:
            alive.close()  # the worker is gone: the operating system (or the server) released its lock
        assert worker_process(fresh_db_url, path, "second") == "second: executed 1 run(s)"
        with sessions() as session:
            run = session.get(RemediationRunRow, run_id)
            assert run is not None and (run.state, run.claimed_by, run.attempt) == ("succeeded", "second", 2)
            taken = session.scalar(select(AuditRow).where(AuditRow.action == "remediation.interrupted"))
            assert taken is not None and taken.actor == "second"
        assert tasks(fakepve, 101) == ["qmstart"]
    finally:
        engine.dispose()
