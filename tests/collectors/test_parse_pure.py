"""Pure parsing of recorded answers: Proxmox JSON and site fetches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from collectors.http.parse import RawFetch, evaluate
from collectors.proxmox import parse
from pdn_ops.core.errors import UnexpectedResponse
from pdn_ops.health.observations import FailureClass

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

RESOURCES = [
    {"id": "qemu/100", "type": "qemu", "vmid": 100, "name": "web-dinkes", "node": "pve1", "status": "running",
     "cpu": 0.25, "maxcpu": 2, "mem": 1073741824, "maxmem": 2147483648, "disk": 0, "maxdisk": 34359738368,
     "uptime": 3600, "template": 0, "lock": "backup", "hastate": "started", "netin": 10, "tags": "web"},
    {"id": "lxc/101", "type": "lxc", "vmid": 101, "name": "ct", "node": "pve2", "status": "stopped", "template": 0},
    {"id": "qemu/9000", "type": "qemu", "vmid": 9000, "name": "tmpl", "node": "pve1", "status": "stopped",
     "template": 1},
    {"id": "node/pve1", "type": "node", "node": "pve1", "status": "online", "cpu": 0.1, "mem": 2, "maxmem": 8},
    {"id": "storage/pve1/local", "type": "storage", "node": "pve1", "status": "available"},
]
STATUS = [
    {"type": "cluster", "id": "cluster", "name": "pdn", "nodes": 2, "quorate": 1, "version": 4},
    {"type": "node", "id": "node/pve1", "name": "pve1", "nodeid": 1, "online": 1, "local": 1},
    {"type": "node", "id": "node/pve2", "name": "pve2", "nodeid": 2, "online": 0, "local": 0},
]


def test_recorded_cluster_answers_become_one_observation():
    obs = parse.observe("pdn", NOW, RESOURCES, STATUS)
    assert obs.ok and obs.quorate is True and obs.at == NOW
    web = obs.guests[0]
    assert (web.vmid, web.type, web.cpu, web.maxmem, web.lock, web.hastate) == (
        100, "qemu", 0.25, 2147483648, "backup", "started")
    assert [(g.vmid, g.template) for g in obs.guests] == [(100, False), (101, False), (9000, True)]
    assert [(n.node, n.online, n.maxmem) for n in obs.nodes] == [("pve1", True, 8), ("pve2", False, 0)]


def test_single_node_without_cluster_entry_has_unknown_quorum():
    assert parse.observe("solo", NOW, [], STATUS[1:2]).quorate is None


@pytest.mark.parametrize("bad", [
    {"errors": b"<html>"},
    [{"type": "qemu", "id": "qemu/1", "node": "pve1", "status": "running"}],  # no vmid
    [{"type": "qemu", "vmid": 1, "node": "pve1", "status": "running", "mem": "lots"}],
    [{"type": "qemu", "vmid": 1, "node": "pve1", "status": "running", "cpu": float("nan")}],
    ["qemu/1"],
])
def test_garbage_resources_are_unexpected_responses(bad):
    with pytest.raises(UnexpectedResponse):
        parse.observe("pdn", NOW, bad, STATUS)


def test_status_without_nodes_is_unexpected():
    with pytest.raises(UnexpectedResponse):
        parse.observe("pdn", NOW, RESOURCES, [{"type": "cluster", "quorate": 1}])


def test_empty_answer_is_an_anomaly_only_when_guests_are_expected():
    assert parse.observe("pdn", NOW, [], STATUS).ok
    anomaly = parse.observe("pdn", NOW, [], STATUS, guests_seen_before=40)
    assert (anomaly.ok, anomaly.failure, anomaly.guests) == (False, FailureClass.EMPTY, ())
    assert anomaly.nodes  # the node view is still reported


def test_changed_guests_are_those_seen_before_with_another_status():
    obs = parse.observe("pdn", NOW, RESOURCES, STATUS)
    changed = parse.changed_guests(obs.guests, {100: "stopped", 101: "stopped"})
    assert [g.vmid for g in changed] == [100]


def test_site_fetch_judged_by_status_then_keyword():
    raw = RawFetch(url="https://x/", status=200, body=b"<h1>Dinas Kesehatan</h1>", ttfb_s=0.01, total_s=0.02,
                   cert_not_after=NOW + timedelta(days=10, hours=12))
    good = evaluate(raw, expect_status=200, keyword="Dinas Kesehatan", now=NOW)
    assert (good.ok, good.keyword_found, good.tls_days_left, good.bytes_read) == (True, True, 10.5, 24)
    assert evaluate(raw, expect_status=301, keyword=None, now=NOW).failure is FailureClass.STATUS
    assert evaluate(raw, expect_status=200, keyword="Dinsos", now=NOW).failure is FailureClass.KEYWORD


def test_transport_failure_wins_and_keeps_the_certificate_expiry():
    raw = RawFetch(url="https://x/", failure=FailureClass.TLS, detail="certificate has expired",
                   cert_not_after=NOW - timedelta(days=2))
    check = evaluate(raw, expect_status=200, keyword="x", now=NOW)
    assert (check.ok, check.failure, check.tls_days_left, check.keyword_found) == (False, FailureClass.TLS, -2.0, None)
