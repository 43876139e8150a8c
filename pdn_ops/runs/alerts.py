"""Engineers' alerts for runs that need a person: failed, outcome unknown, or ineffective after the closure deadline.

Alerts go through the outbox (WhatsApp and e-mail, ``remediation_failed``) to every active engineer with a number
or an address on their account, in their language. Each run alerts exactly once per outcome: the outbox key is
``remediation_run:<id>:<outcome>`` plus the channel and address (inserted with ON CONFLICT DO NOTHING), and the
``remediation.alerted`` audit row is written only by the call that created the messages.

Two callers, one function: the closure calls ``seam(...)`` in the transaction that marks a run ineffective (the
``remediation_alert`` seam of the worker), and the scheduler's ``remediation:alerts`` job sweeps what the worker
recorded (failed and unknown outcomes) and anything the seam did not reach (a worker without it, a crash). There
is no engineers' inbox in the app; the runs page shows the same runs at its top.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from pdn_ops.complaints import engineer_recipients
from pdn_ops.core.db.tables import AuditRow, utcnow
from pdn_ops.core.i18n import catalogue, translate
from pdn_ops.notify import Recipient, alert_engineers
from pdn_ops.runs import model as rem
from pdn_ops.runs.tables import RemediationRunRow

ALERTED = "remediation.alerted"
NEEDS_A_PERSON = (rem.State.FAILED, rem.State.UNKNOWN, rem.State.INEFFECTIVE)
LOOKBACK = timedelta(days=1)  # an outcome older than this is not announced any more (no stale alerts)


def outcome_of(run: RemediationRunRow) -> str | None:
    """The outcome an engineer must hear about, or None (succeeded, still running, or cancelled before it ran)."""
    if run.started_at is None:
        return None  # cancelled (or refused) before a worker took it: a person did that, nobody to alert
    state = rem.State(run.state)
    return state.value if state in NEEDS_A_PERSON else None


def _name(prefix: str, value: str, language: str) -> str:
    key = f"{prefix}{value}"
    return translate(key, language) if key in catalogue() else value


def alert_run(session: Session, run: RemediationRunRow, *, engineers: list[Recipient], public_url: str,
              now: datetime | None = None) -> int:
    """Enqueue the alert for ``run``'s outcome; returns the messages created now (0 when already alerted)."""
    outcome = outcome_of(run)
    if outcome is None or not engineers:
        return 0
    now = now or utcnow()
    key = f"remediation_run:{run.id}:{outcome}"
    created = 0
    for language in sorted({r.language for r in engineers}):
        # The template's fields are positional WhatsApp parameters: the outcome rides with the playbook's name.
        playbook = (f"{_name('remediation.playbook.', run.playbook, language)} "
                    f"({_name('remediation.state.', outcome, language)})")
        params = {"number": f"#{run.id} ({run.target})", "playbook": playbook,
                  "link": f"{public_url.rstrip('/')}/remediation/runs/{run.id}"}
        created += len(alert_engineers(session, event="remediation_failed", params=params, idempotency_key=key,
                                       engineers=[r for r in engineers if r.language == language], now=now))
    if created:
        session.add(AuditRow(at=now, actor="pdn-ops", action=ALERTED, subject=f"remediation_run:{run.id}",
                             detail=f"{outcome}: {created} message(s) to engineers"))
    return created


def seam(public_url: str) -> Callable[[RemediationRunRow, Session], None]:
    """The worker's ``remediation_alert``: called by the closure in its own transaction."""

    def alert(run: RemediationRunRow, session: Session) -> None:
        alert_run(session, run, engineers=engineer_recipients(session), public_url=public_url)

    return alert


def sweep(session: Session, *, public_url: str, now: datetime | None = None) -> int:
    """Alert for every run that ended needing a person in the last day and has not been announced yet."""
    now = now or utcnow()
    engineers = engineer_recipients(session)
    if not engineers:
        return 0  # read-only when nobody can be told: no write lock taken every minute on SQLite
    runs = list(session.scalars(select(RemediationRunRow).where(
        RemediationRunRow.state.in_([s.value for s in NEEDS_A_PERSON]), RemediationRunRow.started_at.is_not(None),
        RemediationRunRow.finished_at >= now - LOOKBACK).order_by(RemediationRunRow.id)))
    if not runs:
        return 0
    done = set(session.scalars(select(AuditRow.subject).where(
        AuditRow.action == ALERTED, AuditRow.subject.in_([f"remediation_run:{r.id}" for r in runs]))))
    return sum(alert_run(session, run, engineers=engineers, public_url=public_url, now=now)
               for run in runs if f"remediation_run:{run.id}" not in done)
