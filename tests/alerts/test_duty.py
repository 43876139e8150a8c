"""The on-duty roster: the pure rule (rota, overnight shifts, overrides, fallback), the supervisor's page (audited,
refused to others), and Alertmanager's alerts told to the engineers on duty only, or to every active engineer when
nobody is on duty, on both engines."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from pdn_ops.accounts.model import Role
from pdn_ops.accounts.service import DEMO_PASSWORD, create_user
from pdn_ops.alerts.duty import Override, OverrideKind, Shift, on_duty, parse_clock, route
from pdn_ops.app.factory import create_app
from pdn_ops.app.runtime import build_runtime
from pdn_ops.core.db import migrate
from pdn_ops.core.db.engine import transaction
from pdn_ops.core.db.tables import AuditRow, utcnow
from pdn_ops.core.settings import load_settings
from pdn_ops.notify.tables import NotifyOutboxRow
from tests.alerts.test_receiver import payload
from tests.complaints.world import csrf_of, login
from tests.health_world import ROOT

WIB = ZoneInfo("Asia/Jakarta")
TOKEN = "duty-token-0123456789abcdef"
MONDAY = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)  # 10:00 in Jakarta, a Monday


# The pure rule.

def test_a_shift_covers_its_weekday_and_hours_in_the_office_zone() -> None:
    day = Shift(1, 0, 7 * 60, 19 * 60)  # Monday 07:00-19:00
    assert on_duty([day], [], MONDAY, WIB) == {1}
    assert on_duty([day], [], MONDAY + timedelta(hours=9), WIB) == set()  # 19:00 local: the shift has ended
    assert on_duty([day], [], MONDAY - timedelta(hours=3, minutes=1), WIB) == set()  # 06:59 local
    assert on_duty([day], [], MONDAY + timedelta(days=1), WIB) == set()  # Tuesday


def test_an_overnight_shift_runs_into_the_next_day_and_sunday_into_monday() -> None:
    night = Shift(2, 6, 19 * 60, 7 * 60)  # Sunday 19:00 - Monday 07:00
    assert on_duty([night], [], MONDAY - timedelta(hours=4), WIB) == {2}  # Monday 06:00 local
    assert on_duty([night], [], MONDAY, WIB) == set()  # Monday 10:00
    assert on_duty([night], [], MONDAY - timedelta(hours=14), WIB) == {2}  # Sunday 20:00
    assert on_duty([night], [], MONDAY - timedelta(hours=16), WIB) == set()  # Sunday 18:00
    whole = Shift(3, 0, 0, 24 * 60)
    assert on_duty([whole], [], MONDAY + timedelta(hours=13, minutes=59), WIB) == {3}  # 23:59 Monday


def test_overrides_add_and_remove_and_off_wins() -> None:
    day = Shift(1, 0, 0, 24 * 60)
    window = (MONDAY - timedelta(hours=1), MONDAY + timedelta(hours=1))
    assert on_duty([day], [Override(1, OverrideKind.OFF, *window)], MONDAY, WIB) == set()
    assert on_duty([day], [Override(4, OverrideKind.ON, *window)], MONDAY, WIB) == {1, 4}
    both = [Override(4, OverrideKind.ON, *window), Override(4, OverrideKind.OFF, *window)]
    assert on_duty([], both, MONDAY, WIB) == set()
    assert on_duty([], [Override(4, OverrideKind.ON, *window)], window[1], WIB) == set()  # the end is exclusive
    with pytest.raises(ValueError):
        Override(4, OverrideKind.ON, window[1], window[0])
    with pytest.raises(ValueError):
        Shift(1, 7, 0, 60)
    assert parse_clock("07:30") == 450 and parse_clock("24:00") == 1440
    for bad in ("7:30", "25:00", "07:30:00", "x"):
        with pytest.raises(ValueError):
            parse_clock(bad)


@given(st.frozensets(st.integers(1, 20)), st.frozensets(st.integers(1, 20), min_size=1))
def test_an_alert_always_reaches_someone_reachable(on: frozenset[int], reachable: frozenset[int]) -> None:
    chosen, fallback = route(on, reachable)
    assert chosen and chosen <= reachable
    assert fallback == (not on & reachable)
    assert chosen == (on & reachable if on & reachable else reachable)


# The page and the routing.

@pytest.fixture
def app(fresh_db_url: str) -> Iterator[FastAPI]:
    migrate.upgrade(fresh_db_url)
    settings = load_settings(demo=True, database_url=fresh_db_url, inventory=ROOT / "inventory.example.yaml",
                             run_scheduler=False, alertmanager_token=TOKEN, notify_worker=False,
                             public_url="https://pdn.example.go.id")
    app = create_app(build_runtime(settings))
    with transaction(app.state.runtime.sessions) as session:
        create_user(session, username="chief", password=DEMO_PASSWORD, role=Role.SUPERVISOR)
        for name in ("eng-a", "eng-b"):
            user = create_user(session, username=name, password=DEMO_PASSWORD, role=Role.ENGINEER)
            user.email = f"{name}@diskominfo.example.go.id"
    yield app
    app.state.runtime.engine.dispose()


def user_id(app: FastAPI, username: str) -> int:
    from pdn_ops.accounts.tables import UserRow

    with app.state.runtime.sessions() as session:
        found = session.scalar(select(UserRow.id).where(UserRow.username == username))
    assert found is not None
    return int(found)


def alert(client: TestClient, fingerprint: str) -> set[str]:
    """Post one firing alert; the addresses it was told to."""
    body = payload("firing", {"alertname": "PdnCollectorStalled", "collector": "sites", "severity": "warning"},
                   fingerprint=fingerprint)
    answer = client.post("/webhooks/alertmanager", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200, answer.text
    app: FastAPI = client.app  # type: ignore[assignment]
    with app.state.runtime.sessions() as session:
        rows = session.scalars(select(NotifyOutboxRow).where(
            NotifyOutboxRow.idempotency_key.startswith(f"alert:{fingerprint}:")))
        return {r.address for r in rows}


def test_the_supervisor_edits_the_roster_engineers_read_it_and_alerts_follow_it(app: FastAPI) -> None:
    a, b = user_id(app, "eng-a"), user_id(app, "eng-b")
    everyone = {"eng-a@diskominfo.example.go.id", "eng-b@diskominfo.example.go.id"}
    now_local = utcnow().astimezone(WIB)
    # Engineers read the roster; only the supervisor edits it.
    with TestClient(app, follow_redirects=False) as engineer:
        login(engineer, "eng-a")
        page = engineer.get("/duty")
        assert page.status_code == 200 and 'action="/duty/shifts"' not in page.text
        refused = engineer.post("/duty/shifts", data={"user_id": str(a), "weekday": "0", "start": "07:00",
                                                      "end": "19:00", "csrf_token": csrf_of(engineer, "/duty")})
        assert refused.status_code in (403, 404)
        assert "On-duty roster" in engineer.get("/duty?lang=en").text
    with app.state.runtime.sessions() as session:
        assert session.scalar(select(AuditRow).where(AuditRow.action.startswith("duty."))) is None
    with TestClient(app, follow_redirects=False) as client:
        # Nobody on duty: every active engineer is told, and the page says so.
        assert alert(client, "a1") == everyone
        login(client, "chief")
        page = client.get("/duty")
        assert page.status_code == 200 and 'id="duty-fallback"' in page.text
        assert 'href="/duty"' in page.text  # reachable from the menu
        # A whole-day shift for eng-a today: only eng-a is told.
        added = client.post("/duty/shifts", data={"user_id": str(a), "weekday": str(now_local.weekday()),
                                                  "start": "00:00", "end": "24:00",
                                                  "csrf_token": csrf_of(client, "/duty")})
        assert added.status_code == 303
        assert alert(client, "a2") == {"eng-a@diskominfo.example.go.id"}
        # eng-a is off sick, eng-b covers: only eng-b is told.
        starts = (now_local - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
        ends = (now_local + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
        token = csrf_of(client, "/duty")
        for who, kind in ((a, "off"), (b, "on")):
            answer = client.post("/duty/overrides", data={"user_id": str(who), "kind": kind, "starts": starts,
                                                          "ends": ends, "note": "sakit", "csrf_token": token})
            assert answer.status_code == 303, answer.text
        assert alert(client, "a3") == {"eng-b@diskominfo.example.go.id"}
        text = client.get("/duty").text
        assert 'id="duty-fallback"' not in text and "eng-b" in text
        # Refused input is shown in the supervisor's language, nothing stored.
        bad = client.post("/duty/shifts", data={"user_id": str(a), "weekday": "1", "start": "25:00", "end": "x",
                                                "csrf_token": token})
        assert bad.status_code == 400 and "JJ:MM" in bad.text
        bad = client.post("/duty/overrides", data={"user_id": "99999", "kind": "on", "starts": starts,
                                                   "ends": starts, "csrf_token": token})
        assert bad.status_code == 400 and "teknisi yang aktif" in bad.text
        # The coverer is deactivated: nobody reachable is on duty, everyone active is told (eng-a is off: still
        # told, since the fallback is every active engineer).
        with transaction(app.state.runtime.sessions) as session:
            from pdn_ops.accounts.tables import UserRow

            session.get_one(UserRow, b).active = False
        assert alert(client, "a4") == {"eng-a@diskominfo.example.go.id"}
        # Removing the rota's shift and the overrides, each audited.
        ids = [int(x) for x in re.findall(r'action="/duty/(?:shifts|overrides)/(\d+)/delete"', client.get("/duty").text)]
        assert len(ids) == 3
        shift_id = int(re.findall(r'action="/duty/shifts/(\d+)/delete"', client.get("/duty").text)[0])
        assert client.post(f"/duty/shifts/{shift_id}/delete", data={"csrf_token": token}).status_code == 303
        assert client.post("/duty/shifts/2147483648/delete", data={"csrf_token": token}).status_code == 404
    with app.state.runtime.sessions() as session:
        actions = [r.action for r in session.scalars(select(AuditRow).where(AuditRow.action.startswith("duty.")))]
    assert sorted(actions) == ["duty.override_added", "duty.override_added", "duty.shift_added",
                               "duty.shift_removed"]
