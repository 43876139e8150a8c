"""Tables of complaint intake over WhatsApp and e-mail: one open draft per sender, and the photos it collected.

A draft becomes a real complaint (``complaints``) once it has an asset, a description and a photo; the draft row
then keeps the complaint's id and is no longer open. Photos are kept as bytes in the draft's own transaction so a
rolled-back message leaves nothing behind on disk.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from pdn_ops.db.tables import Base, utcnow


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
