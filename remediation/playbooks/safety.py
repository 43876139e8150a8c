"""What the safety-net playbooks (restore from backup, migrate, clear a lock) share: a read step made of several
API reads, a task step whose task belongs to another VMID, a synchronous API change that reconciles by reading,
and the parsing of their parameters. Pure apart from the reads they are handed."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pdn_ops.core.errors import CheckFailed, PolicyRefused
from pdn_ops.runs.model import Outcome, StepStatus
from remediation.executors.proxmox import ApiCall
from remediation.playbooks.base import ApiTask, RunContext, StepRecord, always

NODE_NAME = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\Z")  # PVE's pve-node format
STORAGE_ID = re.compile(r"[a-z][a-z0-9._-]*[a-z0-9]\Z")  # PVE's pve-storage-id format
# A vzdump archive of a VM as a storage lists it: <storage>:backup/vzdump-qemu-<vmid>-<YYYY_MM_DD-HH_MM_SS>.vma[.zst]
BACKUP_VOLID = re.compile(
    r"(?P<storage>[a-z][a-z0-9._-]*[a-z0-9]):backup/vzdump-qemu-(?P<vmid>[1-9][0-9]{2,8})-"
    r"(?P<stamp>[0-9]{4}_[0-9]{2}_[0-9]{2}-[0-9]{2}_[0-9]{2}_[0-9]{2})\.vma(?:\.(?:zst|gz|lzo))?\Z")
# Every lock PVE writes into a VM's config (qemu-server's `lock` enum).
LOCKS = ("backup", "clone", "create", "migrate", "rollback", "snapshot", "snapshot-delete", "suspending", "suspended")


class ReadFailed(Exception):
    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.detail)
        self.outcome = outcome


class Reader:
    """The reads of one step; a read that fails ends the step with that read's outcome (failed or unknown)."""

    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx

    def get(self, path: str, **params: str | int) -> Any:
        outcome = self._ctx.api().read(ApiCall("GET", path, dict(params)))
        if not outcome.ok:
            raise ReadFailed(outcome)
        return outcome.data


@dataclass(frozen=True)
class Inspect:
    """A read-only step of several API reads (``calls`` shows them in the dry run, ``{x}`` where a value is only
    known once read); ``decide`` reads through a ``Reader`` and returns facts, or raises CheckFailed (a refusal)."""

    name: str
    calls: Callable[[RunContext], Sequence[ApiCall]]
    decide: Callable[[RunContext, Reader], dict[str, Any]]
    when: Callable[[RunContext], bool] = always
    kind: str = "check"
    side_effect: bool = False

    def applies(self, ctx: RunContext) -> bool:
        return self.when(ctx)

    def describe(self, ctx: RunContext) -> str:
        return "; ".join(f"{ctx.target.cluster}: {call.describe()}" for call in self.calls(ctx))

    def execute(self, ctx: RunContext, on_upid: Callable[[str], None]) -> tuple[Outcome, dict[str, Any]]:
        try:
            facts = self.decide(ctx, Reader(ctx))
        except ReadFailed as exc:
            return exc.outcome, {}
        except CheckFailed as exc:
            return Outcome(StepStatus.FAILED, detail=str(exc)), {}
        return Outcome(StepStatus.SUCCEEDED, detail=str(facts.pop("_detail", ""))), facts

    def reconcile(self, ctx: RunContext, record: StepRecord, exclude: set[str]) -> Outcome:
        return Outcome(StepStatus.NOT_STARTED, detail="a read-only step is simply repeated")


@dataclass(frozen=True)
class TaskOf(ApiTask):
    """An API task whose task ID is another VMID than the run's target (a restore to a new VMID)."""

    task_vmid: Callable[[RunContext], int] = lambda ctx: ctx.target.vmid

    def reconcile(self, ctx: RunContext, record: StepRecord, exclude: set[str]) -> Outcome:
        api = ctx.api()
        upid = record.upid
        if upid is None:
            try:
                upid = api.find_task(ctx.node, self.task_type, self.task_vmid(ctx), record.intent_at.timestamp(),
                                     exclude)
            except LookupError as exc:
                return Outcome(StepStatus.UNKNOWN, detail=f"cannot read the node's task list: {exc}")
            if upid is None:
                return Outcome(StepStatus.NOT_STARTED, detail="no such task in the node's task list since the intent")
        outcome = api.wait(upid, self._wait(ctx))
        return Outcome(outcome.status, upid=upid, stdout=outcome.stdout, exit_code=outcome.exit_code,
                       detail=f"reconciled from the task: {outcome.detail}")


@dataclass(frozen=True)
class ApiChange:
    """A synchronous API change (no task, e.g. ``PUT config``); ``done`` reads whether it took effect, which is how
    a change cut off by a crash is reconciled: done -> succeeded, not done -> not started (safe to send again)."""

    name: str
    call: Callable[[RunContext], ApiCall]
    done: Callable[[RunContext, Reader], bool]
    when: Callable[[RunContext], bool] = always
    kind: str = "api"
    side_effect: bool = True

    def applies(self, ctx: RunContext) -> bool:
        return self.when(ctx)

    def describe(self, ctx: RunContext) -> str:
        return f"{ctx.target.cluster}: {self.call(ctx).describe()}"

    def execute(self, ctx: RunContext, on_upid: Callable[[str], None]) -> tuple[Outcome, dict[str, Any]]:
        return ctx.api().start(self.call(ctx), on_upid, synchronous=True), {}

    def reconcile(self, ctx: RunContext, record: StepRecord, exclude: set[str]) -> Outcome:
        try:
            applied = self.done(ctx, Reader(ctx))
        except ReadFailed as exc:
            return Outcome(StepStatus.UNKNOWN, detail=f"cannot read the VM: {exc.outcome.detail}")
        if applied:
            return Outcome(StepStatus.SUCCEEDED, detail="reconciled by reading the VM: the change is there")
        return Outcome(StepStatus.NOT_STARTED, detail="the VM shows no such change")


# ---------------------------------------------------------------- parameters

def flag(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return value.lower() in ("1", "true", "yes", "on")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise PolicyRefused(f"{name} must be true or false")


def node_name(value: object) -> str:
    if not isinstance(value, str) or NODE_NAME.match(value) is None:
        raise PolicyRefused(f"{str(value)[:70]!r} is not a Proxmox node name")
    return value


def storage_id(value: object) -> str:
    if not isinstance(value, str) or STORAGE_ID.match(value) is None:
        raise PolicyRefused(f"{str(value)[:70]!r} is not a Proxmox storage name")
    return value


def new_vmid(value: object, target: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise PolicyRefused("the new VMID must be a whole number")
    vmid = int(value)
    if not 100 <= vmid <= 999_999_999:
        raise PolicyRefused("the new VMID must be between 100 and 999999999")
    if vmid == target:
        raise PolicyRefused(f"VMID {vmid} already taken: it is the VM being restored (restore in place instead)")
    return vmid


def backup_volid(value: object, target: int) -> str:
    """A backup volume of the target VM; a backup of another VM is refused with both VMIDs named."""
    if not isinstance(value, str) or (found := BACKUP_VOLID.match(value)) is None:
        raise PolicyRefused(f"{str(value)[:120]!r} is not a Proxmox backup volume of a VM")
    if int(found.group("vmid")) != target:
        raise PolicyRefused(f"backup {value} is a backup of VM {found.group('vmid')}, not of VM {target}")
    return value


def moment(value: object) -> int:
    """When the problem started: epoch seconds, or an ISO 8601 time with a time zone."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        if value.isdigit():
            return int(value)
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            when = None
        if when is not None and when.tzinfo is not None:
            return int(when.timestamp())
    raise PolicyRefused("the start of the problem must be a time with a time zone (ISO 8601) or epoch seconds")


def human_bytes(count: float) -> str:
    return f"{count / 1024**3:.1f} GiB"


def stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def disks_bytes(config: Mapping[str, Any]) -> int:
    """What the VM's disks (not CD-ROMs) take, from their ``size=`` (K/M/G/T powers of 1024, bare bytes)."""
    total = 0
    for key, value in config.items():
        if re.fullmatch(r"(ide|sata|scsi|virtio|efidisk|tpmstate)\d+", key) is None or "media=cdrom" in str(value):
            continue
        found = re.search(r"(?:^|,)size=(\d+(?:\.\d+)?)([KMGT]?)(?:,|$)", str(value))
        if found:
            total += int(float(found.group(1)) * 1024 ** " KMGT".index(found.group(2) or " "))
    return total
