"""The public pages' work on the database: the standard's versions, the service-complaint queue, status pages."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pdn_ops.accounts import Principal
from pdn_ops.core.errors import NotFound, Throttled
from pdn_ops.core.i18n import translate
from pdn_ops.public.model import (
    FEEDBACK_CHANNELS,
    MAX_FEEDBACK,
    STANDARD_PARTS,
    FeedbackDraft,
    StandardContent,
    normalise_text,
)
from pdn_ops.public.tables import ServiceFeedbackRow, StandardVersionRow

# --- the published standard ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublishedStandard:
    content: StandardContent
    number: int  # 0: the defaults, never edited
    since: datetime | None
    by: str | None


def default_standard(lang: str, *, email: str, whatsapp: str, sla_days: int) -> StandardContent:
    """The current standard (SK 24/DISKOMINFO/2024) as shipped, in the reader's language."""
    parts = {part: translate(f"standard.default.{part}", lang, days=sla_days) for part in STANDARD_PARTS}
    return StandardContent(parts, email, whatsapp)


def current_standard(session: Session, fallback: StandardContent) -> PublishedStandard:
    row = session.scalar(select(StandardVersionRow).order_by(StandardVersionRow.id.desc()).limit(1))
    if row is None:
        return PublishedStandard(fallback, 0, None, None)
    return _published(session, row)


def _published(session: Session, row: StandardVersionRow) -> PublishedStandard:
    number = session.scalar(select(func.count()).select_from(StandardVersionRow)
                            .where(StandardVersionRow.id <= row.id)) or 0
    return PublishedStandard(StandardContent(dict(row.parts), row.email, row.whatsapp), number, row.created_at,
                             row.created_by)


def standard_version(session: Session, number: int) -> PublishedStandard:
    row = session.scalar(select(StandardVersionRow).order_by(StandardVersionRow.id).offset(number - 1).limit(1)) \
        if number >= 1 else None
    if row is None:
        raise NotFound(f"no version {number} of the standard")
    return _published(session, row)


def standard_history(session: Session) -> list[tuple[int, datetime, str]]:
    rows = session.execute(select(StandardVersionRow.created_at, StandardVersionRow.created_by)
                           .order_by(StandardVersionRow.id)).all()
    return [(i + 1, at, by) for i, (at, by) in enumerate(rows)][::-1]


def save_standard(session: Session, principal: Principal, content: StandardContent, *, now: datetime) -> int:
    """A new version (the older ones stay as they were); returns its number."""
    session.add(StandardVersionRow(parts=content.parts, email=content.email, whatsapp=content.whatsapp,
                                   created_at=now, created_by=principal.username))
    session.flush()
    return session.scalar(select(func.count()).select_from(StandardVersionRow)) or 0


# --- complaints about the service ----------------------------------------------------------------------------------

FEEDBACK_PER_HOUR = 5  # per sender address: a person has no reason to send more; a script gets 429


def client_key(secret: str, address: str) -> str:
    """A keyed hash of the sender's address: the throttle can count it, a database reader cannot reverse it."""
    return hmac.new(secret.encode(), address.encode(), hashlib.sha256).hexdigest()


def receive_feedback(session: Session, draft: FeedbackDraft, *, channel: str, client: str, now: datetime,
                     limit: int = FEEDBACK_PER_HOUR) -> int:
    if channel not in FEEDBACK_CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    recent = session.scalar(select(func.count()).select_from(ServiceFeedbackRow).where(
        ServiceFeedbackRow.client == client, ServiceFeedbackRow.received_at > now - timedelta(hours=1))) or 0
    if recent >= limit:
        raise Throttled("too many service complaints from this address; try again later", retry_after=3600)
    row = ServiceFeedbackRow(channel=channel, name=draft.name, contact=draft.contact, message=draft.message,
                             client=client, received_at=now)
    session.add(row)
    session.flush()
    return row.id


def feedback_queue(session: Session, *, answered: bool, limit: int = 100) -> list[ServiceFeedbackRow]:
    stmt = select(ServiceFeedbackRow).where(ServiceFeedbackRow.answered_at.is_not(None) if answered
                                            else ServiceFeedbackRow.answered_at.is_(None))
    order = ServiceFeedbackRow.answered_at.desc() if answered else ServiceFeedbackRow.received_at
    return list(session.scalars(stmt.order_by(order).limit(limit)))


def answer_feedback(session: Session, principal: Principal, feedback_id: int, text: str, *, now: datetime) -> None:
    row = session.get(ServiceFeedbackRow, feedback_id)
    if row is None:
        raise NotFound(f"no service complaint {feedback_id}")
    row.answer = normalise_text(text).strip()[:MAX_FEEDBACK]
    if row.answered_at is None:
        row.answered_at = now  # the first answer stops the clock; a correction later does not move it
    row.answered_by = principal.username
    session.flush()


@dataclass(frozen=True, slots=True)
class FeedbackStats:
    received: int
    answered: int
    open: int
    median_hours: float | None
    max_hours: float | None


def feedback_stats(session: Session, start: datetime, end: datetime) -> FeedbackStats:
    """Received in [start, end): how many, how many answered, the median and longest time to answer (hours)."""
    rows = session.execute(select(ServiceFeedbackRow.received_at, ServiceFeedbackRow.answered_at).where(
        ServiceFeedbackRow.received_at >= start, ServiceFeedbackRow.received_at < end)).all()
    waits = sorted((a - r).total_seconds() / 3600 for r, a in rows if a is not None)
    median = None
    if waits:
        mid = len(waits) // 2
        median = waits[mid] if len(waits) % 2 else (waits[mid - 1] + waits[mid]) / 2
    return FeedbackStats(received=len(rows), answered=len(waits), open=len(rows) - len(waits),
                         median_hours=median, max_hours=waits[-1] if waits else None)


def new_share_token() -> str:
    return secrets.token_urlsafe(24)
