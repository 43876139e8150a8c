"""Remediation rules, pure: run and step states, risk and approvals, policy, and parameter validation.

Nothing here talks to a network or a database. Every refusal raised here (``Refused``) happens before the
worker opens an SSH connection or makes a Proxmox API call, because the service calls these functions when a run is
requested and again when the worker claims it.

Run life cycle::

    pending ───────────────────────────────┐
    awaiting_approval ── approved ─────────┴── running ──┬── succeeded ── (closure) ── ineffective
                                                         ├── failed
                                                         ├── unknown
                                                         └── interrupted (worker died) ── reconciled to one of
                                                                                          succeeded/failed/unknown
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pdn_ops.core.errors import Refused


class State(StrEnum):
    PENDING = "pending"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"
    INTERRUPTED = "interrupted"
    INEFFECTIVE = "ineffective"


# A run in one of these states holds its target: the database enforces one such run per target.
ACTIVE_STATES: frozenset[State] = frozenset(
    {State.PENDING, State.AWAITING_APPROVAL, State.APPROVED, State.RUNNING, State.INTERRUPTED}
)
CLAIMABLE_STATES: frozenset[State] = frozenset({State.PENDING, State.APPROVED})
OUTCOMES: frozenset[State] = frozenset({State.SUCCEEDED, State.FAILED, State.UNKNOWN})
FINAL_STATES: frozenset[State] = OUTCOMES | {State.INEFFECTIVE}

_TRANSITIONS: dict[State, frozenset[State]] = {
    State.AWAITING_APPROVAL: frozenset({State.APPROVED, State.FAILED}),
    State.PENDING: frozenset({State.RUNNING, State.FAILED}),
    State.APPROVED: frozenset({State.RUNNING, State.FAILED}),
    State.RUNNING: frozenset(OUTCOMES | {State.INTERRUPTED}),
    State.INTERRUPTED: frozenset(OUTCOMES | {State.RUNNING}),
    State.SUCCEEDED: frozenset({State.INEFFECTIVE}),
    State.FAILED: frozenset(),
    State.UNKNOWN: frozenset(),
    State.INEFFECTIVE: frozenset(),
}


def check_transition(current: str, new: str) -> State:
    """Return ``new`` as a State, or raise PolicyRefused when the life cycle does not allow the move."""
    cur, nxt = State(current), State(new)
    if nxt not in _TRANSITIONS[cur]:
        raise Refused(f"a run cannot go from {cur} to {nxt}")
    return nxt


class Risk(StrEnum):
    LOW = "low"  # restart a declared service, run a declared cleanup
    MEDIUM = "medium"  # restart or resize a VM
    HIGH = "high"  # roll a VM back to a snapshot: data written since is lost


@dataclass(frozen=True, slots=True)
class Policy:
    """Safety rules, declared apart from the playbooks (StackStorm's lesson)."""

    auto_enabled: bool = True  # the global off switch for automatic remediation
    cooldown: timedelta = timedelta(minutes=10)
    max_attempts_per_hour: int = 3
    approval_from: Risk = Risk.MEDIUM  # this risk and above needs an engineer's approval
    rollback_second_engineer: bool = False
    max_cores: int = 32
    max_memory_mib: int = 131_072
    max_disk_growth_gib: int = 512
    max_disk_total_gib: int = 4096
    # Four eyes: these playbooks always wait for approval, whatever their risk ...
    approval_playbooks: frozenset[str] = frozenset()
    # ... by this many people (never the requester) ...
    approvals: int = 1
    # ... chosen among these usernames (empty: any engineer or supervisor).
    approvers: frozenset[str] = frozenset()


def approvals_needed(risk: Risk, policy: Policy, playbook: str | None = None) -> int:
    order = [Risk.LOW, Risk.MEDIUM, Risk.HIGH]
    by_playbook = policy.approvals if playbook is not None and playbook in policy.approval_playbooks else 0
    if order.index(risk) < order.index(policy.approval_from):
        return by_playbook
    by_risk = 2 if risk is Risk.HIGH and policy.rollback_second_engineer else 1
    return max(by_risk, policy.approvals, by_playbook)


def may_approve(engineer: str, *, requested_by: str, approvers: Sequence[str], policy: Policy) -> bool:
    """Whether ``engineer`` may add an approval: never the requester, never twice, only a listed approver."""
    if engineer == requested_by or engineer in approvers:
        return False
    return not policy.approvers or engineer in policy.approvers


def add_approval(approvers: Sequence[str], engineer: str, needed: int, *, requested_by: str | None = None,
                 policy: Policy | None = None) -> tuple[list[str], bool]:
    """Record ``engineer``'s approval; returns the approvers and whether the run is now approved.

    Four eyes: the engineer who requested the run cannot approve it, and a second approval must come from a
    different engineer: approving twice adds nothing. With ``policy.approvers`` set, only they may approve.
    """
    if needed == 0:
        raise Refused("this run needs no approval")
    if requested_by is not None and engineer == requested_by:
        raise Refused(f"{engineer} requested this run; another engineer must approve it")
    if engineer in approvers:
        raise Refused(f"{engineer} has already approved this run; another engineer must approve")
    if policy is not None and policy.approvers and engineer not in policy.approvers:
        raise Refused(f"{engineer} is not one of the approvers named in the settings")
    result = [*approvers, engineer]
    return result, len(result) >= needed


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    starts_at: datetime
    ends_at: datetime
    target: str | None = None  # None: the whole data centre
    reason: str = ""

    def covers(self, target: str, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at and self.target in (None, target)


def validate_window(starts_at: datetime, ends_at: datetime) -> None:
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        raise Refused("maintenance window times need a time zone")
    if ends_at <= starts_at:
        raise Refused("a maintenance window must end after it starts")
    if ends_at - starts_at > timedelta(days=14):
        raise Refused("a maintenance window may last at most 14 days")


@dataclass(frozen=True, slots=True)
class AutoRule:
    """Opt-in per target: when the rule's symptom has been seen ``min_failed_checks`` checks in a row (and, if set,
    the VM is in ``vm_status``), enqueue ``playbook``. The symptom is the one the playbook remedies
    (``symptom_of``): the target's sites failing, or a problem its guest reports (a full disk, a declared
    service that is not active: ``unit``, the service a restart_service rule restarts)."""

    target: str
    playbook: str
    min_failed_checks: int = 3
    vm_status: str | None = "stopped"
    enabled: bool = True
    unit: str | None = None


# Playbooks that remedy a problem the guest itself reports, and that problem (a health ``Reason`` value). Any
# other playbook remedies a failing site. A rule fires on its own symptom only: a full disk must never trigger a
# service restart, nor a crashed service a disk cleanup.
GUEST_SYMPTOMS: dict[str, str] = {"free_disk": "disk_full", "restart_service": "service_inactive"}
SITE_DOWN = "site_down"
# A restart of a VM that is stopped is only a start: it interrupts nothing that still runs.
RESTARTS_A_VM = frozenset({"restart_vm"})
VM_STATUSES = ("stopped", "running")  # what a rule may require of the VM (Proxmox's status), or nothing


@dataclass(frozen=True, slots=True)
class Signals:
    """What the health model says about one VM target, as the policy engine reads it.

    ``consecutive_failed_checks``: failed checks in a row of its worst site (of its guest when it hosts no site);
    ``vm_status``: Proxmox's word for the VM (``running``, ``stopped``) or None when not known;
    ``guest_problems``: a problem the guest's checks report (``disk_full``, ``service_inactive``) -> the number of
    guest checks in a row that reported it; ``inactive_services``: declared units the latest guest check found not
    active; ``observed_at``: the newest check these signals come from (the same signals, the same instant).
    """

    consecutive_failed_checks: int
    vm_status: str | None
    guest_problems: Mapping[str, int] = field(default_factory=dict)
    inactive_services: frozenset[str] = frozenset()
    observed_at: datetime | None = None


def symptom_of(playbook: str) -> str:
    return GUEST_SYMPTOMS.get(playbook, SITE_DOWN)


def symptom_checks(rule: AutoRule, signals: Signals) -> int:
    """How many checks in a row have shown the symptom ``rule``'s playbook remedies."""
    symptom = symptom_of(rule.playbook)
    if symptom == SITE_DOWN:
        return signals.consecutive_failed_checks
    if symptom == "service_inactive" and rule.unit is not None and rule.unit not in signals.inactive_services:
        return 0  # another declared service is down: restarting this one would not help
    return signals.guest_problems.get(symptom, 0)


def auto_approvals_needed(rule: AutoRule, risk: Risk, policy: Policy) -> int:
    """Approvals an automatic run needs: the same as a manual one (the issue: restarting a VM, resizing and rolling
    back need an engineer's explicit approval), so such a rule's run waits in ``awaiting_approval``.

    The one exception is the issue's own example rule, "site down and its VM stopped -> start the VM": a
    restart_vm rule that requires the VM stopped only ever starts a VM that is down.
    """
    if rule.playbook in RESTARTS_A_VM and rule.vm_status == "stopped":
        return 0
    return approvals_needed(risk, policy)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str


def auto_decision(rule: AutoRule, signals: Signals, policy: Policy, *, now: datetime,
                  recent_runs: Iterable[datetime], windows: Iterable[MaintenanceWindow],
                  active_run: bool = False) -> Decision:
    """Should the policy engine enqueue ``rule.playbook`` for ``rule.target`` now? Always says why."""
    if not policy.auto_enabled:
        return Decision(False, "automatic remediation is switched off globally")
    if not rule.enabled:
        return Decision(False, "the rule for this target is disabled")
    seen = symptom_checks(rule, signals)
    if seen < rule.min_failed_checks:
        return Decision(False, f"{symptom_of(rule.playbook)} seen in {seen} checks in a row, the rule needs "
                               f"{rule.min_failed_checks}")
    if rule.vm_status is not None and signals.vm_status != rule.vm_status:
        return Decision(False, f"the VM is {signals.vm_status or 'of unknown state'}, the rule needs "
                               f"{rule.vm_status}")
    for window in windows:
        if window.covers(rule.target, now):
            return Decision(False, f"maintenance window until {window.ends_at.isoformat()}")
    if active_run:
        return Decision(False, "another run is active on this target")
    starts = sorted(recent_runs)
    if starts and now - starts[-1] < policy.cooldown:
        return Decision(False, f"cooldown: last attempt at {starts[-1].isoformat()}")
    in_hour = [s for s in starts if now - s < timedelta(hours=1)]
    if len(in_hour) >= policy.max_attempts_per_hour:
        return Decision(False, f"{len(in_hour)} attempts in the last hour (maximum {policy.max_attempts_per_hour})")
    return Decision(True, f"rule matched: {symptom_of(rule.playbook)} seen in {seen} checks in a row, VM "
                          f"{signals.vm_status}")


# --- parameter validation ------------------------------------------------------------------------------------

# systemd unit names: letters, digits and ":_.@\-" only, never a leading dash; fullmatch and \Z-free patterns
# so that a trailing newline is refused too (``$`` would accept "nginx.service\n").
UNIT_NAME = re.compile(r"[A-Za-z0-9_:.@\\][A-Za-z0-9_:.@\\-]{0,255}")
# Proxmox's pve-configid (pve-common JSONSchema) with the snapshot schema's maxLength 40.
SNAPSHOT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{1,39}")
CLEANUP_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
DISK_NAME = re.compile(r"(ide[0-3]|sata[0-5]|scsi([0-9]|[12][0-9]|30)|virtio([0-9]|1[0-5])|rootfs|mp[0-9]{1,3})")
_MAX_TEXT = 256


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise Refused(f"{what} must be text")
    if len(value) > _MAX_TEXT:
        raise Refused(f"{what} is too long")
    return value


def validate_unit(value: object, declared: Sequence[str]) -> str:
    unit = _text(value, "the service name")
    if not UNIT_NAME.fullmatch(unit):
        raise Refused(f"{unit!r} is not a valid systemd unit name")
    if unit not in declared:
        raise Refused(f"{unit!r} is not a service declared for this VM in the inventory")
    return unit


def validate_snapshot_name(value: object, existing: Sequence[str] | None = None) -> str:
    """Proxmox's rules for a snapshot name; with ``existing`` (the VM's own list), also that it belongs to it."""
    name = _text(value, "the snapshot name")
    if not SNAPSHOT_NAME.fullmatch(name) or name == "current":
        raise Refused(f"{name!r} is not a valid Proxmox snapshot name")
    if existing is not None and name not in existing:
        raise Refused(f"this VM has no snapshot named {name!r}")
    return name


def validate_cleanup(value: object, declared: Sequence[str]) -> str:
    name = _text(value, "the cleanup name")
    if not CLEANUP_NAME.fullmatch(name):
        raise Refused(f"{name!r} is not a valid cleanup name")
    if name not in declared:
        raise Refused(f"{name!r} is not a cleanup command declared for this VM in the inventory")
    return name


def _positive_int(value: object, what: str, limit: int) -> int:
    if isinstance(value, bool):
        raise Refused(f"{what} must be a whole number")
    if isinstance(value, str):
        if not re.fullmatch(r"[0-9]{1,9}", value.strip()):
            raise Refused(f"{what} must be a whole number, not {value[:20]!r}")
        value = int(value.strip())
    if not isinstance(value, int):
        raise Refused(f"{what} must be a whole number")
    if value <= 0:
        raise Refused(f"{what} must be greater than zero")
    if value > limit:
        raise Refused(f"{what} {value} is above the policy limit of {limit}")
    return value


@dataclass(frozen=True, slots=True)
class ResizeRequest:
    """What an engineer asks for; every field optional, at least one given. Disk growth in GiB."""

    cores: int | None = None
    memory_mib: int | None = None
    disk: str | None = None
    disk_grow_gib: int | None = None


def parse_resize(params: dict[str, object], policy: Policy) -> ResizeRequest:
    """Static checks (no API call): numbers, positive, under the policy limits, a known disk name."""
    unknown = set(params) - {"cores", "memory_mib", "disk", "disk_grow_gib"}
    if unknown:
        raise Refused(f"unknown resize parameters: {', '.join(sorted(unknown))}")
    cores = memory = grow = None
    if params.get("cores") not in (None, ""):
        cores = _positive_int(params["cores"], "cores", policy.max_cores)
    if params.get("memory_mib") not in (None, ""):
        memory = _positive_int(params["memory_mib"], "memory (MiB)", policy.max_memory_mib)
    disk = None
    if params.get("disk_grow_gib") not in (None, ""):
        grow = _positive_int(params["disk_grow_gib"], "disk growth (GiB)", policy.max_disk_growth_gib)
        disk = _text(params.get("disk") or "scsi0", "the disk")
        if not DISK_NAME.fullmatch(disk):
            raise Refused(f"{disk!r} is not a disk name Proxmox knows")
    if cores is None and memory is None and grow is None:
        raise Refused("a resize needs cores, memory or disk growth")
    return ResizeRequest(cores=cores, memory_mib=memory, disk=disk, disk_grow_gib=grow)


@dataclass(frozen=True, slots=True)
class VmShape:
    """The VM as its config says. ``cores`` counts every vCPU it can have (cores x sockets); ``vcpus``, when set,
    how many of them are online (Proxmox's ``vcpus`` option)."""

    cores: int
    memory_mib: int
    disk_gib: dict[str, float] = field(default_factory=dict)
    hotplug: frozenset[str] = frozenset({"network", "disk", "usb"})
    numa: bool = False
    running: bool = True
    sockets: int = 1
    vcpus: int | None = None


@dataclass(frozen=True, slots=True)
class NodeCapacity:
    cpus: int
    memory_free_mib: int
    storage_free_gib: float


@dataclass(frozen=True, slots=True)
class ResizePlan:
    config: dict[str, int]  # keys for POST config (cores, memory)
    disk: str | None
    disk_grow_gib: int | None
    live: tuple[str, ...]  # changes that take effect at once
    needs_reboot: tuple[str, ...]  # changes that wait for a cold start (an API reboot applies them)


def plan_resize(request: ResizeRequest, shape: VmShape, node: NodeCapacity, policy: Policy) -> ResizePlan:
    """Check a resize against the VM as it is and the node's free capacity; shrinking is refused."""
    config: dict[str, int] = {}
    live: list[str] = []
    reboot: list[str] = []
    if request.cores is not None:
        # The request counts the vCPUs the guest gets, whatever the sockets: cores x sockets, or vcpus if set.
        online = shape.vcpus or shape.cores
        if request.cores < online:
            raise Refused(f"shrinking cores from {online} to {request.cores} is refused")
        if request.cores > node.cpus:
            raise Refused(f"{request.cores} cores exceed the node's {node.cpus} CPUs")
        if request.cores != online and request.cores <= shape.cores:
            # More of the vCPUs the VM already has come online through vcpus: live with CPU hot-plug (and NUMA).
            config["vcpus"] = request.cores
            hot = "cpu" in shape.hotplug and shape.numa
            (live if hot or not shape.running else reboot).append("vcpus")
        elif request.cores != online:
            if request.cores % shape.sockets:
                raise Refused(f"{request.cores} vCPUs do not divide among the VM's {shape.sockets} sockets")
            config["cores"] = request.cores // shape.sockets  # Proxmox's cores are per socket
            if shape.vcpus is not None:
                config["vcpus"] = request.cores  # else the old vcpus would keep the new ones offline
            # Hot-plug only brings vCPUs the VM already has online; more cores always wait for a restart.
            reboot.append("cores")
    if request.memory_mib is not None:
        if request.memory_mib < shape.memory_mib:
            raise Refused(f"shrinking memory from {shape.memory_mib} to {request.memory_mib} MiB is refused")
        if request.memory_mib - shape.memory_mib > node.memory_free_mib:
            raise Refused(f"the node has only {node.memory_free_mib} MiB free")
        if request.memory_mib != shape.memory_mib:
            config["memory"] = request.memory_mib
            hot = "memory" in shape.hotplug and shape.numa
            (live if hot or not shape.running else reboot).append("memory")
    if request.disk_grow_gib is not None:
        assert request.disk is not None
        current = shape.disk_gib.get(request.disk)
        if current is None:
            raise Refused(f"this VM has no disk {request.disk}")
        if request.disk_grow_gib > node.storage_free_gib:
            raise Refused(f"the storage has only {node.storage_free_gib:.0f} GiB free")
        if current + request.disk_grow_gib > policy.max_disk_total_gib:
            raise Refused(f"the disk would exceed the policy limit of {policy.max_disk_total_gib} GiB")
        live.append("disk")
    if not shape.running:
        live.extend(reboot)
        reboot = []
    if not config and request.disk_grow_gib is None:
        raise Refused("the VM already has that size; nothing to change")
    return ResizePlan(config=config, disk=request.disk, disk_grow_gib=request.disk_grow_gib,
                      live=tuple(live), needs_reboot=tuple(reboot))


def parse_hotplug(value: object) -> frozenset[str]:
    """Proxmox's ``hotplug`` option: a list, ``1`` for the default set, ``0`` for none."""
    text = str(value if value is not None else "1").strip()
    if text == "0":
        return frozenset()
    if text == "1":
        return frozenset({"network", "disk", "usb"})
    return frozenset(p.strip() for p in text.split(",") if p.strip())


def parse_size_gib(value: str) -> float:
    """The ``size=`` of a Proxmox drive string (K/M/G/T are powers of 1024) in GiB."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([KMGT]?)", value.strip())
    if not match:
        raise ValueError(f"not a Proxmox size: {value!r}")
    factor = {"": 1 / 1024**3, "K": 1 / 1024**2, "M": 1 / 1024, "G": 1.0, "T": 1024.0}[match.group(2)]
    return float(match.group(1)) * factor


def drive_size_gib(drive: str) -> float | None:
    for part in drive.split(","):
        key, _, val = part.partition("=")
        if key.strip() == "size":
            return parse_size_gib(val)
    return None


_UNITS = (("T", 1024**4), ("G", 1024**3), ("M", 1024**2), ("K", 1024))


def drive_size_bytes(drive: str) -> int | None:
    """The ``size=`` of a Proxmox drive string in bytes (a bare number is bytes), or None without one."""
    for part in drive.split(","):
        key, _, val = part.partition("=")
        if key.strip() == "size":
            match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([KMGT]?)", val.strip())
            if not match:
                raise ValueError(f"not a Proxmox size: {val!r}")
            return int(float(match.group(1)) * dict(_UNITS).get(match.group(2), 1))
    return None


def absolute_size(size_bytes: int) -> str:
    """A byte count as an absolute ``size`` for Proxmox's resize: the largest unit that states it exactly.

    No ``+``: resending an absolute size is harmless (Proxmox does nothing when the disk already has it), while a
    relative ``+NG`` sent twice after a crash grows the disk twice."""
    for unit, factor in _UNITS:
        if size_bytes % factor == 0:
            return f"{size_bytes // factor}{unit}"
    return str(size_bytes)


def suggest_snapshot(snapshots: Iterable[tuple[str, datetime | None]], problem_at: datetime | None) -> str | None:
    """The last snapshot taken before the problem began (the newest one when the time is unknown)."""
    dated = [(when, name) for name, when in snapshots if when is not None and name != "current"]
    if problem_at is not None:
        dated = [(when, name) for when, name in dated if when < problem_at]
    return max(dated)[1] if dated else None


def cap_output(text: str, limit: int = 16_384) -> str:
    """Keep the head and the tail of long output: the cause is usually at one end. A NUL byte (a binary on the
    terminal) becomes U+FFFD: the journal is text, and no database stores a NUL in text."""
    text = text.replace("\x00", "\ufffd")
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - limit} characters cut ...]\n{text[-half:]}"


# A journaled step's facts carry, under this key, the worker that wrote its intent and the one that wrote its
# result: after a takeover they differ, and the run itself names only its last worker. Kept in the step's facts
# (JSON) rather than in columns of their own; the journal strips the key before the playbook's steps see the facts.
STEP_WORKERS = "_workers"


def step_workers(facts: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """(intent written by, result written by) from a step's facts; None where it was not recorded."""
    found = (facts or {}).get(STEP_WORKERS)
    if not isinstance(found, Mapping):
        return None, None
    intent, result = found.get("intent"), found.get("result")
    return (intent if isinstance(intent, str) else None), (result if isinstance(result, str) else None)


def confirmation_passed(results: Sequence[bool], needed: int) -> bool:
    """Health-confirmed closure: the last ``needed`` results are all passes."""
    return needed > 0 and len(results) >= needed and all(results[-needed:])


class StepStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"
    SKIPPED = "skipped"  # the step's condition did not hold (e.g. the VM was already stopped)
    NOT_STARTED = "not_started"  # reconciliation proved the side effect never happened
    RUNNING = "running"  # intent written, no result yet


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an executor returns instead of raising (StackStorm's action result)."""

    status: StepStatus
    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None
    upid: str | None = None
    data: object = None
    detail: str = ""
    security_event: bool = False

    @property
    def ok(self) -> bool:
        return self.status in (StepStatus.SUCCEEDED, StepStatus.SKIPPED)
