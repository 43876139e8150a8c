"""Notification tables: the outbox, inbound provider events, and per-recipient preferences.

The outbox row is the single record of a notification: written in the caller's transaction, claimed by a worker
with a conditional UPDATE, and moved forward by provider callbacks. Status ranks only go up
(queued < sending < sent < delivered < read); ``failed`` is final for the sender but a later "delivered" callback
from the provider still wins, because the provider knows better than our timeout did.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from pdn_ops.core.db.tables import Base, utcnow


class NotifyOutboxRow(Base):
    __tablename__ = "notify_outbox"
    __table_args__ = (
        Index("ix_notify_outbox_due", "status", "next_attempt_at"),
        Index("ix_notify_outbox_provider_id", "provider_message_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # One key per message (event key + channel + address): a second enqueue of the same message is a no-op.
    idempotency_key: Mapped[str] = mapped_column(String(300), unique=True)
    event: Mapped[str] = mapped_column(String(63))
    channel: Mapped[str] = mapped_column(String(16))  # whatsapp | email
    address: Mapped[str] = mapped_column(String(320))
    language: Mapped[str] = mapped_column(String(8), default="id")
    user_id: Mapped[int | None] = mapped_column(Integer, default=None, index=True)
    params: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    # queued | sending | sent | delivered | read | failed; "sending" means claimed, outcome not yet recorded.
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(100), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    provider: Mapped[str | None] = mapped_column(String(32), default=None)
    provider_message_id: Mapped[str | None] = mapped_column(String(200), default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    read_at: Mapped[datetime | None] = mapped_column(default=None)
    failed_at: Mapped[datetime | None] = mapped_column(default=None)


class NotifyInboundRow(Base):
    """An inbound message (WhatsApp or e-mail) as received; processed once by the inbound worker."""

    __tablename__ = "notify_inbound"
    __table_args__ = (UniqueConstraint("channel", "external_id", name="uq_notify_inbound_external"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    # The provider's own id (WhatsApp wamid, e-mail Message-ID): a replayed delivery hits the unique constraint.
    external_id: Mapped[str] = mapped_column(String(400))
    sender: Mapped[str] = mapped_column(String(320))
    payload: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | processing | done | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    claim_token: Mapped[str | None] = mapped_column(String(64), default=None)
    outcome: Mapped[str | None] = mapped_column(String(40), default=None)
    detail: Mapped[str | None] = mapped_column(Text, default=None)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    processed_at: Mapped[datetime | None] = mapped_column(default=None)


class NotifyPreferenceRow(Base):
    """Channels and quiet hours for one user (``user:ID``) or one bare address (``whatsapp:+62...``)."""

    __tablename__ = "notify_preferences"

    id: Mapped[int] = mapped_column(primary_key=True)
    subject: Mapped[str] = mapped_column(String(340), unique=True)
    channels: Mapped[list[str]] = mapped_column(JSON, default=list)
    quiet_start: Mapped[str | None] = mapped_column(String(5), default=None)  # "HH:MM" local time
    quiet_end: Mapped[str | None] = mapped_column(String(5), default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
