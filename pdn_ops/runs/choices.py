"""The playbooks that fit a complaint's VM, as the complaint page offers them to staff: one click to the plan.

A complaint names a VM, or a site whose VM the inventory declares. What fits that VM comes from the inventory and
each playbook's own parameter checks (no I/O): a declared service to restart or a declared cleanup to run needs
SSH access; restarting the VM needs nothing more; a resize needs the sizes the engineer types; a rollback needs
the snapshot the engineer picks in the snapshot chooser, which suggests the last one before the complaint's
problem when it is opened with the complaint's id. Every choice leads to the dry run first, carrying the
complaint's id, so the run is linked to the complaint and closes it once the health checks confirm.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pdn_ops.complaints import ComplaintRow, PlaybookChoice
from pdn_ops.core.db.tables import OpdRow, SiteRow, VmRow
from pdn_ops.core.errors import PolicyRefused
from pdn_ops.core.inventory import Inventory
from pdn_ops.runs import model as rem
from pdn_ops.runs.service import vm_target
from remediation import registry

RESIZE_INPUTS = ("cores", "memory_mib", "disk_grow_gib")  # one size per request, as the run form takes it


def complaint_vm_key(session: Session, row: ComplaintRow) -> str | None:
    """"cluster/vmid" of the complaint's VM, or of its site's VM; None for a site without a VM."""
    if row.vm_id is not None:
        vm = session.get(VmRow, row.vm_id)
    else:
        vm_id = session.scalar(select(SiteRow.vm_id).where(SiteRow.id == row.site_id))
        vm = session.get(VmRow, vm_id) if vm_id is not None else None
    return vm.key if vm is not None and vm.retired_at is None else None


def for_complaint(session: Session, inventory: Inventory | None, row: ComplaintRow, *, base_dir: Path | None = None,
                  policy: rem.Policy | None = None) -> list[PlaybookChoice]:
    """The playbooks that fit the complaint's VM, least risky first; empty without an inventory or a VM."""
    key = complaint_vm_key(session, row)
    if inventory is None or key is None:
        return []
    declared = inventory.vm(key)
    opd = session.scalar(select(OpdRow.code).where(OpdRow.id == row.opd_id))
    if declared is None or declared.opd != opd:
        return []  # a VM the inventory no longer gives this OPD: no run may be linked to its complaint
    target = vm_target(inventory, key, base_dir)
    policy = policy or rem.Policy()
    choices: list[PlaybookChoice] = []

    def offer(playbook: str, params: dict[str, Any] | None = None, **extra: Any) -> None:
        book = registry.playbook(playbook)
        if params is not None:
            try:
                book.validate(params, target, policy)
            except PolicyRefused:
                return  # does not fit this VM (no SSH, an undeclared name)
        name, value = next(iter((params or {}).items()), ("", ""))
        choices.append(PlaybookChoice(playbook=playbook, target=key, risk=book.risk.value, param_name=name,
                                      param_value=str(value), **extra))

    for unit in target.services:
        offer("restart_service", {"unit": unit})
    for cleanup in target.cleanup:
        offer("free_disk", {"cleanup": cleanup})
    offer("restart_vm", {})
    offer("resize_vm", inputs=RESIZE_INPUTS)
    offer("restore_snapshot", url=f"/remediation/snapshots/{declared.cluster}/{declared.vmid}?complaint_id={row.id}")
    return choices
