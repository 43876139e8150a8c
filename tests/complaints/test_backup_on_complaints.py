"""A complaint about a VM tells the engineer at once whether the VM has a recent backup (the safe path), and the
monthly report shows the backup coverage per OPD."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from pdn_ops.core.db.engine import transaction
from pdn_ops.core.db.tables import VmRow, utcnow
from pdn_ops.health.tables import HealthTargetRow
from tests.complaints.world import file_complaint


def _backed_up(world, name: str, hours: float, state: str = "ok") -> int:
    vm_id: int = world.vm[name]
    with transaction(world.ctx.sessions) as session:
        vm = session.get(VmRow, vm_id)
        assert vm is not None
        target = session.scalar(select(HealthTargetRow).where(HealthTargetRow.kind == "vm",
                                                              HealthTargetRow.vm_id == vm_id))
        if target is None:
            target = HealthTargetRow(kind="vm", ref=vm.key, vm_id=vm.id, opd_id=vm.opd_id, state="up")
            session.add(target)
        target.values = {**(target.values or {}), "backup_state": state, "backup_jobs": ["daily"],
                         "backup_max_age_h": 26.0,
                         "backup_ok_ts": (utcnow() - timedelta(hours=hours)).timestamp()}
    return vm_id


def test_the_engineer_sees_the_vms_backup_on_the_complaint_and_the_report_shows_coverage(world) -> None:
    vm_id = _backed_up(world, "web-dinkes", 5)
    admin = world.client("admin-dinkes")
    created = file_complaint(admin, f"vm:{vm_id}")
    assert created.status_code == 303
    path = created.headers["location"]
    staff_page = world.client("engineer").get(path, headers={"Accept-Language": "en"})
    backup = staff_page.text.split('id="vm-backup"', 1)[1].split("</dd>", 1)[0]
    assert "Recent backup" in backup and "(5" in backup, "its state and how old it is"
    assert 'id="vm-backup"' not in admin.get(path).text, "the OPD sees the health word only"

    report = world.client("head-dinkes").get("/reports/monthly", headers={"Accept-Language": "en"})
    assert report.status_code == 200
    figure = report.text.split('id="backup-coverage"', 1)[1].split("</figure>", 1)[0]
    assert "Backup coverage per OPD" in figure and "1 of 1 VMs have a recent backup" in figure
