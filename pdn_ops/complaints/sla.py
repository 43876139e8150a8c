"""The complaint SLA clock, pure: 7 days by default, calendar or working days, in the regency's time zone.

The clock runs from a complete submission, pauses while the complaint is back with the OPD, and stops at
resolution. Working days are whole local days, Monday to Friday, minus the holiday list: a complaint filed on a
Friday evening has used only the rest of Friday when Monday starts.

A clock is an immutable value; every event returns a new one, so the stored columns are just its fields::

    clock = SlaClock.new(policy).start(t0)      # running
    clock = clock.pause(t1).resume(t2)          # the time in between does not count
    clock.status_at(now)                        # ok | at_risk_50 | at_risk_80 | breached | paused | ...
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

DAY = 86400.0


class SlaStatus(StrEnum):
    NOT_STARTED = "not_started"
    OK = "ok"
    AT_RISK_50 = "at_risk_50"
    AT_RISK_80 = "at_risk_80"
    BREACHED = "breached"


@dataclass(frozen=True, slots=True)
class SlaPolicy:
    days: int = 7
    working_days: bool = False
    holidays: frozenset[date] = field(default_factory=frozenset)
    timezone: str = "Asia/Jakarta"
    thresholds: tuple[float, float] = (0.5, 0.8)

    def __post_init__(self) -> None:
        if self.days < 1:
            raise ValueError("an SLA needs at least one day")

    @property
    def budget(self) -> float:
        """Counted seconds the SLA allows."""
        return self.days * DAY

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def mode(self) -> str:
        return "working" if self.working_days else "calendar"

    def counts(self, day: date) -> bool:
        """Whether a local day counts towards the SLA."""
        if not self.working_days:
            return True
        return day.weekday() < 5 and day not in self.holidays

    def counted_seconds(self, start: datetime, end: datetime) -> float:
        """Seconds between two instants that count towards the SLA."""
        if end <= start:
            return 0.0
        if not self.working_days:
            return (end - start).total_seconds()
        tz = self.tz
        local_start, local_end = start.astimezone(tz), end.astimezone(tz)
        total = 0.0
        day = local_start.date()
        while day <= local_end.date():
            day_start = datetime.combine(day, time(), tz)
            day_end = datetime.combine(day + timedelta(days=1), time(), tz)
            if self.counts(day):
                lo, hi = max(day_start, local_start), min(day_end, local_end)
                if hi > lo:
                    total += (hi - lo).total_seconds()
            day += timedelta(days=1)
        return total

    def instant_after(self, start: datetime, seconds: float) -> datetime:
        """The instant at which ``seconds`` counted seconds have passed since ``start``."""
        if seconds <= 0:
            # Already used up (a breached clock resumed on a weekend): due at once, not on the next working day.
            return start
        if not self.working_days:
            return start + timedelta(seconds=seconds)
        tz = self.tz
        cursor = start.astimezone(tz)
        left = seconds
        # Bounded: a year of holidays cannot make a 7-day SLA loop forever.
        for _ in range(3660):
            day = cursor.date()
            day_end = datetime.combine(day + timedelta(days=1), time(), tz)
            if self.counts(day):
                available = (day_end - cursor).total_seconds()
                if left <= available:
                    return (cursor + timedelta(seconds=left)).astimezone(start.tzinfo)
                left -= available
            cursor = day_end
        raise ValueError("no working days in the next ten years; check the holiday list")


@dataclass(frozen=True, slots=True)
class SlaClock:
    """Counted seconds up to ``running_since`` (or the stop), plus the open interval when running."""

    policy: SlaPolicy
    elapsed: float = 0.0
    running_since: datetime | None = None
    started: bool = False
    stopped: bool = False

    @classmethod
    def new(cls, policy: SlaPolicy) -> SlaClock:
        return cls(policy=policy)

    @property
    def running(self) -> bool:
        return self.running_since is not None

    def start(self, now: datetime) -> SlaClock:
        if self.started:
            return self.resume(now)
        return replace(self, started=True, running_since=now, stopped=False)

    def pause(self, now: datetime) -> SlaClock:
        if self.running_since is None:
            return self
        return replace(self, elapsed=self.elapsed_at(now), running_since=None)

    def resume(self, now: datetime) -> SlaClock:
        if self.running_since is not None:
            return self
        return replace(self, running_since=now, stopped=False, started=True)

    def stop(self, now: datetime) -> SlaClock:
        return replace(self.pause(now), stopped=True)

    def elapsed_at(self, now: datetime) -> float:
        if self.running_since is None:
            return self.elapsed
        return self.elapsed + self.policy.counted_seconds(self.running_since, now)

    def remaining_at(self, now: datetime) -> float:
        return self.policy.budget - self.elapsed_at(now)

    def fraction_at(self, now: datetime) -> float:
        return self.elapsed_at(now) / self.policy.budget

    def instant_of_fraction(self, fraction: float) -> datetime | None:
        """When the running clock reaches ``fraction`` of the budget (None when paused or stopped)."""
        if self.running_since is None:
            return None
        left = max(0.0, fraction * self.policy.budget - self.elapsed)
        return self.policy.instant_after(self.running_since, left)

    def due_at(self) -> datetime | None:
        return self.instant_of_fraction(1.0)

    def status_at(self, now: datetime) -> SlaStatus:
        if not self.started:
            return SlaStatus.NOT_STARTED
        return status_for_fraction(self.fraction_at(now), self.policy.thresholds)


def status_for_fraction(fraction: float, thresholds: tuple[float, float] = (0.5, 0.8)) -> SlaStatus:
    if fraction >= 1.0:
        return SlaStatus.BREACHED
    if fraction >= thresholds[1]:
        return SlaStatus.AT_RISK_80
    if fraction >= thresholds[0]:
        return SlaStatus.AT_RISK_50
    return SlaStatus.OK


def parse_holidays(text: str) -> frozenset[date]:
    """``2026-12-25,2027-01-01`` -> dates; a bad entry raises ValueError naming it."""
    days: set[date] = set()
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            days.add(date.fromisoformat(part))
        except ValueError as exc:
            raise ValueError(f"holiday {part!r} is not a date YYYY-MM-DD") from exc
    return frozenset(days)
