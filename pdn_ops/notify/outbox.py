"""The notification outbox: enqueue in the caller's transaction, claim, record outcomes, apply provider callbacks.

Life of a message::

    enqueue (caller's transaction) -> queued
    claim (conditional UPDATE, own transaction, commits before the provider call) -> sending, lease_until set
    provider accepted -> sent ; callbacks -> delivered -> read (a status only moves up; replays change nothing)
    retryable error -> queued again at now + backoff ; rejected, or attempts exhausted -> failed
    outcome unknown (timeout after sending, or the worker died while "sending") -> stays "sending" until
        lease_until + unknown_grace; a status callback carrying our idempotency key in that window settles it as
        sent; otherwise it is queued again.

The exact guarantee: a message is never lost (the row commits with the state change, and only a recorded
provider acceptance, a provider rejection or max_attempts ends its retries); it is never sent again once its
acceptance is recorded; a message whose outcome is unknown is sent again only if the provider reported nothing
for it within the grace window, so it is delivered exactly once when the provider's status callback arrives in
that window, and at least once (a possible duplicate, the same Message-ID on e-mail) if the callback is lost too.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from pdn_ops.core import contacts
from pdn_ops.core.db.tables import utcnow
from pdn_ops.core.errors import DeliveryRejected, DeliveryUnknown
from pdn_ops.notify import rendering as templates
from pdn_ops.notify.model import (
    ENGINEER_EVENTS,
    EVENTS,
    STATUS_RANK,
    Channel,
    Recipient,
    SendResult,
    Status,
    StatusUpdate,
)
from pdn_ops.notify.policy import RetryPolicy, parse_hhmm, quiet_until
from pdn_ops.notify.tables import NotifyInboundRow, NotifyOutboxRow, NotifyPreferenceRow

JAKARTA = ZoneInfo("Asia/Jakarta")
STATUS_CHANNEL = "wa_status"  # status callbacks are recorded in notify_inbound under this channel, for replays


def insert_ignore(session: Session, table: type[NotifyOutboxRow] | type[NotifyInboundRow],
                  values: dict[str, object], conflict: list[str]) -> int | None:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING id on both engines: the new row's id, or None if it existed.

    (RETURNING, not rowcount: psycopg reports -1 for an INSERT whose conflict clause skipped the row.)
    """
    dialect = session.get_bind().dialect.name
    builder = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = builder(table).values(**values).on_conflict_do_nothing(index_elements=conflict).returning(table.id)
    return session.execute(stmt).scalar()


def _subject(recipient: Recipient) -> str:
    if recipient.user_id is not None:
        return f"user:{recipient.user_id}"
    return f"{recipient.channel.value}:{recipient.address}"


def set_preferences(session: Session, *, subject: str, channels: list[Channel] | None = None,
                    quiet_start: str | None = None, quiet_end: str | None = None) -> None:
    """Store channels and quiet hours for ``user:ID`` or ``whatsapp:+62...`` / ``email:a@b``."""
    for value in (quiet_start, quiet_end):
        if value is not None:
            parse_hhmm(value)
    row = session.scalars(select(NotifyPreferenceRow).where(NotifyPreferenceRow.subject == subject)).first()
    if row is None:
        row = NotifyPreferenceRow(subject=subject)
        session.add(row)
    row.channels = [c.value for c in channels] if channels is not None else []
    row.quiet_start, row.quiet_end, row.updated_at = quiet_start, quiet_end, utcnow()
    session.flush()


def enqueue(session: Session, *, event: str, recipients: list[Recipient], params: Mapping[str, object],
            idempotency_key: str, urgent: bool | None = None, now: datetime | None = None,
            zone: ZoneInfo = JAKARTA) -> list[int]:
    """Write one outbox row per recipient in the caller's transaction; returns the ids of rows created now.

    ``idempotency_key`` names the state change (e.g. ``complaint:42:verified``); each message's key adds the
    channel and address, so enqueueing the same change twice creates nothing new. A recipient whose preferences
    exclude the channel gets nothing; a non-urgent message in the recipient's quiet hours waits until they end.
    """
    templates.check_params(event, params)
    for recipient in recipients:
        if not contacts.is_deliverable(recipient.channel.value, recipient.address):
            raise ValueError(f"not a valid {recipient.channel.value} address")
    now = now or utcnow()
    is_urgent = EVENTS[event].urgent if urgent is None else urgent
    created: list[int] = []
    subjects = {_subject(r) for r in recipients}
    prefs = {row.subject: row for row in session.scalars(
        select(NotifyPreferenceRow).where(NotifyPreferenceRow.subject.in_(subjects)))}
    for recipient in recipients:
        pref = prefs.get(_subject(recipient))
        if pref is not None and pref.channels and recipient.channel.value not in pref.channels:
            continue
        due = now
        if pref is not None and not is_urgent:
            due = quiet_until(now, pref.quiet_start, pref.quiet_end, zone) or now
        key = f"{idempotency_key}:{recipient.channel.value}:{recipient.address}"
        row_id = insert_ignore(session, NotifyOutboxRow, {
            "idempotency_key": key, "event": event, "channel": recipient.channel.value,
            "address": recipient.address, "language": recipient.language, "user_id": recipient.user_id,
            "params": {k: str(v) for k, v in params.items()}, "urgent": is_urgent, "status": Status.QUEUED.value,
            "attempts": 0, "next_attempt_at": due, "created_at": now, "updated_at": now,
        }, ["idempotency_key"])
        if row_id is not None:
            created.append(row_id)
    return created


def alert_engineers(session: Session, *, event: str, engineers: list[Recipient], params: Mapping[str, object],
                    idempotency_key: str, now: datetime | None = None) -> list[int]:
    """SLA-at-risk and remediation-failed alerts for Diskominfo engineers: urgent, so never held by quiet hours
    (their channel preferences still apply)."""
    if event not in ENGINEER_EVENTS:
        raise ValueError(f"{event!r} is not an engineer alert; use enqueue()")
    return enqueue(session, event=event, recipients=engineers, params=params, idempotency_key=idempotency_key,
                   urgent=True, now=now)


@dataclass(frozen=True, slots=True)
class Claim:
    id: int
    token: str  # claimed_by: worker id plus a per-batch nonce; only its holder records the outcome
    idempotency_key: str
    event: str
    channel: Channel
    address: str
    language: str
    params: Mapping[str, object]
    attempts: int


def claim_due(factory: sessionmaker[Session], *, worker_id: str, now: datetime, lease: timedelta,
              limit: int = 20, channels: frozenset[Channel] | None = None) -> list[Claim]:
    """Claim due queued messages for this worker; committed before any provider call.

    One conditional UPDATE (``... WHERE id IN (due ids) AND status = 'queued'``) takes the rows: when two workers
    race, a row matches exactly one UPDATE. On PostgreSQL the due ids are selected FOR UPDATE SKIP LOCKED, so
    workers do not queue behind each other's locks; on SQLite the single write statement takes the write lock
    first (a read-then-write transaction could deadlock on the lock upgrade).
    """
    token = f"{worker_id}/{uuid.uuid4().hex[:12]}"
    due = (select(NotifyOutboxRow.id)
           .where(NotifyOutboxRow.status == Status.QUEUED.value, NotifyOutboxRow.next_attempt_at <= now)
           .order_by(NotifyOutboxRow.next_attempt_at, NotifyOutboxRow.id).limit(limit))
    if channels is not None:
        due = due.where(NotifyOutboxRow.channel.in_([c.value for c in channels]))
    if not _any(factory, due):
        return []
    with factory() as session, session.begin():
        if session.get_bind().dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        session.execute(
            update(NotifyOutboxRow)
            .where(NotifyOutboxRow.id.in_(due.scalar_subquery()), NotifyOutboxRow.status == Status.QUEUED.value)
            .values(status=Status.SENDING.value, claimed_by=token, lease_until=now + lease,
                    attempts=NotifyOutboxRow.attempts + 1, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        rows = session.scalars(select(NotifyOutboxRow).where(NotifyOutboxRow.claimed_by == token,
                                                             NotifyOutboxRow.status == Status.SENDING.value)
                               .order_by(NotifyOutboxRow.id)).all()
        return [Claim(row.id, token, row.idempotency_key, row.event, Channel(row.channel), row.address,
                      row.language, dict(row.params), row.attempts) for row in rows]


def _any(factory: sessionmaker[Session], query: Select[Any]) -> bool:
    """A read-only look before writing: an idle worker then never opens write transactions. On SQLite every
    write, even one that changes nothing, takes the database's single write lock from the web requests."""
    with factory() as session:
        return session.execute(query.limit(1)).first() is not None


def _mine(claim: Claim) -> ColumnElement[bool]:
    # Only the holder of the claim may record its outcome; a callback or a takeover wins otherwise.
    return and_(NotifyOutboxRow.id == claim.id, NotifyOutboxRow.status == Status.SENDING.value,
                NotifyOutboxRow.claimed_by == claim.token)


def record_sent(factory: sessionmaker[Session], claim: Claim, *, result: SendResult, now: datetime) -> None:
    with factory() as session, session.begin():
        session.execute(update(NotifyOutboxRow).where(_mine(claim)).values(
            status=Status.SENT.value, sent_at=now, provider=result.provider, claimed_by=None, lease_until=None,
            provider_message_id=result.provider_message_id, last_error=None, updated_at=now))
        # A callback may have settled the row first (it carries our key): keep its status, add the provider id.
        session.execute(update(NotifyOutboxRow).where(
            NotifyOutboxRow.id == claim.id, NotifyOutboxRow.provider_message_id.is_(None)).values(
            provider=result.provider, provider_message_id=result.provider_message_id))
        if result.provider_message_id:
            _apply_pending_statuses(session, result.provider_message_id, now)


def record_error(factory: sessionmaker[Session], claim: Claim, *, error: Exception,
                 policy: RetryPolicy, now: datetime) -> str:
    """Record a failed attempt; returns the resulting status (queued, sending for unknown, or failed)."""
    message = str(error)[:1000]
    with factory() as session, session.begin():
        if isinstance(error, DeliveryUnknown):
            # Leave it "sending": recover_unknown decides after the grace window whether a callback settled it.
            session.execute(update(NotifyOutboxRow).where(_mine(claim)).values(
                lease_until=now, last_error=message, updated_at=now))
            return Status.SENDING.value
        if isinstance(error, DeliveryRejected) or policy.exhausted(claim.attempts):
            session.execute(update(NotifyOutboxRow).where(_mine(claim)).values(
                status=Status.FAILED.value, failed_at=now, claimed_by=None, lease_until=None, last_error=message,
                updated_at=now))
            return Status.FAILED.value
        session.execute(update(NotifyOutboxRow).where(_mine(claim)).values(
            status=Status.QUEUED.value, next_attempt_at=now + policy.delay(claim.attempts), claimed_by=None,
            lease_until=None, last_error=message, updated_at=now))
        return Status.QUEUED.value


def recover_unknown(factory: sessionmaker[Session], *, now: datetime, grace: timedelta,
                    idempotent_channels: frozenset[Channel] = frozenset(), max_attempts: int | None = None) -> int:
    """Queue again the messages stuck in "sending" whose lease (plus the grace window) has passed.

    A provider that drops duplicate requests by itself (``idempotent``) needs no grace window. A message that has
    used ``max_attempts`` is marked failed instead, so a message that always ends "unknown" cannot loop forever.
    """
    expired = NotifyOutboxRow.lease_until < now - grace
    if idempotent_channels:
        expired = or_(expired, and_(NotifyOutboxRow.lease_until < now,
                                    NotifyOutboxRow.channel.in_([c.value for c in idempotent_channels])))
    stuck = and_(NotifyOutboxRow.status == Status.SENDING.value, expired)
    if not _any(factory, select(NotifyOutboxRow.id).where(stuck).limit(1)):
        return 0
    with factory() as session, session.begin():
        if max_attempts is not None:
            session.execute(update(NotifyOutboxRow).where(stuck, NotifyOutboxRow.attempts >= max_attempts).values(
                status=Status.FAILED.value, failed_at=now, claimed_by=None, lease_until=None, updated_at=now,
                last_error="outcome unknown after the last attempt; no provider report"))
        result = session.execute(update(NotifyOutboxRow).where(stuck).values(
            status=Status.QUEUED.value, claimed_by=None, lease_until=None, next_attempt_at=now, updated_at=now,
            last_error="outcome unknown; no provider report within the grace window"))
        return int(result.rowcount)  # type: ignore[attr-defined]


_TIME_COLUMN = {Status.SENT: "sent_at", Status.DELIVERED: "delivered_at", Status.READ: "read_at",
                Status.FAILED: "failed_at"}


def _advance(row: NotifyOutboxRow, update_: StatusUpdate, now: datetime) -> bool:
    current = Status(row.status)
    new = update_.status
    if new is Status.FAILED:
        moves = current in (Status.QUEUED, Status.SENDING, Status.SENT)
    else:
        moves = STATUS_RANK[new] > STATUS_RANK[current]
    if not moves:
        return False
    row.status = new.value
    row.claimed_by, row.lease_until, row.updated_at = None, None, now
    if update_.error:
        row.last_error = update_.error
    row.provider_message_id = row.provider_message_id or update_.provider_message_id
    setattr(row, _TIME_COLUMN[new], now)
    if new in (Status.DELIVERED, Status.READ) and row.sent_at is None:
        row.sent_at = now
    return True


def apply_status(session: Session, update_: StatusUpdate, *, now: datetime | None = None) -> str:
    """Apply one provider status callback; returns "applied", "duplicate", "stale" or "unmatched".

    Every callback is recorded once (keyed by message id and status), so a replay changes nothing; a callback
    for a message we have not recorded as sent yet is kept and applied when the send is recorded.
    """
    now = now or utcnow()
    external = f"{update_.provider_message_id}:{update_.status.value}"
    fresh = insert_ignore(session, NotifyInboundRow, {
        "channel": STATUS_CHANNEL, "external_id": external[:400], "sender": "",
        "payload": {"status": update_.status.value, "key": update_.idempotency_key, "error": update_.error},
        "status": "pending", "attempts": 0, "received_at": now,
    }, ["channel", "external_id"])
    if fresh is None:
        return "duplicate"
    row = None
    if update_.idempotency_key:
        row = session.scalars(select(NotifyOutboxRow).where(
            NotifyOutboxRow.idempotency_key == update_.idempotency_key)).first()
    if row is None:
        row = session.scalars(select(NotifyOutboxRow).where(
            NotifyOutboxRow.provider_message_id == update_.provider_message_id)).first()
    if row is None:
        return "unmatched"
    outcome = "applied" if _advance(row, update_, now) else "stale"
    session.execute(update(NotifyInboundRow).where(
        NotifyInboundRow.channel == STATUS_CHANNEL, NotifyInboundRow.external_id == external[:400]).values(
        status="done", outcome=outcome, processed_at=now))
    return outcome


def _apply_pending_statuses(session: Session, provider_message_id: str, now: datetime) -> None:
    pending = session.scalars(select(NotifyInboundRow).where(
        NotifyInboundRow.channel == STATUS_CHANNEL, NotifyInboundRow.status == "pending",
        NotifyInboundRow.external_id.like(f"{provider_message_id}:%"))).all()
    row = session.scalars(select(NotifyOutboxRow).where(
        NotifyOutboxRow.provider_message_id == provider_message_id)).first()
    if row is None:
        return
    for inbound in sorted(pending, key=lambda r: STATUS_RANK[Status(str(r.payload["status"]))]):
        status = Status(str(inbound.payload["status"]))
        error = inbound.payload.get("error")
        changed = _advance(row, StatusUpdate(provider_message_id, status, error=str(error) if error else None), now)
        inbound.status, inbound.outcome, inbound.processed_at = "done", "applied" if changed else "stale", now


@dataclass(frozen=True, slots=True)
class OutboxSnapshot:
    counts: dict[tuple[str, str], int]  # (channel, status) -> messages
    oldest_undelivered_seconds: float
    inbound_pending: int


def snapshot(session: Session, *, now: datetime | None = None) -> OutboxSnapshot:
    """Counts by channel and status, and the age of the oldest message not yet handed to a provider."""
    now = now or utcnow()
    counts = {(str(channel), str(status)): int(n) for channel, status, n in session.execute(
        select(NotifyOutboxRow.channel, NotifyOutboxRow.status, func.count())
        .group_by(NotifyOutboxRow.channel, NotifyOutboxRow.status))}
    oldest = session.scalar(select(func.min(NotifyOutboxRow.created_at)).where(
        NotifyOutboxRow.status.in_([Status.QUEUED.value, Status.SENDING.value])))
    if oldest is not None and oldest.tzinfo is None:  # SQLite returns aggregates without the column type
        oldest = oldest.replace(tzinfo=now.tzinfo)
    pending = session.scalar(select(func.count()).select_from(NotifyInboundRow).where(
        NotifyInboundRow.status.in_(["pending", "processing"]), NotifyInboundRow.channel != STATUS_CHANNEL))
    age = max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
    return OutboxSnapshot(counts=counts, oldest_undelivered_seconds=age, inbound_pending=int(pending or 0))


def snapshot_reader(factory: sessionmaker[Session]) -> Callable[[], OutboxSnapshot]:
    """A snapshot callable for ``pdn_ops.notify.metrics.NotifyCollector``: a short session per scrape."""

    def read() -> OutboxSnapshot:
        with factory() as session:
            return snapshot(session)

    return read
