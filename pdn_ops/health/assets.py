"""The health model as the complaint pages see it: live state per asset and uptime per month.

These are the ``asset_health`` and ``asset_uptime`` seams of the complaint routes, installed by ``create_app``.
An asset ref is ``"vm:<vms.id>"`` or ``"site:<sites.id>"``; a VM's state is its Proxmox state (``vm`` target).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from pdn_ops.core.db.tables import SiteRow, VmRow
from pdn_ops.health import service as health
from pdn_ops.health.tables import HealthTargetRow


def _ids(refs: Sequence[str], prefix: str) -> list[int]:
    found = []
    for ref in refs:
        kind, _, raw = ref.partition(":")
        if kind == prefix and raw.isdigit():
            found.append(int(raw))
    return found


def states(session: Session, refs: Sequence[str]) -> dict[str, str]:
    """``{ref: "up" | "degraded" | "down" | "unknown"}``; an asset never observed is "unknown"."""
    result = dict.fromkeys(refs, "unknown")
    t = HealthTargetRow
    vm_ids, site_ids = _ids(refs, "vm"), _ids(refs, "site")
    if vm_ids:
        for vm_id, state in session.execute(select(t.vm_id, t.state).where(t.kind == "vm", t.vm_id.in_(vm_ids))):
            result[f"vm:{vm_id}"] = state
    if site_ids:
        stmt = select(t.site_id, t.state).where(t.kind == "site", t.site_id.in_(site_ids))
        for site_id, state in session.execute(stmt):
            result[f"site:{site_id}"] = state
    return result


def uptime(session: Session, start: datetime, end: datetime, opd_id: int | None) -> list[tuple[str, float]]:
    """Uptime of every active VM and site (of one OPD, or all) between ``start`` and ``end``, by label."""
    t = HealthTargetRow
    rows: list[tuple[str, int]] = []
    vm_stmt = (select(VmRow.name, VmRow.cluster, VmRow.vmid, t.id).join(t, (t.vm_id == VmRow.id) & (t.kind == "vm"))
               .where(VmRow.retired_at.is_(None)))
    site_stmt = (select(SiteRow.name, SiteRow.url, t.id).join(t, (t.site_id == SiteRow.id) & (t.kind == "site"))
                 .where(SiteRow.retired_at.is_(None)))
    if opd_id is not None:
        vm_stmt = vm_stmt.where(VmRow.opd_id == opd_id)
        site_stmt = site_stmt.where(SiteRow.opd_id == opd_id)
    for name, cluster, vmid, target_id in session.execute(vm_stmt.order_by(VmRow.name)):
        rows.append((f"VM {name} ({cluster}/{vmid})", target_id))
    for site_name, url, target_id in session.execute(site_stmt.order_by(SiteRow.url)):
        rows.append((site_name or url, target_id))
    report = []
    for label, target_id in rows:
        ratio = health.uptime(session, target_id=target_id, since=start, until=end)
        if ratio is not None:
            report.append((label, ratio))
    return report
