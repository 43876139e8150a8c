"""The complaint pages' view of the health model: state per asset ref and uptime per month, OPD-scoped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from pdn_ops.core.db.tables import OpdRow, SiteRow, VmRow
from pdn_ops.core.inventory import parse_inventory
from pdn_ops.core.inventory_sync import sync_inventory
from pdn_ops.health import assets as asset_health
from pdn_ops.health.tables import HealthRollupRow, HealthTargetRow
from tests.test_inventory import VALID

TWO_OPDS = VALID.replace("vms:", "  - code: disdik\n    name: Dinas Pendidikan\nvms:").replace(
    "sites:", "  - cluster: pdn1\n    vmid: 102\n    name: simpeg\n    opd: disdik\nsites:")


def _world(session: Session) -> tuple[VmRow, VmRow, SiteRow]:
    sync_inventory(session, parse_inventory(TWO_OPDS))
    vms = {v.vmid: v for v in session.scalars(select(VmRow))}
    site = session.scalars(select(SiteRow)).one()
    return vms[101], vms[102], site


def test_states_by_ref_with_unknown_for_never_observed(session: Session) -> None:
    vm, other, site = _world(session)
    session.add(HealthTargetRow(kind="vm", ref="pdn1/101", vm_id=vm.id, opd_id=vm.opd_id, state="down"))
    session.add(HealthTargetRow(kind="site", ref=site.url, site_id=site.id, opd_id=site.opd_id, state="up"))
    session.flush()
    found = asset_health.states(session, [f"vm:{vm.id}", f"vm:{other.id}", f"site:{site.id}", "vm:x"])
    assert found == {f"vm:{vm.id}": "down", f"vm:{other.id}": "unknown", f"site:{site.id}": "up", "vm:x": "unknown"}


def test_uptime_is_scoped_to_the_opd(session: Session) -> None:
    vm, other, _ = _world(session)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for row, up in ((vm, 1800.0), (other, 3600.0)):
        target = HealthTargetRow(kind="vm", ref=row.key, vm_id=row.id, opd_id=row.opd_id, state="up")
        session.add(target)
        session.flush()
        for hour in range(2):
            session.add(HealthRollupRow(target_id=target.id, hour=start + timedelta(hours=hour), checks=4,
                                        failures=0, up_seconds=up))
    session.flush()
    dinkes = session.scalars(select(OpdRow).where(OpdRow.code == "dinkes")).one()
    scoped = asset_health.uptime(session, start, start + timedelta(days=30), dinkes.id)
    assert scoped == [("VM web-dinkes (pdn1/101)", 0.5)]
    everything = dict(asset_health.uptime(session, start, start + timedelta(days=30), None))
    assert everything == {"VM web-dinkes (pdn1/101)": 0.5, "VM simpeg (pdn1/102)": 1.0}
