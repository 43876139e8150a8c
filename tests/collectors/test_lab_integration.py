"""The three collectors against the lab: fakepve plus real OpenSSH sshd guests and real HTTP(S) sites.

The guests' shell emulates df, free, /proc, and systemctl (pdn_ops/lab/guest_shell.py); faults are the lab's.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from collectors.http.collector import run_cycle
from collectors.proxmox.collector import ProxmoxCollector
from collectors.ssh.client import SshClient
from collectors.ssh.collector import SshCollector
from pdn_ops.core.inventory import Inventory, Vm, load_inventory
from pdn_ops.health.collection import InventoryCollectorFactory
from pdn_ops.health.drift import guest_drift
from pdn_ops.health.observations import FailureClass
from tests.support import missing, port_open

SSHD = "/usr/sbin/sshd"


@dataclass
class World:
    lab: object
    inventory: Inventory
    base_dir: Path

    def vm(self, vmid: int) -> Vm:
        found = self.inventory.vm(f"lab/{vmid}")
        assert found is not None
        return found


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if not Path(SSHD).exists() or shutil.which("ssh-keygen") is None:
        missing("OpenSSH sshd", "install the Debian package openssh-server")
    from pdn_ops.lab.lab import Lab

    lab = Lab.start(tmp_path_factory.mktemp("lab") / "lab", vms=4, sites=2, time_scale=0.02)
    try:
        inventory = load_inventory(lab.inventory_path)
        yield World(lab, inventory, lab.inventory_path.parent)
    finally:
        lab.stop()


def wait_listening(vm: Vm, timeout: float = 10.0) -> None:
    assert vm.ssh is not None
    deadline = time.monotonic() + timeout
    while not port_open(vm.ssh.host, vm.ssh.port):
        assert time.monotonic() < deadline, "sshd did not come back"
        time.sleep(0.05)


def ssh_check(world: World, vmid: int, **client_overrides):
    vm = world.vm(vmid)
    collector = SshCollector.from_inventory(vm, base_dir=world.base_dir)
    for name, value in client_overrides.items():
        setattr(collector.client, name, value)
    return collector.collect()


def test_guest_reports_disks_memory_load_uptime_and_services(world):
    obs = ssh_check(world, 101)
    assert obs.ok, obs.detail
    root = next(m for m in obs.mounts if m.mount == "/")
    assert 0 < root.used_ratio < 0.9
    assert obs.mem_total_bytes and obs.mem_available_bytes and obs.mem_available_bytes < obs.mem_total_bytes
    assert obs.load1 is not None and obs.uptime_s is not None and obs.uptime_s >= 0
    assert obs.services == {"nginx.service": "active", "php8.2-fpm.service": "active"}
    assert obs.failed_units == ()


def test_crashed_service_is_seen_as_failed(world):
    world.lab.faults.crash_service(101, "nginx.service")
    try:
        obs = ssh_check(world, 101)
    finally:
        # the lab's fault stays until someone restarts the unit, as on a real guest
        world.lab.faults.repair_service(101, "nginx.service")
        vm = world.vm(101)
        assert vm.ssh is not None
        with SshClient.for_ssh(vm.ssh, base_dir=world.base_dir) as client:
            assert client.run("systemctl restart nginx.service").exit_status == 0
    assert obs.ok
    assert obs.services["nginx.service"] == "failed"
    assert "nginx.service" in obs.failed_units


def test_full_disk_is_seen(world):
    world.lab.faults.fill_disk(102, 97)
    obs = ssh_check(world, 102)
    root = next(m for m in obs.mounts if m.mount == "/")
    assert root.used_ratio >= 0.96


def test_changed_host_key_is_refused_as_a_security_event(world):
    world.lab.faults.change_host_key(104)  # the inventory still pins the old key
    wait_listening(world.vm(104))  # sshd restarts with the new key
    obs = ssh_check(world, 104)
    assert (obs.ok, obs.failure) == (False, FailureClass.HOST_KEY)
    assert "host key" in obs.detail


def test_pinned_key_of_a_type_the_server_lacks_is_refused(world):
    other = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    obs = ssh_check(world, 103, host_key=other)
    assert (obs.ok, obs.failure) == (False, FailureClass.HOST_KEY)


def test_client_key_the_guest_does_not_accept_is_an_auth_failure(world, tmp_path):
    stranger = tmp_path / "stranger_ed25519"
    stranger.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
    stranger.chmod(0o600)
    obs = ssh_check(world, 103, key_file=stranger)
    assert (obs.ok, obs.failure) == (False, FailureClass.AUTH)


def test_guest_that_authenticates_then_hangs_times_out_within_the_bound(world):
    world.lab.faults.ssh_hang(103)
    try:
        started = time.monotonic()
        obs = ssh_check(world, 103, timeout=1.0)
        elapsed = time.monotonic() - started
    finally:
        world.lab.faults.ssh_hang(103, False)
    assert (obs.ok, obs.failure) == (False, FailureClass.TIMEOUT)
    assert elapsed < 5


def test_output_is_capped(world):
    vm = world.vm(103)
    assert vm.ssh is not None
    client = SshClient.for_ssh(vm.ssh, base_dir=world.base_dir)
    client.max_output = 100
    with client:
        result = client.run("df -P; df -P; df -P")
    assert result.truncated and len(result.stdout) == 100 and result.exit_status is None


def test_nothing_listening_is_refused(world):
    obs = ssh_check(world, 103, port=1)
    assert (obs.ok, obs.failure) == (False, FailureClass.REFUSED)


def test_proxmox_cycle_over_the_pinned_certificate_matches_the_inventory(world):
    cluster = world.inventory.clusters[0]
    collector = ProxmoxCollector.from_inventory(cluster, world.inventory.vms, base_dir=world.base_dir)
    try:
        obs = collector.collect()
    finally:
        collector.close()
    assert obs.ok, obs.detail
    running = sum(1 for g in obs.guests if g.type == "qemu" and g.status == "running")
    assert obs.api_calls == 2 + running, "and agent/get-fsinfo once per running guest on the first cycle"
    with_agent = {g.vmid for g in obs.guests if g.fs_total}
    assert with_agent and with_agent < {g.vmid for g in obs.guests}, "the lab's guests with an agent, not the rest"
    drift = guest_drift(obs, [vm.vmid for vm in world.inventory.vms])
    assert drift is not None and drift.clean


def test_sites_check_and_expired_certificate_is_seen(world):
    https = [s for s in world.inventory.sites if s.url.startswith("https://")]
    assert https, "the lab serves at least one HTTPS site"
    vmid = int(https[0].vm.split("/")[1]) if https[0].vm else 0
    ca_file = str(world.lab.ca_file)
    deadline = time.monotonic() + 10  # an earlier test's repaired nginx brings its site back on the next tick
    before = run_cycle(world.inventory.sites, ca_file=ca_file)
    while not all(c.ok for c in before):
        assert time.monotonic() < deadline, [c.detail for c in before]
        time.sleep(0.1)
        before = run_cycle(world.inventory.sites, ca_file=ca_file)
    world.lab.faults.expire_certificate(vmid, days_ago=2)
    try:
        after = run_cycle(https, ca_file=ca_file)
    finally:
        world.lab.faults.set_certificate_expiry(vmid, days=90)
    assert (after[0].ok, after[0].failure) == (False, FailureClass.TLS)
    assert after[0].tls_days_left is not None and -2.1 < after[0].tls_days_left < -1.9


def test_scheduler_jobs_built_with_the_collector_factory_observe_the_lab(world):
    from pdn_ops.health.jobs import HealthConfig, build_jobs

    factory = InventoryCollectorFactory(world.inventory, base_dir=world.base_dir, site_ca_file=str(world.lab.ca_file))
    jobs = {job.kind: job for job in build_jobs(world.inventory, factory, HealthConfig())}
    try:
        cluster = jobs["proxmox"].collect()
        second = jobs["proxmox"].collect()
    finally:
        factory.close()  # its kept HTTPS session must not outlive the lab's server
    assert cluster.ok and {g.vmid for g in cluster.guests} == {vm.vmid for vm in world.inventory.vms}
    with_agent = sum(1 for g in cluster.guests if g.fs_total)
    # The same collector, kept between cycles: guests without an agent are not asked again so soon.
    assert second.api_calls == 2 + with_agent
    sites = jobs["sites"].collect()
    assert len(sites) == len(world.inventory.sites) and all(c.status_code for c in sites)
    guests = jobs["ssh"].collect()
    assert {o.vmid for o in guests} == {vm.vmid for vm in world.inventory.vms if vm.ssh}
    assert sum(o.ok for o in guests) >= 3  # 104's host key was changed by an earlier test


def test_factory_turns_an_unreadable_secret_into_a_failed_observation(world, tmp_path):
    factory = InventoryCollectorFactory(world.inventory, base_dir=tmp_path)  # secrets are relative: not found here
    observation = factory.proxmox(world.inventory.clusters[0])()
    assert (observation.ok, observation.failure) == (False, FailureClass.ERROR)
    assert "token_secret" in observation.detail and world.lab.token_secret not in observation.detail
    guests = factory.ssh([world.vm(101)])()
    assert (guests[0].ok, guests[0].failure) == (False, FailureClass.ERROR)


def test_paramiko_is_never_told_to_add_unknown_keys():
    source = Path(__file__).resolve().parents[2] / "collectors" / "ssh" / "client.py"
    text = source.read_text()
    assert "RejectPolicy()" in text
    assert not any(name in text for name in ("AutoAddPolicy", "WarningPolicy"))


def _transport(collector: SshCollector) -> object:
    client = collector.client._client
    return client.get_transport() if client is not None else None


def test_kept_connection_is_reused_remade_after_its_age_and_bounded(world):
    from collectors.ssh.client import KeptConnections

    vm = world.vm(101)
    kept = KeptConnections(limit=1, max_age=600)
    collector = SshCollector.from_inventory(vm, base_dir=world.base_dir, kept=kept)
    first = collector.collect()
    transport = _transport(collector)
    assert first.ok and transport is not None and len(kept) == 1
    second = collector.collect()
    assert second.ok and _transport(collector) is transport, "one exec on the kept connection"
    # Over the bound: another guest is checked with a connection of its own, closed after the check.
    other = SshCollector.from_inventory(world.vm(103), base_dir=world.base_dir, kept=kept)
    assert other.collect().ok and not other.client.is_open() and len(kept) == 1
    # After its checks, or past its age, the connection is made again: the pinned host key and the client key are
    # verified again.
    kept.max_uses = 2
    assert collector.collect().ok and _transport(collector) is not transport
    transport = _transport(collector)
    kept.max_uses, kept.max_age = 100, 0.0
    assert collector.collect().ok and _transport(collector) is not transport
    kept.close_all()
    assert not collector.client.is_open() and len(kept) == 0


def test_kept_connection_to_a_guest_whose_sshd_restarted_with_another_key_is_refused(world):
    from collectors.ssh.client import KeptConnections

    vm = world.vm(102)
    kept = KeptConnections(limit=10, max_age=600)
    collector = SshCollector.from_inventory(vm, base_dir=world.base_dir, kept=kept)
    assert collector.collect().ok
    world.lab.faults.change_host_key(102)  # sshd restarts with a new key; the inventory pins the old one
    wait_listening(vm)
    # The restart dropped the kept connection: the next check connects again and meets the new key.
    obs = collector.collect()
    assert (obs.ok, obs.failure) == (False, FailureClass.HOST_KEY)
    assert len(kept) == 0
