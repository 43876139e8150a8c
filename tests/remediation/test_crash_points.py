"""Every playbook cut at every step boundary (in process, fast), then resumed from its journal.

The subprocess SIGKILL matrix (test_sigkill_matrix.py) does the same with a real worker and a real database for
the boundaries of side-effecting steps; this test covers every boundary, reads included, of every playbook.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from pdn_ops.runs.model import Outcome, Policy, StepStatus
from remediation import registry, runner
from remediation.executors.proxmox import ApiCall, ProxmoxExecutor
from remediation.executors.ssh import SshExecutor, SshTarget
from remediation.playbooks.base import RunContext, VmTarget
from tests.remediation.pve_support import MemoryJournal, executor
from tests.remediation.sshguest import SshGuest

CONFIG = {"cores": 2, "memory": 2048, "scsi0": "local-lvm:vm-{0}-disk-0,size=10G"}


class Crash(BaseException):
    """Stands for SIGKILL: nothing after the boundary runs, nothing is cleaned up."""


def cutter(at: int) -> Any:
    seen = {"n": 0}

    def boundary(label: str) -> None:
        seen["n"] += 1
        if seen["n"] == at:
            raise Crash(label)
    return boundary


def crash_then_resume(name: str, target: VmTarget, params: Mapping[str, object], at: int, **clients: Any,
                      ) -> tuple[runner.RunResult | None, MemoryJournal, bool]:
    book = registry.playbook(name)
    clean = book.validate(params, target, Policy())
    journal = MemoryJournal()
    crashed = False
    try:
        result = runner.run(book, RunContext(run_id=at, target=target, params=clean, policy=Policy(), **clients),
                            journal, boundary=cutter(at))
        return result, journal, crashed
    except Crash:
        crashed = True
    # A new worker: fresh context (facts come back from the journal), the same journal.
    result = runner.run(book, RunContext(run_id=at, target=target, params=clean, policy=Policy(), **clients),
                        journal)
    return result, journal, crashed


API_CASES: dict[str, tuple[str, str, dict[str, object]]] = {
    "restart_vm_stopped": ("restart_vm", "stopped", {}),
    "restart_vm_running": ("restart_vm", "running", {}),
    "resize_vm": ("resize_vm", "running", {"cores": 4, "disk_grow_gib": 5, "reboot": True}),
    "restore_snapshot": ("restore_snapshot", "running", {"snapshot": "before_update"}),
}


@pytest.mark.parametrize("case", sorted(API_CASES))
def test_api_playbook_cut_at_every_boundary_never_repeats_a_task(labpve: Any, fakepve_cafile: str,
                                                                 case: str) -> None:
    fakepve = labpve  # the lab's API: resizes really grow the disk, so growing it twice would show
    name, status, params = API_CASES[case]
    proxmox = executor(fakepve, fakepve_cafile)
    for at in range(1, 60):
        vmid = 200 + at
        vm = fakepve.add_vm(vmid, f"vm{vmid}", status=status,
                            config={k: v.format(vmid) if isinstance(v, str) else v for k, v in CONFIG.items()})
        if name == "restore_snapshot":
            proxmox.start(ApiCall("POST", f"/nodes/pve1/qemu/{vmid}/snapshot", {"snapname": "before_update"}),
                          lambda _u: None)
        baseline = len(fakepve.tasklog)
        target = VmTarget(cluster="pve", vmid=vmid, opd="dinkes")
        result, _journal, crashed = crash_then_resume(name, target, params, at, proxmox=proxmox)
        done = Counter(t["type"] for t in fakepve.tasklog[baseline:] if t["id"] == str(vmid))
        assert result is not None and result.status is StepStatus.SUCCEEDED, (at, result and result.summary)
        assert all(count == 1 for count in done.values()), (at, done)
        assert vm.status == "running"
        if "disk_grow_gib" in params:
            assert "size=15G" in vm.config["scsi0"], (at, vm.config["scsi0"])
        if not crashed:
            assert at > 3  # every playbook has more than three boundaries: the loop did cut some
            break
    else:
        pytest.fail("the playbook never completed without a cut")


class DiesAfterTheResize(ProxmoxExecutor):
    """The real executor, dying (Crash) right after Proxmox answered the resize: nothing after it is journaled."""

    def start(self, call: ApiCall, on_upid: Callable[[str], None], *, timeout: float | None = None,
              synchronous: bool = False) -> Outcome:
        outcome = super().start(call, on_upid, timeout=timeout, synchronous=synchronous)
        if call.path.endswith("/resize"):
            raise Crash(f"after {call.describe()}: {outcome.detail}")
        return outcome


@pytest.mark.parametrize("version", ["7.4-3", "8.2.4"])
def test_a_crash_right_after_the_resize_never_grows_the_disk_twice(labpve: Any, fakepve_cafile: str,
                                                                   version: str) -> None:
    """On PVE 7 a resize is done within the call and leaves no task: after a crash only the disk's size tells."""
    labpve.version = version
    vm = labpve.add_vm(101, "vm101", status="running", config={k: v.format(101) if isinstance(v, str) else v
                                                               for k, v in CONFIG.items()})
    target = VmTarget(cluster="pve", vmid=101, opd="dinkes")
    book = registry.playbook("resize_vm")
    params = book.validate({"disk_grow_gib": 5}, target, Policy())
    journal = MemoryJournal()
    with pytest.raises(Crash):
        runner.run(book, RunContext(run_id=1, target=target, params=params, policy=Policy(),
                                    proxmox=executor(labpve, fakepve_cafile, cls=DiesAfterTheResize)), journal)
    assert "size=15G" in vm.config["scsi0"]
    result = runner.run(book, RunContext(run_id=1, target=target, params=params, policy=Policy(),
                                         proxmox=executor(labpve, fakepve_cafile)), journal)
    assert result.status is StepStatus.SUCCEEDED, result.summary
    assert "size=15G" in vm.config["scsi0"], "grown once, to the size asked for"
    grow = next(r for r in journal.rows.values() if r["name"] == "grow_disk")
    assert grow["reconciled"], grow["detail"]
    assert len([t for t in labpve.tasklog if t["type"] == "resize"]) == (0 if version.startswith("7") else 1)


SSH_CASES: dict[str, tuple[str, dict[str, object], str]] = {
    "restart_service": ("restart_service", {"unit": "nginx.service"}, "systemctl restart"),
    "free_disk": ("free_disk", {"cleanup": "journal"}, "/usr/bin/journalctl"),
}


@pytest.mark.parametrize("case", sorted(SSH_CASES))
def test_ssh_playbook_cut_at_every_boundary_never_repeats_a_command(ssh_guest: SshGuest, ssh_target: SshTarget,
                                                                    case: str) -> None:
    name, params, action = SSH_CASES[case]
    target = VmTarget(cluster="pve", vmid=101, opd="dinkes", services=("nginx.service",),
                      cleanup={"journal": ("/usr/bin/journalctl", "--vacuum-size=100M")}, ssh=ssh_target)
    outcomes = []
    for at in range(1, 30):
        ssh_guest.reset(units={"nginx.service": "failed"})
        result, _journal, crashed = crash_then_resume(name, target, params, at, ssh=SshExecutor(), ssh_timeout=5)
        acted = [c for c in ssh_guest.commands() if c.startswith(action)]
        assert len(acted) <= 1, (at, acted)
        assert result is not None
        # Cut after the intent but before the command was sent, the guest cannot tell us whether it ran: unknown.
        assert result.status in (StepStatus.SUCCEEDED, StepStatus.UNKNOWN), (at, result.summary)
        if result.status is StepStatus.SUCCEEDED:
            assert acted or ssh_guest.units()["nginx.service"] == "active"
        outcomes.append(result.status)
        if not crashed:
            break
    assert outcomes.count(StepStatus.SUCCEEDED) >= len(outcomes) - 1
