"""Restart a systemd service over SSH: only units declared for that VM in the inventory, passed as an argument."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pdn_ops.core.errors import CheckFailed
from pdn_ops.runs.model import Outcome, Policy, Risk, StepStatus, validate_unit
from remediation.playbooks.base import (
    Check,
    RunContext,
    SshAction,
    Step,
    VmTarget,
    refusals,
    refuse_unknown,
    require_ssh,
)


def _is_active(ctx: RunContext) -> list[str]:
    return ["systemctl", "is-active", ctx.params["unit"]]


def _state(key: str, require_active: bool = False) -> Any:
    def interpret(ctx: RunContext, outcome: Outcome) -> dict[str, Any]:
        state = outcome.stdout.strip().splitlines()[-1] if outcome.stdout.strip() else "unknown"
        if require_active and outcome.exit_code != 0:
            raise CheckFailed(f"{ctx.params['unit']} is {state} after the restart")
        return {key: state, "_detail": f"{ctx.params['unit']} is {state}"}
    return interpret


def _active(ctx: RunContext, probe: Outcome) -> StepStatus:
    # The goal of the restart is an active unit; if it is active we do not restart it again.
    return StepStatus.SUCCEEDED if probe.exit_code == 0 else StepStatus.UNKNOWN


STEPS: tuple[Step, ...] = (
    Check("state_before", "ssh", _is_active, _state("state_before")),
    SshAction("restart", lambda ctx: ["systemctl", "restart", ctx.params["unit"]], _active, _is_active),
    Check("verify_active", "ssh", _is_active, _state("state_after", require_active=True)),
)


class RestartService:
    name = "restart_service"
    risk = Risk.LOW
    needs = "ssh"

    def validate(self, params: Mapping[str, object], target: VmTarget, policy: Policy) -> dict[str, Any]:
        with refusals():
            refuse_unknown(params, "unit")
            require_ssh(target)
            return {"unit": validate_unit(params.get("unit"), target.services)}

    def steps(self, params: Mapping[str, Any]) -> Sequence[Step]:
        return STEPS

    def summary(self, facts: Mapping[str, Any], status: StepStatus) -> str:
        return (f"restart service: {status}; before {facts.get('state_before', '?')}, after "
                f"{facts.get('state_after', '?')}")


PLAYBOOK = RestartService()
