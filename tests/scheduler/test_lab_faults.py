"""End to end on the lab: real collectors through the scheduler's seam; faults show up with the right state and
cause within two runs of each job (two intervals)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from proxmoxer.tools import Tasks
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from pdn_ops.core.db import migrate
from pdn_ops.core.db.engine import make_engine, make_sessionmaker
from pdn_ops.core.db.tables import JobStatusRow
from pdn_ops.core.inventory import Inventory, load_inventory
from pdn_ops.core.inventory_sync import sync_inventory
from pdn_ops.core.jobs import JobWrapper
from pdn_ops.health.collection import InventoryCollectorFactory
from pdn_ops.health.jobs import HealthConfig, build_jobs
from pdn_ops.health.tables import HealthEventRow, HealthTargetRow
from tests.lab_fixtures import lab_proxmox


def test_lab_faults_show_up_with_their_root_cause_within_two_intervals(make_lab: Any, tmp_path: Path) -> None:
    lab = make_lab(vms=3, sites=2)
    inventory = load_inventory(lab.inventory_path)
    engine, sessions, jobs = _collecting(lab, inventory, tmp_path)
    assert sorted(job.kind for job in jobs) == ["proxmox", "sites", "ssh"]
    wrapper = JobWrapper(sessions)

    def cycle() -> None:
        for job in jobs:
            wrapper.run(job)

    def state(kind: str, ref: str) -> HealthTargetRow:
        with sessions() as session:
            row = session.scalar(select(HealthTargetRow).where(HealthTargetRow.kind == kind,
                                                               HealthTargetRow.ref == ref))
        assert row is not None, f"{kind}:{ref} never observed"
        return row

    cycle()
    site = inventory.sites[0]
    stopped_key = site.vm
    assert stopped_key is not None
    stopped = inventory.vm(stopped_key)
    assert stopped is not None
    crashed = next(vm for vm in inventory.vms if vm.ssh is not None and vm.services and vm.key != stopped_key)
    assert state("cluster", inventory.clusters[0].name).state == "up"
    assert state("vm", stopped.key).state == "up" and state("site", site.url).state == "up"
    assert state("guest", crashed.key).state == "up"

    prox = lab_proxmox(lab)
    node = state("vm", stopped.key).values["node"]
    Tasks.blocking_status(prox, prox.nodes(node).qemu(stopped.vmid).status.stop.post(), timeout=20,
                          polling_interval=0.02)
    lab.faults.crash_service(crashed.vmid, crashed.services[0])
    lab.faults.fill_disk(crashed.vmid, percent=97)
    cycle()
    cycle()  # two intervals

    vm = state("vm", stopped.key)
    assert (vm.state, vm.reason, vm.cause_key) == ("down", "vm_stopped", None), "the VM is the root problem"
    down_site = state("site", site.url)
    assert down_site.state == "down"
    assert (down_site.cause_key, down_site.cause_reason) == (f"vm:{stopped.key}", "vm_stopped")
    guest = state("guest", crashed.key)
    assert guest.state == "degraded" and {"service_inactive", "disk_full"} <= set(guest.degraded)
    with sessions() as session:
        runs = session.scalars(select(JobStatusRow)).all()
        assert all(row.last_ok for row in runs), [(r.job, r.last_error) for r in runs]
        changes = session.scalars(select(HealthEventRow.new_state).where(
            HealthEventRow.target_id == vm.id).order_by(HealthEventRow.at)).all()
    assert changes == ["up", "down"]
    engine.dispose()


def test_qemu_disk_usage_comes_from_the_guest_agent_or_from_df(make_lab: Any, tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from pdn_ops.health.metrics import render_health
    from pdn_ops.health.queries import health_snapshot

    lab = make_lab(vms=2, sites=0)  # VM 102 runs the guest agent, VM 101 has none (SSH only)
    inventory = load_inventory(lab.inventory_path)
    engine, sessions, jobs = _collecting(lab, inventory, tmp_path)
    wrapper = JobWrapper(sessions)

    def disks() -> dict[str, float]:
        for job in jobs:
            wrapper.run(job)
        with sessions() as session:
            text = render_health(health_snapshot(session))
        values: dict[str, dict[str, float]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in ("pdn_vm_disk_used_bytes", "pdn_vm_disk_total_bytes"):
                    values.setdefault(sample.labels["vmid"], {})[sample.name] = sample.value
        return {vmid: v["pdn_vm_disk_used_bytes"] / v["pdn_vm_disk_total_bytes"] for vmid, v in values.items()}

    before = disks()
    assert set(before) == {"101", "102"} and all(0.2 < ratio < 0.5 for ratio in before.values())
    lab.faults.fill_disk(101, percent=97)
    lab.faults.fill_disk(102, percent=97)
    after = disks()
    assert after["102"] > 0.95, "from agent/get-fsinfo"
    assert after["101"] > 0.9, "from df over SSH"
    with sessions() as session:
        vm102 = session.scalar(select(HealthTargetRow).where(HealthTargetRow.kind == "vm",
                                                             HealthTargetRow.ref == "lab/102"))
        assert vm102 is not None and vm102.state == "degraded" and vm102.degraded == ["disk_full"]
        assert vm102.values["fs_total"] == 32 * 1024**3
    engine.dispose()


def _collecting(lab: Any, inventory: Inventory, tmp_path: Path
                ) -> tuple[Engine, sessionmaker[Session], list[Any]]:
    """A migrated SQLite database holding the lab's inventory, and the collection jobs the scheduler would run."""
    url = f"sqlite:///{tmp_path / 'lab.sqlite3'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    with sessions() as session, session.begin():
        sync_inventory(session, inventory)
    factory = InventoryCollectorFactory(inventory, base_dir=lab.inventory_path.parent, site_ca_file=str(lab.ca_file))
    jobs = [job for job in build_jobs(inventory, factory, HealthConfig()) if job.kind != "maintenance"]
    return engine, sessions, jobs
