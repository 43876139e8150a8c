"""The survey's work on the database: invite when a complaint reaches Selesai, answer or skip once, report.

Invitations are written by a complaint listener in the transaction of the closing change, with the OPD's message
through the outbox in the same transaction. Answering claims the invitation with a conditional UPDATE, so a
double tap or two tabs give one response, never two.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from pdn_ops.accounts import Principal, Role, UserRow
from pdn_ops.complaints import ComplaintEvent, ComplaintRow, State, complaint_number, opd_recipients
from pdn_ops.core.errors import Conflict, NotFound
from pdn_ops.notify import enqueue
from pdn_ops.public import FeedbackStats, feedback_stats
from pdn_ops.survey.model import ELEMENTS, Ikm, Period, compute, validate_scores
from pdn_ops.survey.tables import SurveyInvitationRow, SurveyResponseRow

MAX_SUGGESTION = 2000
ANSWERED, SKIPPED = "answered", "skipped"
RESPONDENT_ROLES = (str(Role.OPD_ADMIN), str(Role.OPD_HEAD))


def survey_link(public_url: str, complaint_id: int) -> str:
    return f"{public_url.rstrip('/')}/survey/{complaint_id}"


def make_listener(public_url: str) -> Callable[[Session, ComplaintEvent], None]:
    """Invites the OPD's admins and head when a complaint reaches Selesai (confirmed or closed by itself)."""

    def invite(session: Session, event: ComplaintEvent) -> None:
        if event.to_state != str(State.CLOSED):
            return
        invite_for(session, complaint_id=event.complaint_id, opd_id=event.opd_id, now=event.at,
                   public_url=public_url)

    return invite


def invite_for(session: Session, *, complaint_id: int, opd_id: int, now: datetime, public_url: str) -> int:
    """Invitations for every active admin and head of the OPD not yet asked about this complaint; returns them.

    A complaint reopened and closed again asks nobody twice, and the OPD's message is keyed on the complaint."""
    people = session.scalars(select(UserRow.id).where(
        UserRow.opd_id == opd_id, UserRow.role.in_(RESPONDENT_ROLES), UserRow.active.is_(True))).all()
    asked = set(session.scalars(select(SurveyInvitationRow.user_id).where(
        SurveyInvitationRow.complaint_id == complaint_id)))
    new = [user_id for user_id in people if user_id not in asked]
    session.add_all(SurveyInvitationRow(complaint_id=complaint_id, user_id=user_id, created_at=now) for user_id in new)
    if new:
        recipients = opd_recipients(session, opd_id)
        if recipients:
            enqueue(session, event="survey_invitation", recipients=recipients, now=now,
                    params={"number": complaint_number(complaint_id), "link": survey_link(public_url, complaint_id)},
                    idempotency_key=f"survey:{complaint_id}")
    session.flush()
    return len(new)


@dataclass(frozen=True, slots=True)
class Pending:
    complaint_id: int
    title: str  # the complaint's category
    closed_at: datetime | None


def pending_for(session: Session, principal: Principal) -> list[Pending]:
    """The invitations ``principal`` has neither answered nor skipped, newest first."""
    rows = session.execute(
        select(SurveyInvitationRow.complaint_id, ComplaintRow.category, ComplaintRow.closed_at)
        .join(ComplaintRow, ComplaintRow.id == SurveyInvitationRow.complaint_id)
        .where(SurveyInvitationRow.user_id == principal.user_id, SurveyInvitationRow.outcome.is_(None))
        .order_by(SurveyInvitationRow.id.desc()).limit(50))
    return [Pending(complaint_id, category, closed_at) for complaint_id, category, closed_at in rows]


def invitation(session: Session, principal: Principal, complaint_id: int) -> SurveyInvitationRow:
    row = session.scalar(select(SurveyInvitationRow).where(SurveyInvitationRow.complaint_id == complaint_id,
                                                           SurveyInvitationRow.user_id == principal.user_id))
    if row is None:
        raise NotFound(f"no survey invitation for complaint {complaint_id}")
    return row


def _claim(session: Session, principal: Principal, complaint_id: int, outcome: str) -> None:
    claimed = session.execute(
        update(SurveyInvitationRow)
        .where(SurveyInvitationRow.complaint_id == complaint_id, SurveyInvitationRow.user_id == principal.user_id,
               SurveyInvitationRow.outcome.is_(None))
        .values(outcome=outcome).execution_options(synchronize_session=False))
    if getattr(claimed, "rowcount", 0) != 1:
        invitation(session, principal, complaint_id)  # NotFound when there never was one
        raise Conflict("this survey was already answered or skipped")


def answer(session: Session, principal: Principal, complaint_id: int, scores: Sequence[int], suggestion: str,
           *, today: date) -> None:
    """One response for the invitation, kept without the person or the complaint (see ``tables``)."""
    valid = validate_scores(scores)
    _claim(session, principal, complaint_id, ANSWERED)
    session.add(SurveyResponseRow(answered_on=today, suggestion=suggestion.strip()[:MAX_SUGGESTION],
                                  **{f"u{i + 1}": score for i, score in enumerate(valid)}))
    session.flush()


def skip(session: Session, principal: Principal, complaint_id: int) -> None:
    _claim(session, principal, complaint_id, SKIPPED)


# --- the report --------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Suggestion:
    id: int
    answered_on: date
    text: str
    follow_up: str
    follow_up_by: str | None
    follow_up_at: datetime | None


@dataclass(frozen=True, slots=True)
class PeriodReport:
    period: Period
    ikm: Ikm | None
    invited: int
    skipped: int
    trend: list[tuple[Period, Ikm | None]]
    suggestions: list[Suggestion]
    # Complaints about the service received in the period (the public form, e-mail, WhatsApp) and their answers.
    feedback: FeedbackStats


def _responses(session: Session, start: date, end: date) -> list[tuple[int, ...]]:
    rows = session.scalars(select(SurveyResponseRow).where(SurveyResponseRow.answered_on >= start,
                                                           SurveyResponseRow.answered_on < end))
    return [row.scores() for row in rows]


def period_report(session: Session, period: Period, zone: ZoneInfo, *, trend_length: int = 6,
                  with_suggestions: bool = True) -> PeriodReport:
    """The IKM of ``period`` and of the ones before it; suggestions only for the supervisor's copy."""
    trend = [(p, compute(_responses(session, p.start, p.end))) for p in period.previous(trend_length)]
    invited = session.scalars(select(SurveyInvitationRow.outcome).where(
        SurveyInvitationRow.created_at >= _instant(period.start, zone),
        SurveyInvitationRow.created_at < _instant(period.end, zone))).all()
    suggestions: list[Suggestion] = []
    if with_suggestions:
        suggestions = [Suggestion(r.id, r.answered_on, r.suggestion, r.follow_up, r.follow_up_by, r.follow_up_at)
                       for r in session.scalars(select(SurveyResponseRow).where(
                           SurveyResponseRow.answered_on >= period.start, SurveyResponseRow.answered_on < period.end,
                           SurveyResponseRow.suggestion != "").order_by(SurveyResponseRow.answered_on,
                                                                        SurveyResponseRow.id))]
    return PeriodReport(period=period, ikm=trend[-1][1], invited=len(invited),
                        skipped=sum(1 for outcome in invited if outcome == SKIPPED), trend=trend,
                        suggestions=suggestions,
                        feedback=feedback_stats(session, _instant(period.start, zone), _instant(period.end, zone)))


def _instant(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=zone)


def record_follow_up(session: Session, principal: Principal, response_id: int, text: str, *, now: datetime) -> None:
    row = session.get(SurveyResponseRow, response_id)
    if row is None or not row.suggestion:
        raise NotFound(f"no suggestion {response_id}")
    row.follow_up = text.strip()[:MAX_SUGGESTION]
    row.follow_up_by = principal.username
    row.follow_up_at = now
    session.flush()


__all__ = ["ELEMENTS", "Pending", "PeriodReport", "Suggestion", "answer", "invite_for", "make_listener",
           "pending_for", "period_report", "record_follow_up", "skip"]
