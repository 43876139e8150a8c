"""Tables of complaints: complaints and their versions, photos, work notes, the OPD inbox,
the supervisor's procedure settings, and drafts of complaints arriving over WhatsApp and e-mail."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from pdn_ops.core.db.tables import Base, utcnow


class ComplaintRow(Base):
    __tablename__ = "complaints"
    __table_args__ = (
        Index("ix_complaints_opd_id_id", "opd_id", "id"),
        # The engineers' queue: only running complaints have a due instant, so this index is the queue.
        Index("ix_complaints_sla_due_at_id", "sla_due_at", "id"),
        Index("ix_complaints_state_fixed_at", "state", "fixed_at"),
        # The intake form's key: a retry or a double click finds the complaint already filed (NULLs are distinct).
        Index("ux_complaints_created_by_idempotency_key", "created_by", "idempotency_key", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    opd_id: Mapped[int] = mapped_column(ForeignKey("opds.id"))
    vm_id: Mapped[int | None] = mapped_column(ForeignKey("vms.id"), default=None)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"), default=None)
    category: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(20))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    idempotency_key: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(default=None)
    fixed_at: Mapped[datetime | None] = mapped_column(default=None)
    closed_at: Mapped[datetime | None] = mapped_column(default=None)
    auto_closed: Mapped[bool] = mapped_column(default=False)
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("complaints.id"), default=None)
    # The SLA clock's fields (pdn_ops.complaints.sla.SlaClock) plus the instants derived from them while running.
    sla_mode: Mapped[str] = mapped_column(String(10), default="calendar")
    sla_budget: Mapped[float] = mapped_column(Float, default=7 * 86400.0)
    sla_elapsed: Mapped[float] = mapped_column(Float, default=0.0)
    sla_running_since: Mapped[datetime | None] = mapped_column(default=None)
    sla_due_at: Mapped[datetime | None] = mapped_column(default=None)
    sla_risk50_at: Mapped[datetime | None] = mapped_column(default=None)
    sla_risk80_at: Mapped[datetime | None] = mapped_column(default=None)
    sla_breached: Mapped[bool] = mapped_column(default=False)
    # Who at Diskominfo owns it (self-assigned or by the supervisor), and its priority from its impact.
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None, index=True)
    priority: Mapped[str] = mapped_column(String(8), default="medium", server_default="medium")


class ComplaintVersionRow(Base):
    """Every submitted version of a complaint's content; returned complaints are corrected, not overwritten."""

    __tablename__ = "complaint_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    complaint_id: Mapped[int] = mapped_column(ForeignKey("complaints.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    category: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text)
    vm_id: Mapped[int | None] = mapped_column(ForeignKey("vms.id"), default=None)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"), default=None)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AttachmentRow(Base):
    __tablename__ = "complaint_attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    complaint_id: Mapped[int] = mapped_column(ForeignKey("complaints.id"), index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    stored_name: Mapped[str] = mapped_column(String(80))
    thumb_name: Mapped[str] = mapped_column(String(80))
    media_type: Mapped[str] = mapped_column(String(40))
    original_name: Mapped[str] = mapped_column(String(200), default="")
    size: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    uploaded_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WorkNoteRow(Base):
    __tablename__ = "complaint_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    complaint_id: Mapped[int] = mapped_column(ForeignKey("complaints.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class NotificationRow(Base):
    """The OPD's in-app inbox (step 5: Diskominfo informs the OPD)."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_opd_id_id", "opd_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    opd_id: Mapped[int] = mapped_column(ForeignKey("opds.id"))
    complaint_id: Mapped[int] = mapped_column(ForeignKey("complaints.id"))
    kind: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(default=None)


class ProcedureSettingsRow(Base):
    __tablename__ = "procedure_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    sla_days: Mapped[int] = mapped_column(Integer)
    sla_working_days: Mapped[bool] = mapped_column()
    holidays: Mapped[list[str]] = mapped_column(JSON, default=list)  # ISO dates, sorted
    autoclose_days: Mapped[float] = mapped_column(Float)
    # Bumped by every save: a form or API client sends the revision it read, so two supervisors cannot
    # silently overwrite each other.
    revision: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(64))


class IntakeDraftRow(Base):
    __tablename__ = "complaint_intake_drafts"
    __table_args__ = (Index("ix_complaint_intake_drafts_sender", "channel", "address", "complaint_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    opd_id: Mapped[int] = mapped_column(ForeignKey("opds.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(320))
    asset: Mapped[str] = mapped_column(String(40), default="")  # "vm:ID" | "site:ID" once chosen
    texts: Mapped[list[str]] = mapped_column(JSON, default=list)
    messages: Mapped[int] = mapped_column(Integer, default=0)
    complaint_id: Mapped[int | None] = mapped_column(ForeignKey("complaints.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class IntakeDraftPhotoRow(Base):
    __tablename__ = "complaint_intake_photos"

    id: Mapped[int] = mapped_column(primary_key=True)
    draft_id: Mapped[int] = mapped_column(ForeignKey("complaint_intake_drafts.id"), index=True)
    media_type: Mapped[str] = mapped_column(String(40))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
