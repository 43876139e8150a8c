"""Alertmanager's webhook payload (version 4) as plain values, and what an alert is about. Pure, standard library.

Alertmanager posts ``{"version": "4", "status", "receiver", "groupKey", "alerts": [{"status", "labels",
"annotations", "startsAt", "endsAt", "fingerprint", ...}], ...}``; one post may carry alerts of both states.
Labels are the ones the shipped rules (deploy/prometheus) give: ``site_id``, ``vm_id``, ``cluster``/``node``,
``collector``, ``opd``, ``severity``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

MAX_ALERTS = 1000  # per post: Alertmanager batches a group; more than this is not a group we made
STATUSES = ("firing", "resolved")
_FINGERPRINT = re.compile(r"[0-9a-f]{1,64}")
_ID = re.compile(r"[0-9]{1,18}")

# The remediation playbooks that fit each alert (pdn_ops.core.registry names), for the link engineers get.
PLAYBOOKS_FOR: dict[str, tuple[str, ...]] = {
    "PdnSiteDown": ("restart_service", "restart_vm", "restore_snapshot"),
    "PdnVmDown": ("restart_vm", "restore_backup"),
    "PdnVmStaleLock": ("clear_lock",),
    "PdnGuestDiskAlmostFull": ("free_disk", "resize_vm"),
    "PdnVmDiskAlmostFull": ("free_disk", "resize_vm"),
}


class PayloadError(ValueError):
    """The body is not an Alertmanager webhook payload we can record (the message says what is wrong)."""


@dataclass(frozen=True, slots=True)
class ReceivedAlert:
    fingerprint: str
    status: str  # firing | resolved
    alertname: str
    severity: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None


@dataclass(frozen=True, slots=True)
class Subject:
    """What an alert is about: a site or VM of the inventory (by id), a node or cluster, or nothing we know."""

    kind: str  # site | vm | node | cluster | none
    ref: str = ""  # the site's or VM's id, "cluster/node", or the cluster's name


def _time(value: Any, field: str) -> datetime | None:
    if value in (None, "") or (isinstance(value, str) and value.startswith("0001-01-01")):
        return None  # Alertmanager's zero time: not set
    if not isinstance(value, str):
        raise PayloadError(f"{field}: expected an RFC 3339 time")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise PayloadError(f"{field}: not an RFC 3339 time: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        raise PayloadError(f"{field}: the time has no zone")
    return parsed


def _strings(value: Any, field: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise PayloadError(f"{field}: expected an object of strings")
    return {k[:100]: v[:2000] for k, v in value.items()}


def parse(payload: Any) -> list[ReceivedAlert]:
    """The alerts of one post; a payload that is not Alertmanager's version 4 is refused as a whole."""
    if not isinstance(payload, dict) or payload.get("version") != "4":
        raise PayloadError("not an Alertmanager webhook payload (version 4)")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        raise PayloadError("alerts: expected a non-empty list")
    if len(alerts) > MAX_ALERTS:
        raise PayloadError(f"alerts: more than {MAX_ALERTS} in one post")
    found: list[ReceivedAlert] = []
    for index, alert in enumerate(alerts):
        where = f"alerts[{index}]"
        if not isinstance(alert, dict):
            raise PayloadError(f"{where}: expected an object")
        status = alert.get("status")
        if status not in STATUSES:
            raise PayloadError(f"{where}.status: expected firing or resolved")
        fingerprint = alert.get("fingerprint")
        if not isinstance(fingerprint, str) or not _FINGERPRINT.fullmatch(fingerprint):
            raise PayloadError(f"{where}.fingerprint: expected a hexadecimal fingerprint")
        labels = _strings(alert.get("labels"), f"{where}.labels")
        if not labels.get("alertname"):
            raise PayloadError(f"{where}.labels: no alertname")
        starts_at = _time(alert.get("startsAt"), f"{where}.startsAt")
        if starts_at is None:
            raise PayloadError(f"{where}.startsAt: missing")
        found.append(ReceivedAlert(
            fingerprint=fingerprint, status=status, alertname=labels["alertname"][:100],
            severity=labels.get("severity", "")[:16], labels=labels,
            annotations=_strings(alert.get("annotations") or {}, f"{where}.annotations"),
            starts_at=starts_at, ends_at=_time(alert.get("endsAt"), f"{where}.endsAt") if status == "resolved"
            else None))
    return found


def subject_of(labels: Mapping[str, str]) -> Subject:
    """What the alert is about, from the labels the shipped rules give (ids only: never trusted as more)."""
    if _ID.fullmatch(labels.get("site_id", "")):
        return Subject("site", labels["site_id"])
    if _ID.fullmatch(labels.get("vm_id", "")):
        return Subject("vm", labels["vm_id"])
    if labels.get("cluster") and labels.get("node"):
        return Subject("node", f"{labels['cluster']}/{labels['node']}")
    if labels.get("cluster"):
        return Subject("cluster", labels["cluster"])
    return Subject("none")


def notification_key(alert: ReceivedAlert) -> str:
    """One notification per alert episode and state: the outbox's idempotency key."""
    return f"alert:{alert.fingerprint}:{int(alert.starts_at.timestamp())}:{alert.status}"
