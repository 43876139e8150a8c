"""The Proxmox collector against the real fakepve server: TLS, token auth, call counts, faults."""

from __future__ import annotations

import hashlib
import ssl
from pathlib import Path

import pytest
from fakepve.certs import make_cert

from collectors.proxmox.client import ProxmoxClient
from collectors.proxmox.collector import ProxmoxCollector
from pdn_ops.core.inventory import Cluster, Tls, Vm
from pdn_ops.health.observations import FailureClass
from tests.support import free_port

TOKEN_ID = "pdn-ops@pve!collector"
TOKEN_SECRET = "0b5c7f2e-test-token-secret"


@pytest.fixture
def token(fakepve, monkeypatch: pytest.MonkeyPatch) -> str:
    fakepve.apitokens[TOKEN_ID] = TOKEN_SECRET
    monkeypatch.setenv("PDN_TEST_PVE_TOKEN", TOKEN_SECRET)
    return "env:PDN_TEST_PVE_TOKEN"


def cluster_for(url: str, token_ref: str, *, ca_file: str | None = None, fingerprint: str | None = None,
                timeout: float = 5.0) -> Cluster:
    return Cluster(name="pve-a", api_url=url, token_id=TOKEN_ID, token_secret=token_ref,
                   tls=Tls(ca_file=ca_file, fingerprint=fingerprint), timeout=timeout)


def fingerprint_of(pem_file: str) -> str:
    der = ssl.PEM_cert_to_DER_cert(Path(pem_file).read_text())
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, 64, 2))


def add_guests(pve, count: int, start: int = 100, node: str = "pve1") -> None:
    for vmid in range(start, start + count):
        pve.add_vm(vmid, f"vm-{vmid}", node=node, status="running", config={"memory": 1024, "cores": 2})


@pytest.fixture
def collector(fakepve, fakepve_cafile, token):
    made = ProxmoxCollector(ProxmoxClient.for_cluster(cluster_for(fakepve.url, token, ca_file=fakepve_cafile)))
    yield made
    made.close()


def test_one_cycle_reads_guests_nodes_and_quorum(fakepve, collector):
    add_guests(fakepve, 3)
    fakepve.add_vm(200, "db", node="pve2", status="stopped")
    fakepve.add_ct(300, "ct-web", node="pve2", status="running")

    obs = collector.collect()

    assert obs.ok, obs.detail
    assert obs.cluster == "pve-a"
    assert obs.quorate is True
    assert [(g.vmid, g.type, g.node, g.status) for g in obs.guests] == [
        (100, "qemu", "pve1", "running"), (101, "qemu", "pve1", "running"), (102, "qemu", "pve1", "running"),
        (200, "qemu", "pve2", "stopped"), (300, "lxc", "pve2", "running"),
    ]
    assert obs.guests[0].maxmem == 1024 * 1024 * 1024
    assert obs.guests[0].maxcpu == 2
    assert {n.node: n.online for n in obs.nodes} == {"pve1": True, "pve2": True}
    assert obs.api_calls == 2 + 3, "and agent/get-fsinfo once for each running QEMU guest"
    assert all(g.fs_used is None for g in obs.guests), "none of them has an agent"
    assert obs.duration_s > 0
    assert collector.collect().api_calls == 2, "a guest without an agent is asked again only much later"


@pytest.mark.parametrize("guests", [5, 400])
def test_api_calls_per_cycle_do_not_grow_with_the_number_of_guests(fakepve, collector, guests):
    add_guests(fakepve, guests)
    fakepve.requests.clear()

    cycles = [collector.collect() for _ in range(3)]

    assert all(c.ok for c in cycles)
    assert len(cycles[-1].guests) == guests
    # Two fleet-wide calls, plus at most max_agent (20) agent/get-fsinfo calls while guests without an agent are
    # found out (each is then left alone for agent_retry_s): bounded, whatever the number of guests.
    agent_calls = [c.api_calls - 2 for c in cycles]
    assert all(0 <= n <= collector.max_agent for n in agent_calls)
    assert sum(agent_calls) == min(guests, 3 * collector.max_agent)
    fleet_wide = sorted(path for _, path, _ in fakepve.requests if "/agent/" not in path)
    assert fleet_wide == sorted(["/api2/json/cluster/resources", "/api2/json/cluster/status"] * 3)


def test_only_guests_whose_state_changed_get_a_targeted_status_call(fakepve, collector):
    add_guests(fakepve, 50)
    collector.max_agent = 0  # agent calls are counted in their own test
    assert collector.collect().ok
    fakepve.vm(107).status = "stopped"
    fakepve.vm(107).qmpstatus = "stopped"
    fakepve.requests.clear()

    obs = collector.collect()

    assert obs.ok
    assert obs.api_calls == 3
    assert [p for _, p, _ in fakepve.requests if "/nodes/" in p] == ["/api2/json/nodes/pve1/qemu/107/status/current"]
    stopped = next(g for g in obs.guests if g.vmid == 107)
    assert (stopped.status, stopped.qmpstatus) == ("stopped", "stopped")


def test_targeted_calls_are_capped_when_many_guests_change_at_once(fakepve, fakepve_cafile, token):
    add_guests(fakepve, 30)
    made = ProxmoxCollector(ProxmoxClient.for_cluster(cluster_for(fakepve.url, token, ca_file=fakepve_cafile)),
                            max_targeted=4, max_agent=0)
    assert made.collect().ok
    for vm in fakepve.vms:
        vm.status = "stopped"

    obs = made.collect()
    made.close()

    assert obs.ok and obs.api_calls == 2 + 4
    assert all(g.status == "stopped" for g in obs.guests)


def test_disk_usage_of_qemu_guests_comes_from_their_guest_agent(fakepve, collector):
    add_guests(fakepve, 3)
    fakepve.vm(101).agent = {"get-fsinfo": [
        {"name": "sda1", "mountpoint": "/", "type": "ext4", "used-bytes": 900, "total-bytes": 1000, "disk": []},
        {"name": "sda1", "mountpoint": "/srv/bind", "type": "ext4", "used-bytes": 900, "total-bytes": 1000,
         "disk": []},
        {"name": "sr0", "mountpoint": "/media/cdrom", "type": "iso9660", "disk": []},
        {"name": "sdb1", "mountpoint": "/var", "type": "xfs", "used-bytes": 50, "total-bytes": 1000, "disk": []}]}
    obs = collector.collect()
    by_id = {g.vmid: g for g in obs.guests}
    assert (by_id[101].fs_used, by_id[101].fs_total) == (950, 2000), "each filesystem once; unmeasured ones out"
    assert by_id[100].fs_used is None and by_id[100].disk == 0
    fakepve.vm(101).agent["get-fsinfo"][0]["used-bytes"] = 990
    fakepve.requests.clear()
    obs = collector.collect()
    assert next(g for g in obs.guests if g.vmid == 101).fs_used == 1040, "asked again every cycle"
    assert [p for _, p, _ in fakepve.requests if "/agent/" in p] == ["/api2/json/nodes/pve1/qemu/101/agent/get-fsinfo"]


def test_pinned_fingerprint_is_accepted(fakepve, fakepve_cafile, token):
    add_guests(fakepve, 2)
    made = ProxmoxCollector(ProxmoxClient.for_cluster(
        cluster_for(fakepve.url, token, fingerprint=fingerprint_of(fakepve_cafile))))
    obs = made.collect()
    made.close()
    assert obs.ok, obs.detail
    assert len(obs.guests) == 2


def test_wrong_fingerprint_is_refused_before_the_token_is_sent(fakepve, token):
    add_guests(fakepve, 2)
    fakepve.requests.clear()
    made = ProxmoxCollector(ProxmoxClient.for_cluster(cluster_for(fakepve.url, token, fingerprint="AB:" * 31 + "CD")))
    obs = made.collect()
    made.close()
    assert not obs.ok
    assert obs.failure is FailureClass.TLS
    assert fakepve.requests == []  # the handshake was aborted: no request, so no token, reached the server


def test_certificate_from_another_ca_is_refused(fakepve, token, tmp_path):
    other_ca = make_cert(str(tmp_path), name="other", hosts=("127.0.0.1",))[0]
    made = ProxmoxCollector(ProxmoxClient.for_cluster(cluster_for(fakepve.url, token, ca_file=other_ca)))
    obs = made.collect()
    made.close()
    assert (obs.ok, obs.failure) == (False, FailureClass.TLS)
    assert fakepve.requests == []


def test_revoked_token_is_an_auth_failure(fakepve, collector):
    add_guests(fakepve, 2)
    assert collector.collect().ok
    del fakepve.apitokens[TOKEN_ID]

    obs = collector.collect()

    assert (obs.ok, obs.failure) == (False, FailureClass.AUTH)
    assert "401" in obs.detail
    assert TOKEN_SECRET not in obs.detail


@pytest.mark.parametrize(("status", "failure"), [
    (500, FailureClass.SERVER_ERROR),
    (503, FailureClass.SERVER_ERROR),
    (595, FailureClass.NODE_OFFLINE),
    (596, FailureClass.NODE_OFFLINE),
])
def test_server_errors_become_failure_classes(fakepve, collector, status, failure):
    add_guests(fakepve, 2)
    fakepve.fail("GET", "/cluster/resources", status, "something broke")

    obs = collector.collect()

    assert (obs.ok, obs.failure) == (False, failure)
    assert str(status) in obs.detail
    assert obs.guests == ()


def test_collector_recovers_after_a_transient_failure(fakepve, collector):
    add_guests(fakepve, 2)
    fakepve.fail("GET", "/cluster/status", 500, "pmxcfs not ready", times=1)
    assert collector.collect().failure is FailureClass.SERVER_ERROR
    assert collector.collect().ok


def test_offline_node_is_reported_and_its_guests_are_not_polled(fakepve, collector):
    add_guests(fakepve, 2, node="pve1")
    add_guests(fakepve, 2, start=200, node="pve2")
    assert collector.collect().ok
    fakepve.set_node_offline("pve2")
    fakepve.requests.clear()

    obs = collector.collect()

    assert obs.ok
    assert {n.node: n.online for n in obs.nodes} == {"pve1": True, "pve2": False}
    assert {g.vmid: g.status for g in obs.guests if g.node == "pve2"} == {200: "unknown", 201: "unknown"}
    assert obs.api_calls == 2  # no status/current towards a node that cannot answer


def test_html_page_instead_of_json_is_an_unexpected_response(fakepve, collector):
    fakepve.fail("GET", "/cluster/resources", 200, "<html><body>Login</body></html>", html=True)
    obs = collector.collect()
    assert (obs.ok, obs.failure) == (False, FailureClass.PROTOCOL)


def test_empty_resource_list_after_seeing_guests_is_an_anomaly_not_all_vms_gone(fakepve, collector):
    add_guests(fakepve, 3)
    assert collector.collect().ok
    # The token loses VM.Audit: PVE then silently lists no guests at all.
    fakepve.grant("someone-else@pve", "/", "VM.Audit")

    obs = collector.collect()

    assert (obs.ok, obs.failure) == (False, FailureClass.EMPTY)
    assert obs.guests == ()
    assert "3 were seen before" in obs.detail
    assert collector.collect().failure is FailureClass.EMPTY  # still remembered on the next cycle


def test_empty_first_answer_is_an_anomaly_when_the_inventory_expects_guests(fakepve, fakepve_cafile, token):
    vm = Vm(cluster="pve-a", vmid=100, name="web", opd="dinkes")
    made = ProxmoxCollector.from_inventory(cluster_for(fakepve.url, token, ca_file=fakepve_cafile), [vm])
    obs = made.collect()
    made.close()
    assert (obs.ok, obs.failure) == (False, FailureClass.EMPTY)


def test_empty_cluster_without_expectations_is_fine(collector):
    obs = collector.collect()
    assert obs.ok and obs.guests == ()


@pytest.mark.fakepve(time_scale=1)
def test_slow_api_times_out_within_the_configured_bound(fakepve, fakepve_cafile, token):
    fakepve.slow_network(latency=3)
    made = ProxmoxCollector(ProxmoxClient.for_cluster(
        cluster_for(fakepve.url, token, ca_file=fakepve_cafile, timeout=0.3)))
    obs = made.collect()
    made.close()
    assert (obs.ok, obs.failure) == (False, FailureClass.TIMEOUT)
    assert obs.duration_s < 3


def test_nothing_listening_is_refused(fakepve_cafile, token):
    url = f"https://127.0.0.1:{free_port()}"
    made = ProxmoxCollector(ProxmoxClient.for_cluster(cluster_for(url, token, ca_file=fakepve_cafile)))
    obs = made.collect()
    made.close()
    assert (obs.ok, obs.failure) == (False, FailureClass.REFUSED)


def test_api_host_that_does_not_resolve_is_a_dns_failure(fakepve_cafile, token):
    made = ProxmoxCollector(ProxmoxClient.for_cluster(
        cluster_for("https://no-such-pve.invalid:8006", token, ca_file=fakepve_cafile)))
    obs = made.collect()
    made.close()
    assert (obs.ok, obs.failure) == (False, FailureClass.DNS)
