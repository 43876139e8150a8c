"""The on-duty roster stored: the supervisor edits the rota and the overrides (every change audited), the
receiver asks whom to tell (``recipients``). The rule itself is pure (``duty``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from pdn_ops.accounts import Principal, Role, UserRow
from pdn_ops.alerts import duty
from pdn_ops.alerts.tables import DutyOverrideRow, DutyShiftRow
from pdn_ops.complaints import engineer_recipients
from pdn_ops.core.db.tables import MAX_ID, AuditRow
from pdn_ops.core.errors import DutyInvalid, NotFound, PermissionDenied
from pdn_ops.notify import Recipient

MAX_NOTE = 200


@dataclass(frozen=True, slots=True)
class Engineer:
    id: int
    name: str


@dataclass(frozen=True, slots=True)
class Roster:
    engineers: list[Engineer]
    shifts: list[DutyShiftRow]  # by weekday, then start
    overrides: list[DutyOverrideRow]  # current and coming, by start
    on_duty: frozenset[int]  # engineer ids on duty now
    fallback: bool  # nobody reachable is on duty now: alerts go to every active engineer

    def name_of(self, user_id: int) -> str:
        return next((e.name for e in self.engineers if e.id == user_id), f"#{user_id}")


def _engineers(session: Session) -> list[Engineer]:
    rows = session.execute(select(UserRow.id, UserRow.username, UserRow.display_name).where(
        UserRow.role == str(Role.ENGINEER), UserRow.active.is_(True)).order_by(UserRow.username))
    return [Engineer(r.id, r.display_name or r.username) for r in rows]


def _model(session: Session, now: datetime) -> tuple[list[duty.Shift], list[duty.Override]]:
    shifts = [duty.Shift(r.user_id, r.weekday, r.start_minute, r.end_minute)
              for r in session.scalars(select(DutyShiftRow))]
    overrides = [duty.Override(r.user_id, duty.OverrideKind(r.kind), r.starts_at, r.ends_at)
                 for r in session.scalars(select(DutyOverrideRow).where(DutyOverrideRow.ends_at > now,
                                                                        DutyOverrideRow.starts_at <= now))]
    return shifts, overrides


def on_duty_now(session: Session, now: datetime, tz: ZoneInfo) -> frozenset[int]:
    shifts, overrides = _model(session, now)
    return duty.on_duty(shifts, overrides, now, tz)


def recipients(session: Session, now: datetime, tz: ZoneInfo) -> tuple[list[Recipient], bool]:
    """Where an alert goes now: the reachable engineers on duty, or every reachable engineer when none is on duty
    (the flag says so)."""
    everyone = engineer_recipients(session)
    chosen, fallback = duty.route(on_duty_now(session, now, tz), {r.user_id for r in everyone if r.user_id})
    return [r for r in everyone if r.user_id in chosen], fallback


def roster(session: Session, now: datetime, tz: ZoneInfo) -> Roster:
    engineers = _engineers(session)
    shifts = list(session.scalars(select(DutyShiftRow).order_by(DutyShiftRow.weekday, DutyShiftRow.start_minute,
                                                                DutyShiftRow.id)))
    overrides = list(session.scalars(select(DutyOverrideRow).where(DutyOverrideRow.ends_at > now)
                                     .order_by(DutyOverrideRow.starts_at, DutyOverrideRow.id)))
    on = on_duty_now(session, now, tz)
    reachable = {r.user_id for r in engineer_recipients(session) if r.user_id}
    return Roster(engineers, shifts, overrides, on, not (on & reachable))


def _need_supervisor(actor: Principal) -> None:
    if actor.role is not Role.SUPERVISOR:
        raise PermissionDenied("only the supervisor edits the on-duty roster")


def _engineer(session: Session, user_id: int) -> UserRow:
    user = session.get(UserRow, user_id) if 0 < user_id <= MAX_ID else None
    if user is None or user.role != str(Role.ENGINEER) or not user.active:
        raise DutyInvalid({"user_id": "duty.error.engineer"})
    return user


def _audit(session: Session, actor: Principal, action: str, subject: str, detail: str, now: datetime) -> None:
    session.add(AuditRow(at=now, actor=actor.username, action=action, subject=subject, detail=detail))


def add_shift(session: Session, actor: Principal, *, user_id: int, weekday: int, start: str, end: str,
              now: datetime) -> DutyShiftRow:
    _need_supervisor(actor)
    errors: dict[str, str] = {}
    try:
        user = _engineer(session, user_id)
    except DutyInvalid as exc:
        errors.update(exc.errors)
        user = None
    minutes: list[int] = []
    for name, text in (("start", start), ("end", end)):
        try:
            minutes.append(duty.parse_clock(text))
        except ValueError:
            errors[name] = "duty.error.time"
    if weekday not in duty.WEEKDAYS:
        errors["weekday"] = "duty.error.weekday"
    if not errors:
        try:
            duty.Shift(user_id, weekday, minutes[0] % duty.MINUTES_PER_DAY, minutes[1] or duty.MINUTES_PER_DAY)
        except ValueError:
            errors["end"] = "duty.error.time"
    if errors or user is None:
        raise DutyInvalid(errors)
    row = DutyShiftRow(user_id=user_id, weekday=weekday, start_minute=minutes[0] % duty.MINUTES_PER_DAY,
                       end_minute=minutes[1] or duty.MINUTES_PER_DAY, created_at=now, created_by=actor.username)
    session.add(row)
    session.flush()
    _audit(session, actor, "duty.shift_added", f"user:{user_id}",
           f"#{row.id} weekday {weekday} {duty.clock(row.start_minute)}-{duty.clock(row.end_minute)}", now)
    return row


def remove_shift(session: Session, actor: Principal, shift_id: int, now: datetime) -> None:
    _need_supervisor(actor)
    row = session.get(DutyShiftRow, shift_id) if 0 < shift_id <= MAX_ID else None
    if row is None:
        raise NotFound("no such shift")
    _audit(session, actor, "duty.shift_removed", f"user:{row.user_id}",
           f"#{row.id} weekday {row.weekday} {duty.clock(row.start_minute)}-{duty.clock(row.end_minute)}", now)
    session.execute(delete(DutyShiftRow).where(DutyShiftRow.id == row.id))


def _local(text: str, tz: ZoneInfo) -> datetime:
    # <input type="datetime-local">: "YYYY-MM-DDTHH:MM" in the office's time zone.
    parsed = datetime.fromisoformat(text.strip())
    if parsed.tzinfo is not None or len(text.strip()) > 19:
        raise ValueError("a local date and time")
    return parsed.replace(tzinfo=tz)


def add_override(session: Session, actor: Principal, *, user_id: int, kind: str, starts: str, ends: str,
                 note: str, now: datetime, tz: ZoneInfo) -> DutyOverrideRow:
    _need_supervisor(actor)
    errors: dict[str, str] = {}
    try:
        _engineer(session, user_id)
    except DutyInvalid as exc:
        errors.update(exc.errors)
    if kind not in (duty.OverrideKind.ON, duty.OverrideKind.OFF):
        errors["kind"] = "duty.error.kind"
    times: list[datetime] = []
    for name, text in (("starts", starts), ("ends", ends)):
        try:
            times.append(_local(text, tz))
        except ValueError:
            errors[name] = "duty.error.datetime"
    if len(times) == 2:
        try:
            duty.Override(user_id, duty.OverrideKind.ON, times[0], times[1])
        except ValueError:
            errors["ends"] = "duty.error.window"
        if times[1] <= now:
            errors["ends"] = "duty.error.past"
    if len(note) > MAX_NOTE:
        errors["note"] = "duty.error.note"
    if errors:
        raise DutyInvalid(errors)
    row = DutyOverrideRow(user_id=user_id, kind=kind, starts_at=times[0], ends_at=times[1], note=note.strip(),
                          created_at=now, created_by=actor.username)
    session.add(row)
    session.flush()
    _audit(session, actor, "duty.override_added", f"user:{user_id}",
           f"#{row.id} {kind} {times[0].isoformat()} - {times[1].isoformat()}", now)
    return row


def remove_override(session: Session, actor: Principal, override_id: int, now: datetime) -> None:
    _need_supervisor(actor)
    row = session.get(DutyOverrideRow, override_id) if 0 < override_id <= MAX_ID else None
    if row is None:
        raise NotFound("no such override")
    _audit(session, actor, "duty.override_removed", f"user:{row.user_id}",
           f"#{row.id} {row.kind} {row.starts_at.isoformat()} - {row.ends_at.isoformat()}", now)
    session.execute(delete(DutyOverrideRow).where(DutyOverrideRow.id == row.id))


def week_days() -> range:
    return range(7)


def default_window(now: datetime, tz: ZoneInfo) -> tuple[str, str]:
    """The override form's defaults: from the next full hour, for a day (local, datetime-local format)."""
    start = now.astimezone(tz).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    end = start + timedelta(days=1)
    return start.strftime("%Y-%m-%dT%H:%M"), end.strftime("%Y-%m-%dT%H:%M")
