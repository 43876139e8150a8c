"""Who is on duty when: a weekly rota and dated overrides, pure.

The rota is a list of shifts, each one engineer on one weekday from a local time to another, in the office's time
zone (a shift whose end is not after its start runs past midnight into the next day). An override is a dated
window that puts an engineer on duty ("on") or takes them off duty ("off") whatever the rota says; an "off"
override wins over an "on" one for the same engineer and instant, so that a sick engineer cannot be paged by a
forgotten extra shift.

Alerts go to the engineers on duty; when nobody is, to every active engineer (``route``): an alert is never told to
nobody because the roster has a gap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

MINUTES_PER_DAY = 24 * 60
WEEKDAYS = tuple(range(7))  # Monday = 0, as datetime.weekday()


class OverrideKind(StrEnum):
    ON = "on"
    OFF = "off"


@dataclass(frozen=True, slots=True)
class Shift:
    user_id: int
    weekday: int  # 0 = Monday
    start_minute: int  # local minutes after midnight, 0..1439
    end_minute: int  # 1..1440; not after start: the shift runs into the next day

    def __post_init__(self) -> None:
        if self.weekday not in WEEKDAYS:
            raise ValueError("weekday must be 0 (Monday) to 6 (Sunday)")
        if not 0 <= self.start_minute < MINUTES_PER_DAY or not 0 < self.end_minute <= MINUTES_PER_DAY:
            raise ValueError("a shift starts at 00:00-23:59 and ends at 00:01-24:00")

    @property
    def overnight(self) -> bool:
        return self.end_minute <= self.start_minute

    def covers(self, local: datetime) -> bool:
        minute = local.hour * 60 + local.minute
        day = local.weekday()
        if not self.overnight:
            return day == self.weekday and self.start_minute <= minute < self.end_minute
        # From start to midnight on its weekday, then from midnight to end on the next day.
        return ((day == self.weekday and minute >= self.start_minute)
                or (day == (self.weekday + 1) % 7 and minute < self.end_minute))


@dataclass(frozen=True, slots=True)
class Override:
    user_id: int
    kind: OverrideKind
    starts_at: datetime  # aware
    ends_at: datetime  # aware, after starts_at

    def __post_init__(self) -> None:
        if self.starts_at.tzinfo is None or self.ends_at.tzinfo is None:
            raise ValueError("override times need a time zone")
        if self.ends_at <= self.starts_at:
            raise ValueError("an override ends after it starts")
        if self.ends_at - self.starts_at > timedelta(days=366):
            raise ValueError("an override lasts at most a year")

    def covers(self, at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at


def on_duty(shifts: Iterable[Shift], overrides: Iterable[Override], at: datetime, tz: ZoneInfo) -> frozenset[int]:
    """The engineers on duty at ``at`` (aware): the rota's shifts that cover the local time, plus "on" overrides,
    minus "off" overrides."""
    if at.tzinfo is None:
        raise ValueError("at needs a time zone")
    local = at.astimezone(tz)
    on = {s.user_id for s in shifts if s.covers(local)}
    active = [o for o in overrides if o.covers(at)]
    on |= {o.user_id for o in active if o.kind is OverrideKind.ON}
    on -= {o.user_id for o in active if o.kind is OverrideKind.OFF}
    return frozenset(on)


def route(on_duty_ids: frozenset[int], reachable_ids: Iterable[int]) -> tuple[frozenset[int], bool]:
    """Whom an alert goes to, among the engineers that can be reached (active, with an address): those on duty,
    or every reachable engineer when none of them is on duty. The flag says it fell back."""
    reachable = frozenset(reachable_ids)
    chosen = on_duty_ids & reachable
    if chosen:
        return chosen, False
    return reachable, True


def parse_clock(text: str) -> int:
    """"HH:MM" (or "24:00" for the end of a day) as minutes after midnight."""
    text = text.strip()
    if text == "24:00":
        return MINUTES_PER_DAY
    try:
        parsed = time.fromisoformat(text)
    except ValueError:
        raise ValueError("a time is HH:MM") from None
    if len(text) != 5 or parsed.second or parsed.microsecond:
        raise ValueError("a time is HH:MM")
    return parsed.hour * 60 + parsed.minute


def clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"
