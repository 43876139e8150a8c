"""Migrate a VM to another node: online when it runs (it keeps running), to the node with the most free memory,
then CPU, that has room for it (the reason is kept in the run), or to the node asked for once it is checked.

Refused before any change: a node outside the cluster, the node the VM is on, an offline node, a node Proxmox
does not allow (``GET migrate``), a node without room, or no node with room at all; a locked VM.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pdn_ops.core.errors import CheckFailed
from pdn_ops.runs.model import Policy, Risk, StepStatus
from remediation.executors.proxmox import ApiCall
from remediation.playbooks.base import LOCATE, ApiTask, RunContext, Step, VmTarget, refusals, refuse_unknown
from remediation.playbooks.safety import Inspect, Reader, flag, human_bytes, node_name

MEMORY_HEADROOM = 0.10  # a node keeps a tenth of its memory free after taking the VM
CPU_BUSY = 0.85  # a node busier than this takes no VM


@dataclass(frozen=True, slots=True)
class NodeRoom:
    node: str
    online: bool
    free_memory: int
    free_cpus: float
    fits: bool
    why_not: str = ""


def room(node: str, status: Mapping[str, Any] | None, memory: int, cpus: float) -> NodeRoom:
    """How much room a node has for a VM of ``memory`` bytes and ``cpus``, from its ``/nodes/{node}/status``
    (None: the node is offline or did not answer)."""
    if status is None:
        return NodeRoom(node, False, 0, 0.0, False, "offline")
    mem = status.get("memory") or {}
    total, used = int(mem.get("total") or 0), int(mem.get("used") or 0)
    maxcpu = float((status.get("cpuinfo") or {}).get("cpus") or 0)
    busy = float(status.get("cpu") or 0)
    free_mem, free_cpus = total - used, maxcpu * (1 - busy)
    why = ""
    if free_mem - memory < total * MEMORY_HEADROOM:
        why = f"{human_bytes(free_mem)} memory free, the VM needs {human_bytes(memory)} and a tenth must stay free"
    elif busy > CPU_BUSY or free_cpus < min(cpus, maxcpu):
        why = f"CPU {busy:.0%} busy ({free_cpus:.1f} CPUs free, the VM has {cpus:g})"
    return NodeRoom(node, True, free_mem, free_cpus, not why, why)


def choose(candidates: Sequence[NodeRoom]) -> NodeRoom | None:
    """The node with the most free memory, then the most free CPU, among those with room."""
    fitting = [room for room in candidates if room.fits]
    return max(fitting, key=lambda r: (r.free_memory, r.free_cpus, r.node), default=None)


def _calls(ctx: RunContext) -> list[ApiCall]:
    return [ApiCall("GET", ctx.vm_path("/status/current")), ApiCall("GET", "/cluster/resources", {"type": "node"}),
            ApiCall("GET", ctx.vm_path("/migrate")), ApiCall("GET", "/nodes/{each other online node}/status")]


def _choose(ctx: RunContext, read: Reader) -> dict[str, Any]:
    vmid, here = ctx.target.vmid, ctx.node
    status = read.get(ctx.vm_path("/status/current"))
    if not isinstance(status, dict):
        raise CheckFailed(f"VM {vmid} has no status")
    if status.get("lock"):
        raise CheckFailed(f"refused: VM {vmid} is locked ({status['lock']})")
    is_running = status.get("status") == "running"
    if is_running and not ctx.params.get("online", True):
        raise CheckFailed(f"refused: VM {vmid} runs; an offline migration needs it stopped first")
    memory, cpus = int(status.get("maxmem") or 0), float(status.get("cpus") or 1)
    nodes = [n for n in read.get("/cluster/resources", type="node") or [] if isinstance(n, dict)]
    names = sorted(str(n.get("node")) for n in nodes)
    wanted = ctx.params.get("target")
    if wanted is not None and wanted not in names:
        raise CheckFailed(f"refused: node {wanted} is not in the cluster (nodes: {', '.join(names)})")
    check = read.get(ctx.vm_path("/migrate")) or {}
    allowed = set(check.get("allowed_nodes") or [])
    others = []
    for item in nodes:
        name = str(item.get("node"))
        if name == here or (wanted is not None and name != wanted):
            continue
        status_of = read.get(f"/nodes/{name}/status") if item.get("status") == "online" else None
        others.append(room(name, status_of, memory, cpus))
    if wanted is not None:
        if wanted == here:
            raise CheckFailed(f"refused: VM {vmid} is already on node {wanted}")
        picked = next((r for r in others if r.node == wanted), None)
        if picked is None:
            raise CheckFailed(f"refused: node {wanted} is not in the cluster (nodes: {', '.join(names)})")
        if not picked.fits:
            raise CheckFailed(f"refused: node {wanted} has no room for VM {vmid}: {picked.why_not}")
        if picked.node not in allowed:
            raise CheckFailed(f"refused: Proxmox does not allow migrating VM {vmid} to node {wanted}")
        reason = f"asked for; {human_bytes(picked.free_memory)} memory and {picked.free_cpus:.1f} CPUs free"
    else:
        picked = choose([r for r in others if r.node in allowed])
        if picked is None:
            detail = "; ".join(f"{r.node}: {r.why_not or 'not allowed by Proxmox'}" for r in others) or "no other node"
            raise CheckFailed(f"refused: no node has room for VM {vmid} ({detail})")
        reason = (f"most free memory: {human_bytes(picked.free_memory)} memory and {picked.free_cpus:.1f} CPUs free "
                  f"(of {len(others)} other nodes)")
    online = 1 if is_running else 0
    local = 1 if online and check.get("local_disks") else 0
    return {"target": picked.node, "reason": reason, "online": online, "with_local_disks": local,
            "source": here, "status_before": status.get("status"),
            "_detail": f"VM {vmid} goes from {here} to {picked.node} ({'online' if online else 'offline'}): {reason}"}


def _migrate(ctx: RunContext) -> ApiCall:
    params: dict[str, str | int] = {"target": str(ctx.facts.get("target", ctx.params.get("target", "{target}")))}
    if ctx.facts.get("online", 1 if ctx.params.get("online", True) else 0):
        params["online"] = 1
    if ctx.facts.get("with_local_disks"):
        params["with-local-disks"] = 1
    return ApiCall("POST", ctx.vm_path("/migrate"), params)


def _verify(ctx: RunContext, read: Reader) -> dict[str, Any]:
    vmid = ctx.target.vmid
    found = next((r for r in read.get("/cluster/resources", type="vm") or []
                  if isinstance(r, dict) and str(r.get("vmid")) == str(vmid)), None)
    if found is None:
        raise CheckFailed(f"VM {vmid} is not in the cluster after the migration")
    if found.get("node") != ctx.facts.get("target"):
        raise CheckFailed(f"VM {vmid} is on node {found.get('node')}, not {ctx.facts.get('target')}")
    if found.get("status") != ctx.facts.get("status_before"):
        raise CheckFailed(f"VM {vmid} is {found.get('status')} after the migration, "
                          f"was {ctx.facts.get('status_before')}")
    return {"final_node": found["node"], "final_status": found.get("status"),
            "_detail": f"VM {vmid} is {found.get('status')} on node {found['node']}"}


STEPS: tuple[Step, ...] = (
    LOCATE,
    Inspect("choose_node", _calls, _choose),
    ApiTask("migrate", _migrate, "qmigrate"),
    Inspect("verify_moved", lambda ctx: [ApiCall("GET", "/cluster/resources", {"type": "vm"})], _verify),
)


class MigrateVm:
    name = "migrate_vm"
    risk = Risk.MEDIUM
    needs = "api"

    def validate(self, params: Mapping[str, object], target: VmTarget, policy: Policy) -> dict[str, Any]:
        with refusals():
            refuse_unknown(params, "target", "online")
            clean: dict[str, Any] = {"online": flag(params.get("online", True), "online")}
            if "target" in params:
                clean["target"] = node_name(params["target"])
            return clean

    def steps(self, params: Mapping[str, Any]) -> Sequence[Step]:
        return STEPS

    def summary(self, facts: Mapping[str, Any], status: StepStatus) -> str:
        how = "online" if facts.get("online") else "offline"
        return (f"migrate VM: {status}; {facts.get('source', '?')} -> {facts.get('target', '?')} ({how}); "
                f"{facts.get('reason', 'no node chosen')}")


PLAYBOOK = MigrateVm()
