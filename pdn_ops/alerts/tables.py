"""The on-duty roster's tables: the weekly rota's shifts and the dated overrides. Changes are audited
(``audit_log``, by ``duty_service``); a removed row is deleted, its audit line stays."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from pdn_ops.core.db.tables import Base, utcnow


class DutyShiftRow(Base):
    """One engineer on duty every week on one weekday (0 = Monday), local minutes [start, end); an end not after
    the start runs into the next day."""

    __tablename__ = "duty_shifts"
    __table_args__ = (Index("ix_duty_shifts_weekday", "weekday"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    weekday: Mapped[int] = mapped_column(Integer)
    start_minute: Mapped[int] = mapped_column(Integer)
    end_minute: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(80))


class DutyOverrideRow(Base):
    """An engineer put on duty ("on") or taken off duty ("off") for a dated window, whatever the rota says."""

    __tablename__ = "duty_overrides"
    __table_args__ = (Index("ix_duty_overrides_ends_at", "ends_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(3))
    starts_at: Mapped[datetime] = mapped_column()
    ends_at: Mapped[datetime] = mapped_column()
    note: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(80))
