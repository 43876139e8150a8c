"""The lab's Proxmox API as proxmoxer sees it: token and ticket auth, tasks, errors, resize, snapshots, config."""

from __future__ import annotations

import hashlib
import socket
import ssl
import time

import pytest
from proxmoxer import ResourceException
from proxmoxer.tools import Tasks

from pdn_ops.core.inventory import load_inventory, resolve_secret, resolve_secret_path
from tests.lab_fixtures import lab_proxmox


def _wait_task(prox, upid: str) -> dict:
    status = Tasks.blocking_status(prox, upid, timeout=20, polling_interval=0.02)
    assert status is not None, f"task {upid} did not finish"
    return status


def _resources(prox, vmid: int) -> dict:
    return next(r for r in prox.cluster.resources.get(type="vm") if r["vmid"] == vmid)


def test_inventory_is_valid_and_points_at_the_lab(lab):
    inv = load_inventory(lab.inventory_path)
    cluster = inv.clusters[0]
    assert cluster.api_url == lab.api_url
    assert cluster.tls.fingerprint == lab.fingerprint
    assert resolve_secret(cluster.token_secret, lab.inventory_path.parent).get_secret_value() == lab.token_secret
    vm = inv.vm("lab/101")
    assert vm is not None and vm.ssh is not None
    assert vm.ssh.host_key == lab.guest(101).host_key
    assert resolve_secret_path(vm.ssh.key, lab.inventory_path.parent) == lab.client_key_path
    assert [s.url for s in inv.sites] == [*lab.guest(101).site_urls, *lab.guest(102).site_urls]
    assert lab.token_secret not in lab.inventory_path.read_text()


def test_api_certificate_matches_the_pinned_fingerprint(lab):
    host, port = lab.api_url.removeprefix("https://").split(":")
    ctx = ssl.create_default_context(cafile=str(lab.ca_file))
    with socket.create_connection((host, int(port)), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=host) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    digest = hashlib.sha256(der).hexdigest().upper()
    assert ":".join(digest[i:i + 2] for i in range(0, 64, 2)) == lab.fingerprint


def test_token_auth_reads_cluster_state(lab):
    prox = lab_proxmox(lab)
    assert prox.version.get()["release"]
    vms = prox.cluster.resources.get(type="vm")
    assert sorted(v["vmid"] for v in vms) == [101, 102, 103]
    assert all(v["status"] == "running" and v["type"] == "qemu" for v in vms)
    status = prox.cluster.status.get()
    assert {e["type"] for e in status} == {"cluster", "node"}
    assert sum(e.get("local", 0) for e in status if e["type"] == "node") == 1
    assert prox.nodes.get()[0]["ssl_fingerprint"] == lab.fingerprint
    current = prox.nodes("pve1").qemu(101).status.current.get()
    assert current["status"] == "running" and current["ha"] == {"managed": 0}
    node = prox.nodes("pve1").status.get()
    assert node["memory"]["total"] > node["memory"]["used"] > 0


def test_ticket_auth_reads_and_acts_with_csrf(lab):
    prox = lab_proxmox(lab, ticket=True)
    assert {v["vmid"] for v in prox.nodes("pve1").qemu.get()} == {101, 102, 103}
    upid = prox.nodes("pve1").qemu(103).config.post(description="checked by ticket auth")
    assert _wait_task(prox, upid)["exitstatus"] == "OK"
    assert prox.nodes("pve1").qemu(103).config.get()["description"] == "checked by ticket auth"


def test_wrong_token_and_wrong_password_are_refused(lab):
    from proxmoxer import AuthenticationError, ProxmoxAPI

    host = lab.api_url.removeprefix("https://")
    user, token = lab.token_id.split("!")
    bad = ProxmoxAPI(host, user=user, token_name=token, token_value="not-the-secret", verify_ssl=str(lab.ca_file))
    with pytest.raises(ResourceException) as exc:
        bad.version.get()
    assert exc.value.status_code == 401
    with pytest.raises(AuthenticationError):
        ProxmoxAPI(host, user="root@pam", password="wrong", verify_ssl=str(lab.ca_file))


def test_unknown_parameters_get_proxmox_400(lab):
    prox = lab_proxmox(lab)
    for call in (lambda: prox.nodes("pve1").qemu(101).status.current.get(bogus=1),
                 lambda: prox.nodes("pve1").qemu(101).status.reboot.post(bogus=1),
                 lambda: prox.nodes("pve1").qemu(101).config.put(bogus=1),
                 lambda: prox.cluster.resources.get(type="everything")):
        with pytest.raises(ResourceException) as exc:
            call()
        assert exc.value.status_code == 400
        assert exc.value.content == "Parameter verification failed."


def test_actions_on_a_vm_in_the_wrong_state_fail_with_proxmox_wording(lab):
    prox = lab_proxmox(lab)
    with pytest.raises(ResourceException) as exc:
        prox.nodes("pve1").qemu(999).status.current.get()
    assert exc.value.status_code == 500
    assert "does not exist" in exc.value.content


def test_shutdown_start_tasks_have_upids_status_and_logs(lab):
    prox = lab_proxmox(lab)
    upid = prox.nodes("pve1").qemu(103).status.shutdown.post()
    assert upid.startswith("UPID:pve1:") and upid.endswith(":") and len(upid.split(":")) == 9
    done = _wait_task(prox, upid)
    assert done["exitstatus"] == "OK" and done["type"] == "qmshutdown"
    assert prox.nodes("pve1").tasks(upid).log.get()[-1]["t"] == "TASK OK"
    assert _resources(prox, 103)["status"] == "stopped"
    with pytest.raises(ResourceException) as exc:
        prox.nodes("pve1").qemu(103).status.shutdown.post()
    assert exc.value.content == "VM 103 not running"
    listed = {t["upid"]: t for t in prox.nodes("pve1").tasks.get(vmid=103)}
    assert listed[upid]["status"] == "OK" and listed[upid]["type"] == "qmshutdown"
    done = _wait_task(prox, prox.nodes("pve1").qemu(103).status.start.post())
    assert done["exitstatus"] == "OK"
    assert _resources(prox, 103)["status"] == "running"


def test_start_failure_fault_ends_the_task_with_an_error(lab):
    prox = lab_proxmox(lab)
    _wait_task(prox, prox.nodes("pve1").qemu(103).status.stop.post())
    lab.faults.task_failure(103, action="start", message="start failed: disk missing")
    try:
        done = _wait_task(prox, prox.nodes("pve1").qemu(103).status.start.post())
        assert done["exitstatus"] == "start failed: disk missing"
        assert _resources(prox, 103)["status"] == "stopped"
    finally:
        lab.faults.clear_api_faults()
        _wait_task(prox, prox.nodes("pve1").qemu(103).status.start.post())


def test_locked_vm_refuses_actions_until_unlocked(lab):
    prox = lab_proxmox(lab)
    lab.faults.lock(103, "backup")
    try:
        assert _resources(prox, 103)["lock"] == "backup"
        with pytest.raises(ResourceException) as exc:
            prox.nodes("pve1").qemu(103).status.shutdown.post()
        assert exc.value.content == "VM is locked (backup)"
    finally:
        lab.faults.unlock(103)
    assert "lock" not in _resources(prox, 103)


def test_offline_node_and_failing_api_calls(lab):
    prox = lab_proxmox(lab)
    lab.faults.node_offline("pve1")
    try:
        with pytest.raises(ResourceException) as exc:
            prox.nodes("pve1").qemu.get()
        assert exc.value.status_code == 595
    finally:
        lab.faults.clear_api_faults()
    lab.faults.api_failure(method="GET", suffix="/cluster/resources", status=503, message="pveproxy busy", times=1)
    with pytest.raises(ResourceException) as exc:
        prox.cluster.resources.get()
    assert exc.value.status_code == 503
    assert prox.cluster.resources.get()  # times=1: the next call works


def test_resize_grows_the_disk_and_refuses_a_shrink(lab):
    prox = lab_proxmox(lab)
    before = _resources(prox, 103)["maxdisk"]
    done = _wait_task(prox, prox.nodes("pve1").qemu(103).resize.put(disk="scsi0", size="+2G"))
    assert done["exitstatus"] == "OK" and done["type"] == "resize"
    assert _resources(prox, 103)["maxdisk"] == before + 2 * 1024**3
    assert "size=34G" in prox.nodes("pve1").qemu(103).config.get()["scsi0"]
    _wait_task(prox, prox.nodes("pve1").qemu(103).resize.put(disk="scsi0", size="40G"))
    assert _resources(prox, 103)["maxdisk"] == 40 * 1024**3
    with pytest.raises(ResourceException) as exc:
        prox.nodes("pve1").qemu(103).resize.put(disk="scsi0", size="20G")
    assert exc.value.status_code == 500 and exc.value.content == "shrinking disks is not supported"
    with pytest.raises(ResourceException) as exc:
        prox.nodes("pve1").qemu(103).resize.put(disk="scsi7", size="+1G")
    assert exc.value.content == "disk 'scsi7' does not exist"
    with pytest.raises(ResourceException) as exc:
        prox.nodes("pve1").qemu(103).resize.put(disk="scsi0", size="lots")
    assert exc.value.status_code == 400
    assert _resources(prox, 103)["maxdisk"] == 40 * 1024**3


def test_resize_on_pve7_is_synchronous_and_leaves_no_task(make_lab):
    lab = make_lab(vms=1, sites=0, guests=0)
    lab.pve.version = "7.4-3"
    prox = lab_proxmox(lab)
    assert prox.nodes("pve1").qemu(101).resize.put(disk="scsi0", size="+2G") is None
    assert "size=18G" in prox.nodes("pve1").qemu(101).config.get()["scsi0"]
    assert prox.nodes("pve1").tasks.get(vmid=101, source="all") == []
    assert prox.nodes("pve1").qemu(101).resize.put(disk="scsi0", size="18G") is None  # the same size: nothing
    with pytest.raises(ResourceException) as exc:
        prox.nodes("pve1").qemu(101).resize.put(disk="scsi0", size="10G")
    assert exc.value.status_code == 500 and exc.value.content == "shrinking disks is not supported"
    lab.faults.storage_full("local-lvm")
    with pytest.raises(ResourceException) as exc:
        prox.nodes("pve1").qemu(101).resize.put(disk="scsi0", size="+1G")
    assert exc.value.content == "unable to write to storage 'local-lvm': No space left on device"
    assert "size=18G" in prox.nodes("pve1").qemu(101).config.get()["scsi0"]


def test_config_changes_on_a_running_vm_wait_for_reboot_unless_hotpluggable(lab):
    prox = lab_proxmox(lab)
    vm = prox.nodes("pve1").qemu(103)
    vm.config.put(cores=4, memory=4096, description="bigger")
    pending = {p["key"]: p for p in vm.pending.get()}
    assert pending["cores"]["pending"] in (4, "4") and pending["memory"]["pending"] in (4096, "4096")
    assert _resources(prox, 103)["maxcpu"] == 2
    vm.config.put(hotplug="network,disk,usb,cpu,memory", numa=1)
    vm.config.put(vcpus=2)
    assert "pending" not in {p["key"]: p for p in vm.pending.get()}.get("vcpus", {})
    done = _wait_task(prox, vm.status.reboot.post())
    assert done["exitstatus"] == "OK"
    assert _resources(prox, 103)["maxcpu"] == 4
    assert _resources(prox, 103)["maxmem"] == 4096 * 1024**2
    vm.config.put(memory=6144)  # memory hotplug with NUMA: applied at once
    assert _resources(prox, 103)["maxmem"] == 6144 * 1024**2


def test_rollback_without_ram_leaves_the_vm_stopped_and_with_ram_running(lab):
    prox = lab_proxmox(lab)
    vm = prox.nodes("pve1").qemu(103)
    _wait_task(prox, vm.snapshot.post(snapname="before", description="disk only"))
    _wait_task(prox, vm.snapshot.post(snapname="withram", vmstate=1))
    names = {s["name"]: s for s in vm.snapshot.get()}
    assert names["withram"]["vmstate"] == 1 and names["before"]["vmstate"] == 0 and "current" in names
    done = _wait_task(prox, vm.snapshot("before").rollback.post())
    assert done["exitstatus"] == "OK" and done["type"] == "qmrollback"
    assert vm.status.current.get()["status"] == "stopped"
    _wait_task(prox, vm.snapshot("withram").rollback.post())
    assert vm.status.current.get()["status"] == "running"


def test_exporter_endpoints_answer_like_proxmox(lab):
    prox = lab_proxmox(lab)
    assert prox.nodes("pve1").replication.get() == []
    assert {e["vmid"] for e in prox.cluster("backup-info")("not-backed-up").get()} == {101, 102, 103}


def test_tasks_stay_running_for_their_scaled_duration(make_lab):
    slow = make_lab(vms=1, sites=0, guests=0, time_scale=0.05)
    slow.pve.vm(101).shutdown_secs = 10  # 0.5 s real
    prox = lab_proxmox(slow)
    upid = prox.nodes("pve1").qemu(101).status.shutdown.post()
    assert prox.nodes("pve1").tasks(upid).status.get()["status"] == "running"
    assert _resources(prox, 101)["status"] == "running"  # the old state, right after the call
    # Proxmox lists finished tasks unless asked for running ones too (`source` defaults to `archive`).
    node = prox.nodes("pve1")
    assert upid not in {t["upid"] for t in node.tasks.get(vmid=101)}
    assert upid in {t["upid"] for t in node.tasks.get(vmid=101, source="all")}
    assert [t["upid"] for t in node.tasks.get(source="active")] == [upid]
    deadline = time.monotonic() + 10
    while prox.nodes("pve1").tasks(upid).status.get()["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert _resources(prox, 101)["status"] == "stopped"
    assert upid in {t["upid"] for t in node.tasks.get(vmid=101)}  # finished: in the archive now


def test_config_get_shows_pending_values_unless_current_is_asked(make_lab):
    lab = make_lab(vms=1, sites=0, guests=0)
    prox = lab_proxmox(lab)
    vm = prox.nodes("pve1").qemu(101)
    _wait_task(prox, vm.snapshot.post(snapname="base"))
    vm.config.put(cores=8)
    assert vm.config.get()["cores"] in (8, "8")
    assert vm.config.get(current=1)["cores"] in (2, "2")
    assert vm.config.get(snapshot="base")["cores"] in (2, "2")
    with pytest.raises(ResourceException) as exc:
        vm.config.get(snapshot="nosuch")
    assert exc.value.content == "snapshot 'nosuch' does not exist"


def test_node_task_list_filters(make_lab):
    lab = make_lab(vms=2, sites=0, guests=0)
    prox = lab_proxmox(lab)
    node = prox.nodes("pve1")
    ok = node.qemu(101).status.shutdown.post()
    _wait_task(prox, ok)
    lab.faults.task_failure(101, action="start", message="boom")
    failed = node.qemu(101).status.start.post()
    _wait_task(prox, failed)
    lab.faults.clear_api_faults()
    assert [t["upid"] for t in node.tasks.get(errors=1)] == [failed]
    assert [t["upid"] for t in node.tasks.get(typefilter="qmshutdown")] == [ok]
    assert {t["upid"] for t in node.tasks.get(statusfilter="ok,error")} == {ok, failed}
    assert node.tasks.get(vmid=102) == []
    assert node.tasks.get(source="active") == []
    assert {t["upid"] for t in node.tasks.get(userfilter="pdn-ops@pve")} == {ok, failed}


def test_a_second_lab_in_the_same_directory_is_refused(lab):
    from pdn_ops.lab import Lab, LabError

    with pytest.raises(LabError, match="already running"):
        Lab.start(lab.workdir, vms=1, guests=0)
    assert lab_proxmox(lab).version.get()  # the first one is untouched


def test_a_guest_ignoring_acpi_makes_shutdown_time_out(make_lab):
    lab = make_lab(vms=1, sites=0, guests=0, time_scale=0.001)
    prox = lab_proxmox(lab)
    lab.faults.ignore_acpi(101)
    done = _wait_task(prox, prox.nodes("pve1").qemu(101).status.shutdown.post(timeout=30))
    assert done["exitstatus"] == "VM quit/powerdown failed - got timeout"
    assert _resources(prox, 101)["status"] == "running"
    done = _wait_task(prox, prox.nodes("pve1").qemu(101).status.shutdown.post(timeout=30, forceStop=1))
    assert done["exitstatus"] == "OK"
    assert _resources(prox, 101)["status"] == "stopped"


def test_proxmoxer_renews_its_ticket_with_the_old_ticket(lab):
    prox = lab_proxmox(lab, ticket=True)
    auth = prox._store["session"].auth
    old = auth.pve_auth_ticket
    auth.birth_time -= auth.renew_age + 1  # an hour later: the next call renews first
    assert prox.nodes("pve1").qemu.get()
    assert auth.pve_auth_ticket != old
    lab.pve.revoke_tickets()
    with pytest.raises(ResourceException) as exc:
        prox.nodes("pve1").qemu.get()
    assert exc.value.status_code == 401


def test_cluster_tasks_lists_the_real_recent_tasks(make_lab):
    lab = make_lab(vms=1, sites=0, guests=0)
    prox = lab_proxmox(lab)
    upid = prox.nodes("pve1").qemu(101).status.reboot.post()
    _wait_task(prox, upid)
    tasks = prox.cluster.tasks.get()
    assert [t["upid"] for t in tasks] == [upid] and tasks[0]["status"] == "OK"


def test_a_full_storage_makes_resize_fail_and_shows_in_resources(make_lab):
    lab = make_lab(vms=1, sites=0, guests=0)
    prox = lab_proxmox(lab)
    lab.faults.storage_full("local-lvm")
    store = next(r for r in prox.cluster.resources.get(type="storage") if r["storage"] == "local-lvm")
    assert store["disk"] == store["maxdisk"]
    done = _wait_task(prox, prox.nodes("pve1").qemu(101).resize.put(disk="scsi0", size="+1G"))
    assert done["exitstatus"] == "unable to write to storage 'local-lvm': No space left on device"
    assert _resources(prox, 101)["maxdisk"] == 16 * 1024**3  # unchanged
    lab.faults.storage_full("local-lvm", on=False)
    assert _wait_task(prox, prox.nodes("pve1").qemu(101).resize.put(disk="scsi0", size="+1G"))["exitstatus"] == "OK"


def test_guest_agent_get_fsinfo_as_pve_answers_it(make_lab):
    lab = make_lab(vms=2, sites=0)
    prox = lab_proxmox(lab)
    # VM 102 runs the QEMU guest agent; VM 101 has none in its config (agent: 0).
    assert prox.nodes("pve1").qemu(102).config.get()["agent"] == "1"
    node = next(r["node"] for r in prox.cluster.resources.get(type="vm") if r["vmid"] == 102)
    result = prox.nodes(node).qemu(102).agent("get-fsinfo").get()["result"]
    assert [(fs["mountpoint"], fs["type"]) for fs in result] == [("/", "ext4")]
    before = result[0]["used-bytes"] / result[0]["total-bytes"]
    assert 0.2 < before < 0.5
    lab.faults.fill_disk(102, percent=97)
    after = prox.nodes(node).qemu(102).agent("get-fsinfo").get()["result"][0]
    assert after["used-bytes"] / after["total-bytes"] == pytest.approx(0.97, abs=0.01)
    node101 = next(r["node"] for r in prox.cluster.resources.get(type="vm") if r["vmid"] == 101)
    with pytest.raises(ResourceException) as exc:
        prox.nodes(node101).qemu(101).agent("get-fsinfo").get()
    assert exc.value.status_code == 500 and "No QEMU guest agent configured" in str(exc.value)
    lab.faults.stop_vm(102)
    with pytest.raises(ResourceException) as exc:
        prox.nodes(node).qemu(102).agent("get-fsinfo").get()
    assert exc.value.status_code == 500 and "not running" in str(exc.value)
