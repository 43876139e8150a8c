"""The SLA clock under a controllable clock: pause, resume, stop, working days and holidays (Asia/Jakarta)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdn_ops.accounts.model import Role
from pdn_ops.complaints.model import Action, State, available_actions, next_state
from pdn_ops.complaints.sla import DAY, SlaClock, SlaPolicy, SlaStatus, parse_holidays
from pdn_ops.core.errors import TransitionError

WIB = ZoneInfo("Asia/Jakarta")


def wib(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=WIB)


def test_calendar_clock_runs_pauses_while_returned_and_stops_at_resolution() -> None:
    policy = SlaPolicy()
    t0 = wib(2026, 11, 2, 9)
    clock = SlaClock.new(policy).start(t0)
    assert clock.due_at() == t0 + timedelta(days=7)
    assert clock.status_at(t0 + timedelta(days=3)) is SlaStatus.OK
    assert clock.status_at(t0 + timedelta(days=3, hours=12)) is SlaStatus.AT_RISK_50
    clock = clock.pause(t0 + timedelta(days=1))  # returned to the OPD for a day and a half
    assert clock.due_at() is None
    assert clock.elapsed_at(t0 + timedelta(days=30)) == DAY, "a paused clock does not move"
    clock = clock.resume(t0 + timedelta(days=2, hours=12))
    assert clock.due_at() == t0 + timedelta(days=8, hours=12)
    assert clock.status_at(t0 + timedelta(days=7, hours=6)) is SlaStatus.AT_RISK_80  # 5.75 of 7 days
    assert clock.status_at(t0 + timedelta(days=8, hours=12)) is SlaStatus.BREACHED
    stopped = clock.stop(t0 + timedelta(days=5))
    assert stopped.stopped and stopped.elapsed == 3.5 * DAY
    assert stopped.status_at(t0 + timedelta(days=60)) is SlaStatus.AT_RISK_50, "stopped at resolution"


def test_working_days_skip_weekends_and_holidays_in_jakarta_time() -> None:
    christmas = date(2026, 12, 25)  # a Friday
    policy = SlaPolicy(working_days=True, holidays=frozenset({christmas}))
    # Thursday 24 Dec 2026, 18:00 WIB: 6 h left of Thursday count, Friday (holiday), weekend do not.
    start = wib(2026, 12, 24, 18)
    clock = SlaClock.new(SlaPolicy(working_days=True, holidays=frozenset({christmas, date(2027, 1, 1)}))).start(start)
    assert policy.counted_seconds(start, wib(2026, 12, 28, 0)) == 6 * 3600
    # 7 working days = 6 h of Thu 24 Dec + Mon 28 to Thu 31 Dec (New Year's Day is a holiday too)
    # + Mon 4 and Tue 5 Jan + 18 h of Wed 6 Jan.
    assert clock.due_at() == wib(2027, 1, 6, 18)
    # The same instant seen in UTC: the zone matters (11:00 UTC is 18:00 WIB).
    due = clock.due_at()
    assert due is not None and due.astimezone(UTC).hour == 11


def test_working_day_clock_paused_over_a_weekend_loses_nothing() -> None:
    policy = SlaPolicy(working_days=True, days=2)
    clock = SlaClock.new(policy).start(wib(2026, 11, 6, 12))  # Friday noon
    clock = clock.pause(wib(2026, 11, 6, 18)).resume(wib(2026, 11, 9, 6))  # returned over the weekend
    assert clock.elapsed == 6 * 3600
    # 42 h left: Monday from 06:00 counts 18 h, Tuesday the other 24 h, so the deadline is Wednesday 00:00.
    assert clock.due_at() == wib(2026, 11, 11, 0)


def test_holiday_list_parsing_names_the_bad_entry() -> None:
    assert parse_holidays("2026-12-25, 2027-01-01") == {date(2026, 12, 25), date(2027, 1, 1)}
    with pytest.raises(ValueError, match="31-12-2026"):
        parse_holidays("2026-12-25,31-12-2026")


def test_a_threshold_already_passed_when_the_clock_resumes_on_a_weekend_counts_at_once() -> None:
    policy = SlaPolicy(working_days=True, days=2)
    # 90 % of the budget used, then the OPD reopens on a Saturday: at risk (80 %) now, not from Monday.
    saturday = wib(2026, 11, 7, 10)
    clock = SlaClock(policy=policy, elapsed=0.9 * policy.budget, running_since=saturday, started=True)
    assert clock.instant_of_fraction(0.8) == saturday and clock.instant_of_fraction(0.5) == saturday
    assert clock.status_at(saturday + timedelta(hours=1)) is SlaStatus.AT_RISK_80
    # And one already over budget is due at once.
    over = SlaClock(policy=policy, elapsed=1.2 * policy.budget, running_since=saturday, started=True)
    assert over.due_at() == saturday


# derandomize: the same examples in every run, so CI cannot pass or fail by the seed.
@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    start_minutes=st.integers(min_value=0, max_value=60 * 24 * 60),
    segments=st.lists(st.tuples(st.integers(1, 5000), st.integers(0, 5000)), min_size=1, max_size=6),
    working=st.booleans(),
)
def test_elapsed_equals_the_sum_of_running_segments(start_minutes: int, segments: list[tuple[int, int]],
                                                    working: bool) -> None:
    policy = SlaPolicy(working_days=working, holidays=frozenset({date(2026, 12, 25), date(2027, 1, 1)}))
    now = wib(2026, 11, 1) + timedelta(minutes=start_minutes)
    clock = SlaClock.new(policy).start(now)
    expected = 0.0
    for run, pause in segments:
        end = now + timedelta(minutes=run)
        expected += policy.counted_seconds(now, end)
        clock = clock.pause(end)
        now = end + timedelta(minutes=pause)
        clock = clock.resume(now)
    assert clock.elapsed == pytest.approx(expected)
    due = clock.due_at()
    assert due is not None
    if clock.elapsed < policy.budget:
        # The deadline is exactly where the remaining budget runs out.
        assert clock.elapsed + policy.counted_seconds(now, due) == pytest.approx(policy.budget)
    else:
        assert due <= now, "an already breached clock is due at once"
    for fraction in (0.5, 0.8):
        at = clock.instant_of_fraction(fraction)
        assert at is not None
        if clock.elapsed >= fraction * policy.budget:
            assert at <= now, "a threshold already passed is reached at once, even on a weekend"


def test_the_procedure_state_machine_enforces_roles_and_reasons() -> None:
    assert next_state(State.SUBMITTED, Action.VERIFY, Role.ENGINEER) is State.VERIFIED
    assert next_state(State.FIXED, Action.CONFIRM, Role.OPD_ADMIN) is State.CLOSED
    assert next_state(State.FIXED, Action.AUTO_CLOSE, None) is State.CLOSED
    with pytest.raises(TransitionError, match="needs a reason"):
        next_state(State.SUBMITTED, Action.RETURN, Role.ENGINEER, "  ")
    with pytest.raises(TransitionError, match="may not"):
        next_state(State.SUBMITTED, Action.VERIFY, Role.OPD_ADMIN)
    with pytest.raises(TransitionError, match="cannot"):
        next_state(State.CLOSED, Action.FIX, Role.ENGINEER)
    with pytest.raises(TransitionError, match="only people"):
        next_state(State.SUBMITTED, Action.VERIFY, None)
    assert available_actions(State.SUBMITTED, Role.ENGINEER) == [Action.VERIFY, Action.RETURN, Action.MERGE]
    assert available_actions(State.FIXED, Role.OPD_HEAD) == [Action.CONFIRM, Action.REOPEN]
    assert available_actions(State.SUBMITTED, Role.OPD_ADMIN) == []


def test_bad_sla_settings_are_named_at_start(monkeypatch) -> None:
    from pdn_ops.complaints.config import load_complaint_settings
    from pdn_ops.core.errors import ConfigError

    monkeypatch.setenv("PDN_OPS_SLA_HOLIDAYS", "2026-12-25,25/12/2026")
    monkeypatch.setenv("PDN_OPS_SLA_DAYS", "0")
    with pytest.raises(ConfigError) as bad:
        load_complaint_settings()
    assert "PDN_OPS_SLA_HOLIDAYS" in str(bad.value) and "PDN_OPS_SLA_DAYS" in str(bad.value)
    monkeypatch.setenv("PDN_OPS_SLA_HOLIDAYS", "2026-12-25")
    monkeypatch.setenv("PDN_OPS_SLA_DAYS", "5")
    monkeypatch.setenv("PDN_OPS_SLA_WORKING_DAYS", "1")
    policy = load_complaint_settings().policy()
    assert policy.days == 5 and policy.working_days and date(2026, 12, 25) in policy.holidays


def test_a_breached_clock_resumed_on_a_weekend_is_due_at_once() -> None:
    # Found by hypothesis: with no budget left, the due instant is the resume itself, not the next working day.
    policy = SlaPolicy(working_days=True)
    saturday = wib(2026, 11, 21)
    clock = SlaClock(policy=policy, elapsed=policy.budget + 60, running_since=saturday, started=True)
    assert clock.due_at() == saturday
