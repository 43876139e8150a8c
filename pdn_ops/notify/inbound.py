"""Inbound messages: record each once, then turn it into complaint content through the ComplaintIntake seam.

The webhook route only records (one INSERT per message, keyed by the provider's id, so a replayed delivery is a
no-op) and applies status callbacks; nothing remote runs inside the request. The worker then claims a recorded
message, fetches its photos through the provider (outside any transaction), and in ONE transaction calls the
intake, enqueues the reply and marks the message done: a message becomes complaint content exactly once.
"""

from __future__ import annotations

import base64
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from pdn_ops.core.db.tables import utcnow
from pdn_ops.core.errors import DeliveryError, MediaRefused
from pdn_ops.core.i18n import translate
from pdn_ops.notify.channels.whatsapp import MediaSource
from pdn_ops.notify.intake import ComplaintIntake, FeedbackIntake, RegisteredAdmin
from pdn_ops.notify.media import CheckedPhoto, check_photo
from pdn_ops.notify.model import Channel, InboundMedia, InboundMessage, Recipient, StatusUpdate
from pdn_ops.notify.outbox import apply_status, enqueue, insert_ignore
from pdn_ops.notify.tables import NotifyInboundRow

log = logging.getLogger(__name__)
MAX_PHOTOS = 5
MAX_TEXT = 4000


def _payload(message: InboundMessage) -> dict[str, object]:
    return {
        "text": message.text[:MAX_TEXT],
        "media": [{"id": m.media_id, "mime_type": m.mime_type} for m in message.media[:MAX_PHOTOS]],
        "attachments": [{"name": name[:200], "b64": base64.b64encode(data).decode()}
                        for name, data in message.attachments[:MAX_PHOTOS]],
    }


def record_messages(session: Session, messages: list[InboundMessage], *, now: datetime | None = None) -> int:
    """Record inbound messages (deduplicated by channel and provider id); returns how many were new."""
    now = now or utcnow()
    fresh = 0
    for message in messages:
        fresh += insert_ignore(session, NotifyInboundRow, {
            "channel": message.channel.value, "external_id": message.external_id[:400],
            "sender": message.sender[:320], "payload": _payload(message), "status": "pending", "attempts": 0,
            "received_at": now,
        }, ["channel", "external_id"]) is not None
    return fresh


def record_webhook(session: Session, messages: list[InboundMessage], statuses: list[StatusUpdate], *,
                   now: datetime | None = None) -> dict[str, int]:
    now = now or utcnow()
    outcomes: dict[str, int] = {"new_messages": record_messages(session, messages, now=now)}
    for status in statuses:
        outcome = apply_status(session, status, now=now)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


@dataclass(frozen=True, slots=True)
class InboundClaim:
    id: int
    token: str
    channel: Channel
    external_id: str
    sender: str
    text: str
    media: tuple[InboundMedia, ...]
    attachments: tuple[tuple[str, bytes], ...]


def claim_inbound(factory: sessionmaker[Session], *, now: datetime, lease: timedelta,
                  limit: int = 20) -> list[InboundClaim]:
    """Claim pending messages (or ones whose lease ran out) with one conditional UPDATE, like the outbox."""
    token = uuid.uuid4().hex
    claimable = and_(NotifyInboundRow.channel.in_([c.value for c in Channel]),
                     or_(NotifyInboundRow.status == "pending",
                         and_(NotifyInboundRow.status == "processing", NotifyInboundRow.lease_until < now)))
    due = select(NotifyInboundRow.id).where(claimable).order_by(NotifyInboundRow.id).limit(limit)
    claims: list[InboundClaim] = []
    with factory() as session:  # read-only first: an idle worker takes no write lock (see notify_outbox._any)
        if session.execute(due).first() is None:
            return claims
    with factory() as session, session.begin():
        if session.get_bind().dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        session.execute(update(NotifyInboundRow).where(NotifyInboundRow.id.in_(due.scalar_subquery()), claimable)
                        .values(status="processing", lease_until=now + lease, claim_token=token,
                                attempts=NotifyInboundRow.attempts + 1)
                        .execution_options(synchronize_session=False))
        for row in session.scalars(select(NotifyInboundRow).where(NotifyInboundRow.claim_token == token)
                                   .order_by(NotifyInboundRow.id)):
            payload: dict[str, Any] = dict(row.payload)
            media = tuple(InboundMedia(str(m["id"]), m.get("mime_type")) for m in payload.get("media", []))
            attachments = tuple((str(a["name"]), base64.b64decode(str(a["b64"])))
                                for a in payload.get("attachments", []))
            claims.append(InboundClaim(row.id, token, Channel(row.channel), row.external_id, row.sender,
                                       str(payload.get("text", "")), media, attachments))
    return claims


@dataclass
class FetchedPhotos:
    photos: list[CheckedPhoto]
    refused: list[str]  # catalogue keys naming why


def fetch_photos(claim: InboundClaim, media_source: MediaSource | None) -> FetchedPhotos:
    """Download (WhatsApp) or take (e-mail) the photos and check each by content. Raises DeliveryError when the
    provider is unreachable, so the message is retried later instead of losing its photos."""
    result = FetchedPhotos([], [])
    blobs: list[bytes] = [data for _, data in claim.attachments]
    for media in claim.media:
        if media_source is None:
            raise DeliveryError("no WhatsApp provider configured to fetch media")
        try:
            content, _declared = media_source.download_media(media.media_id)
        except MediaRefused as exc:
            result.refused.append(str(exc.args[0]))
            continue
        blobs.append(content)
    for blob in blobs:
        try:
            result.photos.append(check_photo(blob))
        except MediaRefused as exc:
            result.refused.append(str(exc.args[0]))
    return result


def complete_inbound(session: Session, claim: InboundClaim, *, intake: ComplaintIntake,
                     admin: RegisteredAdmin | None, fetched: FetchedPhotos, now: datetime,
                     feedback: FeedbackIntake | None = None) -> str:
    """The one transaction that acts on a message: intake, reply, done. Returns the outcome.

    A complaint about the service itself (``feedback``) is taken first, from anyone: it is not about a VM."""
    recipient_lang = admin.language if admin is not None else "id"
    recipient = Recipient(claim.channel, claim.sender, recipient_lang, admin.user_id if admin else None)
    key = f"inbound:{claim.channel.value}:{claim.external_id}"
    if feedback is not None and feedback.take(session, channel=claim.channel, address=claim.sender,
                                              text=claim.text, now=now):
        # One acknowledgement per sender and hour, however many they send (the feature caps what it records).
        enqueue(session, event="service_feedback_received", recipients=[recipient], params={},
                idempotency_key=f"feedback:{claim.channel.value}:{claim.sender}:{now:%Y-%m-%dT%H}", now=now)
        outcome = "service_feedback"
    elif admin is None:
        # One refusal per sender per day: a stranger who writes fifty times must not make us send fifty replies.
        enqueue(session, event="intake_refused", recipients=[recipient], params={},
                idempotency_key=f"refusal:{claim.channel.value}:{claim.sender}:{now.date().isoformat()}", now=now)
        outcome = "refused"
    else:
        for reason_key in dict.fromkeys(fetched.refused):
            enqueue(session, event="intake_media_refused", recipients=[recipient],
                    params={"reason": translate(reason_key, recipient_lang)},
                    idempotency_key=f"{key}:media:{reason_key}", now=now)
        outcome = "media_refused"
        if claim.text.strip() or fetched.photos:
            reply = intake.start_or_continue(session, admin=admin, channel=claim.channel, address=claim.sender,
                                             text=claim.text, photos=fetched.photos)
            enqueue(session, event="intake_reply", recipients=[recipient],
                    params={"number": reply.number, "link": reply.link}, idempotency_key=f"{key}:reply", now=now)
            outcome = "created" if reply.created else "continued"
    result = session.execute(update(NotifyInboundRow).where(
        NotifyInboundRow.id == claim.id, NotifyInboundRow.status == "processing",
        NotifyInboundRow.claim_token == claim.token).values(
        status="done", outcome=outcome, processed_at=now, lease_until=None))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        # Another worker took over after our lease ran out and finished first: undo ours entirely.
        raise DeliveryError(f"inbound message {claim.id} was completed by another worker")
    return outcome


def release_inbound(factory: sessionmaker[Session], claim: InboundClaim, *, error: str, now: datetime,
                    retry_in: timedelta, max_attempts: int) -> None:
    with factory() as session, session.begin():
        row = session.get(NotifyInboundRow, claim.id)
        if row is None or row.status != "processing" or row.claim_token != claim.token:
            return
        row.detail = error[:1000]
        if row.attempts >= max_attempts:
            row.status, row.outcome, row.processed_at = "failed", "error", now
        else:
            # "processing" with a lease in the future is how a message waits for its next try.
            row.lease_until = now + retry_in
