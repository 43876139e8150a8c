"""Remediation refusals in the reader's language: the boundary between English machine text and the catalogue.

The domain, the playbooks (plug-ins) and the services refuse with English sentences meant for logs, the journal
and the API's ``detail``. Pages show people a sentence of the catalogue instead, chosen here from the exception's
type and a stable part of its text (the playbooks are plug-ins that only speak English). A refusal no pattern
knows still reads as a sentence of the catalogue (refused / not found / conflict), never as English machine text;
``tests/remediation/test_messages.py`` drives the real refusals through this table so that a reworded message
shows up as a failing test, not as a vague page.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pdn_ops.core.errors import Conflict, NotFound
from pdn_ops.core.i18n import Message, catalogue, translate, word
from pdn_ops.runs.service import ActiveRunConflict

FALLBACK = "remediation.error.refused"

# (pattern searched in str(exc), catalogue key); named groups become the message's parameters. First match wins.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p), k) for p, k in (
    (r"is not a valid systemd unit name", "remediation.error.unit_invalid"),
    (r"is not a service declared for this VM", "remediation.error.unit_undeclared"),
    (r"is not a valid Proxmox snapshot name", "remediation.error.snapshot_invalid"),
    (r"this VM has no snapshot named", "remediation.error.snapshot_unknown"),
    (r"choose a snapshot to roll back to", "remediation.error.snapshot_missing"),
    (r"is not a valid cleanup name", "remediation.error.cleanup_invalid"),
    (r"is not a cleanup command declared for this VM", "remediation.error.cleanup_undeclared"),
    (r"is a backup of VM [0-9]+, not of VM", "remediation.error.backup_other_vm"),
    (r"is not a Proxmox backup volume", "remediation.error.backup_invalid"),
    (r"^(refused: )?no backup .* on the storages of node", "remediation.error.backup_unknown"),
    (r"has no good backup", "remediation.error.backup_none"),
    (r"the restore mode must be one of", "remediation.error.restore_mode"),
    (r"a restore in place keeps the VM's own VMID", "remediation.error.in_place_vmid"),
    (r"VMID [0-9]+ already taken", "remediation.error.vmid_taken"),
    (r"the new VMID must be", "remediation.error.vmid_invalid"),
    (r"is not a Proxmox storage name", "remediation.error.storage_invalid"),
    (r"^(refused: )?storage \S+ (is not a storage of node|holds no VM disks)", "remediation.error.storage_unusable"),
    (r"no (node|storage) has room|has no room for VM|^(refused: )?storage \S+ has only", "remediation.error.no_room"),
    (r"is not a Proxmox node name", "remediation.error.node_invalid"),
    (r"^(refused: )?node \S+ is not in the cluster", "remediation.error.node_outside"),
    (r"is already on node", "remediation.error.node_same"),
    (r"Proxmox does not allow migrating", "remediation.error.node_refused"),
    (r"^(online|start) must be true or false", "remediation.error.flag"),
    (r"the start of the problem must be", "remediation.error.moment"),
    (r"is not a Proxmox lock", "remediation.error.lock_invalid"),
    (r"is not locked|is locked \(\S+\), not", "remediation.error.not_locked"),
    (r"a running task holds the lock", "remediation.error.lock_held"),
    (r"^(refused: )?VM [0-9]+ is locked", "remediation.error.vm_locked"),
    (r"must be a whole number", "remediation.error.whole_number"),
    (r"must be greater than zero", "remediation.error.positive"),
    (r"is above the policy limit of (?P<limit>[0-9]+)", "remediation.error.above_limit"),
    (r"would exceed the policy limit of (?P<limit>[0-9]+)", "remediation.error.above_limit"),
    (r"^shrinking ", "remediation.error.shrink"),
    (r"exceed the node's|the node has only|the storage has only", "remediation.error.capacity"),
    (r"is not a disk name Proxmox knows|this VM has no disk", "remediation.error.disk_unknown"),
    (r"a resize needs cores, memory or disk growth", "remediation.error.resize_empty"),
    (r"already has that size", "remediation.error.same_size"),
    (r"reboot must be true or false", "remediation.error.reboot_flag"),
    (r"shutdown timeout", "remediation.error.shutdown_timeout"),
    (r"unknown (resize )?parameters", "remediation.error.unknown_params"),
    (r"has no SSH access declared", "remediation.error.no_ssh"),
    (r"must be text|is too long", "remediation.error.text"),
    (r"^no playbook named", "remediation.error.playbook_unknown"),
    (r"^no VM .* in the inventory|^no VM ", "remediation.error.vm_unknown"),
    (r"belongs to another OPD", "remediation.error.other_opd"),
    (r"^no complaint #", "remediation.error.complaint_unknown"),
    (r"^complaint #[0-9]+ is about ", "remediation.error.complaint_other_vm"),
    (r"idempotency key of 1 to 200 characters", "remediation.error.key_required"),
    (r"^idempotency key .* was already used for run #[0-9]+, which differs", "remediation.error.key_reused"),
    (r"has already approved this run", "remediation.error.already_approved"),
    (r"requested this run; another engineer must approve it", "remediation.error.own_request"),
    (r"is not one of the approvers named in the settings", "remediation.error.not_an_approver"),
    (r"this run needs no approval", "remediation.error.no_approval_needed"),
    (r"^run #(?P<run>[0-9]+) is \w+, not awaiting approval", "remediation.error.not_awaiting"),
    (r"only a run not yet started can be cancelled", "remediation.error.not_cancellable"),
    (r"^a run cannot go from", "remediation.error.transition"),
    (r"^no run #", "remediation.error.run_unknown"),
    (r"need a time zone", "remediation.window.error.time"),
    (r"must end after it starts", "remediation.window.error.order"),
    (r"may last at most", "remediation.window.error.length"),
    (r"is already over", "remediation.window.error.over"),
    (r"^no maintenance window #", "remediation.window.error.unknown"),
    (r"^no automatic rule #", "remediation.auto.error.unknown"),
    (r"^automatic rule #[0-9]+ is deleted", "remediation.auto.error.retired"),
    (r"number of failed checks must be between", "remediation.auto.error.checks"),
))


def message_key(exc: Exception) -> tuple[str, dict[str, str]]:
    """The catalogue key and parameters for a remediation refusal."""
    if isinstance(exc, ActiveRunConflict):
        return "remediation.error.active_run", {"run": str(exc.run_id)}
    text = str(exc)
    for pattern, key in _PATTERNS:
        found = pattern.search(text)
        if found is not None:
            return key, {k: v for k, v in found.groupdict().items() if v is not None}
    if isinstance(exc, NotFound):
        return "remediation.error.not_found", {}
    if isinstance(exc, Conflict):
        return "remediation.error.conflict", {}
    return FALLBACK, {}


def message(exc: Exception, language: str) -> str:
    key, params = message_key(exc)
    return translate(key, language, **params)


# --- Run summaries ------------------------------------------------------------------------------------------------
# The worker stores the playbook's English summary for logs, the journal and the API; people read a sentence of the
# catalogue built here from what is stored without language: the run's state and outcome and the facts its steps
# recorded (codes and figures). ``summary_message`` is language-neutral (a key and parameters), worded on the page.

_CANCELLED = re.compile(r"^cancelled by (?P<by>.+) before it started$")
_UNKNOWN = Message("remediation.summary.unknown_value")


def run_facts(steps: Iterable[Any]) -> dict[str, Any]:
    """The facts a run's steps recorded, later steps over earlier ones (as the runner's context held them)."""
    facts: dict[str, Any] = {}
    for step in sorted(steps, key=lambda s: s.position):
        facts.update(step.facts or {})
    return facts


def _value(value: Any) -> object:
    return str(value) if value not in (None, "") else _UNKNOWN


def _word(key: str, **params: object) -> Message:
    return Message(f"remediation.summary.{key}", params)


def _sentence_params(playbook: str, facts: Mapping[str, Any]) -> dict[str, object]:
    final = _value(facts.get("final_status"))
    if playbook == "restart_vm":
        how = "forced" if facts.get("status_after_shutdown") == "running" else (
            "graceful" if facts.get("status") == "running" else "was_stopped")
        return {"how": _word(f"how.{how}"), "final": final}
    if playbook == "restart_service":
        return {"before": _value(facts.get("state_before")), "after": _value(facts.get("state_after"))}
    if playbook == "free_disk":
        before, after = facts.get("before_avail_kib"), facts.get("after_avail_kib")
        if isinstance(before, int) and isinstance(after, int):
            return {"space": _word("space", before=before // 1024, after=after // 1024)}
        return {"space": _word("space_not_measured")}
    if playbook == "resize_vm":
        live = ", ".join(str(x) for x in facts.get("plan_live") or []) or "-"
        reboot = ", ".join(str(x) for x in facts.get("plan_reboot") or [])
        after = _word("no_reboot") if not reboot else _word(
            "rebooted" if facts.get("reboot_now") else "reboot_planned", items=reboot)
        return {"live": live, "after": after}
    if playbook == "restore_snapshot":
        return {"final": final}
    if playbook == "restore_backup":
        where = _word("as_new", vmid=facts["new_vmid"], storage=_value(facts.get("storage"))) \
            if facts.get("new_vmid") else _word("in_place")
        return {"backup": _value(facts.get("backup")), "where": where, "final": final}
    if playbook == "migrate_vm":
        reason = str(facts.get("reason") or "")
        why = "asked" if reason.startswith("asked") else "most_free" if reason else "none"
        return {"source": _value(facts.get("source")), "target": _value(facts.get("target")),
                "how": _word("online" if facts.get("online") else "offline"), "why": _word(f"why.{why}")}
    if playbook == "clear_lock":
        taker = facts.get("lock_task")
        left = _word("left_by", task=taker.get("type", ""), upid=taker.get("upid", ""),
                     status=taker.get("status", "")) if isinstance(taker, dict) else _word("left_by_none")
        return {"lock": _value(facts.get("lock")), "left": left}
    raise KeyError(playbook)


def summary_message(*, playbook: str, state: str, outcome: str | None, facts: Mapping[str, Any],
                    stored: str) -> Message | None:
    """A finished run's summary as a sentence of the catalogue; None while it has none. ``stored``: the English."""
    if state == "cancelled":
        found = _CANCELLED.match(stored)
        return _word("cancelled", by=found["by"] if found else "-")
    if not outcome:
        return None
    key = f"remediation.state.{outcome}"
    result: object = Message(key) if key in catalogue() else outcome
    try:
        params = _sentence_params(playbook, facts)
    except (KeyError, TypeError, ValueError, AttributeError):
        # A playbook without a sentence of its own, or facts of an older shape: the outcome alone is still true.
        return _word("outcome_only", outcome=result)
    return Message(f"remediation.summary.{playbook}", {"outcome": result, **params})


def run_summary(*, playbook: str, state: str, outcome: str | None, facts: Mapping[str, Any], stored: str,
                language: str) -> str:
    """``summary_message`` worded in ``language``; empty while the run has no summary."""
    found = summary_message(playbook=playbook, state=state, outcome=outcome, facts=facts, stored=stored)
    return word(found, language) if found is not None else ""


def summary_of(row: Any, language: str) -> str:
    """``run_summary`` for a run row with its steps."""
    return run_summary(playbook=row.playbook, state=row.state, outcome=row.outcome, facts=run_facts(row.steps),
                       stored=row.summary or "", language=language)
