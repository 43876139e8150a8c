"""What the safety net's playbooks need from the lab, as proxmoxer sees it: stale locks, PVE's JSON headers,
typed config values after a form PUT, a second node, migrate and restore tasks, and unlock."""

from __future__ import annotations

import pytest

from tests.lab_fixtures import lab_proxmox

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture(scope="module")
def net_lab(tmp_path_factory):
    from tests.lab_fixtures import _start, require_lab

    require_lab()
    instance = _start(tmp_path_factory.mktemp("lab"), nodes=2, vms=3, sites=0, guests=0)
    try:
        yield instance
    finally:
        instance.stop()


def test_a_stale_lock_shows_everywhere_with_its_dead_task(net_lab):
    prox = lab_proxmox(net_lab)
    upid = net_lab.faults.apply("stale_lock", {"vmid": "101", "lock": "backup"})
    node = net_lab.pve.vm(101).node
    assert prox.nodes(node).qemu(101).status.current.get()["lock"] == "backup"
    assert prox.nodes(node).qemu(101).config.get()["lock"] == "backup"
    resource = next(r for r in prox.cluster.resources.get(type="vm") if r["vmid"] == 101)
    assert resource["lock"] == "backup"
    task = prox.nodes(node).tasks(upid).status.get()
    assert (task["type"], task["id"], task["status"], task["exitstatus"]) == \
        ("vzdump", "101", "stopped", "interrupted by signal")
    assert not prox.nodes(node).tasks.get(source="active", vmid=101)
    log = [line["t"] for line in prox.nodes(node).tasks(upid).log.get()]
    assert log[-1] == "TASK ERROR: interrupted by signal"

    assert net_lab.faults.stale_lock(102, lock="snapshot", task=0) is None
    assert prox.nodes(net_lab.pve.vm(102).node).qemu(102).status.current.get()["lock"] == "snapshot"
    with pytest.raises(ValueError, match="lock must be one of"):
        net_lab.faults.stale_lock(103, lock="bogus")
    net_lab.faults.unlock(101)
    net_lab.faults.unlock(102)


def test_answers_carry_proxmox_json_content_type(net_lab):
    import requests

    response = requests.get(f"{net_lab.api_url}/api2/json/version", verify=str(net_lab.ca_file), timeout=5,
                            headers={"Authorization": f"PVEAPIToken={net_lab.token_id}={net_lab.token_secret}"})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert response.json()["data"]["version"]


def test_numbers_stay_numbers_after_a_form_put(net_lab):
    prox = lab_proxmox(net_lab)
    node = net_lab.pve.vm(103).node
    prox.nodes(node).qemu(103).config.put(cores=3, cpulimit="1.5", onboot="true")
    config = prox.nodes(node).qemu(103).config.get(current=1)
    pending = prox.nodes(node).qemu(103).config.get()
    assert pending["cores"] == 3 and isinstance(pending["cores"], int)
    assert config["cpulimit"] == 1.5 and config["onboot"] == 1
    prox.nodes(node).qemu(103).config.put(delete="cpulimit")


def test_unlock_by_deleting_the_lock_and_skiplock_is_root_only(net_lab):
    from proxmoxer import ResourceException

    prox = lab_proxmox(net_lab)
    net_lab.faults.stale_lock(103, lock="backup", task=0)
    node = net_lab.pve.vm(103).node
    with pytest.raises(ResourceException, match="VM is locked"):
        prox.nodes(node).qemu(103).config.put(description="x")
    with pytest.raises(ResourceException) as refused:
        prox.nodes(node).qemu(103).config.put(delete="lock", skiplock=1)
    assert refused.value.status_code == 400
    prox.nodes(node).qemu(103).config.put(delete="lock")
    assert "lock" not in prox.nodes(node).qemu(103).status.current.get()
    assert "lock" not in prox.nodes(node).qemu(103).config.get()


def _wait(prox, upid: str) -> dict:
    import time

    node = upid.split(":")[1]
    for _ in range(500):
        status = prox.nodes(node).tasks(upid).status.get()
        if status["status"] == "stopped":
            return status
        time.sleep(0.01)
    raise AssertionError(f"task {upid} still running")


def test_online_migration_to_the_second_node(net_lab):
    from proxmoxer import ResourceException

    prox = lab_proxmox(net_lab)
    assert {n["node"] for n in prox.nodes.get()} == {"pve1", "pve2"}
    vm = net_lab.pve.vm(101)
    source, target = vm.node, "pve2" if vm.node == "pve1" else "pve1"
    started = vm.started_at
    check = prox.nodes(source).qemu(101).migrate.get()
    assert check["allowed_nodes"] == [target] and check["local_disks"][0]["volid"].startswith("local-lvm:")
    with pytest.raises(ResourceException, match="without --online"):
        prox.nodes(source).qemu(101).migrate.post(target=target)
    with pytest.raises(ResourceException, match="no such cluster node 'pve9'"):
        prox.nodes(source).qemu(101).migrate.post(target="pve9", online=1)
    with pytest.raises(ResourceException) as local:
        prox.nodes(source).qemu(101).migrate.post(target=source, online=1)
    assert local.value.status_code == 400
    aborted = _wait(prox, prox.nodes(source).qemu(101).migrate.post(target=target, online=1))
    assert aborted["exitstatus"] == "migration aborted"
    upid = prox.nodes(source).qemu(101).migrate.post(target=target, online=1, **{"with-local-disks": 1})
    assert upid.split(":")[1] == source and upid.split(":")[5] == "qmigrate"
    assert prox.nodes(source).qemu(101).status.current.get()["lock"] == "migrate"
    assert _wait(prox, upid)["exitstatus"] == "OK"
    moved = next(r for r in prox.cluster.resources.get(type="vm") if r["vmid"] == 101)
    assert (moved["node"], moved["status"]) == (target, "running") and "lock" not in moved
    assert net_lab.pve.vm(101).started_at == started  # live: no reboot
    log = [line["t"] for line in prox.nodes(source).tasks(upid).log.get()]
    assert "migration finished successfully" in log[-2] and log[-1] == "TASK OK"


def test_restore_a_backup_to_a_new_vmid_and_in_place(net_lab):
    from proxmoxer import ResourceException

    prox = lab_proxmox(net_lab)
    net_lab.faults.backup_now(102)
    node = net_lab.pve.vm(102).node
    volid = prox.nodes(node).storage("local").content.get(content="backup", vmid=102)[-1]["volid"]
    with pytest.raises(ResourceException, match="already exists"):
        prox.nodes(node).qemu.post(vmid=102, archive=volid)
    with pytest.raises(ResourceException, match="does not exist"):
        prox.nodes(node).qemu.post(vmid=150, archive="local:backup/vzdump-qemu-102-nothing.vma.zst")
    upid = prox.nodes(node).qemu.post(vmid=150, archive=volid, storage="local-lvm", unique=1)
    assert upid.split(":")[5:7] == ["qmrestore", "150"]
    assert _wait(prox, upid)["exitstatus"] == "OK", prox.nodes(node).tasks(upid).log.get()
    restored = prox.nodes(node).qemu(150).config.get()
    original = prox.nodes(node).qemu(102).config.get()
    assert restored["scsi0"].startswith("local-lvm:vm-150-disk-0") and restored["cores"] == original["cores"]
    assert restored["net0"] != original["net0"]  # unique: a new MAC
    assert prox.nodes(node).qemu(150).status.current.get()["status"] == "stopped"

    with pytest.raises(ResourceException, match="VM is running"):
        prox.nodes(node).qemu.post(vmid=102, archive=volid, force=1)
    _wait(prox, prox.nodes(node).qemu(102).status.stop.post())
    upid = prox.nodes(node).qemu.post(vmid=102, archive=volid, force=1, start=1)
    assert _wait(prox, upid)["exitstatus"] == "OK"
    assert prox.nodes(node).qemu(102).status.current.get()["status"] == "running"
    prox.nodes(node).qemu(150).delete()
