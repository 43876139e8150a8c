"""Clear a stale lock: a VM whose config still says ``lock: backup`` (or snapshot, migrate...) after the task that
took it died. Refused while any task of the VM still runs (that task holds the lock); the lock's history (the
VM's recent tasks, and the one that took this lock with how it ended) is kept in the run's facts.

The change is ``PUT config delete=lock`` with the config's digest, so a config that changed since it was read (a
new task locked it again) makes Proxmox refuse it instead of clearing a live lock. On a real cluster qemu-server
checks the lock before any config change unless ``skiplock``, which only root@pam may use: the cluster's
credential must be allowed to do that (pdn_ops/lab/README.md, "Unlock").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pdn_ops.core.errors import CheckFailed, PolicyRefused
from pdn_ops.runs.model import Policy, Risk, StepStatus
from remediation.executors.proxmox import ApiCall
from remediation.playbooks.base import LOCATE, RunContext, Step, VmTarget, refusals, refuse_unknown
from remediation.playbooks.safety import LOCKS, ApiChange, Inspect, Reader, stamp

# The worker type that takes each lock, to name the task that left it.
LOCK_TASKS = {"backup": "vzdump", "snapshot": "qmsnapshot", "snapshot-delete": "qmdelsnapshot",
              "migrate": "qmigrate", "rollback": "qmrollback", "clone": "qmclone", "create": "qmcreate",
              "suspending": "qmsuspend", "suspended": "qmsuspend"}
HISTORY = 10


def running(task: Mapping[str, Any]) -> bool:
    """A task list entry of a task that has not ended (the list gives a finished task's exit status in ``status``)."""
    return "endtime" not in task or not task.get("status") or task.get("status") == "running"


def lock_history(tasks: Sequence[Mapping[str, Any]], vmid: int) -> list[dict[str, Any]]:
    """The VM's recent tasks, newest first, as the run keeps them."""
    mine = [t for t in tasks if isinstance(t, Mapping) and str(t.get("id")) == str(vmid)]
    mine.sort(key=lambda t: -int(t.get("starttime", 0)))
    return [{"upid": str(t.get("upid", "")), "type": str(t.get("type", "")), "starttime": int(t.get("starttime", 0)),
             "status": "running" if running(t) else str(t.get("status", ""))} for t in mine[:HISTORY]]


def _calls(ctx: RunContext) -> list[ApiCall]:
    return [ApiCall("GET", ctx.vm_path("/status/current")),
            ApiCall("GET", f"/nodes/{ctx.node}/tasks", {"source": "active", "vmid": ctx.target.vmid}),
            ApiCall("GET", "/cluster/tasks"), ApiCall("GET", ctx.vm_path("/config"))]


def _inspect(ctx: RunContext, read: Reader) -> dict[str, Any]:
    vmid = ctx.target.vmid
    status = read.get(ctx.vm_path("/status/current"))
    lock = str(status.get("lock") or "") if isinstance(status, dict) else ""
    if not lock:
        raise CheckFailed(f"refused: VM {vmid} is not locked")
    expected = ctx.params.get("lock")
    if expected and expected != lock:
        raise CheckFailed(f"refused: VM {vmid} is locked ({lock}), not ({expected})")
    active = read.get(f"/nodes/{ctx.node}/tasks", source="active", vmid=vmid)
    recent = read.get("/cluster/tasks")
    history = lock_history(list(active or []) + list(recent or []), vmid)
    busy = [t for t in history if t["status"] == "running"]
    if busy:
        raise CheckFailed(f"refused: a running task holds the lock of VM {vmid}: {busy[0]['type']} {busy[0]['upid']}")
    taker = next((t for t in history if t["type"] == LOCK_TASKS.get(lock)), None)
    config = read.get(ctx.vm_path("/config"))
    digest = config.get("digest") if isinstance(config, dict) else None
    left_by = (f"left by {taker['type']} task {taker['upid']} of {stamp(taker['starttime'])}, which ended: "
               f"{taker['status']}") if taker else "no task of the VM in the cluster's recent tasks took it"
    return {"lock": lock, "lock_history": history, "lock_task": taker, "digest": digest,
            "_detail": f"VM {vmid} is locked ({lock}) and no task of it runs; {left_by}"}


def _unlock(ctx: RunContext) -> ApiCall:
    params: dict[str, str | int] = {"delete": "lock"}
    if ctx.facts.get("digest"):
        params["digest"] = str(ctx.facts["digest"])
    return ApiCall("PUT", ctx.vm_path("/config"), params)


def _unlocked(ctx: RunContext, read: Reader) -> bool:
    status = read.get(ctx.vm_path("/status/current"))
    return isinstance(status, dict) and not status.get("lock")


def _verify(ctx: RunContext, read: Reader) -> dict[str, Any]:
    if not _unlocked(ctx, read):
        raise CheckFailed(f"VM {ctx.target.vmid} is still locked")
    return {"unlocked": True, "_detail": f"VM {ctx.target.vmid} has no lock"}


STEPS: tuple[Step, ...] = (
    LOCATE,
    Inspect("inspect_lock", _calls, _inspect),
    ApiChange("unlock", _unlock, _unlocked),
    Inspect("verify_unlocked", lambda ctx: [ApiCall("GET", ctx.vm_path("/status/current"))], _verify),
)


class ClearLock:
    name = "clear_lock"
    risk = Risk.MEDIUM
    needs = "api"

    def validate(self, params: Mapping[str, object], target: VmTarget, policy: Policy) -> dict[str, Any]:
        with refusals():
            refuse_unknown(params, "lock")
            if "lock" not in params:
                return {}
            if params["lock"] not in LOCKS:
                raise PolicyRefused(f"{str(params['lock'])[:40]!r} is not a Proxmox lock ({', '.join(LOCKS)})")
            return {"lock": params["lock"]}

    def steps(self, params: Mapping[str, Any]) -> Sequence[Step]:
        return STEPS

    def summary(self, facts: Mapping[str, Any], status: StepStatus) -> str:
        taker = facts.get("lock_task")
        left = f"; left by {taker['type']} {taker['upid']} ({taker['status']})" if isinstance(taker, dict) else ""
        return f"clear lock: {status}; lock {facts.get('lock', 'unknown')}{left}"


PLAYBOOK = ClearLock()
