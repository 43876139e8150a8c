"""When a VM's current problem began, from pdn-ops' own records: what the snapshot and backup suggestions pick
"the last good one before" (a module of its own so that the service and the snapshot chooser can both use it)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pdn_ops.complaints import ComplaintRow
from pdn_ops.health import HealthCheckRow
from pdn_ops.runs.closure import linked_targets

PROBLEM_STATES = ("down", "degraded")


def problem_started_at(session: Session, target: str, *, complaint: ComplaintRow | None = None) -> datetime | None:
    """When the VM's current problem began: the earliest first failed check of a linked target that is down or
    degraded now (its state's start when no check failed, e.g. a degraded disk), or the complaint's filing."""
    found: list[datetime] = []
    if complaint is not None:
        found.append(complaint.submitted_at or complaint.created_at)
    for row in linked_targets(session, target):
        if row.state not in PROBLEM_STATES:
            continue
        last_ok = session.scalar(select(func.max(HealthCheckRow.at)).where(HealthCheckRow.target_id == row.id,
                                                                           HealthCheckRow.ok.is_(True)))
        first_bad = select(func.min(HealthCheckRow.at)).where(HealthCheckRow.target_id == row.id,
                                                              HealthCheckRow.ok.is_(False))
        if last_ok is not None:
            first_bad = first_bad.where(HealthCheckRow.at > last_ok)
        when = session.scalar(first_bad) or row.since
        if when is not None:
            found.append(when)
    return min(found) if found else None
