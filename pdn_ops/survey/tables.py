"""The survey's tables. Invitations know who was asked about which complaint; responses know neither.

A response row has no user, complaint or OPD column and only the day it was given: the link between a person and
their scores is never written, so no page, export or query can show who answered what.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from pdn_ops.core.db.tables import Base, utcnow


class SurveyInvitationRow(Base):
    """One person asked once about one complaint (at most once: the unique pair); ``outcome`` says what became
    of it, without a time (a time would let a reader match it to a response of the same minute)."""

    __tablename__ = "survey_invitations"
    __table_args__ = (UniqueConstraint("complaint_id", "user_id", name="uq_survey_invitations_complaint_user"),
                      Index("ix_survey_invitations_user_id", "user_id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    complaint_id: Mapped[int] = mapped_column(ForeignKey("complaints.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    outcome: Mapped[str | None] = mapped_column(String(10), default=None)  # None | "answered" | "skipped"


class SurveyResponseRow(Base):
    """Nine scores (1-4, the elements in the regulation's order) and a suggestion, with its follow-up."""

    __tablename__ = "survey_responses"
    __table_args__ = (Index("ix_survey_responses_answered_on", "answered_on"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    answered_on: Mapped[date] = mapped_column(Date)  # the office's calendar day: enough to place it in a period
    u1: Mapped[int] = mapped_column(Integer)
    u2: Mapped[int] = mapped_column(Integer)
    u3: Mapped[int] = mapped_column(Integer)
    u4: Mapped[int] = mapped_column(Integer)
    u5: Mapped[int] = mapped_column(Integer)
    u6: Mapped[int] = mapped_column(Integer)
    u7: Mapped[int] = mapped_column(Integer)
    u8: Mapped[int] = mapped_column(Integer)
    u9: Mapped[int] = mapped_column(Integer)
    suggestion: Mapped[str] = mapped_column(Text, default="")
    follow_up: Mapped[str] = mapped_column(Text, default="")
    follow_up_by: Mapped[str | None] = mapped_column(String(80), default=None)
    follow_up_at: Mapped[datetime | None] = mapped_column(default=None)

    def scores(self) -> tuple[int, ...]:
        return (self.u1, self.u2, self.u3, self.u4, self.u5, self.u6, self.u7, self.u8, self.u9)
