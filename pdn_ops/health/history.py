"""History for pictures: uptime per hour (24 h) and per day (30 days) from the hourly rollups, a target's
response times over a day from its raw checks, downsampled for a chart, and a VM's CPU, memory and disk use per
hour over a week from its resource rollups.

One query per question, whatever the number of targets (the homes show every asset of an OPD).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from pdn_ops.health import model
from pdn_ops.health.tables import (
    HealthCheckRow,
    HealthEventRow,
    HealthRollupRow,
    HealthTargetRow,
    VmResourceRollupRow,
)


@dataclass(frozen=True, slots=True)
class Uptime:
    """Uptime ratios, oldest first; None where nothing was observed."""

    hours: tuple[float | None, ...]  # the last 24 hours
    days: tuple[float | None, ...]  # the last 30 (or asked) days (calendar days in the regency's zone)
    day_ratio: float | None  # over the last 24 hours
    month_ratio: float | None  # over those days


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def uptime(session: Session, target_ids: list[int], now: datetime, tz: ZoneInfo, *, span_days: int = 30
           ) -> dict[int, Uptime]:
    """Per target: the last 24 hours and the last ``span_days`` days (30 for the homes, 90 for status pages)."""
    if not target_ids:
        return {}
    this_hour = _hour(now)
    first_hour = this_hour - timedelta(hours=23)
    today = now.astimezone(tz).date()
    first_day = today - timedelta(days=span_days - 1)
    since = min(first_hour, datetime.combine(first_day, datetime.min.time(), tz))
    per_target: dict[int, list[tuple[datetime, float, int]]] = defaultdict(list)
    for target_id, hour, up, checks in session.execute(
            select(HealthRollupRow.target_id, HealthRollupRow.hour, HealthRollupRow.up_seconds, HealthRollupRow.checks)
            .where(HealthRollupRow.target_id.in_(target_ids), HealthRollupRow.hour >= since)):
        per_target[target_id].append((hour, float(up), int(checks)))
    found: dict[int, Uptime] = {}
    for target_id in target_ids:
        hourly: dict[datetime, float] = {}
        daily_up: dict[object, float] = defaultdict(float)
        daily_seen: dict[object, float] = defaultdict(float)
        for hour, up, _checks in per_target.get(target_id, []):
            hourly[_hour(hour)] = up
            day = hour.astimezone(tz).date()
            daily_up[day] += up
            daily_seen[day] += 3600.0
        hours = tuple(model.uptime_ratio(hourly[h], 3600.0) if h in hourly else None
                      for h in (first_hour + timedelta(hours=i) for i in range(24)))
        days = tuple(model.uptime_ratio(daily_up[d], daily_seen[d]) if d in daily_seen else None
                     for d in (first_day + timedelta(days=i) for i in range(span_days)))
        day_hours = [hourly[h] for h in hourly if h >= first_hour]
        found[target_id] = Uptime(
            hours, days, model.uptime_ratio(sum(day_hours), 3600.0 * len(day_hours)),
            model.uptime_ratio(sum(daily_up.values()), sum(daily_seen.values())))
    return found


def target_ids(session: Session, keys: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Health target ids for (kind, ref) pairs, in one query."""
    if not keys:
        return {}
    refs = {ref for _kind, ref in keys}
    return {(kind, ref): target_id for target_id, kind, ref in session.execute(
        select(HealthTargetRow.id, HealthTargetRow.kind, HealthTargetRow.ref).where(HealthTargetRow.ref.in_(refs)))
        if (kind, ref) in set(keys)}


def response_times(session: Session, target_id: int, now: datetime, *, hours: int = 24,
                   buckets: int = 96) -> list[tuple[datetime, float | None, bool]]:
    """(bucket start, slowest response in seconds or None, any failure) over the last ``hours``, oldest first."""
    start = now - timedelta(hours=hours)
    width = timedelta(hours=hours) / buckets
    slowest: list[float | None] = [None] * buckets
    failed = [False] * buckets
    for at, ok, duration in session.execute(
            select(HealthCheckRow.at, HealthCheckRow.ok, HealthCheckRow.duration_s)
            .where(HealthCheckRow.target_id == target_id, HealthCheckRow.at >= start)):
        i = min(buckets - 1, max(0, int((at - start) / width)))
        if not ok:
            failed[i] = True
        if duration is not None and ok:
            slowest[i] = max(slowest[i] or 0.0, float(duration))
    return [(start + width * i, slowest[i], failed[i]) for i in range(buckets)]


@dataclass(frozen=True, slots=True)
class Resources:
    """A VM's hourly mean CPU, memory and disk use (fractions), oldest first; None for hours without a sample."""

    cpu: tuple[float | None, ...]
    mem: tuple[float | None, ...]
    disk: tuple[float | None, ...]

    @staticmethod
    def last(values: tuple[float | None, ...]) -> float | None:
        return next((v for v in reversed(values) if v is not None), None)

    @property
    def seen(self) -> bool:
        return any(v is not None for v in (*self.cpu, *self.mem, *self.disk))


def resources(session: Session, target_id: int, now: datetime, *, hours: int = 7 * 24) -> Resources:
    """The last ``hours`` hours of one VM's resource rollups (kept as long as raw checks, so older hours may be
    gone: they show as gaps)."""
    first = _hour(now) - timedelta(hours=hours - 1)
    by_hour = {_hour(hour): (cpu, mem, disk) for hour, cpu, mem, disk in session.execute(
        select(VmResourceRollupRow.hour, VmResourceRollupRow.cpu, VmResourceRollupRow.mem, VmResourceRollupRow.disk)
        .where(VmResourceRollupRow.target_id == target_id, VmResourceRollupRow.hour >= first))}
    rows = [by_hour.get(first + timedelta(hours=i), (None, None, None)) for i in range(hours)]
    return Resources(tuple(r[0] for r in rows), tuple(r[1] for r in rows), tuple(r[2] for r in rows))


@dataclass(frozen=True, slots=True)
class Outage:
    """A span in which a target was observed down (or degraded): from the change into it to the change back to
    up; ``ended`` None while it lasts. ``state`` is the worst seen (down over degraded)."""

    target_id: int
    state: str  # down | degraded
    started: datetime
    ended: datetime | None


OUTAGE_STATES = ("down", "degraded")


def fold_outages(target_id: int, changes: list[tuple[datetime, str | None]], current: str | None = None,
                 since: datetime | None = None) -> list[Outage]:
    """The outages in one target's state changes (oldest first), pure. An outage opens at a change into down or
    degraded and closes at the next change to up; unknown (nobody could look) neither opens nor closes one. A
    target still down or degraded with no opening change in the window (it went down before) opens at ``since``."""
    found: list[Outage] = []
    open_at: datetime | None = None
    worst = ""
    for at, state in changes:
        if state in OUTAGE_STATES:
            if open_at is None:
                open_at, worst = at, state
            elif state == "down":
                worst = "down"
        elif state == "up" and open_at is not None:
            found.append(Outage(target_id, worst, open_at, at))
            open_at = None
    if open_at is not None:
        found.append(Outage(target_id, worst, open_at, None))
    elif not changes and current in OUTAGE_STATES and since is not None:
        found.append(Outage(target_id, current, since, None))
    return found


def outages(session: Session, target_ids: list[int], since: datetime) -> dict[int, list[Outage]]:
    """Per target: its outages that were open at some time after ``since``, from its state changes (the health
    model's events, one query) and its current state."""
    if not target_ids:
        return {}
    changes: dict[int, list[tuple[datetime, str | None]]] = defaultdict(list)
    for target_id, at, state in session.execute(
            select(HealthEventRow.target_id, HealthEventRow.at, HealthEventRow.new_state)
            .where(HealthEventRow.target_id.in_(target_ids), HealthEventRow.event == "state",
                   HealthEventRow.at >= since)
            .order_by(HealthEventRow.target_id, HealthEventRow.at, HealthEventRow.id)):
        changes[target_id].append((at, state))
    current = {i: (state, at) for i, state, at in session.execute(
        select(HealthTargetRow.id, HealthTargetRow.state, HealthTargetRow.since)
        .where(HealthTargetRow.id.in_(target_ids)))}
    found: dict[int, list[Outage]] = {}
    for target_id in target_ids:
        state, went = current.get(target_id, (None, None))
        start = max(went, since) if went is not None else since
        found[target_id] = fold_outages(target_id, changes.get(target_id, []), state, start)
    return found
