"""A VM's snapshots for the restore_snapshot form, with the one to roll back to suggested.

The suggestion is the domain's ``suggest_snapshot``: the last snapshot taken before the problem began. When the
problem began is read from pdn-ops' own records: the first failed check of the current failure of any health
target linked to the VM (the VM, its guest, its sites), and, for a complaint, when it was filed, whichever is
earlier. A snapshot taken after that (a safety snapshot, one taken while the VM was already broken) is never
suggested.

The list itself lives in Proxmox. Routes do no remote I/O (STYLE habit 9), so a page view asks the per-process
``SnapshotCache``: it answers at once with what it holds and, when that is missing or older than ``max_age``,
starts one background read for that VM (at most ``workers`` reads at once, each bounded by the cluster's API
timeout). The page says the list is being read and reloads itself until it arrives. Why not the collectors: the
Proxmox collector's cost is two calls per cycle whatever the number of VMs, and one more call per VM per cycle
would end that for a list needed only while an engineer chooses a rollback. Why not the database: the list is
only useful fresh, and Proxmox stays its source of truth (the playbook lists the snapshots again before it acts).
Each web process keeps its own cache; nothing in it is a secret.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pdn_ops.complaints import ComplaintRow
from pdn_ops.core.db.tables import OpdRow, utcnow
from pdn_ops.core.errors import NotFound, PdnOpsError, PolicyRefused, TargetUnreachable, UnexpectedResponse
from pdn_ops.core.inventory import Inventory
from pdn_ops.runs.model import Outcome, StepStatus, suggest_snapshot
from pdn_ops.runs.problem import problem_started_at as problem_started_at
from pdn_ops.runs.service import vm_target
from remediation.executors.proxmox import ApiCall

log = logging.getLogger(__name__)
MAX_AGE = timedelta(seconds=30)
WORKERS = 2


@dataclass(frozen=True, slots=True)
class Snapshot:
    name: str
    taken_at: datetime | None
    description: str = ""
    vmstate: bool = False
    parent: str | None = None


@dataclass(frozen=True, slots=True)
class SnapshotList:
    """What the cache holds for one VM: the list of the last good read, and how the latest read went."""

    target: str
    snapshots: tuple[Snapshot, ...] = ()
    fetched_at: datetime | None = None  # the last good read
    checked_at: datetime | None = None  # the latest read that ended, good or not
    error: str | None = None  # the latest read failed: why (the list, if any, is the previous one)
    refreshing: bool = False

    @property
    def state(self) -> str:
        """``reading`` (nothing yet), ``refreshing`` (a list, and a read under way), ``fresh`` or ``failed``."""
        if self.refreshing:
            return "reading" if self.fetched_at is None else "refreshing"
        return "failed" if self.error else "fresh" if self.fetched_at else "reading"


@dataclass(frozen=True, slots=True)
class Suggestion:
    listing: SnapshotList
    problem_at: datetime | None
    suggested: str | None
    complaint_id: int | None = None


def parse_snapshots(data: Any) -> list[Snapshot]:
    """``GET /nodes/{node}/qemu/{vmid}/snapshot`` to snapshots, oldest first; the ``current`` entry is not one.

    Sample input: ``[{"name": "before_update", "snaptime": 1764363600, "vmstate": 0, "description": "",
    "parent": "weekly"}, {"name": "current", "running": 1, "description": "You are here!"}]``
    """
    found = []
    for item in data if isinstance(data, list) else []:
        if not isinstance(item, dict) or not item.get("name") or item.get("name") == "current":
            continue
        try:
            seconds = int(item.get("snaptime") or 0)
        except (TypeError, ValueError):
            seconds = 0
        taken = datetime.fromtimestamp(seconds, UTC) if seconds > 0 else None
        found.append(Snapshot(name=str(item["name"]), taken_at=taken, description=str(item.get("description") or ""),
                              vmstate=bool(int(item.get("vmstate") or 0)), parent=item.get("parent") or None))
    found.sort(key=lambda s: (s.taken_at or datetime.min.replace(tzinfo=UTC), s.name))
    return found


# --- reading from Proxmox (off the request path) -----------------------------------------------------------------

Fetch = Callable[[str], list[Snapshot]]  # "cluster/vmid" -> snapshots; raises a PdnOpsError


def _checked(outcome: Outcome) -> Any:
    if outcome.status is StepStatus.UNKNOWN:
        raise TargetUnreachable(outcome.detail)
    if not outcome.ok:
        raise UnexpectedResponse(outcome.detail)
    return outcome.data


def inventory_fetch(inventory: Callable[[], Inventory | None], base_dir: Path | None) -> Fetch:
    """Read a VM's snapshots with the inventory's cluster credentials: where the VM runs, then its list."""
    from pdn_ops.runs.worker import proxmox_executor_for

    def fetch(target: str) -> list[Snapshot]:
        current = inventory()
        if current is None:
            raise NotFound("the inventory is not loaded")
        vm = vm_target(current, target, base_dir)
        executor = proxmox_executor_for(current, vm.cluster, base_dir)
        try:
            resources = _checked(executor.read(ApiCall("GET", "/cluster/resources", {"type": "vm"})))
            node = next((str(r["node"]) for r in resources or [] if isinstance(r, dict)
                         and str(r.get("vmid")) == str(vm.vmid) and r.get("type") == "qemu"), None)
            if node is None:
                raise NotFound(f"VM {vm.vmid} is not in cluster {vm.cluster}")
            return parse_snapshots(_checked(executor.read(ApiCall("GET", f"/nodes/{node}/qemu/{vm.vmid}/snapshot"))))
        finally:
            executor.close()
    return fetch


@dataclass
class SnapshotCache:
    """Snapshot lists per VM, read in background threads; ``get`` never waits for Proxmox.

    A list older than ``max_age`` is read again at the next ``get``; so is a failed read (not before, so a page
    that reloads itself does not hammer an unreachable cluster), or at once with ``refresh``.
    """

    fetch: Fetch
    max_age: timedelta = MAX_AGE
    workers: int = WORKERS
    clock: Callable[[], datetime] = utcnow
    _entries: dict[str, SnapshotList] = field(default_factory=dict)
    _done: dict[str, threading.Event] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _slots: threading.BoundedSemaphore = field(init=False)

    def __post_init__(self) -> None:
        self._slots = threading.BoundedSemaphore(max(self.workers, 1))

    def get(self, target: str, *, refresh: bool = False) -> SnapshotList:
        """The list held for ``target``; starts a read when there is none, it is stale, or ``refresh``."""
        with self._lock:
            entry = self._entries.get(target) or SnapshotList(target)
            stale = entry.checked_at is None or self.clock() - entry.checked_at > self.max_age
            if (refresh or stale) and not entry.refreshing:
                entry = replace(entry, refreshing=True)
                self._entries[target] = entry
                self._done[target] = threading.Event()
                threading.Thread(target=self._read, args=(target,), name="pdn-ops-snapshots", daemon=True).start()
            return entry

    def wait(self, target: str, timeout: float) -> SnapshotList:
        """For scripts and tests: wait up to ``timeout`` s for a read under way. Routes never call this."""
        with self._lock:
            done = self._done.get(target)
        if done is not None:
            done.wait(timeout)
        with self._lock:
            return self._entries.get(target) or SnapshotList(target)

    def _read(self, target: str) -> None:
        error: str | None = None
        snapshots: tuple[Snapshot, ...] = ()
        with self._slots:
            try:
                snapshots = tuple(self.fetch(target))
            except PdnOpsError as exc:
                error = str(exc) or type(exc).__name__
            except Exception as exc:  # a thread must leave the entry readable; the traceback goes to the log
                log.exception("reading the snapshots of %s failed", target)
                error = f"internal error ({type(exc).__name__})"
        with self._lock:
            now = self.clock()
            old = self._entries.get(target) or SnapshotList(target)
            if error is None:
                self._entries[target] = SnapshotList(target, snapshots, now, now, None, False)
            else:
                self._entries[target] = replace(old, checked_at=now, error=error[:500], refreshing=False)
            done = self._done.pop(target, None)
        if done is not None:
            done.set()


# --- the suggestion ------------------------------------------------------------------------------------------------

def _complaint(session: Session, complaint_id: int, opd: str) -> ComplaintRow:
    row = session.get(ComplaintRow, complaint_id)
    if row is None:
        raise NotFound(f"no complaint #{complaint_id}")
    code = session.scalar(select(OpdRow.code).where(OpdRow.id == row.opd_id))
    if code != opd:
        raise PolicyRefused(f"complaint #{complaint_id} belongs to another OPD than the VM")
    return row


def suggest(session: Session, cache: SnapshotCache, inventory: Inventory, *, target: str,
            complaint_id: int | None = None, refresh: bool = False, base_dir: Path | None = None) -> Suggestion:
    """The VM's snapshots as the cache holds them, and the one to roll back to (None while none qualifies)."""
    vm = vm_target(inventory, target, base_dir)  # NotFound for a VM outside the inventory: nothing is read
    complaint = _complaint(session, complaint_id, vm.opd) if complaint_id is not None else None
    listing = cache.get(target, refresh=refresh)
    problem_at = problem_started_at(session, target, complaint=complaint)
    name = suggest_snapshot([(s.name, s.taken_at) for s in listing.snapshots], problem_at)
    return Suggestion(listing=listing, problem_at=problem_at, suggested=name, complaint_id=complaint_id)


def suggestion_view(suggestion: Suggestion) -> dict[str, Any]:
    """The JSON form (also what the page shows): newest snapshot first, the suggested one marked."""
    listing = suggestion.listing
    return {
        "target": listing.target,
        "state": listing.state,
        "fetched_at": listing.fetched_at.isoformat() if listing.fetched_at else None,
        "error": listing.error,
        "problem_at": suggestion.problem_at.isoformat() if suggestion.problem_at else None,
        "complaint_id": suggestion.complaint_id,
        "suggested": suggestion.suggested,
        "snapshots": [{"name": s.name, "taken_at": s.taken_at.isoformat() if s.taken_at else None,
                       "description": s.description, "vmstate": s.vmstate, "parent": s.parent,
                       "suggested": s.name == suggestion.suggested}
                      for s in reversed(listing.snapshots)],
    }
