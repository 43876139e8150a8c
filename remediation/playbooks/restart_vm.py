"""Restart a VM: graceful shutdown with a timeout, stop only if it is still running, start, verify it runs.

A VM that is already stopped (the "stopped VM" fault) is simply started. The guest's own checks confirm the rest
(health-confirmed closure).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pdn_ops.core.errors import PolicyRefused
from pdn_ops.runs.model import Policy, Risk, StepStatus
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

SHUTDOWN_TIMEOUT = 60
SHUTDOWN_MARGIN = 30  # PVE ends the shutdown task a little after its timeout; wait that much longer for it


def _running(key: str) -> Any:
    return lambda ctx: ctx.facts.get(key) == "running"


def _shutdown_timeout(ctx: RunContext) -> int:
    return int(ctx.params.get("shutdown_timeout", SHUTDOWN_TIMEOUT))


def _shutdown(ctx: RunContext) -> ApiCall:
    return ApiCall("POST", ctx.vm_path("/status/shutdown"), {"timeout": _shutdown_timeout(ctx), "forceStop": 0})


STEPS: tuple[Step, ...] = (
    LOCATE,
    # The wait covers the whole graceful timeout: giving up earlier would leave the outcome unknown while PVE is
    # still waiting for the guest (a 600 s timeout outlasts the executor's default wait).
    ApiTask("shutdown", _shutdown, "qmshutdown", when=_running("status"), tolerate_failure=True,
            duration=lambda ctx: _shutdown_timeout(ctx) + SHUTDOWN_MARGIN),
    Check("status_after_shutdown", "check", vm_status, status_fact("status_after_shutdown")),
    ApiTask("stop", lambda ctx: ApiCall("POST", ctx.vm_path("/status/stop")), "qmstop",
            when=_running("status_after_shutdown")),
    ApiTask("start", lambda ctx: ApiCall("POST", ctx.vm_path("/status/start")), "qmstart"),
    Check("verify_running", "check", vm_status, status_fact("final_status", require="running")),
)


class RestartVm:
    name = "restart_vm"
    risk = Risk.MEDIUM
    needs = "api"

    def validate(self, params: Mapping[str, object], target: VmTarget, policy: Policy) -> dict[str, Any]:
        with refusals():
            refuse_unknown(params, "shutdown_timeout")
            value = params.get("shutdown_timeout", SHUTDOWN_TIMEOUT)
            if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
                raise PolicyRefused("the shutdown timeout must be a whole number of seconds")
            timeout = int(value)
            if not 10 <= timeout <= 600:
                raise PolicyRefused("the shutdown timeout must be between 10 and 600 seconds")
            return {"shutdown_timeout": timeout}

    def steps(self, params: Mapping[str, Any]) -> Sequence[Step]:
        return STEPS

    def summary(self, facts: Mapping[str, Any], status: StepStatus) -> str:
        how = "forced stop after the graceful shutdown" if facts.get("status_after_shutdown") == "running" else (
            "graceful shutdown" if facts.get("status") == "running" else "the VM was stopped")
        return f"restart VM: {status}; {how}; final state {facts.get('final_status', 'unknown')}"


PLAYBOOK = RestartVm()
