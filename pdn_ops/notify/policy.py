"""Delivery policy for notifications, pure: retry backoff and quiet hours.

Quiet hours are local wall-clock times ("22:00" to "06:00" wraps midnight) in the service's zone; a non-urgent
message created inside them waits until they end. Urgent messages (SLA at risk, remediation failed, replies to a
person who just wrote to us) ignore them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 8
    base_seconds: float = 30.0
    max_seconds: float = 3600.0

    def delay(self, attempts: int) -> timedelta:
        """Exponential backoff after the given number of failed attempts (1 -> base, 2 -> 2*base, ...), capped."""
        exponent = max(attempts - 1, 0)
        seconds = self.base_seconds * (2 ** min(exponent, 30))
        return timedelta(seconds=min(seconds, self.max_seconds))

    def exhausted(self, attempts: int) -> bool:
        return attempts >= self.max_attempts


def parse_hhmm(value: str) -> time:
    hours, sep, minutes = value.partition(":")
    if not sep or not (hours.isdigit() and minutes.isdigit()) or len(minutes) != 2:
        raise ValueError(f"expected HH:MM, got {value!r}")
    return time(int(hours), int(minutes))


def quiet_until(now: datetime, start: str | None, end: str | None, zone: ZoneInfo) -> datetime | None:
    """When quiet hours that contain ``now`` end (an aware datetime), or None when ``now`` is outside them."""
    if not start or not end:
        return None
    begin, finish = parse_hhmm(start), parse_hhmm(end)
    if begin == finish:
        return None
    local = now.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    if begin < finish:
        inside = begin <= clock < finish
        end_day = local.date()
    else:  # wraps midnight, e.g. 22:00-06:00
        inside = clock >= begin or clock < finish
        end_day = local.date() + timedelta(days=1) if clock >= begin else local.date()
    if not inside:
        return None
    return datetime.combine(end_day, finish, tzinfo=zone).astimezone(now.tzinfo)
