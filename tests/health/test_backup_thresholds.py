"""Per-OPD and per-VM thresholds for the age of the newest backup (default 26 hours), from the inventory to the
VM's backup state and the series the rule reads (both engines)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from pdn_ops.core.inventory import Inventory, Vm, load_inventory
from pdn_ops.core.inventory_sync import sync_inventory
from pdn_ops.health import queries as health_queries
from pdn_ops.health import service as health
from pdn_ops.health.metrics import render_health
from pdn_ops.health.model import Thresholds
from pdn_ops.health.observations import BackupObservation, ClusterObservation, GuestObservation, NodeObservation
from pdn_ops.health.tables import HealthTargetRow

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)


def inventory() -> Inventory:
    """The example inventory with VM 101's OPD at 48 hours and VM 102 at 12 hours of its own (103: the default)."""
    base = load_inventory(ROOT / "inventory.example.yaml")
    opd_101 = next(vm.opd for vm in base.vms if vm.vmid == 101)
    assert opd_101 != next(vm.opd for vm in base.vms if vm.vmid == 102), "the example keeps them apart"
    opds = [o.model_copy(update={"backup_max_age_h": 48.0}) if o.code == opd_101 else o for o in base.opds]
    vms = [v.model_copy(update={"backup_max_age_h": 12.0}) if v.vmid == 102 else v for v in base.vms]
    return base.model_copy(update={"opds": opds, "vms": vms})


def cycle(at: datetime, age: timedelta) -> ClusterObservation:
    return ClusterObservation(
        cluster="pdn1", at=at, ok=True, quorate=True, nodes=(NodeObservation("pdn1", "pve1", online=True),),
        guests=tuple(GuestObservation(cluster="pdn1", vmid=v, node="pve1", name=f"vm{v}", type="qemu",
                                      status="running") for v in (101, 102, 103)),
        backups=tuple(BackupObservation(vmid=v, jobs=("daily",), last_ok_at=at - age, last_ok_storage="nas")
                      for v in (101, 102, 103)))


def states(session: Session) -> dict[int, tuple[str, float]]:
    rows = session.scalars(select(HealthTargetRow).where(HealthTargetRow.kind == "vm"))
    return {int(r.ref.split("/")[1]): (r.values["backup_state"], r.values["backup_max_age_h"]) for r in rows}


def test_the_vms_own_threshold_then_its_opds_then_the_global_one(session: Session) -> None:
    sync_inventory(session, inventory(), now=T0)
    th = Thresholds(backup_max_age_h=26.0)
    health.record_cluster(session, cycle(T0, timedelta(hours=20)), thresholds=th)
    assert states(session) == {101: ("ok", 48.0), 102: ("too_old", 12.0), 103: ("ok", 26.0)}
    health.record_cluster(session, cycle(T0 + timedelta(hours=1), timedelta(hours=30)), thresholds=th)
    assert states(session) == {101: ("ok", 48.0), 102: ("too_old", 12.0), 103: ("too_old", 26.0)}
    session.commit()
    text = render_health(health_queries.health_snapshot(session))
    too_old = sorted(line.split('vmid="')[1][:3] for line in text.splitlines()
                     if line.startswith("pdn_vm_backup_state{") and 'state="too_old"' in line and line.endswith(" 1"))
    assert too_old == ["102", "103"], "PdnBackupTooOld reads the state, so it follows the same thresholds"
    assert any(line.startswith("pdn_vm_backup_max_age_seconds{") and 'vmid="102"' in line
               and line.endswith(" 43200") for line in text.splitlines())


def test_a_threshold_must_be_positive_and_at_most_ninety_days() -> None:
    for bad in (0, -1, 24 * 91):
        with pytest.raises(ValidationError):
            Vm(cluster="pdn1", vmid=101, name="web", opd="dinkes", backup_max_age_h=bad)
