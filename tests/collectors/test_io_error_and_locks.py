"""A VM frozen in io-error on a full storage, and a lock no task holds: the pure parts, then the Proxmox collector
against the lab (the VM's QMP state and lock set through the lab's PVE object: the lab has no io-error fault of its
own), into the health model, its root cause and its series (both engines)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from collectors.proxmox import locks, parse
from collectors.proxmox.client import ProxmoxClient
from collectors.proxmox.collector import ProxmoxCollector
from pdn_ops.core.inventory import Inventory, load_inventory
from pdn_ops.core.inventory_sync import sync_inventory
from pdn_ops.health import queries as health_queries
from pdn_ops.health import service as health
from pdn_ops.health.metrics import render_health
from pdn_ops.health.model import Reason, Thresholds
from pdn_ops.health.observations import ClusterObservation
from pdn_ops.health.tables import HealthTargetRow
from tests.lab_fixtures import _start, require_lab


def test_disk_storages_come_from_the_disk_keys_of_the_config() -> None:
    config = {"scsi0": "local-lvm:vm-101-disk-0,iothread=1,size=32G", "virtio1": "nas:101/vm-101-disk-1.qcow2",
              "ide2": "local:iso/debian.iso,media=cdrom", "sata0": "/dev/disk/by-id/ata-X,size=1T",
              "efidisk0": "local-lvm:vm-101-disk-2,size=4M", "net0": "virtio=AA:BB:CC:DD:EE:FF,bridge=vmbr0",
              "ide0": "none,media=cdrom", "unused0": "old:vm-101-disk-9"}
    assert parse.disk_storages(config, 101) == ("local-lvm", "nas")


def test_a_lock_is_held_only_by_a_running_task_that_could_hold_it() -> None:
    tasks = [{"type": "qmsnapshot", "id": "101", "node": "pve1", "starttime": 1},
             {"type": "vzdump", "id": "", "node": "pve2", "starttime": 1},
             {"type": "vzdump", "id": "103", "node": "pve1", "starttime": 1, "endtime": 2,
              "status": "interrupted by signal"},
             {"type": "qmclone", "id": "104", "node": "pve1", "starttime": 1, "endtime": 2, "status": "OK"}]
    active = locks.running(tasks)
    assert locks.held("snapshot", 101, "pve1", active)
    assert locks.held("backup", 102, "pve2", active), "a vzdump of many guests runs on its node"
    assert not locks.held("backup", 102, "pve1", active)
    assert not locks.held("backup", 103, "pve1", active), "the task that took it died"
    assert not locks.held("create", 105, "pve1", active), "no clone or restore runs"
    assert locks.held("suspended", 106, "pve1", active), "a hibernated VM keeps its lock on purpose"
    assert locks.held("create", 105, "pve1", locks.running([{"type": "qmclone", "id": "104", "node": "pve1"}]))


# --- the collector against the lab ---------------------------------------------------------------------------


@dataclass
class Observed:
    inventory: Inventory
    healthy: ClusterObservation
    frozen: ClusterObservation
    calls: tuple[int, int]  # api calls: healthy cycle, frozen cycle
    lock_cycles: tuple[ClusterObservation, ...]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    require_lab()
    instance = _start(tmp_path_factory.mktemp("lab"), vms=3, sites=0, guests=0)
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="module")
def observed(lab: Any) -> Observed:
    return _observe(lab)


def _observe(lab: Any) -> Observed:
    inventory = load_inventory(lab.inventory_path)
    cluster = inventory.clusters[0]
    start = datetime.now(UTC)
    clock = [start]
    collector = ProxmoxCollector(ProxmoxClient.for_cluster(cluster, base_dir=lab.inventory_path.parent),
                                 expected_vmids=[vm.vmid for vm in inventory.vms], clock=lambda: clock[0])
    vms = {int(vm.vmid): vm for vm in lab.pve.vms}
    try:
        collector.collect()  # the first cycle also asks every guest's agent
        healthy = collector.collect()
        lab.faults.fill_storage("local-lvm", percent=100)
        vms[101].qmpstatus = "io-error"  # what QEMU does to a guest whose write hits ENOSPC (werror=enospc)
        frozen = collector.collect()
        vms[101].qmpstatus = "running"
        lab.faults.fill_storage("local-lvm", percent=0)
        vms[102].lock = "backup"  # left by a vzdump worker that died: no task holds it
        cycles = []
        for minutes in (1, 5, 20):
            clock[0] = start + timedelta(minutes=minutes)
            cycles.append(collector.collect())
        vms[102].lock = None
        clock[0] = start + timedelta(minutes=21)
        cycles.append(collector.collect())
    finally:
        collector.close()
    return Observed(inventory, healthy, frozen, (healthy.api_calls, frozen.api_calls), tuple(cycles))


def test_the_collector_finds_a_vm_in_io_error_on_a_full_storage_with_bounded_calls(observed: Observed) -> None:
    assert observed.frozen.ok, observed.frozen.detail
    guests = {g.vmid: g for g in observed.frozen.guests}
    assert guests[101].qmpstatus == "io-error" and guests[101].disk_storages == ("local-lvm",)
    assert {guests[v].qmpstatus for v in (102, 103)} <= {"running", None}
    running = sum(1 for g in observed.frozen.guests if g.status == "running" and g.type == "qemu")
    healthy, frozen = observed.calls
    assert frozen == healthy + running + 1, "status/current of the node's running guests, the frozen one's config"
    assert all(g.qmpstatus is None for g in observed.healthy.guests), "no full storage: no extra call"


def test_a_lock_no_task_holds_is_timed_until_it_goes(observed: Observed) -> None:
    free = [next(g for g in c.guests if g.vmid == 102).lock_free_s for c in observed.lock_cycles]
    assert free == [0.0, 240.0, 1140.0, None]
    assert all(g.lock_free_s is None for c in observed.lock_cycles for g in c.guests if g.vmid != 102)


def _row(session: Session, kind: str, ref: str) -> HealthTargetRow:
    row = session.scalar(select(HealthTargetRow).where(HealthTargetRow.kind == kind, HealthTargetRow.ref == ref))
    assert row is not None
    return row


def test_a_vm_in_io_error_is_down_with_the_full_storage_as_its_root_cause(observed: Observed,
                                                                          session: Session) -> None:
    sync_inventory(session, observed.inventory, now=observed.healthy.at)
    health.record_cluster(session, observed.healthy, thresholds=Thresholds())
    health.record_cluster(session, observed.frozen, thresholds=Thresholds())
    session.commit()
    cluster = observed.frozen.cluster
    vm = _row(session, "vm", f"{cluster}/101")
    assert (vm.state, vm.reason) == ("down", Reason.IO_ERROR.value)
    assert (vm.cause_key, vm.cause_reason) == (f"storage:{cluster}/pve1/local-lvm", Reason.STORAGE_FULL.value)
    assert _row(session, "vm", f"{cluster}/102").state == "up", "the others run on"
    text = render_health(health_queries.health_snapshot(session))
    assert any(line.startswith("pdn_vm_dependency_down{") and 'vmid="101"' in line
               and f'cause="storage:{cluster}/pve1/local-lvm"' in line and line.endswith(" 1")
               for line in text.splitlines()), "PdnVmDown stays quiet: the storage's alert is the one"


def test_an_io_error_on_a_storage_with_room_is_the_vms_own(observed: Observed, session: Session) -> None:
    sync_inventory(session, observed.inventory, now=observed.healthy.at)
    health.record_cluster(session, observed.healthy, thresholds=Thresholds())
    roomy = Thresholds(storage_full_ratio=1.01)  # the same answer, read as a storage that is not full
    health.record_cluster(session, observed.frozen, thresholds=roomy)
    session.commit()
    vm = _row(session, "vm", f"{observed.frozen.cluster}/101")
    assert (vm.state, vm.reason, vm.cause_key) == ("down", Reason.IO_ERROR.value, None)


def test_a_stale_lock_degrades_the_vm_after_the_threshold_and_is_a_series(observed: Observed,
                                                                         session: Session) -> None:
    sync_inventory(session, observed.inventory, now=observed.healthy.at)
    th = Thresholds()
    states = []
    texts = []
    for cycle in observed.lock_cycles:
        health.record_cluster(session, cycle, thresholds=th)
        session.commit()
        row = _row(session, "vm", f"{cycle.cluster}/102")
        states.append((row.state, row.reason))
        texts.append(render_health(health_queries.health_snapshot(session)))
    assert states == [("up", "ok"), ("up", "ok"), ("degraded", Reason.STALE_LOCK.value), ("up", "ok")]
    stale = [[line for line in text.splitlines() if line.startswith("pdn_vm_lock_stale{")] for text in texts]
    assert all(len(lines) == 1 and 'vmid="102"' in lines[0] and 'lock="backup"' in lines[0]
               and lines[0].endswith(" 1") for lines in stale[:3])
    assert stale[3] == [], "no lock, no series"


# --- thin pools ----------------------------------------------------------------------------------------------

STORAGE_CFG = [{"storage": "local", "type": "dir", "path": "/var/lib/vz", "content": "iso,backup"},
               {"storage": "local-lvm", "type": "lvmthin", "vgname": "pve", "thinpool": "data",
                "content": "images,rootdir"},
               {"storage": "fast", "type": "lvmthin", "vgname": "nvme", "thinpool": "vms", "content": "images"}]
LVMTHIN_PVE1 = [{"lv": "data", "vg": "pve", "lv_size": 100 * 2**30, "used": 60 * 2**30,
                 "metadata_size": 2**30, "metadata_used": 2**30 * 97 // 100},
                {"lv": "vms", "vg": "nvme", "lv_size": 0, "used": 0, "metadata_size": 0, "metadata_used": 0}]


def test_thin_pool_use_is_read_per_pool_from_the_node_and_matched_by_the_storage_config() -> None:
    names = parse.thin_pool_names(STORAGE_CFG)
    assert names == {"local-lvm": ("pve", "data"), "fast": ("nvme", "vms")}
    use = parse.thin_pools(LVMTHIN_PVE1, "pve1")
    assert use == {("pve", "data"): (0.6, 0.97)}, "a pool without a size is left out, not reported empty"


def test_the_collector_reads_thin_pools_with_one_call_per_node_and_the_lab_sample_gives_nothing(
        observed: Observed, lab: Any) -> None:
    inventory = observed.inventory
    cluster = inventory.clusters[0].model_copy(update={"thin_pools": True})
    plain = ProxmoxCollector.from_inventory(inventory.clusters[0], inventory.vms, base_dir=lab.inventory_path.parent)
    thin = ProxmoxCollector.from_inventory(cluster, inventory.vms, base_dir=lab.inventory_path.parent)
    try:
        plain.collect(), thin.collect()
        without, with_pools = plain.collect(), thin.collect()
    finally:
        plain.close()
        thin.close()
    assert with_pools.api_calls == without.api_calls + 2, "/storage, and disks/lvmthin of the one node"
    # fakepve answers disks/lvmthin with a schema sample (vg "fake", size 0): no figure is made up from it.
    assert all(s.thin_data is None and s.thin_metadata is None for s in with_pools.storages)


def test_thin_pool_use_becomes_series_of_its_storage(observed: Observed, session: Session) -> None:
    sync_inventory(session, observed.inventory, now=observed.healthy.at)
    storages = tuple(replace(s, thin_data=0.6, thin_metadata=0.97) if s.plugintype == "lvmthin" else s
                     for s in observed.healthy.storages)
    health.record_cluster(session, replace(observed.healthy, storages=storages), thresholds=Thresholds())
    session.commit()
    text = render_health(health_queries.health_snapshot(session)).splitlines()
    cluster = observed.healthy.cluster
    lbl = f'{{cluster="{cluster}",node="pve1",storage="local-lvm"}}'
    assert f"pdn_storage_thin_data_used_ratio{lbl} 0.6" in text
    assert f"pdn_storage_thin_metadata_used_ratio{lbl} 0.97" in text
    assert not any("storage=\"local\"" in line for line in text if line.startswith("pdn_storage_thin_"))


def test_a_thin_pool_whose_metadata_is_full_is_full_for_the_vms_on_it(observed: Observed, session: Session) -> None:
    """Its data at 60%, its metadata at 99%: writes fail, so a VM in io-error there is down because of it."""
    sync_inventory(session, observed.inventory, now=observed.healthy.at)
    health.record_cluster(session, observed.healthy, thresholds=Thresholds())
    storages = tuple(replace(s, used=s.total * 6 // 10, thin_data=0.6, thin_metadata=0.99)
                     if s.storage == "local-lvm" else s for s in observed.frozen.storages)
    health.record_cluster(session, replace(observed.frozen, storages=storages), thresholds=Thresholds())
    session.commit()
    vm = _row(session, "vm", f"{observed.frozen.cluster}/101")
    assert (vm.state, vm.cause_key) == ("down", f"storage:{observed.frozen.cluster}/pve1/local-lvm")
