"""Roll a VM back to one of its snapshots: a safety snapshot first, roll back, start it if it stays stopped.

The snapshot name is checked against Proxmox's rules when the run is requested and against the VM's own snapshot
list (a read) before anything changes, so a name that belongs to another VM is refused without a side effect.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pdn_ops.core.errors import CheckFailed, PolicyRefused, Refused
from pdn_ops.runs.model import Policy, Risk, StepStatus, validate_snapshot_name
from remediation.executors.proxmox import ApiCall
from remediation.playbooks.base import (
    LOCATE,
    ApiTask,
    Check,
    RunContext,
    Step,
    VmTarget,
    refusals,
    refuse_unknown,
    status_fact,
    vm_status,
)


def safety_name(run_id: int) -> str:
    return f"pdn_safety_{run_id}"


def _snapshots(ctx: RunContext, data: Any) -> dict[str, Any]:
    names = [str(s.get("name")) for s in data or [] if isinstance(s, dict) and s.get("name") != "current"]
    try:
        validate_snapshot_name(ctx.params["snapshot"], names)
    except Refused as exc:
        raise CheckFailed(f"refused: {exc}") from exc
    return {"snapshots": names, "_detail": f"{len(names)} snapshots; {ctx.params['snapshot']} is one of them"}


def _safety(ctx: RunContext) -> ApiCall:
    return ApiCall("POST", ctx.vm_path("/snapshot"), {
        "snapname": safety_name(ctx.run_id),
        "description": f"pdn-ops safety snapshot before rolling back to {ctx.params['snapshot']}"})


STEPS: tuple[Step, ...] = (
    LOCATE,
    Check("list_snapshots", "check", lambda ctx: ApiCall("GET", ctx.vm_path("/snapshot")), _snapshots),
    ApiTask("safety_snapshot", _safety, "qmsnapshot"),
    ApiTask("rollback", lambda ctx: ApiCall("POST", ctx.vm_path(f"/snapshot/{ctx.params['snapshot']}/rollback")),
            "qmrollback"),
    Check("status_after_rollback", "check", vm_status, status_fact("status_after_rollback")),
    ApiTask("start", lambda ctx: ApiCall("POST", ctx.vm_path("/status/start")), "qmstart",
            when=lambda ctx: ctx.facts.get("status_after_rollback") == "stopped"),
    Check("verify_running", "check", vm_status, status_fact("final_status", require="running")),
)


class RestoreSnapshot:
    name = "restore_snapshot"
    risk = Risk.HIGH
    needs = "api"

    def validate(self, params: Mapping[str, object], target: VmTarget, policy: Policy) -> dict[str, Any]:
        with refusals():
            refuse_unknown(params, "snapshot")
            if "snapshot" not in params:
                raise PolicyRefused("choose a snapshot to roll back to")
            return {"snapshot": validate_snapshot_name(params["snapshot"])}

    def steps(self, params: Mapping[str, Any]) -> Sequence[Step]:
        return STEPS

    def summary(self, facts: Mapping[str, Any], status: StepStatus) -> str:
        return (f"restore snapshot: {status}; safety snapshot taken first; final state "
                f"{facts.get('final_status', 'unknown')}")


PLAYBOOK = RestoreSnapshot()
