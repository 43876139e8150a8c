"""Restore a VM from one of its vzdump backups.

By default the backup becomes a *new* VM next to the broken one (the first free VMID above it, new MAC
addresses, on a storage with room for its disks), left stopped unless ``start`` is asked: nothing of the broken
VM is touched. ``mode=in_place`` restores over the VM itself: it needs two approvals from two different engineers
(``approvals_for``), and a fresh backup of the VM's current state is taken first, so the restore can be undone.

The backup, unless named, is the last good one before the problem started (``before``; without it the newest):
the storages list only backups that completed, and one whose verification failed is skipped. Refused before any
change: a backup of another VM, a backup that is not on the node's storages, a VMID already taken, a storage
outside the node or without room, no storage with room.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pdn_ops.core.errors import CheckFailed, PolicyRefused
from pdn_ops.runs.model import Policy, Risk, StepStatus
from remediation.executors.proxmox import ApiCall
from remediation.playbooks.base import LOCATE, ApiTask, RunContext, Step, VmTarget, refusals, refuse_unknown
from remediation.playbooks.safety import (
    BACKUP_VOLID,
    Inspect,
    Reader,
    TaskOf,
    backup_volid,
    disks_bytes,
    flag,
    human_bytes,
    moment,
    new_vmid,
    stamp,
    storage_id,
)

MODES = ("new", "in_place")
DISK_KEY = re.compile(r"(ide|sata|scsi|virtio)\d+")
IN_PLACE_APPROVALS = 2


def suggest_backup(backups: Sequence[Mapping[str, Any]], before: int | None) -> Mapping[str, Any] | None:
    """The last good backup before ``before`` (epoch seconds; None: the newest): a listed backup completed, and
    one whose verification failed is not good."""
    good = [b for b in backups if (b.get("verification") or {}).get("state") != "failed"
            and (before is None or int(b.get("ctime", 0)) < before)]
    return max(good, key=lambda b: (int(b.get("ctime", 0)), str(b.get("volid"))), default=None)


def next_free_vmid(taken: set[int], after: int) -> int:
    vmid = after + 1
    while vmid in taken:
        vmid += 1
    return vmid


def _in_place(ctx: RunContext) -> bool:
    return ctx.params.get("mode") == "in_place"


def _restored_vmid(ctx: RunContext) -> int:
    if _in_place(ctx):
        return ctx.target.vmid
    return int(ctx.facts.get("new_vmid") or ctx.params.get("vmid") or 0)


def _calls(ctx: RunContext) -> list[ApiCall]:
    node = ctx.node
    return [ApiCall("GET", f"/nodes/{node}/storage"),
            ApiCall("GET", f"/nodes/{node}/storage/{{storage}}/content", {"content": "backup",
                                                                        "vmid": ctx.target.vmid}),
            ApiCall("GET", ctx.vm_path("/config")), ApiCall("GET", "/cluster/resources", {"type": "vm"})]


def _choose(ctx: RunContext, read: Reader) -> dict[str, Any]:
    vmid, node, params = ctx.target.vmid, ctx.node, ctx.params
    storages = [s for s in read.get(f"/nodes/{node}/storage") or [] if isinstance(s, dict)]
    online = [s for s in storages if s.get("active", 1) and s.get("enabled", 1)]
    backups: list[dict[str, Any]] = []
    for store in online:
        if "backup" in str(store.get("content", "")).split(","):
            listing = read.get(f"/nodes/{node}/storage/{store['storage']}/content", content="backup", vmid=vmid)
            backups += [b for b in listing or [] if isinstance(b, dict) and str(b.get("vmid")) == str(vmid)
                        and BACKUP_VOLID.match(str(b.get("volid", "")))]
    chosen: Mapping[str, Any] | None
    if params.get("backup"):
        chosen = next((b for b in backups if b["volid"] == params["backup"]), None)
        if chosen is None:
            raise CheckFailed(f"refused: no backup {params['backup']} of VM {vmid} on the storages of node {node}")
    else:
        chosen = suggest_backup(backups, params.get("before"))
        if chosen is None:
            when = f" before {stamp(params['before'])}" if params.get("before") else ""
            raise CheckFailed(f"refused: VM {vmid} has no good backup{when} on the storages of node {node}")
    config = read.get(ctx.vm_path("/config")) or {}
    needed = disks_bytes(config)
    disk_stores = {v.split(":", 1)[0] for k, v in config.items() if isinstance(v, str) and ":" in v
                   and DISK_KEY.fullmatch(k) and "media=cdrom" not in v}
    facts: dict[str, Any] = {"backup": chosen["volid"], "backup_ctime": int(chosen.get("ctime", 0)),
                             "backup_storage": str(chosen["volid"]).split(":", 1)[0], "needed_bytes": needed}
    images = {s["storage"]: s for s in online if "images" in str(s.get("content", "")).split(",")}
    wanted = params.get("storage")
    if wanted is not None:
        if wanted not in {s.get("storage") for s in storages}:
            raise CheckFailed(f"refused: storage {wanted} is not a storage of node {node}")
        if wanted not in images:
            raise CheckFailed(f"refused: storage {wanted} holds no VM disks or is not online")
    if _in_place(ctx):
        # The VM's own disks are freed first: the same room again, unless they go to another storage.
        if wanted is not None and wanted not in disk_stores and int(images[wanted].get("avail", 0)) < needed:
            raise CheckFailed(f"refused: storage {wanted} has only {human_bytes(int(images[wanted].get('avail', 0)))} "
                              f"free; the restore needs {human_bytes(needed)}")
        facts["storage"] = wanted
        facts["_detail"] = f"restore VM {vmid} in place from {chosen['volid']} ({stamp(facts['backup_ctime'])})"
        return facts
    taken = {int(r["vmid"]) for r in read.get("/cluster/resources", type="vm") or []
             if isinstance(r, dict) and str(r.get("vmid", "")).isdigit()}
    if params.get("vmid") is not None:
        if int(params["vmid"]) in taken:
            raise CheckFailed(f"refused: VMID {params['vmid']} already taken")
        target_vmid = int(params["vmid"])
    else:
        target_vmid = next_free_vmid(taken, vmid)
    if wanted is not None:
        if int(images[wanted].get("avail", 0)) < needed:
            raise CheckFailed(f"refused: storage {wanted} has only {human_bytes(int(images[wanted].get('avail', 0)))} "
                              f"free; the restore needs {human_bytes(needed)}")
        chosen_store = wanted
    else:
        fitting = [s for s in images.values() if int(s.get("avail", 0)) >= needed]
        if not fitting:
            detail = ", ".join(f"{s['storage']} {human_bytes(int(s.get('avail', 0)))}" for s in images.values())
            raise CheckFailed(f"refused: no storage has room for the restore of VM {vmid} "
                              f"({human_bytes(needed)} needed; free: {detail or 'none'})")
        # The broken VM's own storage when it has room, else the one with the most free space.
        chosen_store = max(fitting, key=lambda s: (s["storage"] in disk_stores, int(s.get("avail", 0))))["storage"]
    facts.update(new_vmid=target_vmid, storage=chosen_store,
                 _detail=f"restore {chosen['volid']} ({stamp(facts['backup_ctime'])}) as VM {target_vmid} on "
                         f"{chosen_store}, which has room for {human_bytes(needed)}")
    return facts


def _safety_backup(ctx: RunContext) -> ApiCall:
    return ApiCall("POST", f"/nodes/{ctx.node}/vzdump", {
        "vmid": str(ctx.target.vmid), "storage": str(ctx.facts.get("backup_storage", "{backup storage}")),
        "mode": "snapshot", "compress": "zstd"})


def _restore(ctx: RunContext) -> ApiCall:
    params: dict[str, str | int] = {"vmid": _restored_vmid(ctx) or "{new vmid}",
                                    "archive": str(ctx.facts.get("backup", ctx.params.get("backup", "{backup}")))}
    storage = ctx.facts.get("storage", ctx.params.get("storage"))
    if storage:
        params["storage"] = str(storage)
    if _in_place(ctx):
        params["force"] = 1
    else:
        params["unique"] = 1
    if ctx.params.get("start"):
        params["start"] = 1
    return ApiCall("POST", f"/nodes/{ctx.node}/qemu", params)


def _restored_path(ctx: RunContext) -> str:
    return f"/nodes/{ctx.node}/qemu/{_restored_vmid(ctx) or '{new vmid}'}/status/current"


def _verify(ctx: RunContext, read: Reader) -> dict[str, Any]:
    vmid = _restored_vmid(ctx)
    status = read.get(f"/nodes/{ctx.node}/qemu/{vmid}/status/current")
    state = status.get("status") if isinstance(status, dict) else None
    wanted = "running" if ctx.params.get("start") else "stopped"
    if state != wanted:
        raise CheckFailed(f"VM {vmid} is {state} after the restore, expected {wanted}")
    if isinstance(status, dict) and status.get("lock"):
        raise CheckFailed(f"VM {vmid} is still locked ({status['lock']}) after the restore")
    return {"restored_vmid": vmid, "final_status": state, "_detail": f"VM {vmid} is restored and {state}"}


STEPS: tuple[Step, ...] = (
    LOCATE,
    Inspect("choose_backup", _calls, _choose),
    ApiTask("safety_backup", _safety_backup, "vzdump", when=_in_place),
    ApiTask("stop", lambda ctx: ApiCall("POST", ctx.vm_path("/status/stop")), "qmstop",
            when=lambda ctx: _in_place(ctx) and ctx.facts.get("status") == "running"),
    TaskOf("restore", _restore, "qmrestore", task_vmid=_restored_vmid),
    Inspect("verify_restored", lambda ctx: [ApiCall("GET", _restored_path(ctx))], _verify),
)


class RestoreBackup:
    name = "restore_backup"
    risk = Risk.HIGH
    needs = "api"
    # Filled by the service with when the VM's problem began, when neither it nor a backup is given.
    problem_start_param = "before"

    def validate(self, params: Mapping[str, object], target: VmTarget, policy: Policy) -> dict[str, Any]:
        with refusals():
            refuse_unknown(params, "backup", "mode", "vmid", "storage", "start", "before")
            mode = params.get("mode", "new")
            if mode not in MODES:
                raise PolicyRefused(f"the restore mode must be one of {', '.join(MODES)}")
            clean: dict[str, Any] = {"mode": mode, "start": flag(params.get("start", False), "start")}
            if params.get("backup") is not None:
                clean["backup"] = backup_volid(params["backup"], target.vmid)
            if params.get("before") is not None:
                clean["before"] = moment(params["before"])
            if params.get("storage") is not None:
                clean["storage"] = storage_id(params["storage"])
            if params.get("vmid") is not None:
                if mode == "in_place":
                    raise PolicyRefused("a restore in place keeps the VM's own VMID: give no new VMID")
                clean["vmid"] = new_vmid(params["vmid"], target.vmid)
            return clean

    def approvals_for(self, params: Mapping[str, Any]) -> int:
        """Two engineers approve a restore over the VM itself, whatever the trigger or the risk policy."""
        return IN_PLACE_APPROVALS if params.get("mode") == "in_place" else 0

    def steps(self, params: Mapping[str, Any]) -> Sequence[Step]:
        return STEPS

    def summary(self, facts: Mapping[str, Any], status: StepStatus) -> str:
        where = (f"as VM {facts['new_vmid']} on {facts.get('storage')}" if facts.get("new_vmid")
                 else "in place, after a fresh backup of its current state")
        return (f"restore backup: {status}; {facts.get('backup', 'no backup chosen')} {where}; final state "
                f"{facts.get('final_status', 'unknown')}")


PLAYBOOK = RestoreBackup()
