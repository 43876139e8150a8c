"""The safety-net playbooks end to end in the lab (two nodes): a fault, the worker runs the playbook, the real
checks (sites over HTTPS, guests over SSH) confirm the closure. A restore in place waits for two engineers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from pdn_ops.core.db.engine import transaction
from pdn_ops.core.errors import PolicyRefused
from pdn_ops.runs import model as rem
from pdn_ops.runs import service as svc
from pdn_ops.runs.tables import RemediationRunRow
from tests.remediation.test_lab_end_to_end import LabWorld, _serving
from tests.remediation.world import lab_with_database

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning", "ignore::ResourceWarning")]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabWorld]:
    directory = tmp_path_factory.mktemp("safety-e2e")
    with lab_with_database(directory, vms=4, sites=4, nodes=2) as (lab, inventory, sessions):
        world = LabWorld(lab, inventory, sessions)
        try:
            yield world
        finally:
            world.worker.close()


def confirm(world: LabWorld, run_id: int, vmid: int) -> RemediationRunRow:
    """The worker runs the playbook; the guest's checks (after it booted, if it had to) confirm the closure."""
    assert world.worker.run_pending() >= 1
    row = world.run(run_id)
    assert row.outcome == "succeeded", row.summary
    _serving(world, vmid)
    world.until_closed(vmid)
    return world.run(run_id)


def test_a_stale_lock_is_cleared_with_its_history(world: LabWorld) -> None:
    dead = world.lab.faults.stale_lock(101, lock="backup")
    world.check(101)
    run_id = world.request("clear_lock", 101, {}, "e2e-clear-lock")
    done = confirm(world, run_id, 101)
    assert (done.outcome, done.closure) == ("succeeded", "confirmed"), done.summary
    assert world.lab.pve.vm(101).lock is None
    inspect = next(s for s in done.steps if s.name == "inspect_lock")
    assert inspect.facts["lock_task"]["upid"] == dead and dead in done.summary


def test_a_vm_migrates_online_to_the_other_node(world: LabWorld) -> None:
    vm = world.lab.pve.vm(102)
    source, started = vm.node, vm.started_at
    run_id = world.request("migrate_vm", 102, {}, "e2e-migrate")
    done = confirm(world, run_id, 102)
    assert (done.outcome, done.closure) == ("succeeded", "confirmed"), done.summary
    assert vm.node != source and vm.status == "running" and vm.started_at == started
    assert "most free memory" in done.summary and "(online)" in done.summary


def test_a_bad_update_is_undone_by_a_restore_in_place_after_two_approvals(world: LabWorld) -> None:
    vmid = 103
    world.lab.faults.backup_now(vmid)
    good = int(time.time()) + 1
    # The run's fresh backup of the broken state must fall in a later second: a backup's name and ctime have
    # one-second resolution, and one taken in the same second would replace the good one (same volume name).
    time.sleep(1.1)
    world.lab.faults.ship_bad_update(vmid)
    assert not any(world.check(vmid))
    run_id = world.request("restore_backup", vmid, {"mode": "in_place", "start": True, "before": good},
                           "e2e-restore-in-place")
    with transaction(world.sessions) as session:
        row = svc.get_run(session, run_id)
        assert (row.state, row.approvals_needed) == ("awaiting_approval", 2)
        svc.approve(session, run_id, engineer="eng1", policy=rem.Policy())
        with pytest.raises(PolicyRefused, match="already approved"):
            svc.approve(session, run_id, engineer="eng1", policy=rem.Policy())
        assert svc.get_run(session, run_id).state == "awaiting_approval"
        svc.approve(session, run_id, engineer="eng2", policy=rem.Policy())
        assert svc.get_run(session, run_id).state == "approved"
    done = confirm(world, run_id, vmid)
    assert (done.outcome, done.closure) == ("succeeded", "confirmed"), done.summary
    assert [s.name for s in done.steps if s.state == "succeeded"][2:5] == ["safety_backup", "stop", "restore"]
    backups = [k for k in world.lab.pve.storages["local"]["volumes"] if f"vzdump-qemu-{vmid}-" in k]
    assert len(backups) == 2  # the one restored, and the fresh backup of the broken state taken first
    assert all(ok for ok in world.check(vmid))


def test_a_restore_to_a_new_vmid_takes_the_last_backup_from_before_the_problem(world: LabWorld) -> None:
    """The site fails after the first backup; a second backup is taken while it fails. Asked without a backup,
    the run is given when the problem began (its first failed check) and restores the first backup, as a new VM;
    the broken VM is left alone (here the engineer then switches the site over, and its checks close the run)."""
    vmid = 104
    world.lab.faults.backup_now(vmid)
    good = max(v["ctime"] for k, v in world.lab.pve.storages["local"]["volumes"].items() if f"-{vmid}-" in k)
    time.sleep(1.1)
    world.lab.faults.site_error(vmid)
    for _ in range(3):
        assert not any(world.check(vmid))
    time.sleep(1.1)  # the backup taken while broken is a second later
    world.lab.faults.backup_now(vmid)
    run_id = world.request("restore_backup", vmid, {}, "e2e-restore-new")
    with world.sessions() as session:
        row = svc.get_run(session, run_id)
        assert row.approvals_needed == 0 and good < row.params["before"] <= int(time.time())
    assert world.request("restore_backup", vmid, {}, "e2e-restore-new") == run_id  # a retry is the same request
    world.lab.faults.site_ok(vmid)
    done = confirm(world, run_id, vmid)
    assert (done.outcome, done.closure) == ("succeeded", "confirmed"), done.summary
    chosen = next(s for s in done.steps if s.name == "choose_backup").facts
    assert chosen["backup_ctime"] == good
    restored: Any = world.lab.pve.vm(105)
    assert restored is not None and restored.status == "stopped" and "as VM 105 on local-lvm" in done.summary
    assert world.lab.pve.vm(vmid).status == "running"
