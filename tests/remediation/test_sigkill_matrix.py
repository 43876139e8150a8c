"""The SIGKILL matrix: a real worker process killed at each boundary of each side-effecting step, then restarted.

Asserts that no side effect happened twice (the fake's task list, the guest's command log) and that every run
ends with a recorded outcome. To keep the number of processes down, the API playbooks chain: worker k recovers
the run worker k-1 left behind (boundaries of recovered runs are not counted), then claims a fresh run and dies
at boundary k of it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from pdn_ops.core.db import migrate
from pdn_ops.core.db.engine import make_engine, make_sessionmaker, transaction
from pdn_ops.runs import model as rem
from pdn_ops.runs import service as svc
from pdn_ops.runs.tables import RemediationRunRow, RemediationStepRow
from remediation.executors.proxmox import ApiCall
from tests.remediation.pve_support import executor
from tests.remediation.sshguest import SshGuest
from tests.remediation.world import add_vms, inventory, write_inventory

pytestmark = pytest.mark.slow
FINAL = {"succeeded", "failed", "unknown"}


class Matrix:
    def __init__(self, tmp_path: Path, pve: Any, cafile: str, guest: SshGuest | None) -> None:
        self.url = f"sqlite:///{tmp_path / 'matrix.sqlite3'}"
        migrate.upgrade(self.url)
        self.engine = make_engine(self.url)
        self.sessions = make_sessionmaker(self.engine)
        self.inventory_path = write_inventory(tmp_path, pve, cafile, guest, vmids=[101, *range(301, 360)])
        self.inventory = inventory(self.inventory_path)
        self.count = 0

    def enqueue(self, playbook: str, vmid: int, params: Mapping[str, object]) -> int:
        self.count += 1
        with transaction(self.sessions) as session:
            return svc.request_run(session, self.inventory, playbook=playbook, target=f"pve/{vmid}", params=params,
                                   requester=svc.Requester("policy-engine"), idempotency_key=f"m{self.count}",
                                   policy=rem.Policy(), trigger="rule:0").id

    def worker(self, kill_at: int | None = None) -> int:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PDN_OPS_REMEDIATION_KILL")}
        if kill_at is not None:
            env.update(PDN_OPS_REMEDIATION_KILL_AT=str(kill_at), PDN_OPS_REMEDIATION_KILL_SCOPE="act")
        proc = subprocess.run(
            [sys.executable, "-c", "from pdn_ops.app.cli import main; main()", "remediation", "worker", "--once",
             "--database-url", self.url, "--inventory", str(self.inventory_path), "--worker-id", f"w{kill_at}"],
            env=env, capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode in (0, -9), proc.stderr[-2000:]
        return proc.returncode

    def runs(self) -> dict[int, RemediationRunRow]:
        with self.sessions() as session:
            return {r.id: r for r in session.scalars(select(RemediationRunRow))}

    def close(self) -> None:
        self.engine.dispose()


API_CASES: list[tuple[str, str, dict[str, object]]] = [
    ("restart_vm", "stopped", {}),
    ("resize_vm", "running", {"cores": 4}),
    ("restore_snapshot", "running", {"snapshot": "before_update"}),
]


def test_sigkill_at_every_api_boundary_never_repeats_a_task(fakepve: Any, fakepve_cafile: str,
                                                            tmp_path: Path) -> None:
    matrix = Matrix(tmp_path, fakepve, fakepve_cafile, None)
    proxmox = executor(fakepve, fakepve_cafile)
    started: dict[int, tuple[int, int]] = {}  # run id -> (vmid, task count before the run)
    vmid = 300
    try:
        for playbook, status, params in API_CASES:
            kills = 0
            for at in range(1, 30):
                vmid += 1
                add_vms(fakepve, [vmid], status=status)
                if playbook == "restore_snapshot":
                    proxmox.start(ApiCall("POST", f"/nodes/pve1/qemu/{vmid}/snapshot", {"snapname": "before_update"}),
                                  lambda _u: None)
                started[matrix.enqueue(playbook, vmid, params)] = (vmid, len(fakepve.tasklog))
                if matrix.worker(kill_at=at) == 0:
                    break
                kills += 1
            assert kills >= 4, f"{playbook}: only {kills} boundaries were cut"
        assert matrix.worker() == 0
        for run_id, run in matrix.runs().items():
            vm_id, baseline = started[run_id]
            done = Counter(t["type"] for t in fakepve.tasklog[baseline:] if t["id"] == str(vm_id))
            assert run.state == "succeeded" and run.outcome == "succeeded", (run.playbook, run_id, run.summary)
            assert all(n == 1 for n in done.values()), (run.playbook, run_id, done)
            assert fakepve.vm(vm_id).status == "running"
    finally:
        matrix.close()


SSH_CASES: list[tuple[str, dict[str, object], str]] = [
    ("restart_service", {"unit": "nginx.service"}, "systemctl restart"),
    ("free_disk", {"cleanup": "journal"}, "/usr/bin/journalctl"),
]


def test_sigkill_at_every_ssh_boundary_never_repeats_a_command(fakepve: Any, fakepve_cafile: str, tmp_path: Path,
                                                               ssh_guest: SshGuest) -> None:
    matrix = Matrix(tmp_path, fakepve, fakepve_cafile, ssh_guest)
    add_vms(fakepve, [101], status="running")
    try:
        for playbook, params, action in SSH_CASES:
            for at in range(1, 10):
                ssh_guest.reset(units={"nginx.service": "failed", "php8.2-fpm.service": "active"})
                run_id = matrix.enqueue(playbook, 101, params)
                killed = matrix.worker(kill_at=at) == -9
                if killed:
                    assert matrix.worker() == 0  # the restarted worker reconciles the orphan
                run = matrix.runs()[run_id]
                acted = [c for c in ssh_guest.commands() if c.startswith(action)]
                assert run.state in FINAL and run.outcome == run.state, (playbook, at, run.state)
                assert len(acted) <= 1, (playbook, at, acted)
                if not killed:
                    assert run.outcome == "succeeded", run.summary
                    assert at > 2
                    break
    finally:
        matrix.close()


def test_sigkill_while_the_task_still_runs_never_repeats_it(make_lab: Any, tmp_path: Path) -> None:
    """Proxmox took the call and its task is still running when the worker dies, before the UPID is stored.

    The node's task list shows finished tasks only unless asked for ``source=all``: the next worker must find the
    running task there, wait for it and go on, not start the step again. One worker dies right after a start call
    (stopped VM), another right after a graceful shutdown call (running VM); the lab keeps both tasks running for
    6 s, so they still run when the next worker reconciles both runs.
    """
    from pdn_ops.core.inventory import load_inventory
    from pdn_ops.core.locks import RunLocks
    from pdn_ops.runs.worker import Clients, Worker, WorkerConfig, proxmox_executor_for
    from tests.lab_fixtures import lab_proxmox

    lab = make_lab(vms=2, sites=0, guests=0, time_scale=0.1)
    prox = lab_proxmox(lab)
    upid = prox.nodes("pve1").qemu(101).status.stop.post()
    while prox.nodes("pve1").tasks(upid).status.get()["status"] == "running":
        time.sleep(0.05)
    lab.pve.vm(101).start_secs = lab.pve.vm(102).shutdown_secs = 60  # 6 s at the lab's time scale
    url = f"sqlite:///{tmp_path / 'running.sqlite3'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    inventory = load_inventory(lab.inventory_path)
    base_dir = lab.inventory_path.parent
    runs: dict[int, int] = {}
    with transaction(sessions) as session:
        for vmid in (101, 102):
            runs[vmid] = svc.request_run(session, inventory, playbook="restart_vm", target=f"lab/{vmid}", params={},
                                         requester=svc.Requester("policy-engine"), idempotency_key=f"r{vmid}",
                                         policy=rem.Policy(), trigger="rule:0", base_dir=base_dir).id
    env = {k: v for k, v in os.environ.items() if not k.startswith("PDN_OPS_REMEDIATION_KILL")}
    # Boundary 2 of the side-effecting steps: the first action's API call answered, its UPID not yet stored.
    env.update(PDN_OPS_REMEDIATION_KILL_AT="2", PDN_OPS_REMEDIATION_KILL_SCOPE="act")

    def killed_worker(name: str) -> None:
        proc = subprocess.run(
            [sys.executable, "-c", "from pdn_ops.app.cli import main; main()", "remediation", "worker", "--once",
             "--database-url", url, "--inventory", str(lab.inventory_path), "--worker-id", name],
            env=env, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == -9, proc.stderr[-2000:]

    held = RunLocks(engine)
    try:
        killed_worker("k1")  # claims the run on VM 101 (the lower id) and dies after the start call
        assert held.try_lock(runs[101])  # so the second worker leaves that orphan alone and claims VM 102's run
        killed_worker("k2")
        held.unlock(runs[101])
        running = {t["type"] for t in lab.pve.tasklog if t["status"] == "running"}
        assert running == {"qmstart", "qmshutdown"}, "the tasks must still run when the next worker reconciles"
        with sessions() as session:
            steps = {(s.run_id, s.name): s for s in session.scalars(select(RemediationStepRow))}
        assert steps[(runs[101], "start")].upid is None and steps[(runs[102], "shutdown")].upid is None
        worker = Worker(engine, sessions, inventory,
                        Clients(proxmox=lambda name: proxmox_executor_for(inventory, name, base_dir)),
                        WorkerConfig(worker_id="after", base_dir=base_dir))
        try:
            assert worker.run_pending() == 2
        finally:
            worker.close()
        for vmid, run_id in runs.items():
            with sessions() as session:
                run = session.get(RemediationRunRow, run_id)
                assert run is not None and run.outcome == "succeeded", (vmid, run and run.summary)
                cut = next(s for s in run.steps if s.name == ("start" if vmid == 101 else "shutdown"))
                assert cut.reconciled and cut.upid, (vmid, cut.detail)
            done = Counter(t["type"] for t in lab.pve.tasklog if t["id"] == str(vmid) and t["type"] != "qmstop")
            assert done == ({"qmstart": 1} if vmid == 101 else {"qmshutdown": 1, "qmstart": 1}), (vmid, done)
            assert lab.pve.vm(vmid).status == "running"
    finally:
        held.close()
        engine.dispose()


# The safety-net playbooks, on the lab (two nodes: fakepve has no migrate, restore or vzdump of its own). Each case
# prepares a fresh VM (a stale lock, a backup), then chains as above: each worker recovers what the one before left
# and dies at the given boundary of a fresh run. A restore in place is approved by two engineers before a worker sees
# it; its stop step (boundaries 5-8) is the same step as restart_vm's, cut above, so it is not cut again here.
SAFETY_CASES: list[tuple[str, dict[str, object], tuple[int, ...]]] = [
    ("clear_lock", {}, (1, 2)),  # a synchronous change: intent and result
    ("migrate_vm", {}, (1, 2, 3, 4)),  # intent, called, UPID stored, result
    ("restore_backup", {}, (1, 2, 3, 4)),  # the task belongs to the new VMID
    ("restore_backup", {"mode": "in_place", "start": True}, (1, 2, 3, 4, 9, 10, 11, 12)),  # safety backup, restore
]


def test_sigkill_at_every_boundary_of_the_safety_net_playbooks(make_lab: Any, tmp_path: Path) -> None:
    from pdn_ops.core.inventory import load_inventory

    lab = make_lab(nodes=2, vms=40, sites=0, guests=0)
    url = f"sqlite:///{tmp_path / 'safety.sqlite3'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    inventory = load_inventory(lab.inventory_path)
    base_dir = lab.inventory_path.parent
    runs: dict[int, tuple[str, int, dict[str, object]]] = {}

    def enqueue(playbook: str, vmid: int, params: dict[str, object]) -> None:
        with transaction(sessions) as session:
            row = svc.request_run(session, inventory, playbook=playbook, target=f"lab/{vmid}", params=params,
                                  requester=svc.Requester("policy-engine"), idempotency_key=f"s{vmid}",
                                  policy=rem.Policy(), trigger="rule:0", base_dir=base_dir)
            for engineer in ("eng1", "eng2")[:row.approvals_needed]:
                svc.approve(session, row.id, engineer=engineer, policy=rem.Policy())
            runs[row.id] = (playbook, vmid, params)

    def worker(kill_at: int | None = None) -> int:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PDN_OPS_REMEDIATION_KILL")}
        if kill_at is not None:
            env.update(PDN_OPS_REMEDIATION_KILL_AT=str(kill_at), PDN_OPS_REMEDIATION_KILL_SCOPE="act")
        proc = subprocess.run(
            [sys.executable, "-c", "from pdn_ops.app.cli import main; main()", "remediation", "worker", "--once",
             "--database-url", url, "--inventory", str(lab.inventory_path), "--worker-id", f"s{kill_at}"],
            env=env, capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode in (0, -9), proc.stderr[-2000:]
        return proc.returncode

    vmid = 100
    try:
        for playbook, params, cuts in SAFETY_CASES:
            for at in cuts:
                vmid += 1
                if playbook == "clear_lock":
                    lab.faults.stale_lock(vmid, lock="backup")
                elif playbook == "restore_backup":
                    lab.faults.backup_now(vmid)
                enqueue(playbook, vmid, params)
                assert worker(kill_at=at) == -9, f"{playbook} {params}: no boundary {at}"
        assert worker() == 0
        ours = Counter((t["type"], t["id"]) for t in lab.pve.tasklog if "!" in t["user"])
        assert ours and all(n == 1 for n in ours.values()), ours  # no task of the worker's token ran twice
        with sessions() as session:
            for run_id, (playbook, vm_id, params) in runs.items():
                run = session.get(RemediationRunRow, run_id)
                assert run is not None and run.outcome == "succeeded", (playbook, vm_id, run and run.summary)
                vm = lab.pve.vm(vm_id)
                assert vm.lock is None, (playbook, vm_id)
                if playbook == "migrate_vm":
                    assert run.summary.split("; ")[1].startswith(f"pve{2 - vm_id % 2} -> {vm.node}"), run.summary
                if params.get("mode") == "in_place":
                    assert vm.status == "running" and ours[("vzdump", str(vm_id))] == 1
    finally:
        engine.dispose()
