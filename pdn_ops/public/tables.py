"""Tables of the public pages: the standard's versions, complaints about the service, status pages."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from pdn_ops.core.db.tables import Base, utcnow


class StandardVersionRow(Base):
    """Every version of the published standard, never changed once written: the newest is in force."""

    __tablename__ = "standard_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    parts: Mapped[dict[str, str]] = mapped_column(JSON)
    email: Mapped[str] = mapped_column(String(254), default="")
    whatsapp: Mapped[str] = mapped_column(String(20), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(80))


class ServiceFeedbackRow(Base):
    """A complaint about the service itself (not about a VM): from the public form, e-mail or WhatsApp."""

    __tablename__ = "service_feedback"
    __table_args__ = (Index("ix_service_feedback_client_received", "client", "received_at"),
                      Index("ix_service_feedback_received_at", "received_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(10))
    name: Mapped[str] = mapped_column(String(120), default="")
    contact: Mapped[str] = mapped_column(String(254), default="")
    message: Mapped[str] = mapped_column(Text)
    # A keyed hash of the sender's address (IP, phone or e-mail): enough to throttle, not to identify.
    client: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    answer: Mapped[str] = mapped_column(Text, default="")
    answered_at: Mapped[datetime | None] = mapped_column(default=None)
    answered_by: Mapped[str | None] = mapped_column(String(80), default=None)


class StatusPageRow(Base):
    """An OPD's status page: off until the OPD turns it on; public, or reachable only through its share link."""

    __tablename__ = "status_pages"

    opd_id: Mapped[int] = mapped_column(ForeignKey("opds.id"), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    share_token: Mapped[str] = mapped_column(String(64), unique=True)
    show_addresses: Mapped[bool] = mapped_column(Boolean, default=False)
    # The note the OPD was told when its complaint was fixed (never the engineers' work notes).
    show_notes: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    site_ids: Mapped[list[int]] = mapped_column(JSON, default=list)  # the sites the OPD chose to show
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(80), default="")
    version: Mapped[int] = mapped_column(Integer, default=1)
