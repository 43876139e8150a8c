"""Lab guests: real sshd and HTTP(S) sites that follow their VM's power state, and the guest faults."""

from __future__ import annotations

import socket
import ssl
import time
import urllib.error
import urllib.request

import paramiko
import pytest
from proxmoxer.tools import Tasks

from tests.lab_fixtures import lab_proxmox, lab_run, lab_ssh


def _get(url: str, cafile=None, timeout: float = 3.0) -> tuple[int, str]:
    ctx = ssl.create_default_context(cafile=str(cafile)) if cafile else None
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=ctx) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def _until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def _task(prox, upid):
    done = Tasks.blocking_status(prox, upid, timeout=20, polling_interval=0.02)
    assert done is not None and done["exitstatus"] == "OK", done


def test_guest_answers_the_collectors_commands_over_pinned_ssh(lab):
    status, out, _ = lab_run(lab, 101, "systemctl is-active nginx.service php8.2-fpm.service")
    assert (status, out) == (0, "active\nactive\n")
    status, out, _ = lab_run(lab, 101, "df -P /")
    assert status == 0 and out.splitlines()[1].split()[-1] == "/" and out.splitlines()[1].endswith("% /")
    status, out, _ = lab_run(lab, 101, "free -b")
    assert out.splitlines()[1].split()[1] == str(2048 * 1024**2)
    status, out, _ = lab_run(lab, 101, "cat /proc/loadavg; uptime")
    loadavg, uptime = out.splitlines()
    assert len(loadavg.split()) == 5 and "load average:" in uptime
    status, _out, err = lab_run(lab, 101, "rm -rf /")
    assert status == 127 and "command not found" in err


def test_an_unpinned_or_changed_host_key_is_refused(lab):
    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDn2zQmJq6uH3e8l0lq2wD5bGmY3z0nqzv1Fh2mJc8Yp"
    with pytest.raises(paramiko.BadHostKeyException), lab_ssh(lab, 101, host_key=other):
        pass
    old = lab.guest(102).host_key
    new = lab.faults.change_host_key(102)
    assert new != old and lab.guest(102).host_key == new
    with pytest.raises(paramiko.BadHostKeyException), lab_ssh(lab, 102, host_key=old):
        pass
    assert lab_run(lab, 102, "true")[0] == 0  # the new key, pinned again, works


def test_crashed_service_takes_the_site_down_and_systemctl_restart_brings_it_back(lab):
    guest = lab.guest(101)
    url = guest.site_urls[0]
    assert _get(url)[0] == 200
    lab.faults.crash_service(101, "nginx.service")
    assert _refused(guest.address, 80)
    status, out, _ = lab_run(lab, 101, "systemctl is-active nginx.service")
    assert (status, out) == (3, "failed\n")
    status, out, _ = lab_run(lab, 101, "systemctl --failed --no-legend")
    assert out.startswith("nginx.service")
    status, _, _ = lab_run(lab, 101, "systemctl restart nginx.service")
    assert status == 0
    _until(lambda: not _refused(guest.address, 80))
    code, body = _get(url)
    assert code == 200 and "Dinas Kesehatan" in body
    assert guest.state()["history"][-1]["argv"] == ["systemctl", "restart", "nginx.service"]


def test_a_broken_service_fails_to_restart_until_repaired(lab):
    lab.faults.crash_service(101, "php8.2-fpm.service", broken=True)
    try:
        assert _get(lab.guest(101).site_urls[0])[0] == 502
        status, _, err = lab_run(lab, 101, "systemctl restart php8.2-fpm.service")
        assert status == 1 and "failed because the control process exited" in err
    finally:
        lab.faults.repair_service(101, "php8.2-fpm.service")
    assert lab_run(lab, 101, "systemctl restart php8.2-fpm.service")[0] == 0
    assert _get(lab.guest(101).site_urls[0])[0] == 200


def test_site_error_and_hang_faults(lab):
    url = lab.guest(101).site_urls[0]
    lab.faults.site_error(101)
    assert _get(url)[0] == 500
    lab.faults.site_hang(101)
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        _get(url, timeout=0.5)
    lab.faults.site_ok(101)
    assert _get(url)[0] == 200


def test_https_site_uses_the_lab_ca_and_its_certificate_can_expire(lab):
    guest = lab.guest(102)
    https = next(u for u in guest.site_urls if u.startswith("https://"))
    code, body = _get(https, cafile=lab.ca_file)
    assert code == 200 and "Dinas Pendidikan" in body
    lab.faults.expire_certificate(102, days_ago=2)
    with pytest.raises(urllib.error.URLError) as exc:
        _get(https, cafile=lab.ca_file)
    assert "expired" in str(exc.value.reason)
    lab.faults.set_certificate_expiry(102, days=5)
    assert _get(https, cafile=lab.ca_file)[0] == 200
    assert 4 <= (guest.cert_not_after.timestamp() - time.time()) / 86400 <= 5


def test_full_disk_shows_in_df_and_journal_vacuum_frees_it(lab):
    lab.faults.fill_disk(103, percent=97)
    _, out, _ = lab_run(lab, 103, "df -P /")
    assert out.splitlines()[1].split()[4] == "97%"
    status, _, err = lab_run(lab, 103, "/usr/bin/journalctl --vacuum-size=100M")
    assert status == 0 and "Vacuuming done, freed" in err
    _, out, _ = lab_run(lab, 103, "df -P /")
    assert int(out.splitlines()[1].split()[4].rstrip("%")) < 80


def test_sshd_hang_after_authentication(lab):
    lab.faults.ssh_hang(103)
    try:
        with lab_ssh(lab, 103) as client:  # authentication still works
            _stdin, stdout, _ = client.exec_command("true", timeout=0.5)
            with pytest.raises(TimeoutError):
                stdout.read()
    finally:
        lab.faults.ssh_hang(103, on=False)
    assert lab_run(lab, 103, "true")[0] == 0


def test_guest_follows_vm_power_stop_start_and_rollback(make_lab):
    lab = make_lab(vms=1, sites=1)
    prox = lab_proxmox(lab)
    guest = lab.guest(101)
    _task(prox, prox.nodes("pve1").qemu(101).snapshot.post(snapname="clean"))
    lab.faults.ssh_hang(101)
    with lab_ssh(lab, 101) as client:
        client.exec_command("uptime")  # hangs inside the guest until the power goes
        transport = client.get_transport()
        assert transport is not None and transport.is_active()
        _task(prox, prox.nodes("pve1").qemu(101).status.stop.post())
        _until(lambda: _refused(guest.address, guest.ssh_port) and _refused(guest.address, 80))
        _until(lambda: not transport.is_active())  # a powered-off VM drops its sessions
    assert guest.sshd_pid is None and guest.state()["power"] == "stopped"
    _task(prox, prox.nodes("pve1").qemu(101).status.start.post())
    lab.wait_guest(101, up=True)
    _until(lambda: not _refused(guest.address, 80))
    assert lab_run(lab, 101, "systemctl is-active nginx.service")[1] == "active\n"
    lab.faults.crash_service(101, "nginx.service")
    _task(prox, prox.nodes("pve1").qemu(101).status.reboot.post())  # a reboot starts enabled units again
    _until(lambda: not _refused(guest.address, 80))
    _task(prox, prox.nodes("pve1").qemu(101).snapshot("clean").rollback.post())
    _until(lambda: _refused(guest.address, guest.ssh_port) and _refused(guest.address, 80))
    assert prox.nodes("pve1").qemu(101).status.current.get()["status"] == "stopped"


def test_resize_is_seen_inside_the_guest(make_lab):
    lab = make_lab(vms=1, sites=0)
    prox = lab_proxmox(lab)
    _task(prox, prox.nodes("pve1").qemu(101).resize.put(disk="scsi0", size="+8G"))
    _until(lambda: lab.guest(101).state()["disk"]["size"] == 40 * 1024**3)
    _, out, _ = lab_run(lab, 101, "df -P /")
    assert int(out.splitlines()[1].split()[1]) == 40 * 1024**2


def test_overload_shows_inside_the_guest_and_in_proxmox(lab):
    prox = lab_proxmox(lab)
    lab.faults.overload(103)
    try:
        _, out, _ = lab_run(lab, 103, "cat /proc/loadavg")
        assert float(out.split()[0]) > 10
        vm = next(r for r in prox.cluster.resources.get(type="vm") if r["vmid"] == 103)
        assert vm["cpu"] > 0.9 and vm["mem"] > 0.9 * vm["maxmem"]
    finally:
        lab.faults.overload(103, on=False)
    vm = next(r for r in prox.cluster.resources.get(type="vm") if r["vmid"] == 103)
    assert vm["cpu"] < 0.5


def test_a_paused_vm_accepts_connections_but_answers_nothing_until_resumed(make_lab):
    lab = make_lab(vms=1, sites=1)
    prox = lab_proxmox(lab)
    guest = lab.guest(101)
    _task(prox, prox.nodes("pve1").qemu(101).status.suspend.post())
    _until(lambda: guest.frozen)
    with socket.create_connection((guest.address, guest.ssh_port), timeout=2) as sock:  # the kernel still accepts
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(64)  # ... but no SSH banner comes
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        _get(guest.site_urls[0], timeout=0.5)
    _task(prox, prox.nodes("pve1").qemu(101).status.resume.post())
    _until(lambda: not guest.frozen)
    assert _get(guest.site_urls[0])[0] == 200
    assert lab_run(lab, 101, "true")[0] == 0


def test_revoked_client_key_and_api_token_fail_authentication(lab):
    from proxmoxer import ResourceException

    lab.faults.revoke_client_key(103)
    try:
        with pytest.raises(paramiko.AuthenticationException), lab_ssh(lab, 103):
            pass
    finally:
        lab.faults.revoke_client_key(103, on=False)
    assert lab_run(lab, 103, "true")[0] == 0
    lab.faults.revoke_token()
    try:
        with pytest.raises(ResourceException) as exc:
            lab_proxmox(lab).version.get()
        assert exc.value.status_code == 401
    finally:
        lab.faults.revoke_token(on=False)
    assert lab_proxmox(lab).version.get()


def test_a_bad_update_survives_restarts_and_reboots_until_a_rollback_to_the_snapshot_before_it(make_lab):
    lab = make_lab(vms=1, sites=1)
    prox = lab_proxmox(lab)
    vm = prox.nodes("pve1").qemu(101)
    url = lab.guest(101).site_urls[0]
    _task(prox, vm.snapshot.post(snapname="before_update", description="before 1.5.0"))
    assert lab.faults.ship_bad_update(101, version="1.5.0") == "1.5.0"
    assert _get(url)[0] == 500
    assert lab_run(lab, 101, "cat /srv/opd-portal/VERSION")[1] == "1.5.0\n"
    assert lab_run(lab, 101, "systemctl restart php8.2-fpm.service nginx.service")[0] == 0
    assert _get(url)[0] == 500, "restarting the services does not bring the old release back"
    _task(prox, vm.status.reboot.post())
    guest = lab.guest(101)
    _until(lambda: guest.seen_start == lab.pve.vm(101).started_at and guest.powered)
    _until(lambda: not _refused(guest.address, 80))
    assert _get(url)[0] == 500, "neither does a reboot"
    _task(prox, vm.snapshot("before_update").rollback.post())
    assert vm.status.current.get()["status"] == "stopped", "a snapshot without RAM: the VM stays stopped"
    _until(lambda: _refused(lab.guest(101).address, 80))
    _task(prox, vm.status.start.post())
    lab.wait_guest(101, up=True)
    _until(lambda: not _refused(lab.guest(101).address, 80))
    assert _get(url)[0] == 200
    assert lab_run(lab, 101, "cat /srv/opd-portal/VERSION")[1] == "1.4.2\n"


def test_a_rollback_with_ram_resumes_the_guest_as_the_snapshot_held_it(make_lab):
    lab = make_lab(vms=1, sites=1)
    prox = lab_proxmox(lab)
    url = lab.guest(101).site_urls[0]
    lab.faults.fill_disk(101, 50)
    lab.faults.crash_service(101, "php8.2-fpm.service")  # running processes: only RAM holds this
    assert lab.faults.take_snapshot(101, "withram", vmstate=1) == "withram"
    assert lab_run(lab, 101, "systemctl restart php8.2-fpm.service")[0] == 0
    lab.faults.fill_disk(101, 97)
    lab.faults.ship_bad_update(101, break_unit=1)
    assert _get(url)[0] == 502
    _task(prox, prox.nodes("pve1").qemu(101).snapshot("withram").rollback.post())
    assert prox.nodes("pve1").qemu(101).status.current.get()["status"] == "running"
    lab.wait_guest(101, up=True)
    _until(lambda: not _refused(lab.guest(101).address, 80))
    assert lab_run(lab, 101, "systemctl is-active php8.2-fpm.service")[1] == "failed\n", "as the RAM held it"
    assert _get(url)[0] == 502
    assert lab_run(lab, 101, "systemctl restart php8.2-fpm.service")[0] == 0, "its files are the old release's"
    assert _get(url)[0] == 200
    _, out, _ = lab_run(lab, 101, "df -P /")
    assert int(out.splitlines()[1].split()[4].rstrip("%")) <= 51, "the disk is as the snapshot held it"
    with pytest.raises(ValueError, match="invalid configuration ID"):
        lab.faults.take_snapshot(101, "bad name")


def test_memory_pressure_fails_the_app_until_the_vm_has_enough_memory(make_lab):
    lab = make_lab(vms=1, sites=1)
    prox = lab_proxmox(lab)
    vm = prox.nodes("pve1").qemu(101)
    url = lab.guest(101).site_urls[0]
    lab.faults.memory_pressure(101, need_mib=3072)
    assert _get(url)[0] == 502
    status, out, err = lab_run(lab, 101, "systemctl restart php8.2-fpm.service")
    assert status == 1 and "fatal signal" in err, "the OOM killer strikes again"
    assert "Result: oom-kill" in lab_run(lab, 101, "systemctl status php8.2-fpm.service")[1]
    _, out, _ = lab_run(lab, 101, "free -m")
    total, used = (int(x) for x in out.splitlines()[1].split()[1:3])
    assert total == 2048 and used > 0.95 * total
    _task(prox, vm.config.post(memory=3072, numa=1, hotplug="network,disk,usb,memory"))
    _task(prox, vm.config.post(memory=4096))  # memory hotplug with NUMA: applied to the running guest
    _until(lambda: lab.guest(101).state()["memory"]["total"] == 4096 * 1024**2)
    _until(lambda: _get(url)[0] == 200)  # systemd restarts the killed units once there is room
    assert lab_run(lab, 101, "systemctl is-active php8.2-fpm.service")[1] == "active\n"


def test_the_guest_powering_itself_off_stops_the_vm_without_a_task(lab):
    prox = lab_proxmox(lab)
    tasks = len(lab.pve.tasklog)
    lab.faults.stop_vm(103)
    lab.wait_guest(103, up=False)
    assert prox.nodes("pve1").qemu(103).status.current.get()["status"] == "stopped"
    assert len(lab.pve.tasklog) == tasks
    _task(prox, prox.nodes("pve1").qemu(103).status.start.post())
    lab.wait_guest(103, up=True)
