"""A worker killed while it reconciles another worker's run: the next worker takes the run over; nothing runs twice.

Real worker processes, killed with SIGKILL by the worker's test hook, on both engines. The run restarts a running
VM. The worker that claimed it dies right after writing the shutdown's intent (nothing sent yet); then each worker
that takes the run over dies at one point of its recovery:

    w1  just after taking the run over (the run is interrupted, nobody reconciling it);
    w2  after sending the shutdown again (the node had no such task), before storing its UPID;
    w3  after finding that shutdown in the node's task list and journaling it;
    w4  after the start call, its UPID stored;
    w5  finishes: the start reconciled by its UPID, the VM verified running.

Before a worker dying during reconciliation was handled, w2 found nothing to do (only ``running`` runs were
orphans) and the run stayed ``interrupted`` for good.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from pdn_ops.core.db import migrate
from pdn_ops.core.db.engine import make_engine, make_sessionmaker, transaction
from pdn_ops.core.db.tables import AuditRow
from pdn_ops.core.locks import LOCK_CLASS
from pdn_ops.runs import model as rem
from pdn_ops.runs import service as svc
from pdn_ops.runs.tables import RemediationRunRow, RemediationStepRow
from pdn_ops.runs.worker import KILL_ON_ENV
from tests.remediation.pve_support import tasks
from tests.remediation.world import add_vms, inventory, write_inventory

pytestmark = pytest.mark.slow

CUTS = [
    ("w0", "claimed:act:shutdown:intent"),
    ("w1", "recovering:taken"),
    ("w2", "recovering:act:shutdown:called"),
    ("w3", "recovering:act:shutdown:reconciled"),
    ("w4", "recovering:act:start:upid"),
]


def worker(url: str, inventory_path: Path, name: str, kill_on: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PDN_OPS_REMEDIATION_KILL")}
    if kill_on is not None:
        env[KILL_ON_ENV] = kill_on
    return subprocess.run(
        [sys.executable, "-c", "from pdn_ops.app.cli import main; main()", "remediation", "worker", "--once",
         "--database-url", url, "--inventory", str(inventory_path), "--worker-id", name],
        env=env, capture_output=True, text=True, timeout=120, check=False)


def wait_for_lock_release(engine: Engine, run_id: int) -> None:
    """PostgreSQL drops a dead worker's advisory lock when its backend sees the connection close: wait for that
    (the kernel releases an flock with the process itself)."""
    if engine.dialect.name != "postgresql":
        return
    import time

    deadline = time.monotonic() + 30
    with engine.connect() as conn:
        while conn.execute(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = :c "
                                "AND objid = :r AND granted"), {"c": LOCK_CLASS, "r": run_id}).scalar():
            assert time.monotonic() < deadline, "the dead worker's lock was never released"
            conn.rollback()
            time.sleep(0.05)


@pytest.mark.parametrize("engine_name", ["sqlite", "postgresql"])
def test_workers_killed_while_reconciling_hand_the_run_on_and_no_task_runs_twice(
        fresh_db_url: str, fakepve: Any, fakepve_cafile: str, tmp_path: Path) -> None:
    migrate.upgrade(fresh_db_url)
    add_vms(fakepve, [101], status="running")
    path = write_inventory(tmp_path, fakepve, fakepve_cafile, vmids=[101])
    engine = make_engine(fresh_db_url)
    sessions = make_sessionmaker(engine)
    try:
        with transaction(sessions) as session:
            run_id = svc.request_run(session, inventory(path), playbook="restart_vm", target="pve/101", params={},
                                     requester=svc.Requester("policy-engine"), idempotency_key="recovery",
                                     policy=rem.Policy(), trigger="rule:0").id
        for name, cut in CUTS:
            done = worker(fresh_db_url, path, name, cut)
            assert done.returncode == -9, (name, cut, done.returncode, done.stdout, done.stderr[-2000:])
            wait_for_lock_release(engine, run_id)
            with sessions() as session:
                run = session.get(RemediationRunRow, run_id)
                assert run is not None
                expected = "running" if name == "w0" else "interrupted"
                assert (run.state, run.claimed_by, run.outcome) == (expected, name, None), (cut, run.state)

        finished = worker(fresh_db_url, path, "w5", None)
        assert finished.returncode == 0, finished.stderr[-2000:]
        assert finished.stdout.strip() == "w5: executed 1 run(s)"

        assert tasks(fakepve, 101) == ["qmshutdown", "qmstart"], "each side effect exactly once"
        assert fakepve.vm(101).status == "running"
        with sessions() as session:
            run = session.get(RemediationRunRow, run_id)
            assert run is not None
            assert (run.state, run.outcome, run.claimed_by, run.attempt) == ("succeeded", "succeeded", "w5", 6)
            steps = {s.name: s for s in session.scalars(
                select(RemediationStepRow).where(RemediationStepRow.run_id == run_id))}
            takeovers = list(session.execute(
                select(AuditRow.actor, AuditRow.detail).where(AuditRow.action == "remediation.interrupted",
                                                              AuditRow.subject == f"remediation_run:{run_id}")
                .order_by(AuditRow.id)))
        assert {n: s.state for n, s in steps.items()} == {
            "locate": "succeeded", "shutdown": "succeeded", "status_after_shutdown": "succeeded",
            "stop": "skipped", "start": "succeeded", "verify_running": "succeeded"}
        # Both acts were cut off and reconciled from Proxmox, not sent again: the shutdown from the node's task
        # list (its UPID was never stored), the start by the UPID w4 stored.
        assert steps["shutdown"].reconciled and steps["start"].reconciled
        assert steps["shutdown"].upid and steps["start"].upid
        assert "reconciled from the task" in steps["start"].detail
        assert [actor for actor, _ in takeovers] == ["w1", "w2", "w3", "w4", "w5"]
        assert takeovers[0][1] == "worker w0 died; reconciling"
        assert all(detail == f"worker w{i} died while reconciling; reconciling again"
                   for i, (_, detail) in enumerate(takeovers[1:], start=1))
    finally:
        engine.dispose()
