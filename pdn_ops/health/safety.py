"""The safety net as the pages read it: backups per VM and per OPD, storages with their forecast, node pressure.

Everything comes from the latest state (``health_targets``: a VM's values hold its backups and lock, a cluster's
its storages, a node's its pressure), so a page costs one or two queries whatever the size of the fleet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pdn_ops.core.db.tables import OpdRow, VmRow
from pdn_ops.health.tables import HealthTargetRow

# The shipped rules' pressure thresholds (deploy/prometheus/rules/pdn-ops.rules.yml, pdn-ops-node-pressure).
MEMORY_PRESSED, SWAP_PRESSED, LOAD_PER_CPU_PRESSED, ROOTFS_PRESSED = 0.90, 0.25, 1.5, 0.90
STORAGE_ALMOST_FULL, FILLS_SOON_DAYS = 0.90, 7.0


@dataclass(frozen=True, slots=True)
class BackupLine:
    """One VM's backups, as its page, the backups view and the complaint page show them."""

    state: str  # ok | failed | too_old | unprotected
    last_ok_at: datetime | None
    age_h: float | None  # of the newest good backup
    max_age_h: float | None  # the threshold in force (the VM's, its OPD's or the global one)
    size: int | None
    storage: str | None
    jobs: tuple[str, ...]
    failed_at: datetime | None
    failure: str | None  # the failed task's error line and log tail

    @property
    def recent(self) -> bool:
        return self.state == "ok"


def _ts(value: Any) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if isinstance(value, int | float) else None


def backup_line(values: dict[str, Any] | None, now: datetime) -> BackupLine | None:
    """A VM's backups from its target's values; None when its cluster's backups are not watched."""
    if not values or values.get("backup_state") not in ("ok", "failed", "too_old", "unprotected"):
        return None
    ok_at = _ts(values.get("backup_ok_ts"))
    size = values.get("backup_size")
    max_age = values.get("backup_max_age_h")
    return BackupLine(
        state=str(values["backup_state"]), last_ok_at=ok_at,
        age_h=round((now - ok_at).total_seconds() / 3600, 1) if ok_at else None,
        max_age_h=float(max_age) if isinstance(max_age, int | float) else None,
        size=size if isinstance(size, int) else None,
        storage=str(values["backup_storage"]) if values.get("backup_storage") else None,
        jobs=tuple(str(j) for j in values.get("backup_jobs") or ()),
        failed_at=_ts(values.get("backup_failed_ts")),
        failure=str(values["backup_failure"]) if values.get("backup_failure") else None)


@dataclass(frozen=True, slots=True)
class VmBackups:
    vm_id: int
    name: str
    cluster: str
    vmid: int
    backup: BackupLine | None  # None: not watched (the cluster has ``backups: false``) or not seen yet
    lock: str | None
    lock_stale: bool  # no running task holds the lock


@dataclass(frozen=True, slots=True)
class OpdBackups:
    id: int
    code: str
    name: str
    vms: tuple[VmBackups, ...]

    @property
    def watched(self) -> int:
        return sum(1 for vm in self.vms if vm.backup is not None)

    @property
    def covered(self) -> int:
        """VMs with a recent good backup (state ok)."""
        return sum(1 for vm in self.vms if vm.backup is not None and vm.backup.recent)

    @property
    def coverage(self) -> float | None:
        return self.covered / self.watched if self.watched else None


def backups(session: Session, now: datetime, *, opd_id: int | None = None) -> tuple[OpdBackups, ...]:
    """Every active OPD (or one) with its active VMs' backups, problems first within an OPD."""
    t = HealthTargetRow
    stmt = (select(OpdRow.id, OpdRow.code, OpdRow.name, VmRow.id, VmRow.name, VmRow.cluster, VmRow.vmid, t.values)
            .join(VmRow, VmRow.opd_id == OpdRow.id)
            .outerjoin(t, (t.vm_id == VmRow.id) & (t.kind == "vm"))
            .where(OpdRow.retired_at.is_(None), VmRow.retired_at.is_(None))
            .order_by(OpdRow.name, VmRow.name))
    if opd_id is not None:
        stmt = stmt.where(OpdRow.id == opd_id)
    grouped: dict[int, tuple[str, str, list[VmBackups]]] = {}
    for oid, code, oname, vm_id, name, cluster, vmid, values in session.execute(stmt):
        values = values or {}
        lock = values.get("lock") if isinstance(values.get("lock"), str) else None
        line = backup_line(values, now)
        grouped.setdefault(oid, (code, oname, []))[2].append(VmBackups(
            vm_id, name, cluster, vmid, line, lock or None,
            bool(lock) and isinstance(values.get("lock_free_s"), int | float)))
    order = {"failed": 0, "too_old": 1, "unprotected": 2, "ok": 3}
    return tuple(OpdBackups(oid, code, name, tuple(sorted(
        vms, key=lambda v: (order.get(v.backup.state, 4) if v.backup else 5, v.name))))
        for oid, (code, name, vms) in grouped.items())


def coverage(session: Session, now: datetime, opd_id: int | None = None) -> list[tuple[str, int, int]]:
    """(OPD name, VMs with a recent good backup, VMs whose backups are watched) per OPD: the monthly report's."""
    return [(o.name, o.covered, o.watched) for o in backups(session, now, opd_id=opd_id) if o.watched]


# --- storages and nodes ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StorageLine:
    cluster: str
    node: str
    storage: str
    type: str
    available: bool
    backup: bool
    used: int
    total: int
    days_until_full: float | None  # the least-squares forecast (None: not growing, or too few hours yet)
    thin_data: float | None
    thin_metadata: float | None

    @property
    def used_ratio(self) -> float | None:
        return self.used / self.total if self.total else None

    @property
    def level(self) -> str:
        """How it looks on the page: down (unavailable), full, soon (fills within a week), ok."""
        ratio = self.used_ratio
        if not self.available:
            return "down"
        if ratio is not None and ratio > STORAGE_ALMOST_FULL:
            return "full"
        if self.days_until_full is not None and self.days_until_full < FILLS_SOON_DAYS:
            return "soon"
        return "ok"


@dataclass(frozen=True, slots=True)
class NodeLine:
    cluster: str
    node: str
    state: str
    memory: float | None
    swap: float | None
    load_per_cpu: float | None
    rootfs: float | None
    vms: tuple[tuple[int, str], ...]  # (vm id, name) of the inventory's VMs on it

    @property
    def pressed(self) -> tuple[str, ...]:
        """What presses it, by the shipped rules' thresholds: memory (with swap), cpu, rootfs."""
        found = []
        if (self.memory or 0) > MEMORY_PRESSED and (self.swap or 0) > SWAP_PRESSED:
            found.append("memory")
        if (self.load_per_cpu or 0) > LOAD_PER_CPU_PRESSED:
            found.append("cpu")
        if (self.rootfs or 0) > ROOTFS_PRESSED:
            found.append("rootfs")
        return tuple(found)


def _ratio(used: Any, total: Any) -> float | None:
    if isinstance(used, int | float) and isinstance(total, int | float) and total > 0:
        return used / total
    return None


def storages(session: Session) -> tuple[tuple[StorageLine, ...], tuple[NodeLine, ...]]:
    """Every storage of every cluster (fullest first) and every node with its pressure and VMs."""
    t = HealthTargetRow
    lines: list[StorageLine] = []
    nodes: list[NodeLine] = []
    vms_on: dict[str, list[tuple[int, str]]] = {}
    for vm_id, name, cluster, values in session.execute(
            select(VmRow.id, VmRow.name, VmRow.cluster, t.values).join(t, (t.vm_id == VmRow.id) & (t.kind == "vm"))
            .where(VmRow.retired_at.is_(None)).order_by(VmRow.name)):
        node = (values or {}).get("node")
        if isinstance(node, str):
            vms_on.setdefault(f"{cluster}/{node}", []).append((vm_id, name))
    for kind, ref, state, values in session.execute(
            select(t.kind, t.ref, t.state, t.values).where(t.kind.in_(("cluster", "node"))).order_by(t.ref)):
        values = values or {}
        if kind == "cluster":
            for item in values.get("storages") or ():
                if not isinstance(item, dict):
                    continue
                thin = item.get("thin")
                thin = thin if isinstance(thin, dict) else {}
                forecast = item.get("days_until_full")
                lines.append(StorageLine(
                    cluster=ref, node=str(item.get("node")), storage=str(item.get("storage")),
                    type=str(item.get("type") or ""), available=bool(item.get("available")),
                    backup=bool(item.get("backup")), used=int(item.get("used") or 0),
                    total=int(item.get("total") or 0),
                    days_until_full=float(forecast) if isinstance(forecast, int | float) else None,
                    thin_data=thin.get("data"), thin_metadata=thin.get("metadata")))
        else:
            cluster, _, node = ref.partition("/")
            cpus = values.get("cpus")
            load = values.get("load1")
            nodes.append(NodeLine(
                cluster=cluster, node=node, state=state,
                memory=_ratio(values.get("mem_used"), values.get("mem_total")),
                swap=_ratio(values.get("swap_used"), values.get("swap_total")),
                load_per_cpu=load / cpus if isinstance(load, int | float) and isinstance(cpus, int) and cpus else None,
                rootfs=_ratio(values.get("rootfs_used"), values.get("rootfs_total")),
                vms=tuple(vms_on.get(ref, ()))))
    lines.sort(key=lambda s: (-(s.used_ratio or 0.0), s.cluster, s.storage, s.node))
    return tuple(lines), tuple(nodes)
