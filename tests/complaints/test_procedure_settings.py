"""The supervisor's settings of the complaint procedure, on SQLite and PostgreSQL: defaults from the environment,
validation field by field, audit, effect without a restart, and the recomputation of running complaints."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from pdn_ops.app.factory import create_app
from pdn_ops.app.runtime import build_runtime
from pdn_ops.complaints import procedure_store as procedure_settings
from pdn_ops.complaints import service as complaints
from pdn_ops.complaints.model import Action
from pdn_ops.complaints.procedure import ProcedureSettings, check
from pdn_ops.complaints.procedure_store import LiveSettings
from pdn_ops.complaints.tables import ComplaintRow
from pdn_ops.core.db.engine import make_engine, make_sessionmaker, transaction
from pdn_ops.core.db.tables import AuditRow
from pdn_ops.core.errors import SettingsInvalid
from tests.complaints.world import World, csrf_of, jpeg, principal_named

JAKARTA = ZoneInfo("Asia/Jakarta")
API = "/api/v1/settings/complaints"
# A Monday morning in Jakarta, far from any real holiday list.
MONDAY = datetime(2030, 1, 7, 10, 0, tzinfo=JAKARTA).astimezone(UTC)


def _put(client, **values):
    body = {"sla_days": 7, "sla_mode": "calendar", "holidays": [], "autoclose_days": 3} | values
    return client.put(API, json=body)


def _save(world: World, settings: ProcedureSettings) -> procedure_settings.Saved:
    live: LiveSettings = world.ctx.complaints.terms
    with transaction(world.ctx.sessions) as session:
        saved = procedure_settings.save(session, principal_named(session, "supervisor"), settings,
                                        defaults=live.defaults, timezone=live.timezone)
    live.invalidate()
    return saved


def _file(world: World, now: datetime) -> int:
    config = world.ctx.complaints.config
    with transaction(world.ctx.sessions) as session:
        row = complaints.submit(session, principal_named(session, "admin-dinkes"), complaints.Draft(
            asset=f"vm:{world.vm['web-dinkes']}", category="site_down", description="Situs tidak bisa dibuka"),
            [("layar.jpg", jpeg())], config=config, now=now)
        return row.id


def _row(world: World, complaint_id: int) -> ComplaintRow:
    with world.ctx.sessions() as session:
        row = session.get(ComplaintRow, complaint_id)
        assert row is not None
        return row


def test_the_environment_gives_the_values_until_a_supervisor_saves(world: World) -> None:
    # First in the module: nothing has been saved in this world yet.
    body = world.client("engineer").get(API).json()
    assert body["source"] == "environment" and body["revision"] == 0
    assert (body["sla_days"], body["sla_mode"], body["holidays"], body["autoclose_days"]) == (7, "calendar", [], 3)
    assert body["defaults"]["sla_days"] == 7 and body["timezone"] == "Asia/Jakarta"
    page = world.client("supervisor").get("/settings/complaints")
    assert page.status_code == 200 and "konfigurasi lingkungan" in page.text


def test_a_supervisor_saves_the_form_and_the_audit_log_has_who_old_and_new(world: World) -> None:
    client = world.client("supervisor")
    revision = client.get(API).json()["revision"]
    response = client.post("/settings/complaints", data={
        "sla_days": "10", "sla_mode": "working", "holidays": "2030-12-25\n2031-01-01, 2030-08-17",
        "autoclose_days": "2.5", "revision": str(revision), "csrf_token": csrf_of(client, "/settings/complaints")})
    assert response.status_code == 303, response.text
    body = client.get(API).json()
    assert body["source"] == "database" and body["revision"] == revision + 1 and body["updated_by"] == "supervisor"
    assert (body["sla_days"], body["sla_mode"], body["autoclose_days"]) == (10, "working", 2.5)
    assert body["holidays"] == ["2030-08-17", "2030-12-25", "2031-01-01"]
    with world.ctx.sessions() as session:
        entry = session.scalars(select(AuditRow).where(AuditRow.action == "settings.update")
                                .order_by(AuditRow.id.desc())).first()
    assert entry is not None and entry.actor == "supervisor"
    assert "sla_days: 7 -> 10" in entry.detail and "sla_mode: calendar -> working" in entry.detail
    assert "holidays added: 2030-08-17, 2030-12-25, 2031-01-01" in entry.detail
    assert "autoclose_days: 3 -> 2.5" in entry.detail
    page = client.get(response.headers["location"])
    assert "Pengaturan disimpan" in page.text and "sla_days: 7 -&gt; 10" in page.text


def test_bad_values_are_refused_field_by_field_and_the_form_keeps_what_was_typed(world: World) -> None:
    client = world.client("supervisor")
    before = client.get(API).json()
    response = client.post("/settings/complaints", data={
        "sla_days": "0", "sla_mode": "weekly", "holidays": "2030-12-25\n2030-13-01\n2031-01-01",
        "autoclose_days": "-1", "csrf_token": csrf_of(client, "/settings/complaints")})
    assert response.status_code == 400
    text = response.text
    assert "Isi bilangan bulat dari 1 sampai 90 hari" in text
    assert "Pilih hari kalender atau hari kerja" in text
    assert "&#34;2030-13-01&#34; bukan tanggal" in text or "&quot;2030-13-01&quot; bukan tanggal" in text
    assert "Isi angka dari 0.5 sampai 60 hari" in text
    assert "2030-12-25\n2030-13-01\n2031-01-01</textarea>" in text, "the holiday box keeps what was typed"
    assert 'value="0"' in text and 'value="-1"' in text
    assert client.get(API).json() == before, "nothing was stored"
    english = client.post("/settings/complaints?lang=en", data={
        "sla_days": "abc", "sla_mode": "calendar", "holidays": "", "autoclose_days": "3",
        "csrf_token": csrf_of(client, "/settings/complaints")})
    assert english.status_code == 400 and "Enter a whole number from 1 to 90 days" in english.text


def test_the_api_names_every_bad_field_and_refuses_a_stale_revision(world: World) -> None:
    client = world.client("supervisor")
    bad = _put(client, sla_days="seven", sla_mode=None, holidays=["2030-02-30"], autoclose_days=500)
    assert bad.status_code == 422
    detail = bad.json()["detail"]
    assert detail["errors"] == {"sla_days": "settings.error.sla_days", "sla_mode": "settings.error.mode",
                                "holidays": "settings.error.holiday", "autoclose_days": "settings.error.autoclose_days"}
    assert "2030-02-30" in detail["messages"]["holidays"]
    assert _put(client, holidays={"not": "a list"}).json()["detail"]["errors"] == {
        "holidays": "settings.error.holidays_list"}
    current = client.get(API).json()["revision"]
    saved = _put(client, sla_days=8, holidays="2030-05-01 2030-06-01", revision=current)
    assert saved.status_code == 200, saved.text
    assert saved.json()["revision"] == current + 1 and saved.json()["holidays"] == ["2030-05-01", "2030-06-01"]
    stale = _put(client, sla_days=9, revision=current)
    assert stale.status_code == 409
    assert client.get(API).json()["sla_days"] == 8


def test_engineers_read_the_settings_and_only_supervisors_change_them(world: World) -> None:
    engineer = world.client("engineer")
    page = engineer.get("/settings/complaints")
    assert page.status_code == 200 and 'id="settings-values"' in page.text and "<form method=\"post\" action=\"/settings" \
        not in page.text
    assert engineer.post("/settings/complaints", data={"sla_days": "3"}).status_code == 404
    assert _put(engineer, sla_days=3).status_code == 404
    for opd_user in ("head-dinkes", "admin-dinkes"):
        client = world.client(opd_user)
        assert client.get("/settings/complaints").status_code == 404
        assert client.get(API).status_code == 404
    with transaction(world.ctx.sessions) as session, pytest.raises(Exception, match="only a supervisor"):
        procedure_settings.save(session, principal_named(session, "engineer"), ProcedureSettings(),
                                defaults=ProcedureSettings(), timezone="Asia/Jakarta")


def test_new_terms_apply_to_new_complaints_at_once_and_running_ones_keep_theirs(world: World) -> None:
    _save(world, ProcedureSettings(sla_days=7))
    before = _file(world, MONDAY)
    _save(world, ProcedureSettings(sla_days=3))
    after = _file(world, MONDAY)
    old, new = _row(world, before), _row(world, after)
    assert old.sla_budget == 7 * 86400 and new.sla_budget == 3 * 86400
    assert new.sla_due_at == MONDAY + timedelta(days=3)
    # A later step on the old complaint keeps its 7 days (a shorter SLA must not breach it retroactively).
    config = world.ctx.complaints.config
    with transaction(world.ctx.sessions) as session:
        complaints.act(session, principal_named(session, "engineer"), before, Action.VERIFY, config=config,
                       now=MONDAY + timedelta(days=4))
    verified = _row(world, before)
    assert verified.sla_budget == 7 * 86400 and verified.sla_due_at == MONDAY + timedelta(days=7)
    assert not verified.sla_breached
    api = world.client("engineer").get(f"/api/v1/complaints/{before}").json()
    assert api["sla_due_at"].startswith("2030-01-14T03:00")


def test_a_holiday_added_later_extends_running_working_day_complaints_and_is_noted(world: World) -> None:
    _save(world, ProcedureSettings(sla_days=7, sla_working_days=True))
    working = _file(world, MONDAY)
    _save(world, ProcedureSettings(sla_days=7, sla_working_days=False))
    calendar = _file(world, MONDAY)
    due_working, due_calendar = _row(world, working).sla_due_at, _row(world, calendar).sla_due_at
    # Seven working days from Monday 10:00: the next week's Wednesday 10:00 (local).
    assert due_working == datetime(2030, 1, 16, 10, 0, tzinfo=JAKARTA)
    saved = _save(world, ProcedureSettings(sla_days=7, sla_working_days=False,
                                           holidays=frozenset({date(2030, 1, 9), date(2030, 1, 11)})))
    assert saved.recomputed >= 1
    moved = _row(world, working)
    # Two working days off (Wednesday and Friday): Friday 10:00 instead of Wednesday 10:00.
    assert moved.sla_due_at == datetime(2030, 1, 18, 10, 0, tzinfo=JAKARTA)
    assert moved.sla_budget == 7 * 86400 and moved.sla_mode == "working", "the terms it was filed under"
    assert moved.sla_risk50_at is not None and moved.sla_risk50_at > due_working - timedelta(days=5)
    assert _row(world, calendar).sla_due_at == due_calendar, "calendar days do not know holidays"
    timeline = world.client("engineer").get(f"/api/v1/complaints/{working}/timeline").json()
    entry = [e for e in timeline if e["action"] == "complaint.sla_recomputed"]
    assert len(entry) == 1 and entry[0]["actor"] == "supervisor"
    assert "2030-01-16T03:00" in entry[0]["detail"] and "2030-01-18T03:00" in entry[0]["detail"]
    page = world.client("engineer").get(f"/complaints/{working}")
    assert "tenggat SLA dihitung ulang" in page.text
    # Removing the holidays again moves it back, noted again.
    _save(world, ProcedureSettings(sla_days=7))
    assert _row(world, working).sla_due_at == due_working


def test_the_auto_close_period_follows_the_settings(world: World) -> None:
    _save(world, ProcedureSettings(autoclose_days=3))
    config = world.ctx.complaints.config
    cid = _file(world, MONDAY)
    with transaction(world.ctx.sessions) as session:
        eng = principal_named(session, "engineer")
        complaints.act(session, eng, cid, Action.VERIFY, config=config, now=MONDAY)
        complaints.act(session, eng, cid, Action.FIX, config=config, now=MONDAY)
    two_days_later = MONDAY + timedelta(days=2)
    with transaction(world.ctx.sessions) as session:
        assert cid not in complaints.close_stale(session, two_days_later, config=config)
    _save(world, ProcedureSettings(autoclose_days=1.5))
    with transaction(world.ctx.sessions) as session:
        assert cid in complaints.close_stale(session, two_days_later, config=config)
    assert _row(world, cid).auto_closed


def test_every_worker_follows_a_change_within_its_cache_period(world: World) -> None:
    """Another process has its own cache: a second app on the same database stands for a second worker."""
    _save(world, ProcedureSettings(sla_days=7))
    other_app = create_app(build_runtime(world.ctx.settings))
    try:
        other = other_app.state.runtime
        live: LiveSettings = other.complaints.terms
        ticks = [0.0]
        live._clock = lambda: ticks[0]
        config = other.complaints.config
        assert config.policy.days == 7
        _save(world, ProcedureSettings(sla_days=5))  # saved through the first app
        assert config.policy.days == 7, "within the cache period the other worker may still use the old terms"
        with other.sessions() as session:
            assert config.policy_in(session).days == 5, "a state change always reads the current terms"
        ticks[0] += live.ttl + 0.1
        assert config.policy.days == 5
        assert config.autoclose_after == timedelta(days=3)
    finally:
        other_app.state.runtime.engine.dispose()
    _save(world, ProcedureSettings())


def test_the_cache_reads_the_database_once_per_period(world: World) -> None:
    engine = make_engine(world.ctx.settings.effective_database_url)
    queries: list[str] = []
    from sqlalchemy import event

    event.listen(engine, "before_cursor_execute", lambda *a: queries.append(a[2]))
    ticks = [0.0]
    live = LiveSettings(make_sessionmaker(engine), ProcedureSettings(), "Asia/Jakarta", ttl=5.0,
                        clock=lambda: ticks[0])
    try:
        first = live.cached()
        for _ in range(1000):
            assert live.cached() is first
        assert sum("procedure_settings" in q for q in queries) == 1
        ticks[0] = 6.0
        assert live.cached().policy is first.policy, "same revision: the same policy object"
        assert sum("procedure_settings" in q for q in queries) == 2
    finally:
        engine.dispose()


def test_check_accepts_form_strings_and_json_values_alike() -> None:
    from_form = check(sla_days=" 7 ", sla_working_days="working", holidays="2030-01-01;2030-01-02",
                      autoclose_days="1,5")
    from_json = check(sla_days=7, sla_working_days=True, holidays=["2030-01-02", "2030-01-01"], autoclose_days=1.5)
    assert from_form == from_json
    with pytest.raises(SettingsInvalid) as caught:
        check(sla_days=True, sla_working_days="x", holidays=["20300101"], autoclose_days=float("nan"))
    assert set(caught.value.errors) == {"sla_days", "sla_working_days", "holidays", "autoclose_days"}
