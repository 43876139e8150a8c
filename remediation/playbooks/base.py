"""What a playbook is: a risk level, static parameter checks, and a short list of steps.

A step either reads (``check``: safe to repeat after a crash) or acts (``api``/``ssh``: side effect). Acting steps
know how to *reconcile*: when a worker died after writing a step's intent but before its result, ``reconcile``
finds out what really happened (the task by its UPID or in the node's task list; the service or VM state) and
returns succeeded, failed, unknown, or not_started (proved not to have happened, so it may run now).
Steps share what they learn through ``ctx.facts``; the journal keeps facts with each step so they survive a crash.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pdn_ops.core.errors import CheckFailed, PolicyRefused, Refused
from pdn_ops.runs.model import Outcome, Policy, Risk, StepStatus
from remediation.executors.proxmox import ApiCall, ProxmoxExecutor
from remediation.executors.ssh import SshExecutor, SshTarget


@dataclass(frozen=True, slots=True)
class VmTarget:
    """Everything the inventory says about the VM a run acts on."""

    cluster: str
    vmid: int
    opd: str
    services: tuple[str, ...] = ()
    cleanup: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    ssh: SshTarget | None = None

    @property
    def key(self) -> str:
        return f"{self.cluster}/{self.vmid}"


@dataclass
class RunContext:
    run_id: int
    target: VmTarget
    params: dict[str, Any]
    policy: Policy
    facts: dict[str, Any] = field(default_factory=dict)
    proxmox: ProxmoxExecutor | None = None
    ssh: SshExecutor | None = None
    ssh_timeout: float = 60.0

    @property
    def node(self) -> str:
        return str(self.facts.get("node", "{node}"))

    def vm_path(self, suffix: str = "") -> str:
        return f"/nodes/{self.node}/qemu/{self.target.vmid}{suffix}"

    def api(self) -> ProxmoxExecutor:
        if self.proxmox is None:
            raise RuntimeError("this run has no Proxmox client")
        return self.proxmox

    def shell(self) -> tuple[SshExecutor, SshTarget]:
        if self.ssh is None or self.target.ssh is None:
            raise RuntimeError("this VM has no SSH access declared in the inventory")
        return self.ssh, self.target.ssh


@dataclass(frozen=True, slots=True)
class StepRecord:
    """A journaled step as the orchestrator reads it back after a crash."""

    position: int
    name: str
    state: str
    upid: str | None
    intent_at: datetime
    facts: Mapping[str, Any]


class Step(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...  # check | api | ssh

    @property
    def side_effect(self) -> bool: ...

    def applies(self, ctx: RunContext) -> bool: ...

    def describe(self, ctx: RunContext) -> str: ...

    def execute(self, ctx: RunContext, on_upid: Callable[[str], None]) -> tuple[Outcome, dict[str, Any]]: ...

    def reconcile(self, ctx: RunContext, record: StepRecord, exclude: set[str]) -> Outcome: ...


class Playbook(Protocol):
    name: str
    risk: Risk
    needs: str  # api | ssh

    def validate(self, params: Mapping[str, object], target: VmTarget, policy: Policy) -> dict[str, Any]: ...

    def steps(self, params: Mapping[str, Any]) -> Sequence[Step]: ...

    def summary(self, facts: Mapping[str, Any], status: StepStatus) -> str: ...


Condition = Callable[[RunContext], bool]


def always(_ctx: RunContext) -> bool:
    return True


@dataclass(frozen=True)
class Check:
    """A read-only step: an API read or an SSH command, interpreted by ``interpret`` into facts (or a refusal)."""

    name: str
    kind: str
    call: Callable[[RunContext], ApiCall | Sequence[str]]
    interpret: Callable[[RunContext, Any], dict[str, Any]]
    when: Condition = always
    side_effect: bool = False

    def applies(self, ctx: RunContext) -> bool:
        return self.when(ctx)

    def describe(self, ctx: RunContext) -> str:
        return _describe(self.kind, self.call(ctx), ctx)

    def execute(self, ctx: RunContext, on_upid: Callable[[str], None]) -> tuple[Outcome, dict[str, Any]]:
        call = self.call(ctx)
        if isinstance(call, ApiCall):
            outcome = ctx.api().read(call)
            payload: Any = outcome.data
        else:
            runner, target = ctx.shell()
            outcome = runner.run(target, call, timeout=ctx.ssh_timeout)
            payload = outcome
        if outcome.status is StepStatus.UNKNOWN or (isinstance(call, ApiCall) and not outcome.ok):
            return outcome, {}
        try:
            facts = self.interpret(ctx, payload)
        except CheckFailed as exc:
            return Outcome(StepStatus.FAILED, stdout=outcome.stdout, stderr=outcome.stderr,
                           exit_code=outcome.exit_code, detail=str(exc)), {}
        return Outcome(StepStatus.SUCCEEDED, stdout=outcome.stdout, stderr=outcome.stderr,
                       exit_code=outcome.exit_code, detail=facts.pop("_detail", "")), facts

    def reconcile(self, ctx: RunContext, record: StepRecord, exclude: set[str]) -> Outcome:
        return Outcome(StepStatus.NOT_STARTED, detail="a read-only step is simply repeated")


@dataclass(frozen=True)
class ApiTask:
    """A side effect through the API that starts a Proxmox task (``task_type`` as it shows in the task list)."""

    name: str
    call: Callable[[RunContext], ApiCall]
    task_type: str
    when: Condition = always
    tolerate_failure: bool = False  # e.g. a graceful shutdown that times out: the next step stops the VM
    # Seconds the task may take at least (a graceful shutdown runs until its own timeout); the executor's task
    # timeout applies when it is longer.
    duration: Callable[[RunContext], float] | None = None
    synchronous_ok: bool = False  # the call may answer without a task (resize before PVE 8)
    kind: str = "api"
    side_effect: bool = True

    def applies(self, ctx: RunContext) -> bool:
        return self.when(ctx)

    def describe(self, ctx: RunContext) -> str:
        return _describe(self.kind, self.call(ctx), ctx)

    def _wait(self, ctx: RunContext) -> float | None:
        return None if self.duration is None else max(ctx.api().task_timeout, self.duration(ctx))

    def execute(self, ctx: RunContext, on_upid: Callable[[str], None]) -> tuple[Outcome, dict[str, Any]]:
        outcome = ctx.api().start(self.call(ctx), on_upid, timeout=self._wait(ctx), synchronous=self.synchronous_ok)
        if outcome.status is StepStatus.FAILED and self.tolerate_failure:
            return Outcome(StepStatus.SUCCEEDED, stdout=outcome.stdout, upid=outcome.upid, exit_code=outcome.exit_code,
                           detail=f"tolerated: {outcome.detail}"), {f"{self.name}_failed": True}
        return outcome, {}

    def reconcile(self, ctx: RunContext, record: StepRecord, exclude: set[str]) -> Outcome:
        api = ctx.api()
        upid = record.upid
        if upid is None:
            try:
                upid = api.find_task(ctx.node, self.task_type, ctx.target.vmid, record.intent_at.timestamp(), exclude)
            except LookupError as exc:
                return Outcome(StepStatus.UNKNOWN, detail=f"cannot read the node's task list: {exc}")
            if upid is None:
                return Outcome(StepStatus.NOT_STARTED, detail="no such task in the node's task list since the intent")
        outcome = api.wait(upid, self._wait(ctx))
        if outcome.status is StepStatus.FAILED and self.tolerate_failure:
            return Outcome(StepStatus.SUCCEEDED, upid=upid, stdout=outcome.stdout,
                           detail=f"tolerated: {outcome.detail}")
        return Outcome(outcome.status, upid=upid, stdout=outcome.stdout, exit_code=outcome.exit_code,
                       detail=f"reconciled from the task: {outcome.detail}")


@dataclass(frozen=True)
class SshAction:
    """A side effect over SSH; ``verify`` is a read-only command whose success proves the effect happened."""

    name: str
    argv: Callable[[RunContext], Sequence[str]]
    verify: Callable[[RunContext, Outcome], StepStatus]
    verify_argv: Callable[[RunContext], Sequence[str]]
    when: Condition = always
    kind: str = "ssh"
    side_effect: bool = True

    def applies(self, ctx: RunContext) -> bool:
        return self.when(ctx)

    def describe(self, ctx: RunContext) -> str:
        return _describe(self.kind, self.argv(ctx), ctx)

    def execute(self, ctx: RunContext, on_upid: Callable[[str], None]) -> tuple[Outcome, dict[str, Any]]:
        runner, target = ctx.shell()
        return runner.run(target, self.argv(ctx), timeout=ctx.ssh_timeout), {}

    def reconcile(self, ctx: RunContext, record: StepRecord, exclude: set[str]) -> Outcome:
        runner, target = ctx.shell()
        probe = runner.run(target, self.verify_argv(ctx), timeout=ctx.ssh_timeout)
        if probe.status is StepStatus.UNKNOWN or probe.security_event:
            return Outcome(StepStatus.UNKNOWN, detail=f"cannot check the guest: {probe.detail}")
        status = self.verify(ctx, probe)
        return Outcome(status, stdout=probe.stdout, stderr=probe.stderr, exit_code=probe.exit_code,
                       detail="reconciled by checking the guest")


@contextmanager
def refusals() -> Iterator[None]:
    """Translate the domain's refusals into the error tree at this boundary."""
    try:
        yield
    except Refused as exc:
        raise PolicyRefused(str(exc)) from exc


def refuse_unknown(params: Mapping[str, object], *allowed: str) -> None:
    """A playbook takes only the parameters it declares: anything else is a mistake to refuse, not to ignore."""
    unknown = set(params) - set(allowed)
    if unknown:
        raise PolicyRefused(f"unknown parameters: {', '.join(sorted(unknown))}")


def require_ssh(target: VmTarget) -> None:
    """SSH playbooks act only on VMs whose SSH access the inventory declares."""
    if target.ssh is None:
        raise PolicyRefused("this VM has no SSH access declared in the inventory")



def _describe(kind: str, call: ApiCall | Sequence[str], ctx: RunContext) -> str:
    if isinstance(call, ApiCall):
        return f"{ctx.target.cluster}: {call.describe()}"
    ssh = ctx.target.ssh
    where = f"{ssh.user}@{ssh.host}:{ssh.port}" if ssh else "(no ssh)"
    return f"ssh {where}: {SshExecutor.command_line(call)}"


def locate(ctx: RunContext) -> ApiCall:
    return ApiCall("GET", "/cluster/resources", {"type": "vm"})


def interpret_locate(ctx: RunContext, data: Any) -> dict[str, Any]:
    for item in data or []:
        if isinstance(item, dict) and str(item.get("vmid")) == str(ctx.target.vmid) and item.get("type") == "qemu":
            return {"node": item["node"], "status": item.get("status"),
                    "_detail": f"VM {ctx.target.vmid} on node {item['node']} is {item.get('status')}"}
    raise CheckFailed(f"VM {ctx.target.vmid} is not in the cluster")


LOCATE = Check("locate", "check", locate, interpret_locate)


def vm_status(ctx: RunContext) -> ApiCall:
    return ApiCall("GET", ctx.vm_path("/status/current"))


def status_fact(key: str = "status", require: str | None = None) -> Callable[[RunContext, Any], dict[str, Any]]:
    def interpret(ctx: RunContext, data: Any) -> dict[str, Any]:
        status = data.get("status") if isinstance(data, dict) else None
        if require is not None and status != require:
            raise CheckFailed(f"VM {ctx.target.vmid} is {status}, expected {require}")
        return {key: status, "_detail": f"VM {ctx.target.vmid} is {status}"}
    return interpret
