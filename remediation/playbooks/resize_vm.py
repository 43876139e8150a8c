"""Resize a VM: cores, memory and disk growth, checked against the VM, the node's capacity and the policy limits.

``cores`` is the number of vCPUs the guest gets: on a VM with several sockets it is spread over them (Proxmox's
``cores`` is per socket); vCPUs the VM already has but keeps offline (``vcpus``) come online without a reboot
when the VM hot-plugs CPUs.

Changes Proxmox can hot-plug take effect at once; the others wait for a cold start. With ``reboot: true`` the run
performs the API reboot that applies them, otherwise the run says the reboot is planned. Shrinking is refused.

The disk grows to an *absolute* size (the size read before the change plus the growth asked for), never ``+NG``:
on PVE 7 a resize is synchronous and leaves no task behind, so after a crash nothing in the task list says whether
it happened; resending a relative size would grow the disk twice. The step is reconciled by comparing the disk's
size now with the target, and an absolute size resent by mistake changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pdn_ops.core.errors import CheckFailed, PolicyRefused, Refused
from pdn_ops.runs.model import (
    NodeCapacity,
    Outcome,
    Policy,
    ResizeRequest,
    Risk,
    StepStatus,
    VmShape,
    absolute_size,
    drive_size_bytes,
    drive_size_gib,
    parse_hotplug,
    parse_resize,
    plan_resize,
)
from remediation.executors.proxmox import ApiCall
from remediation.playbooks.base import LOCATE, ApiTask, Check, RunContext, Step, StepRecord, VmTarget, refusals

GIB = 1024**3


def _shape(ctx: RunContext, data: Any) -> dict[str, Any]:
    cfg = data if isinstance(data, dict) else {}
    disks = {k: drive_size_gib(str(v)) for k, v in cfg.items()
             if k.rstrip("0123456789") in ("scsi", "virtio", "sata", "ide") and "size=" in str(v)}
    storage = {k: str(v).split(":", 1)[0] for k, v in cfg.items() if k in disks}
    sockets = int(cfg.get("sockets", 1))
    sizes = {k: drive_size_bytes(str(cfg[k])) for k in disks}
    return {"disk_bytes": {k: v for k, v in sizes.items() if v is not None},
            "shape": {"cores": int(cfg.get("cores", 1)) * sockets, "sockets": sockets,
                      "vcpus": int(cfg["vcpus"]) if cfg.get("vcpus") else None,
                      "memory_mib": int(str(cfg.get("memory", 512)).split("=")[-1]),
                      "disk_gib": {k: v for k, v in disks.items() if v is not None},
                      "hotplug": sorted(parse_hotplug(cfg.get("hotplug"))), "numa": str(cfg.get("numa", 0)) == "1"},
            "disk_storage": storage}


def _node(ctx: RunContext, data: Any) -> dict[str, Any]:
    """From GET /nodes (maxcpu, maxmem, mem): the node's CPUs and the memory not in use."""
    info = next((n for n in data or [] if isinstance(n, dict) and n.get("node") == ctx.node), None)
    if info is None or not info.get("maxcpu") or not info.get("maxmem"):
        raise CheckFailed(f"cannot read the capacity of node {ctx.node}")
    free = (int(info["maxmem"]) - int(info.get("mem", 0))) // (1024 * 1024)
    return {"node_cpus": int(info["maxcpu"]), "node_memory_free_mib": free,
            "_detail": f"node {ctx.node}: {info['maxcpu']} CPUs, {free} MiB free"}


def _plan(ctx: RunContext, data: Any) -> dict[str, Any]:
    """Storage listing in, the checked plan out: the last read before any change."""
    shape_facts = ctx.facts["shape"]
    request = ResizeRequest(**ctx.params["request"])
    free_gib = float("inf")
    if request.disk is not None:
        storage = ctx.facts["disk_storage"].get(request.disk)
        entry = next((s for s in data or [] if isinstance(s, dict) and s.get("storage") == storage), None)
        if entry is None or "avail" not in entry:
            raise CheckFailed(f"cannot verify the free space of storage {storage!r}")
        free_gib = int(entry["avail"]) / GIB
    shape = VmShape(cores=shape_facts["cores"], memory_mib=shape_facts["memory_mib"],
                    disk_gib=shape_facts["disk_gib"], hotplug=frozenset(shape_facts["hotplug"]),
                    numa=shape_facts["numa"], running=ctx.facts.get("status") == "running",
                    sockets=shape_facts.get("sockets", 1), vcpus=shape_facts.get("vcpus"))
    node = NodeCapacity(cpus=ctx.facts["node_cpus"], memory_free_mib=ctx.facts["node_memory_free_mib"],
                        storage_free_gib=free_gib)
    try:
        plan = plan_resize(request, shape, node, ctx.policy)
    except Refused as exc:
        raise CheckFailed(f"refused: {exc}") from exc
    reboot = bool(plan.needs_reboot) and bool(ctx.params.get("reboot"))
    detail = f"live: {', '.join(plan.live) or '-'}; needs reboot: {', '.join(plan.needs_reboot) or '-'}"
    facts: dict[str, Any] = {"plan_config": plan.config, "plan_live": list(plan.live),
                             "plan_reboot": list(plan.needs_reboot), "reboot_now": reboot}
    if request.disk is not None and request.disk_grow_gib is not None:
        current = ctx.facts.get("disk_bytes", {}).get(request.disk)
        if current is None:
            raise CheckFailed(f"cannot read the size of disk {request.disk}")
        facts["disk_target_bytes"] = int(current) + request.disk_grow_gib * GIB
        detail += f"; {request.disk} to {absolute_size(facts['disk_target_bytes'])}"
    return {**facts, "_detail": detail}


def _verify(ctx: RunContext, data: Any) -> dict[str, Any]:
    """The new values are in the config, or pending when they wait for the planned reboot."""
    effective: dict[str, str] = {}
    for item in data or []:
        if isinstance(item, dict) and "key" in item:
            effective[item["key"]] = str(item.get("pending", item.get("value", "")))
            if "value" in item:
                effective[f"current:{item['key']}"] = str(item["value"])
    missing = [k for k, v in ctx.facts.get("plan_config", {}).items() if effective.get(k) != str(v)]
    disk, target = ctx.params["request"].get("disk"), ctx.facts.get("disk_target_bytes")
    if disk is not None and target is not None and (_size_of(effective.get(disk, "")) or 0) < int(target):
        missing.append(f"{disk} size")
    if missing:
        raise CheckFailed(f"the VM config does not show the new {', '.join(missing)}")
    waiting = [k for k, v in ctx.facts.get("plan_config", {}).items() if effective.get(f"current:{k}") != str(v)]
    return {"still_pending": waiting, "_detail": f"pending until a reboot: {', '.join(waiting) or 'nothing'}"}


def _config(ctx: RunContext) -> ApiCall:
    return ApiCall("POST", ctx.vm_path("/config"), dict(ctx.facts.get("plan_config") or ctx.params["config_preview"]))


def _size_of(drive: str) -> int | None:
    try:
        return drive_size_bytes(drive)
    except ValueError:
        return None


def _resize(ctx: RunContext) -> ApiCall:
    request = ctx.params["request"]
    target = ctx.facts.get("disk_target_bytes")
    # Before the config is read (the dry run) the target is named by how it is computed.
    size = absolute_size(int(target)) if target is not None else \
        f"{{{request['disk']} size + {request['disk_grow_gib']}G}}"
    return ApiCall("PUT", ctx.vm_path("/resize"), {"disk": request["disk"], "size": size})


@dataclass(frozen=True)
class GrowDisk(ApiTask):
    """The resize: a task on PVE 8 and later, a synchronous call without a task on PVE 7.

    Reconciled by its UPID when one was stored; otherwise by the disk's size now (at or above the target: it
    happened), then by the node's task list (a PVE 8 resize still running); neither: it did not happen, and the
    absolute size makes running it now safe.
    """

    def reconcile(self, ctx: RunContext, record: StepRecord, exclude: set[str]) -> Outcome:
        target = ctx.facts.get("disk_target_bytes")
        disk = ctx.params["request"].get("disk")
        if record.upid is None and target is not None and disk is not None:
            config = ctx.api().read(ApiCall("GET", ctx.vm_path("/config"), {"current": 1}))
            if not config.ok or not isinstance(config.data, dict):
                return Outcome(StepStatus.UNKNOWN, detail=f"cannot read the VM config: {config.detail}")
            size = _size_of(str(config.data.get(disk, "")))
            if size is None:
                return Outcome(StepStatus.UNKNOWN, detail=f"cannot read the size of disk {disk}")
            if size >= int(target):
                return Outcome(StepStatus.SUCCEEDED, detail=f"reconciled: {disk} already has {absolute_size(size)}"
                                                            f" (target {absolute_size(int(target))})")
        return super().reconcile(ctx, record, exclude)


STEPS: tuple[Step, ...] = (
    LOCATE,
    Check("read_config", "check", lambda ctx: ApiCall("GET", ctx.vm_path("/config"), {"current": 1}), _shape),
    Check("node_capacity", "check", lambda ctx: ApiCall("GET", "/nodes"), _node),
    Check("plan", "check", lambda ctx: ApiCall("GET", f"/nodes/{ctx.node}/storage"), _plan),
    ApiTask("set_config", _config, "qmconfig", when=lambda ctx: bool(ctx.facts.get("plan_config"))),
    GrowDisk("grow_disk", _resize, "resize", when=lambda ctx: ctx.params["request"].get("disk_grow_gib") is not None,
             synchronous_ok=True),
    ApiTask("reboot", lambda ctx: ApiCall("POST", ctx.vm_path("/status/reboot")), "qmreboot",
            when=lambda ctx: bool(ctx.facts.get("reboot_now"))),
    Check("verify", "check", lambda ctx: ApiCall("GET", ctx.vm_path("/pending")), _verify),
)


class ResizeVm:
    name = "resize_vm"
    risk = Risk.MEDIUM
    needs = "api"

    def validate(self, params: Mapping[str, object], target: VmTarget, policy: Policy) -> dict[str, Any]:
        with refusals():
            sizes = {k: v for k, v in params.items() if k != "reboot"}
            request = parse_resize(sizes, policy)
            reboot = params.get("reboot", False)
            if reboot not in (True, False, "true", "false", "1", "0", 1, 0):
                raise PolicyRefused("reboot must be true or false")
            preview = {k: v for k, v in (("cores", request.cores), ("memory", request.memory_mib)) if v is not None}
            return {"request": {"cores": request.cores, "memory_mib": request.memory_mib, "disk": request.disk,
                                "disk_grow_gib": request.disk_grow_gib},
                    "reboot": reboot in (True, "true", "1", 1), "config_preview": preview}

    def steps(self, params: Mapping[str, Any]) -> Sequence[Step]:
        return STEPS

    def summary(self, facts: Mapping[str, Any], status: StepStatus) -> str:
        reboot = facts.get("plan_reboot") or []
        if not reboot:
            after = "no reboot needed"
        elif facts.get("reboot_now"):
            after = f"rebooted to apply {', '.join(reboot)}"
        else:
            after = f"reboot planned to apply {', '.join(reboot)}"
        return f"resize VM: {status}; live: {', '.join(facts.get('plan_live') or []) or '-'}; {after}"


PLAYBOOK = ResizeVm()
