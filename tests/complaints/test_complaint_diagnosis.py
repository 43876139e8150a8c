"""Step 4 on the complaint page: engineers see the asset's live state, recent checks and events; OPD users don't."""

from __future__ import annotations

from sqlalchemy import select

from pdn_ops.core.db.engine import transaction
from pdn_ops.core.db.tables import VmRow, utcnow
from pdn_ops.health.tables import HealthCheckRow, HealthTargetRow
from tests.complaints.world import file_complaint


def test_engineers_diagnose_from_the_complaint_page_and_opd_users_see_only_the_health_word(world) -> None:
    vm_id = world.vm["web-dinkes"]
    with transaction(world.ctx.sessions) as session:
        vm = session.get(VmRow, vm_id)
        assert vm is not None
        target = session.scalar(select(HealthTargetRow).where(HealthTargetRow.kind == "vm",
                                                              HealthTargetRow.vm_id == vm_id))
        if target is None:
            target = HealthTargetRow(kind="vm", ref=vm.key, vm_id=vm.id, opd_id=vm.opd_id, state="down")
            session.add(target)
            session.flush()
        session.add(HealthCheckRow(target_id=target.id, at=utcnow(), ok=False, failure="refused",
                                   duration_s=0.05, detail="diagnosis-probe: status stopped"))
    admin = world.client("admin-dinkes")
    created = file_complaint(admin, f"vm:{vm_id}")
    assert created.status_code == 303
    path = created.headers["location"]
    staff_page = world.client("engineer").get(path)
    assert staff_page.status_code == 200
    assert 'id="asset-live"' in staff_page.text and "diagnosis-probe: status stopped" in staff_page.text
    assert f'href="/fleet/vm/{vm_id}"' in staff_page.text
    opd_page = admin.get(path)
    assert opd_page.status_code == 200
    assert 'id="asset-live"' not in opd_page.text and "diagnosis-probe" not in opd_page.text
    assert "/fleet/" not in opd_page.text, "no link to a staff-only page"
