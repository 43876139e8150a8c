"""The demo's "break something" panel: what the lab's VMs look like, and faults applied off the request path.

Only `pdn-ops demo` (``make run``) builds one, for the lab it runs in the same process; the web page
(``pdn_ops.app.lab_demo``) exists only then. A button only *queues* a fault: one worker thread applies it
through the lab's fault table (``Lab.faults.apply``, as ``pdn-ops lab fault`` does) and the page shows how it went.
This module imports nothing of fakepve, so the web layer can import it without the ``lab`` extra.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pdn_ops.core.errors import NotFound

if TYPE_CHECKING:
    from pdn_ops.lab.lab import Lab

# The buttons, in the order the page shows them; each needs the VM's guest except stop_vm and take_snapshot.
ACTIONS = ("crash_service", "stop_vm", "fill_disk", "take_snapshot", "ship_bad_update")
NEEDS_GUEST = frozenset({"crash_service", "fill_disk", "ship_bad_update"})
BAD_VERSION = "1.5.0"
RECENT = 20


@dataclass
class DemoAction:
    id: int
    at: float
    vmid: int
    action: str
    state: str = "queued"  # queued | running | done | failed
    detail: str = ""


@dataclass(frozen=True, slots=True)
class DemoVm:
    vmid: int
    name: str
    opd: str
    status: str  # as Proxmox shows it: running | stopped
    target: str  # cluster/vmid, for the remediation pages
    has_guest: bool
    release: str = ""
    units: tuple[tuple[str, str], ...] = ()
    disk_used_pct: int = 0
    snapshots: tuple[str, ...] = ()


@dataclass
class LabDemoPanel:
    lab: Lab
    cluster: str = "lab"
    _recent: deque[DemoAction] = field(default_factory=lambda: deque(maxlen=RECENT))
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="pdn-ops-lab-demo"))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------ reading (memory and the guests' state files)
    def vms(self) -> list[DemoVm]:
        from pdn_ops.lab.guest_state import disk_used

        found = []
        for vm in sorted(self.lab.pve.vms, key=lambda v: v.vmid):
            guest = self.lab.guests.get(vm.vmid)
            base = dict(vmid=vm.vmid, name=vm.name, opd=_opd_of(vm), status=str(vm.status),
                        target=f"{self.cluster}/{vm.vmid}", has_guest=guest is not None,
                        snapshots=tuple(sorted(tuple(vm.snapshots))))
            if guest is None:
                found.append(DemoVm(**base))
                continue
            state = guest.state()
            size = int(state["disk"]["size"]) or 1
            found.append(DemoVm(**base, release=str(state.get("release", {}).get("version", "")),
                                units=tuple((n, i["state"]) for n, i in sorted(state["units"].items())
                                            if n in guest.spec.services),
                                disk_used_pct=disk_used(state) * 100 // size))
        return found

    def recent(self) -> list[DemoAction]:
        with self._lock:
            return [DemoAction(**vars(a)) for a in reversed(self._recent)]

    # ------------------------------------------------------------ acting (queued, applied by the worker thread)
    def submit(self, vmid: int, action: str) -> DemoAction:
        """Check the request (no I/O) and queue it; NotFound for an unknown VM or action."""
        vm = self.lab.pve.vm(vmid)
        if action not in ACTIONS or vm is None:
            raise NotFound(f"no lab action {action!r} for VM {vmid}")
        if action in NEEDS_GUEST and vmid not in self.lab.guests:
            raise NotFound(f"VM {vmid} has no lab guest to {action}")
        with self._lock:
            item = DemoAction(id=next(self._ids), at=time.time(), vmid=vmid, action=action)
            self._recent.append(item)
            queued = DemoAction(**vars(item))  # the worker thread changes ``item``; callers get a copy
        self._pool.submit(self._apply, item)
        return queued

    def _steps(self, item: DemoAction) -> list[tuple[str, dict[str, Any]]]:
        vmid = item.vmid
        stamp = time.strftime("%Y%m%d_%H%M%S")
        if item.action == "crash_service":
            services = self.lab.guest(vmid).spec.services
            return [("crash_service", {"vmid": vmid, "unit": services[0]})]
        if item.action == "fill_disk":
            return [("fill_disk", {"vmid": vmid, "percent": 97})]
        if item.action == "take_snapshot":
            return [("take_snapshot", {"vmid": vmid, "name": f"demo_{stamp}", "description": "pdn-ops demo"})]
        if item.action == "ship_bad_update":
            # A snapshot first, so the visitor has something to roll back to.
            return [("take_snapshot", {"vmid": vmid, "name": f"before_update_{stamp}",
                                       "description": f"before opd-portal {BAD_VERSION}"}),
                    ("ship_bad_update", {"vmid": vmid, "version": BAD_VERSION})]
        return [("stop_vm", {"vmid": vmid})]

    def _apply(self, item: DemoAction) -> None:
        from pdn_ops.lab.errors import LabError

        self._set(item, "running", "")
        done = []
        try:
            for name, args in self._steps(item):
                result = self.lab.faults.apply(name, args)
                done.append(f"{name}" + (f": {result}" if result is not None else ""))
        except (ValueError, KeyError, LabError, TimeoutError) as exc:
            self._set(item, "failed", "; ".join([*done, str(exc)])[:500])
            return
        self._set(item, "done", "; ".join(done))

    def _set(self, item: DemoAction, state: str, detail: str) -> None:
        with self._lock:
            item.state, item.detail = state, detail


def _opd_of(vm: Any) -> str:
    tags = str(vm.config.get("tags", ""))
    return next((t.removeprefix("opd-") for t in tags.split(";") if t.startswith("opd-")), "")
