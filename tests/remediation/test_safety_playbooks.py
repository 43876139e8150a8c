"""The safety-net playbooks (restore from backup, migrate, clear a stale lock) against the lab's Proxmox API: their
dry runs, what they choose and why, and every bad parameter refused before any change (no act step runs, no task
starts)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pdn_ops.core.errors import PolicyRefused
from pdn_ops.runs.model import Policy, StepStatus
from pdn_ops.runs.service import playbook_approvals
from remediation import registry, runner
from remediation.playbooks.base import RunContext, VmTarget
from remediation.playbooks.restore_backup import next_free_vmid, suggest_backup
from tests.remediation.pve_support import MemoryJournal, run_playbook

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
ACTS = {"safety_backup", "stop", "restore", "migrate", "unlock"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.lab_fixtures import _start, require_lab

    require_lab()
    instance = _start(tmp_path_factory.mktemp("safety"), nodes=2, vms=8, sites=0, guests=0)
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="module")
def proxmox(lab: Any) -> Iterator[Any]:
    from pdn_ops.core.inventory import load_inventory
    from pdn_ops.runs.worker import proxmox_executor_for

    executor = proxmox_executor_for(load_inventory(lab.inventory_path), "lab", lab.inventory_path.parent)
    executor.poll_interval = 0.02
    try:
        yield executor
    finally:
        executor.close()


def target(vmid: int) -> VmTarget:
    return VmTarget(cluster="lab", vmid=vmid, opd="dinkes")


def run(proxmox: Any, playbook: str, vmid: int, params: dict[str, object]) -> tuple[Any, MemoryJournal]:
    return run_playbook(playbook, target(vmid), params, proxmox=proxmox)


def refused_before_acting(lab: Any, proxmox: Any, playbook: str, vmid: int, params: dict[str, object],
                          reason: str) -> None:
    before = len(lab.pve.tasklog)
    result, journal = run(proxmox, playbook, vmid, params)
    assert result.status is StepStatus.FAILED, result.summary
    assert reason in result.summary, result.summary
    assert not ACTS & set(journal.states()), journal.states()
    assert len(lab.pve.tasklog) == before  # no task started


def test_the_dry_runs_show_the_exact_calls() -> None:
    for name, params, expected in (
            ("clear_lock", {}, "[act] unlock: lab: PUT /api2/json/nodes/{node}/qemu/101/config delete=lock"),
            ("migrate_vm", {"target": "pve2"},
             "[act] migrate: lab: POST /api2/json/nodes/{node}/qemu/101/migrate online=1 target=pve2"),
            ("restore_backup", {"vmid": 150, "storage": "local-lvm"},
             "[act] restore: lab: POST /api2/json/nodes/{node}/qemu archive={backup} storage=local-lvm unique=1 "
             "vmid=150")):
        book = registry.playbook(name)
        clean = book.validate(params, target(101), Policy())
        lines = runner.plan(book, RunContext(run_id=0, target=target(101), params=clean, policy=Policy()))
        assert expected in lines, lines
    in_place = registry.playbook("restore_backup").validate({"mode": "in_place"}, target(101), Policy())
    lines = runner.plan(registry.playbook("restore_backup"),
                        RunContext(run_id=0, target=target(101), params=in_place, policy=Policy()))
    assert any(line.startswith("[act] safety_backup: lab: POST /api2/json/nodes/{node}/vzdump") for line in lines)
    assert any("force=1" in line for line in lines)


@pytest.mark.parametrize(("playbook", "params", "reason"), [
    ("restore_backup", {"backup": "local:backup/vzdump-qemu-102-2026_01_01-00_00_00.vma.zst"},
     "is a backup of VM 102, not of VM 101"),
    ("restore_backup", {"backup": "local:iso/debian.iso"}, "is not a Proxmox backup volume"),
    ("restore_backup", {"mode": "sideways"}, "restore mode must be one of"),
    ("restore_backup", {"vmid": 101}, "VMID 101 already taken"),
    ("restore_backup", {"vmid": "x"}, "new VMID must be a whole number"),
    ("restore_backup", {"mode": "in_place", "vmid": 150}, "restore in place keeps the VM's own VMID"),
    ("restore_backup", {"storage": "Local LVM"}, "is not a Proxmox storage name"),
    ("restore_backup", {"before": "yesterday"}, "start of the problem must be"),
    ("restore_backup", {"start": "maybe"}, "start must be true or false"),
    ("restore_backup", {"wipe": 1}, "unknown parameters"),
    ("migrate_vm", {"target": "pve 2"}, "is not a Proxmox node name"),
    ("migrate_vm", {"online": "sometimes"}, "online must be true or false"),
    ("clear_lock", {"lock": "everything"}, "is not a Proxmox lock"),
])
def test_bad_parameters_are_refused_when_requested(playbook: str, params: dict[str, object], reason: str) -> None:
    with pytest.raises(PolicyRefused, match=reason):
        registry.playbook(playbook).validate(params, target(101), Policy())


def test_the_suggested_backup_is_the_last_good_one_before_the_problem() -> None:
    backups = [{"volid": "a", "ctime": 100}, {"volid": "b", "ctime": 200, "verification": {"state": "failed"}},
               {"volid": "c", "ctime": 150}, {"volid": "d", "ctime": 300}]
    assert (suggest_backup(backups, 250) or {}).get("volid") == "c"  # b is newer but failed its verification
    assert (suggest_backup(backups, None) or {}).get("volid") == "d"
    assert suggest_backup(backups, 50) is None
    assert next_free_vmid({101, 102, 103, 105}, 101) == 104
    assert playbook_approvals("restore_backup", {"mode": "in_place"}) == 2
    assert playbook_approvals("restore_backup", {"mode": "new"}) == 0
    assert playbook_approvals("restart_vm", {}) == 0


def test_clear_lock_keeps_the_lock_history_and_refuses_a_held_lock(lab: Any, proxmox: Any) -> None:
    refused_before_acting(lab, proxmox, "clear_lock", 101, {}, "VM 101 is not locked")
    dead = lab.faults.stale_lock(101, lock="backup")
    refused_before_acting(lab, proxmox, "clear_lock", 101, {"lock": "snapshot"}, "is locked (backup), not (snapshot)")
    result, _journal = run(proxmox, "clear_lock", 101, {"lock": "backup"})
    assert result.status is StepStatus.SUCCEEDED, result.summary
    assert result.facts["lock_task"]["upid"] == dead and result.facts["lock_task"]["status"] == "interrupted by signal"
    assert dead in [t["upid"] for t in result.facts["lock_history"]]
    assert f"left by vzdump {dead}" in result.summary
    assert lab.pve.vm(101).lock is None and "lock" not in lab.pve.vm(101).config

    # A backup that is still running holds its lock: refused, and the lock is still there afterwards.
    lab.pve.backup_secs = 100  # 2 s at the lab's time scale
    try:
        upid = lab.call(lab.pve._lab_vzdump({"node": lab.pve.vm(103).node, "vmid": "103", "storage": "local"},
                                            "root@pam"))
        refused_before_acting(lab, proxmox, "clear_lock", 103, {}, "a running task holds the lock of VM 103")
        assert lab.pve.vm(103).lock == "backup"
    finally:
        lab.pve.backup_secs = 2.0
    proxmox.wait(upid, 30)


def test_migrate_goes_online_to_the_node_with_room_and_says_why(lab: Any, proxmox: Any) -> None:
    vm = lab.pve.vm(102)
    here, there = vm.node, "pve1" if vm.node == "pve2" else "pve2"
    refused_before_acting(lab, proxmox, "migrate_vm", 102, {"target": "pve9"}, "node pve9 is not in the cluster")
    refused_before_acting(lab, proxmox, "migrate_vm", 102, {"target": here}, f"VM 102 is already on node {here}")
    lab.faults.node_pressure(there, memory=0.97)
    try:
        refused_before_acting(lab, proxmox, "migrate_vm", 102, {}, "no node has room for VM 102")
        refused_before_acting(lab, proxmox, "migrate_vm", 102, {"target": there}, f"node {there} has no room")
    finally:
        lab.faults.node_pressure(there, on=0)
    lab.faults.lock(102, "snapshot")
    try:
        refused_before_acting(lab, proxmox, "migrate_vm", 102, {}, "VM 102 is locked (snapshot)")
    finally:
        lab.faults.unlock(102)
    started = vm.started_at
    result, journal = run(proxmox, "migrate_vm", 102, {})
    assert result.status is StepStatus.SUCCEEDED, result.summary
    assert (result.facts["target"], result.facts["online"], result.facts["with_local_disks"]) == (there, 1, 1)
    assert "most free memory" in result.summary and f"{here} -> {there} (online)" in result.summary
    assert vm.node == there and vm.status == "running" and vm.started_at == started
    assert journal.rows[2]["upid"].split(":")[5] == "qmigrate"


def test_restore_to_a_new_vmid_next_to_the_vm_on_a_storage_with_room(lab: Any, proxmox: Any) -> None:
    import time

    refused_before_acting(lab, proxmox, "restore_backup", 104, {}, "VM 104 has no good backup")
    lab.faults.backup_now(104)
    first = max(v["ctime"] for k, v in lab.pve.storages["local"]["volumes"].items() if "-104-" in k)
    time.sleep(1.1)  # the next backup's volume name (and ctime) is a second later
    lab.faults.backup_now(104)
    refused_before_acting(lab, proxmox, "restore_backup", 104, {"vmid": 105}, "VMID 105 already taken")
    refused_before_acting(lab, proxmox, "restore_backup", 104, {"storage": "nowhere"},
                          "storage nowhere is not a storage of node")
    refused_before_acting(lab, proxmox, "restore_backup", 104,
                          {"backup": "local:backup/vzdump-qemu-104-2020_01_01-00_00_00.vma.zst"},
                          "no backup local:backup/vzdump-qemu-104-2020_01_01-00_00_00.vma.zst of VM 104")
    lab.faults.fill_storage("local-lvm", percent=100)
    try:
        refused_before_acting(lab, proxmox, "restore_backup", 104, {}, "no storage has room for the restore of VM 104")
    finally:
        lab.faults.fill_storage("local-lvm", percent=0)

    result, _journal = run(proxmox, "restore_backup", 104, {"before": first + 1})
    assert result.status is StepStatus.SUCCEEDED, result.summary
    assert result.facts["backup_ctime"] == first  # the last good one before the problem, not the newest
    assert result.facts["new_vmid"] == 109 and result.facts["storage"] == "local-lvm"  # 101-108 are taken
    restored = lab.pve.vm(109)
    assert restored.status == "stopped" and restored.config["scsi0"].startswith("local-lvm:vm-109-disk-0")
    assert restored.config["net0"] != lab.pve.vm(104).config["net0"]
    assert lab.pve.vm(104).status == "running"  # the broken VM is not touched


def test_the_alerts_link_the_safety_net_playbooks_by_registered_names() -> None:
    from pdn_ops.alerts.model import PLAYBOOKS_FOR

    assert PLAYBOOKS_FOR["PdnVmStaleLock"] == ("clear_lock",) and "restore_backup" in PLAYBOOKS_FOR["PdnVmDown"]
    assert {p for names in PLAYBOOKS_FOR.values() for p in names} <= set(registry.PLAYBOOKS)
