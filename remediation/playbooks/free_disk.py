"""Free disk space over SSH: only the cleanup commands declared for that VM; space before and after reported."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pdn_ops.core.errors import CheckFailed
from pdn_ops.runs.model import Outcome, Policy, Risk, StepStatus, validate_cleanup
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

DF = ["df", "-P", "-k", "/"]


def parse_df(text: str) -> tuple[int, int]:
    """``df -P -k`` output -> (used KiB, available KiB) of the last line."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) < 2:
        raise CheckFailed("df gave no figures")
    fields = lines[-1].split()
    try:
        return int(fields[2]), int(fields[3])
    except (IndexError, ValueError) as exc:
        raise CheckFailed("df output not understood") from exc


def _space(key: str) -> Any:
    def interpret(ctx: RunContext, outcome: Outcome) -> dict[str, Any]:
        if outcome.exit_code != 0:
            raise CheckFailed(f"df failed: {outcome.stderr.strip()[:200]}")
        used, avail = parse_df(outcome.stdout)
        facts: dict[str, Any] = {f"{key}_used_kib": used, f"{key}_avail_kib": avail,
                                 "_detail": f"{avail // 1024} MiB free"}
        if key == "after" and "before_used_kib" in ctx.facts:
            freed = ctx.facts["before_used_kib"] - used
            facts["freed_kib"] = freed
            facts["_detail"] += f", {freed // 1024} MiB freed"
        return facts
    return interpret


def _freed(ctx: RunContext, probe: Outcome) -> StepStatus:
    try:
        used, _ = parse_df(probe.stdout)
    except CheckFailed:
        return StepStatus.UNKNOWN
    return StepStatus.SUCCEEDED if used < int(ctx.facts.get("before_used_kib", 0)) else StepStatus.UNKNOWN


def _cleanup_argv(ctx: RunContext) -> list[str]:
    return list(ctx.target.cleanup[ctx.params["cleanup"]])


STEPS: tuple[Step, ...] = (
    Check("space_before", "ssh", lambda ctx: DF, _space("before")),
    SshAction("cleanup", _cleanup_argv, _freed, lambda ctx: DF),
    Check("space_after", "ssh", lambda ctx: DF, _space("after")),
)


class FreeDisk:
    name = "free_disk"
    risk = Risk.LOW
    needs = "ssh"

    def validate(self, params: Mapping[str, object], target: VmTarget, policy: Policy) -> dict[str, Any]:
        with refusals():
            refuse_unknown(params, "cleanup")
            require_ssh(target)
            return {"cleanup": validate_cleanup(params.get("cleanup"), list(target.cleanup))}

    def steps(self, params: Mapping[str, Any]) -> Sequence[Step]:
        return STEPS

    def summary(self, facts: Mapping[str, Any], status: StepStatus) -> str:
        before, after = facts.get("before_avail_kib"), facts.get("after_avail_kib")
        figures = f"free {before // 1024} MiB -> {after // 1024} MiB" if before is not None and after is not None \
            else "space not measured after"
        return f"free disk: {status}; {figures}"


PLAYBOOK = FreeDisk()
