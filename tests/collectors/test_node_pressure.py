"""Node pressure: the node status parsed (pure), then the lab's node_pressure fault through the Proxmox collector
into the node's values and series (both engines)."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from collectors.proxmox.collector import ProxmoxCollector
from collectors.proxmox.parse import node_pressure
from pdn_ops.core.errors import UnexpectedResponse
from pdn_ops.core.inventory import load_inventory
from pdn_ops.core.inventory_sync import sync_inventory
from pdn_ops.health import queries as health_queries
from pdn_ops.health import service as health
from pdn_ops.health.metrics import render_health
from pdn_ops.health.model import Thresholds

GiB = 1024**3


def test_node_status_is_parsed_and_nonsense_refused() -> None:
    status = {"cpu": 0.5, "loadavg": ["3.20", "2.00", "1.00"], "cpuinfo": {"cpus": 16},
              "memory": {"total": 64 * GiB, "used": 60 * GiB}, "swap": {"total": 8 * GiB, "used": 2 * GiB},
              "ksm": {"shared": GiB}, "rootfs": {"total": 100 * GiB, "used": 12 * GiB}}
    found = node_pressure(status, "pve1")
    assert (found.load1, found.cpus, found.mem_used, found.swap_used, found.ksm_shared) == (
        3.2, 16, 60 * GiB, 2 * GiB, GiB)
    with pytest.raises(UnexpectedResponse):
        node_pressure(dict(status, memory="lots"), "pve1")
    with pytest.raises(UnexpectedResponse):
        node_pressure(dict(status, loadavg=["high"]), "pve1")


def test_the_lab_node_pressure_reaches_the_series(make_lab, session: Session) -> None:
    lab = make_lab(vms=2, sites=0, guests=0)
    inventory = load_inventory(lab.inventory_path)
    cluster = inventory.clusters[0].model_copy(update={"node_status": True})
    collector = ProxmoxCollector.from_inventory(cluster, inventory.vms, base_dir=lab.inventory_path.parent)
    try:
        calm = collector.collect()
        lab.faults.node_pressure("pve1", memory=0.97, swap=0.6, load=2.0, ksm_gib=4)
        pressed = collector.collect()
    finally:
        collector.close()
    assert calm.nodes[0].pressure is not None and calm.nodes[0].pressure.swap_used == 0
    assert pressed.api_calls == 2 + 1, "one node status per online node, whatever the number of guests"
    sync_inventory(session, inventory, now=pressed.at)
    health.record_cluster(session, pressed, thresholds=Thresholds())
    session.commit()
    text = render_health(health_queries.health_snapshot(session))
    series = {line.split("{")[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith("pdn_node_") and 'node="pve1"' in line}
    assert series["pdn_node_memory_used_ratio"] == pytest.approx(0.97, abs=0.001)
    assert series["pdn_node_swap_used_ratio"] == pytest.approx(0.6, abs=0.001)
    assert series["pdn_node_load1"] / series["pdn_node_cpus"] == pytest.approx(2.0)
    assert series["pdn_node_ksm_shared_bytes"] == 4 * GiB
