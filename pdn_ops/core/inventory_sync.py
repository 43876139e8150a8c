"""Upsert the inventory's OPDs, VMs and sites into the database; retire what left the file, delete nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from pdn_ops.core.db.tables import AuditRow, OpdRow, SiteRow, VmRow, utcnow
from pdn_ops.core.inventory import Inventory


@dataclass
class SyncReport:
    created: dict[str, int] = field(default_factory=lambda: {"opds": 0, "vms": 0, "sites": 0})
    updated: dict[str, int] = field(default_factory=lambda: {"opds": 0, "vms": 0, "sites": 0})
    retired: dict[str, int] = field(default_factory=lambda: {"opds": 0, "vms": 0, "sites": 0})
    restored: dict[str, int] = field(default_factory=lambda: {"opds": 0, "vms": 0, "sites": 0})

    @property
    def changed(self) -> bool:
        return any(sum(d.values()) for d in (self.created, self.updated, self.retired, self.restored))

    def summary(self) -> str:
        parts = []
        for label, counts in (
            ("created", self.created),
            ("updated", self.updated),
            ("retired", self.retired),
            ("restored", self.restored),
        ):
            text = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
            if text:
                parts.append(f"{label} {text}")
        return "; ".join(parts) or "no changes"


def _apply(row: object, values: dict[str, object]) -> bool:
    changed = False
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed


def sync_inventory(session: Session, inventory: Inventory, *, now: datetime | None = None) -> SyncReport:
    """Make the database match the inventory. Idempotent: a second call with the same file changes nothing."""
    now = now or utcnow()
    report = SyncReport()

    def track(kind: str, row: object, values: dict[str, object], is_new: bool) -> None:
        was_retired = getattr(row, "retired_at", None) is not None
        changed = _apply(row, {**values, "retired_at": None})
        if is_new:
            report.created[kind] += 1
        elif was_retired:
            report.restored[kind] += 1
        elif changed:
            report.updated[kind] += 1
        if changed and not is_new:
            row.updated_at = now  # type: ignore[attr-defined]

    opds = {row.code: row for row in session.scalars(select(OpdRow))}
    for opd in inventory.opds:
        row = opds.get(opd.code)
        is_new = row is None
        if row is None:
            row = OpdRow(code=opd.code, created_at=now, updated_at=now)
            session.add(row)
            opds[opd.code] = row
        contacts = [c.model_dump(exclude_none=True) for c in opd.contacts]
        track("opds", row, {"name": opd.name, "contacts": contacts, "backup_max_age_h": opd.backup_max_age_h},
              is_new)
    session.flush()

    vms = {(row.cluster, row.vmid): row for row in session.scalars(select(VmRow))}
    for vm in inventory.vms:
        vrow = vms.get((vm.cluster, vm.vmid))
        is_new = vrow is None
        if vrow is None:
            vrow = VmRow(cluster=vm.cluster, vmid=vm.vmid, created_at=now, updated_at=now)
            session.add(vrow)
            vms[(vm.cluster, vm.vmid)] = vrow
        values = {
            "name": vm.name,
            "opd_id": opds[vm.opd].id,
            "services": list(vm.services),
            "has_ssh": vm.ssh is not None,
            "backup_max_age_h": vm.backup_max_age_h,
        }
        track("vms", vrow, values, is_new)
    session.flush()

    sites = {row.url: row for row in session.scalars(select(SiteRow))}
    for site in inventory.sites:
        srow = sites.get(site.url)
        is_new = srow is None
        if srow is None:
            srow = SiteRow(url=site.url, created_at=now, updated_at=now)
            session.add(srow)
            sites[site.url] = srow
        vm_id = None
        if site.vm is not None:
            cluster, _, vmid = site.vm.partition("/")
            vm_id = vms[(cluster, int(vmid))].id
        settings = site.model_dump(include={"expect_status", "keyword", "interval", "timeout", "tls_warning_days"})
        values = {"name": site.name, "opd_id": opds[site.opd].id, "vm_id": vm_id, "settings": settings}
        track("sites", srow, values, is_new)

    wanted_opds = {o.code for o in inventory.opds}
    wanted_vms = {(v.cluster, v.vmid) for v in inventory.vms}
    wanted_sites = {s.url for s in inventory.sites}
    retiring: list[tuple[str, OpdRow | VmRow | SiteRow, bool]] = []
    retiring += [("sites", s, url in wanted_sites) for url, s in sites.items()]
    retiring += [("vms", v, key in wanted_vms) for key, v in vms.items()]
    retiring += [("opds", o, code in wanted_opds) for code, o in opds.items()]
    for kind, target, wanted in retiring:
        if not wanted and target.retired_at is None:
            target.retired_at = now
            report.retired[kind] += 1
    if report.changed:
        session.add(AuditRow(at=now, actor="inventory", action="inventory.sync", subject="inventory",
                             detail=report.summary()))
    session.flush()
    return report
