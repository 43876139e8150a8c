"""API playbooks against fakepve: restart, resize, restore snapshot and the faults the lab injects."""

from __future__ import annotations

import asyncio
import gc
import threading
from typing import Any

import pytest

from pdn_ops.runs.model import Policy, StepStatus
from remediation import registry, runner
from remediation.executors.proxmox import ApiCall
from remediation.playbooks.base import RunContext, VmTarget
from tests.remediation.pve_support import executor, run_playbook, tasks

VM = VmTarget(cluster="pve", vmid=101, opd="dinkes")
CONFIG = {"cores": 2, "memory": 2048, "scsi0": "local-lvm:vm-101-disk-0,size=10G", "ostype": "l26"}


def add_vm(pve: Any, status: str = "running", vmid: int = 101) -> Any:
    return pve.add_vm(vmid, f"vm{vmid}", status=status, config=dict(CONFIG))


def test_restart_vm_starts_a_stopped_vm_once(fakepve: Any, fakepve_cafile: str) -> None:
    vm = add_vm(fakepve, "stopped")
    result, journal = run_playbook("restart_vm", VM, {}, proxmox=executor(fakepve, fakepve_cafile))
    assert result.status is StepStatus.SUCCEEDED, result.summary
    assert vm.status == "running"
    assert tasks(fakepve, 101) == ["qmstart"]
    assert journal.states()["shutdown"] == "skipped" and journal.states()["stop"] == "skipped"
    assert all(r.get("upid") for r in journal.rows.values() if r["name"] == "start")


def test_restart_vm_shuts_down_gracefully_then_starts(fakepve: Any, fakepve_cafile: str) -> None:
    add_vm(fakepve)
    result, _ = run_playbook("restart_vm", VM, {}, proxmox=executor(fakepve, fakepve_cafile))
    assert result.status is StepStatus.SUCCEEDED
    assert tasks(fakepve, 101) == ["qmshutdown", "qmstart"]
    assert "graceful shutdown" in result.summary


def test_restart_vm_stops_when_graceful_shutdown_times_out(fakepve: Any, fakepve_cafile: str) -> None:
    vm = add_vm(fakepve)
    vm.acpi = False  # the guest ignores the ACPI request: PVE's shutdown task ends in error at the timeout
    result, journal = run_playbook("restart_vm", VM, {"shutdown_timeout": 10},
                                   proxmox=executor(fakepve, fakepve_cafile))
    assert result.status is StepStatus.SUCCEEDED, result.summary
    assert tasks(fakepve, 101) == ["qmshutdown", "qmstop", "qmstart"]
    assert "forced stop" in result.summary
    assert "tolerated" in journal.rows[1]["detail"]


@pytest.mark.fakepve(time_scale=0.01)
def test_the_run_waits_for_the_graceful_shutdown_as_long_as_its_timeout_then_stops(fakepve: Any,
                                                                                   fakepve_cafile: str) -> None:
    """A guest ignoring ACPI keeps PVE's shutdown task running until the shutdown's own timeout (300 PVE seconds,
    3 s here). The executor's usual wait is shorter: the step must wait for the task to end, not give up with an
    unknown outcome while PVE is still waiting for the guest."""
    vm = add_vm(fakepve)
    vm.acpi = False
    proxmox = executor(fakepve, fakepve_cafile)
    proxmox.task_timeout = 0.5  # shorter than the shutdown, as 300 s would be against a 600 s shutdown timeout
    result, journal = run_playbook("restart_vm", VM, {"shutdown_timeout": 300}, proxmox=proxmox)
    assert result.status is StepStatus.SUCCEEDED, result.summary
    assert tasks(fakepve, 101) == ["qmshutdown", "qmstop", "qmstart"]
    assert "forced stop" in result.summary and vm.status == "running"
    assert "tolerated: task ended: VM quit/powerdown failed" in journal.rows[1]["detail"]


def test_an_answer_without_a_task_id_is_no_safety_snapshot_and_nothing_is_rolled_back(fakepve: Any,
                                                                                      fakepve_cafile: str) -> None:
    """A snapshot, a rollback or a start always answers with a UPID: an empty 200 (a proxy, a broken node) proves
    nothing happened, so it is not a success by itself; the node's task list decides, and the rollback waits."""
    vm = add_vm(fakepve)
    _snapshot(fakepve, fakepve_cafile, 101, "before_update")
    # Taken a while ago, as such a snapshot is: a qmsnapshot task of the last seconds would pass for this run's.
    fakepve.tasklog[-1]["starttime"] -= 3600
    fakepve.fail("POST", "/nodes/pve1/qemu/101/snapshot", 200, "OK", times=1)  # {"data": null}, no task
    result, journal = run_playbook("restore_snapshot", VM, {"snapshot": "before_update"}, run_id=8,
                                   proxmox=executor(fakepve, fakepve_cafile))
    assert result.status is StepStatus.FAILED, result.summary
    assert "without a task ID" in result.summary and "no such task" in result.summary
    assert journal.states()["safety_snapshot"] == "failed" and "rollback" not in journal.states()
    assert "pdn_safety_8" not in vm.snapshots
    assert tasks(fakepve, 101) == ["qmsnapshot"], "only the test's own snapshot: no rollback"


def test_the_task_list_is_read_with_running_tasks_and_only_this_clients_tasks(labpve: Any,
                                                                              fakepve_cafile: str) -> None:
    import time

    from remediation.executors.proxmox import connect

    labpve.time_scale = 0.05
    add_vm(labpve, "stopped").start_secs = 40  # 2 s real
    since = time.time()
    ours = executor(labpve, fakepve_cafile)
    assert ours.identity == "pdn-ops@pve!remediate"
    labpve.apitokens["root@pam!gui"] = "another-secret"  # a person at the Proxmox GUI, as far as we can tell
    other = connect(labpve.url, token_id="root@pam!gui", token_secret="another-secret", verify=fakepve_cafile,
                    timeout=5)
    try:
        theirs = other.nodes("pve1").qemu(101).status.start.post()
        assert ours.find_task("pve1", "qmstart", 101, since, set()) is None, "a person's task is not ours"
        assert ours.wait(theirs, 10).ok
        labpve.vm(101).status = "stopped"
        upid = ours._send(ApiCall("POST", "/nodes/pve1/qemu/101/status/start"))
        assert ours.find_task("pve1", "qmstart", 101, since, set()) == upid, "found while it still runs"
        assert ours.find_task("pve1", "qmstart", 101, since, {upid}) is None, "journaled UPIDs are excluded"
        assert ours.wait(upid, 10).ok
    finally:
        ours.close()
        other._store["session"].close()


def test_task_ending_in_error_fails_the_run(fakepve: Any, fakepve_cafile: str) -> None:
    vm = add_vm(fakepve, "stopped")
    vm.start_error = "unable to find disk local-lvm:vm-101-disk-0"
    result, journal = run_playbook("restart_vm", VM, {}, proxmox=executor(fakepve, fakepve_cafile))
    assert result.status is StepStatus.FAILED
    assert "unable to find disk" in result.summary
    assert "verify_running" not in journal.states()


def test_500_before_the_upid_with_no_task_is_a_failure(fakepve: Any, fakepve_cafile: str) -> None:
    add_vm(fakepve, "stopped")
    fakepve.fail("POST", "/nodes/pve1/qemu/101/status/start", 500, "proxy loop detected")
    result, _ = run_playbook("restart_vm", VM, {}, proxmox=executor(fakepve, fakepve_cafile))
    assert result.status is StepStatus.FAILED
    assert "no such task" in result.summary
    assert tasks(fakepve, 101) == []


def _answer_late_or_badly(pve: Any, *, delay: float = 0.0, error: bool = False) -> threading.Event:
    """PVE starts the task, then the answer is lost: too late for the client, or a 500. The event is set when
    the fake has answered (so the test does not stop the fake under a handler still sleeping)."""
    from fakepve import PveError

    original = pve._do_start
    answered = threading.Event()

    async def do_start(vm: Any, user: str, params: dict[str, Any]) -> str:
        try:
            upid: str = await original(vm, user, params)
            if delay:
                await asyncio.sleep(delay)
            if error:
                raise PveError(500, "proxy error after the worker started")
            return upid
        finally:
            answered.set()

    pve._do_start = do_start
    return answered


def test_500_after_the_task_started_is_resolved_from_the_task_list(fakepve: Any, fakepve_cafile: str) -> None:
    vm = add_vm(fakepve, "stopped")
    _answer_late_or_badly(fakepve, error=True)
    result, journal = run_playbook("restart_vm", VM, {}, proxmox=executor(fakepve, fakepve_cafile))
    assert result.status is StepStatus.SUCCEEDED, result.summary
    assert vm.status == "running" and tasks(fakepve, 101) == ["qmstart"]
    start = next(r for r in journal.rows.values() if r["name"] == "start")
    assert start["upid"].startswith("UPID:pve1:") and "no UPID" in start["detail"]


# The fake's aiohttp server leaves the abandoned connection's socket to the garbage collector.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning", "ignore::ResourceWarning")
def test_timeout_before_the_upid_is_resolved_from_the_task_list(fakepve: Any, fakepve_cafile: str) -> None:
    vm = add_vm(fakepve, "stopped")
    answered = _answer_late_or_badly(fakepve, delay=2.5)
    result, journal = run_playbook("restart_vm", VM, {}, proxmox=executor(fakepve, fakepve_cafile, timeout=1.0))
    assert answered.wait(10)
    gc.collect()
    assert result.status is StepStatus.SUCCEEDED, result.summary
    assert vm.status == "running" and tasks(fakepve, 101) == ["qmstart"]
    start = next(r for r in journal.rows.values() if r["name"] == "start")
    assert "Timeout" in start["detail"] and start["upid"]


def test_resize_plans_the_reboot_it_needs(fakepve: Any, fakepve_cafile: str) -> None:
    vm = add_vm(fakepve)
    result, _journal = run_playbook("resize_vm", VM, {"cores": 4, "memory_mib": 4096},
                                   proxmox=executor(fakepve, fakepve_cafile))
    assert result.status is StepStatus.SUCCEEDED, result.summary
    assert "reboot planned" in result.summary
    assert vm.pending == {"cores": "4", "memory": "4096"} or vm.pending == {"cores": 4, "memory": 4096}
    assert "qmreboot" not in tasks(fakepve, 101)


def test_resize_with_reboot_applies_the_change(labpve: Any, fakepve_cafile: str) -> None:
    vm = add_vm(labpve)
    result, journal = run_playbook("resize_vm", VM, {"cores": 4, "disk_grow_gib": 5, "reboot": True},
                                   proxmox=executor(labpve, fakepve_cafile))
    assert result.status is StepStatus.SUCCEEDED, result.summary
    assert "rebooted" in result.summary
    assert str(vm.config["cores"]) == "4" and not vm.pending
    assert "size=15G" in vm.config["scsi0"]
    assert tasks(labpve, 101) == ["qmconfig", "resize", "qmreboot"]
    grow = next(r for r in journal.rows.values() if r["name"] == "grow_disk")
    assert grow["intent"].endswith("disk=scsi0 size=15G"), "an absolute size, never +5G"


def test_resize_beyond_the_node_is_refused_before_any_change(fakepve: Any, fakepve_cafile: str) -> None:
    add_vm(fakepve)
    result, _journal = run_playbook("resize_vm", VM, {"cores": 120}, policy=Policy(max_cores=128),
                                   proxmox=executor(fakepve, fakepve_cafile))
    assert result.status is StepStatus.FAILED
    assert "refused" in result.summary
    assert tasks(fakepve, 101) == []


def test_resize_of_a_two_socket_vm_spreads_the_cores_over_its_sockets(fakepve: Any, fakepve_cafile: str) -> None:
    vm = fakepve.add_vm(101, "vm101", status="running", config={**CONFIG, "cores": 1, "sockets": 2})  # 2 vCPUs
    result, _journal = run_playbook("resize_vm", VM, {"cores": 4}, proxmox=executor(fakepve, fakepve_cafile))
    assert result.status is StepStatus.SUCCEEDED, result.summary
    assert str(vm.pending["cores"]) == "2", "2 cores on each of 2 sockets: the 4 vCPUs asked for, not 8"
    before = list(fakepve.tasklog)
    result, _journal = run_playbook("resize_vm", VM, {"cores": 3}, proxmox=executor(fakepve, fakepve_cafile))
    assert result.status is StepStatus.FAILED and "2 sockets" in result.summary
    assert fakepve.tasklog == before


def _snapshot(pve: Any, cafile: str, vmid: int, name: str) -> None:
    proxmox = executor(pve, cafile)
    out = proxmox.start(ApiCall("POST", f"/nodes/pve1/qemu/{vmid}/snapshot", {"snapname": name}), lambda _u: None)
    assert out.ok, out.detail


def test_restore_snapshot_takes_a_safety_snapshot_rolls_back_and_starts(fakepve: Any, fakepve_cafile: str) -> None:
    vm = add_vm(fakepve)
    _snapshot(fakepve, fakepve_cafile, 101, "before_update")
    vm.config["description"] = "bad update"
    result, _ = run_playbook("restore_snapshot", VM, {"snapshot": "before_update"}, run_id=7,
                             proxmox=executor(fakepve, fakepve_cafile))
    assert result.status is StepStatus.SUCCEEDED, result.summary
    assert "pdn_safety_7" in vm.snapshots and vm.status == "running"
    assert tasks(fakepve, 101) == ["qmsnapshot", "qmsnapshot", "qmrollback", "qmstart"]


def test_snapshot_of_another_vm_is_refused_before_any_change(fakepve: Any, fakepve_cafile: str) -> None:
    add_vm(fakepve)
    add_vm(fakepve, vmid=102)
    _snapshot(fakepve, fakepve_cafile, 102, "other_vms_snap")
    before = list(fakepve.tasklog)
    result, _ = run_playbook("restore_snapshot", VM, {"snapshot": "other_vms_snap"},
                             proxmox=executor(fakepve, fakepve_cafile))
    assert result.status is StepStatus.FAILED and "no snapshot" in result.summary
    assert fakepve.tasklog == before


def test_dry_run_shows_the_exact_api_calls() -> None:
    book = registry.playbook("restart_vm")
    ctx = RunContext(run_id=1, target=VM, params=book.validate({}, VM, Policy()), policy=Policy())
    lines = runner.plan(book, ctx)
    assert "[act] start: pve: POST /api2/json/nodes/{node}/qemu/101/status/start" in lines
    assert any("status/shutdown forceStop=0 timeout=60" in line for line in lines)


@pytest.mark.parametrize("params", [{"snapshot": "x;reboot"}, {"snapshot": "1abc"}, {}, {"snapshot": "a" * 41}])
def test_bad_snapshot_parameters_are_refused_statically(params: dict[str, object]) -> None:
    from pdn_ops.core.errors import PolicyRefused

    with pytest.raises(PolicyRefused):
        registry.playbook("restore_snapshot").validate(params, VM, Policy())


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning", "ignore::ResourceWarning")
def test_timeout_with_no_task_in_the_list_stays_unknown(fakepve: Any, fakepve_cafile: str) -> None:
    """The request never reached the worker before we gave up (and no task shows): we cannot say it failed."""
    add_vm(fakepve, "stopped")
    original = fakepve._do_start
    released = threading.Event()

    async def slow_before_start(vm: Any, user: str, params: dict[str, Any]) -> str:
        await asyncio.sleep(2.5)
        released.set()
        raise RuntimeError("the test drops this request")

    fakepve._do_start = slow_before_start
    result, _ = run_playbook("restart_vm", VM, {}, proxmox=executor(fakepve, fakepve_cafile, timeout=1.0))
    assert released.wait(10)
    fakepve._do_start = original
    gc.collect()
    assert result.status is StepStatus.UNKNOWN and "no such task" in result.summary
    assert tasks(fakepve, 101) == []
