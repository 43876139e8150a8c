"""Scale-out: two worker processes, 100 queued runs on 100 VMs, each executed exactly once.

On PostgreSQL runs are claimed with FOR UPDATE SKIP LOCKED; on SQLite the claim runs in a BEGIN IMMEDIATE
transaction (claims queue for the write lock instead of failing) and a live worker's run is protected by an flock
on a per-run file next to the database, released by the kernel when the worker dies.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from pdn_ops.core.db import migrate
from pdn_ops.core.db.engine import make_engine, make_sessionmaker, transaction
from pdn_ops.runs import model as rem
from pdn_ops.runs import service as svc
from pdn_ops.runs.tables import RemediationRunRow
from tests.remediation.world import add_vms, inventory, write_inventory

pytestmark = pytest.mark.slow
VMIDS = range(401, 501)


@pytest.mark.parametrize("engine_name", ["postgresql", "sqlite"])
def test_two_workers_execute_each_of_100_runs_exactly_once(fresh_db_url: str, fakepve: Any, fakepve_cafile: str,
                                                          tmp_path: Path) -> None:
    migrate.upgrade(fresh_db_url)
    add_vms(fakepve, VMIDS, status="stopped")
    path = write_inventory(tmp_path, fakepve, fakepve_cafile, vmids=VMIDS)
    world = inventory(path)
    engine = make_engine(fresh_db_url)
    sessions = make_sessionmaker(engine)
    try:
        with transaction(sessions) as session:
            for vmid in VMIDS:
                svc.request_run(session, world, playbook="restart_vm", target=f"pve/{vmid}", params={},
                                requester=svc.Requester("policy-engine"), idempotency_key=f"scale-{vmid}",
                                policy=rem.Policy(), trigger="rule:0")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PDN_OPS_REMEDIATION_KILL")}
        procs = [subprocess.Popen([sys.executable, "-c", "from pdn_ops.app.cli import main; main()", "remediation",
                                   "worker", "--once", "--database-url", fresh_db_url, "--inventory", str(path),
                                   "--worker-id", name], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
                 for name in ("alpha", "beta")]
        outputs = []
        for proc in procs:
            try:
                out, err = proc.communicate(timeout=600)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            outputs.append((proc.returncode, out, err[-2000:]))
        assert all(rc == 0 for rc, _, _ in outputs), outputs
        with sessions() as session:
            runs = list(session.scalars(select(RemediationRunRow)))
        assert len(runs) == 100
        assert all(r.state == "succeeded" and r.attempt == 1 for r in runs), [
            (r.id, r.state, r.attempt, r.summary) for r in runs if r.state != "succeeded" or r.attempt != 1]
        by_worker = Counter(r.claimed_by for r in runs)
        assert set(by_worker) <= {"alpha", "beta"} and sum(by_worker.values()) == 100
        starts = Counter(t["id"] for t in fakepve.tasklog if t["type"] == "qmstart")
        assert starts == Counter({str(v): 1 for v in VMIDS})  # every VM started exactly once
    finally:
        engine.dispose()
