"""The outbox on SQLite and PostgreSQL: enqueue in the caller's transaction, preferences, retries, callbacks."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from pdn_ops.core.db.engine import transaction
from pdn_ops.core.db.tables import AuditRow
from pdn_ops.notify import outbox as notify_outbox
from pdn_ops.notify.model import Channel, Recipient, Status, StatusUpdate
from pdn_ops.notify.tables import NotifyOutboxRow
from pdn_ops.notify.worker import NotifyRuntime, deliver_due
from tests.notify.conftest import ADMIN_EMAIL, ADMIN_WA, ENGINEER_EMAIL, Clock
from tests.notify.fake_graph import FakeGraph

PARAMS = {"number": "PDN-2026-000042", "link": "http://127.0.0.1:8000/complaints/42"}
WA = Recipient(Channel.WHATSAPP, ADMIN_WA, "id", user_id=7)
MAIL = Recipient(Channel.EMAIL, ADMIN_EMAIL, "en", user_id=7)


def rows(factory: sessionmaker[Session]) -> list[NotifyOutboxRow]:
    with factory() as session:
        return list(session.scalars(select(NotifyOutboxRow).order_by(NotifyOutboxRow.id)))


def test_enqueue_commits_with_the_state_change_and_not_without_it(factory: sessionmaker[Session]) -> None:
    with pytest.raises(RuntimeError), transaction(factory) as session:
        session.add(AuditRow(actor="engineer", action="verify", subject="complaint:42"))
        notify_outbox.enqueue(session, event="complaint_verified", recipients=[WA, MAIL], params=PARAMS,
                              idempotency_key="complaint:42:verified")
        raise RuntimeError("the state change failed")
    assert rows(factory) == []
    with transaction(factory) as session:
        created = notify_outbox.enqueue(session, event="complaint_verified", recipients=[WA, MAIL], params=PARAMS,
                                        idempotency_key="complaint:42:verified")
    assert len(created) == 2
    assert [(r.channel, r.status, r.language) for r in rows(factory)] == [("whatsapp", "queued", "id"),
                                                                          ("email", "queued", "en")]


def test_enqueueing_the_same_change_twice_creates_nothing_new(factory: sessionmaker[Session]) -> None:
    for _ in range(3):
        with transaction(factory) as session:
            notify_outbox.enqueue(session, event="complaint_closed", recipients=[WA], params=PARAMS,
                                  idempotency_key="complaint:42:closed")
    assert len(rows(factory)) == 1


def test_enqueue_refuses_unknown_events_missing_params_and_bad_addresses(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        with pytest.raises(ValueError, match="unknown notification event"):
            notify_outbox.enqueue(session, event="nope", recipients=[WA], params=PARAMS, idempotency_key="k")
        with pytest.raises(ValueError, match="reason"):
            notify_outbox.enqueue(session, event="complaint_returned", recipients=[WA], params=PARAMS,
                                  idempotency_key="k")
        for bad in (Recipient(Channel.WHATSAPP, "0812; rm -rf /"), Recipient(Channel.WHATSAPP, "+62812"),
                    Recipient(Channel.EMAIL, "not-an-address")):
            with pytest.raises(ValueError, match=bad.channel.value):
                notify_outbox.enqueue(session, event="complaint_closed", recipients=[bad], params=PARAMS,
                                      idempotency_key="k")


def test_preferences_choose_channels_and_hold_non_urgent_messages_in_quiet_hours(
        factory: sessionmaker[Session], clock: Clock) -> None:
    night = datetime(2026, 11, 30, 16, 30, tzinfo=UTC)  # 23:30 in Jakarta
    with transaction(factory) as session:
        notify_outbox.set_preferences(session, subject="user:7", channels=[Channel.WHATSAPP],
                                      quiet_start="22:00", quiet_end="06:00")
        notify_outbox.enqueue(session, event="complaint_fixed", recipients=[WA, MAIL], params=PARAMS,
                              idempotency_key="complaint:42:fixed", now=night)
        notify_outbox.enqueue(session, event="sla_at_risk", recipients=[WA], params={**PARAMS, "percent": 80},
                              idempotency_key="complaint:42:sla80", now=night)
    fixed, sla = rows(factory)
    assert (fixed.channel, sla.channel) == ("whatsapp", "whatsapp"), "e-mail is switched off for user 7"
    assert fixed.next_attempt_at == datetime(2026, 11, 30, 23, 0, tzinfo=UTC), "held until 06:00 Jakarta"
    assert sla.urgent and sla.next_attempt_at == night, "SLA alerts ignore quiet hours"


def test_engineers_get_sla_and_remediation_alerts_immediately(factory: sessionmaker[Session]) -> None:
    engineer = Recipient(Channel.EMAIL, ENGINEER_EMAIL, "en", user_id=3)
    now = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)  # 03:00 in Jakarta
    with transaction(factory) as session:
        notify_outbox.set_preferences(session, subject="user:3", quiet_start="21:00", quiet_end="07:00")
        notify_outbox.alert_engineers(session, event="remediation_failed", engineers=[engineer],
                                      params={**PARAMS, "playbook": "restart-nginx"}, idempotency_key="run:9:failed",
                                      now=now)
        with pytest.raises(ValueError, match="not an engineer alert"):
            notify_outbox.alert_engineers(session, event="complaint_closed", engineers=[engineer], params=PARAMS,
                                          idempotency_key="x")
    (row,) = rows(factory)
    assert row.urgent and row.next_attempt_at == now


def test_provider_down_for_a_while_delivers_later_exactly_once(
        runtime: NotifyRuntime, factory: sessionmaker[Session], fake_graph: FakeGraph, clock: Clock) -> None:
    with transaction(factory) as session:
        notify_outbox.enqueue(session, event="complaint_received", recipients=[WA], params=PARAMS,
                              idempotency_key="complaint:42:received", now=clock.now)
    fake_graph.fail_count, fake_graph.fail_status = 3, 503
    delays = []
    for _ in range(3):
        report = deliver_due(runtime)
        assert report.retried == 1
        (row,) = rows(factory)
        delays.append(row.next_attempt_at - clock.now)
        assert deliver_due(runtime).retried == 0, "not due again before its backoff"
        clock.now = row.next_attempt_at
    assert delays == [timedelta(seconds=30), timedelta(seconds=60), timedelta(seconds=120)]
    assert deliver_due(runtime).sent == 1
    for _ in range(3):
        clock.advance(hours=1)
        assert deliver_due(runtime).sent == 0
    assert len(fake_graph.accepted) == 1
    (row,) = rows(factory)
    assert (row.status, row.attempts, row.provider_message_id) == ("sent", 4, fake_graph.accepted[0].wamid)


def test_provider_unreachable_then_back_delivers_once(
        runtime: NotifyRuntime, factory: sessionmaker[Session], fake_graph: FakeGraph, clock: Clock) -> None:
    with transaction(factory) as session:
        notify_outbox.enqueue(session, event="complaint_received", recipients=[WA], params=PARAMS,
                              idempotency_key="complaint:43:received", now=clock.now)
    sender = runtime.senders[Channel.WHATSAPP]
    real_url = sender.base_url  # type: ignore[attr-defined]
    sender.base_url = "http://127.0.0.1:9"  # type: ignore[attr-defined]  # discard port: connection refused
    assert deliver_due(runtime).retried == 1
    (row,) = rows(factory)
    assert row.status == "queued" and "refused" in (row.last_error or "")
    sender.base_url = real_url  # type: ignore[attr-defined]
    clock.advance(minutes=5)
    assert deliver_due(runtime).sent == 1
    assert len(fake_graph.accepted) == 1


def test_a_refused_message_fails_without_retry_and_exhausted_retries_fail(
        runtime: NotifyRuntime, factory: sessionmaker[Session], fake_graph: FakeGraph, clock: Clock) -> None:
    with transaction(factory) as session:
        notify_outbox.enqueue(session, event="complaint_closed", recipients=[WA], params=PARAMS,
                              idempotency_key="complaint:44:closed", now=clock.now)
    fake_graph.reject_status = 400
    assert deliver_due(runtime).failed == 1
    (row,) = rows(factory)
    assert row.status == "failed" and "131026" in (row.last_error or "")
    fake_graph.reject_status = None
    with transaction(factory) as session:
        notify_outbox.enqueue(session, event="complaint_closed", recipients=[WA], params=PARAMS,
                              idempotency_key="complaint:45:closed", now=clock.now)
    fake_graph.fail_count = 100
    outcomes = []
    for _ in range(runtime.retry.max_attempts):
        report = deliver_due(runtime)
        outcomes.append((report.retried, report.failed))
        clock.advance(hours=2)
    assert outcomes[-1] == (0, 1) and all(o == (1, 0) for o in outcomes[:-1])
    assert [r.status for r in rows(factory)] == ["failed", "failed"]


def test_status_callbacks_move_forward_only_and_replays_change_nothing(
        runtime: NotifyRuntime, factory: sessionmaker[Session], fake_graph: FakeGraph, clock: Clock) -> None:
    with transaction(factory) as session:
        notify_outbox.enqueue(session, event="complaint_verified", recipients=[WA], params=PARAMS,
                              idempotency_key="complaint:46:verified", now=clock.now)
    deliver_due(runtime)
    wamid = fake_graph.accepted[0].wamid
    outcomes = []
    for status in (Status.READ, Status.DELIVERED, Status.READ, Status.SENT, Status.DELIVERED):
        with transaction(factory) as session:
            outcomes.append(notify_outbox.apply_status(session, StatusUpdate(wamid, status), now=clock.now))
    assert outcomes == ["applied", "stale", "duplicate", "stale", "duplicate"]
    (row,) = rows(factory)
    assert row.status == "read" and row.read_at == clock.now


def test_a_callback_that_arrives_before_the_send_is_recorded_is_applied_later(
        factory: sessionmaker[Session], clock: Clock) -> None:
    with transaction(factory) as session:
        notify_outbox.enqueue(session, event="complaint_verified", recipients=[WA], params=PARAMS,
                              idempotency_key="complaint:47:verified", now=clock.now)
    (claim,) = notify_outbox.claim_due(factory, worker_id="w1", now=clock.now, lease=timedelta(seconds=60))
    with transaction(factory) as session:  # the provider is faster than our commit, and echoes no key
        assert notify_outbox.apply_status(session, StatusUpdate("wamid.EARLY", Status.DELIVERED)) == "unmatched"
    from pdn_ops.notify.model import SendResult

    notify_outbox.record_sent(factory, claim, result=SendResult("meta", "wamid.EARLY"),
                              now=clock.now)
    (row,) = rows(factory)
    assert row.status == "delivered"


def test_two_workers_racing_never_send_the_same_message(
        factory: sessionmaker[Session], fake_graph: FakeGraph, runtime: NotifyRuntime, clock: Clock) -> None:
    with transaction(factory) as session:
        for n in range(30):
            notify_outbox.enqueue(session, event="complaint_received", recipients=[WA], params=PARAMS,
                                  idempotency_key=f"complaint:{100 + n}:received", now=clock.now)
    claimed: dict[str, list[int]] = {"a": [], "b": []}
    barrier = threading.Barrier(2)

    def work(name: str) -> None:
        barrier.wait()
        while True:
            got = notify_outbox.claim_due(factory, worker_id=name, now=clock.now, lease=timedelta(seconds=60),
                                          limit=3)
            if not got:
                return
            claimed[name].extend(c.id for c in got)

    threads = [threading.Thread(target=work, args=(n,)) for n in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    all_ids = claimed["a"] + claimed["b"]
    assert len(all_ids) == 30 and len(set(all_ids)) == 30, "every message claimed exactly once"
    with factory() as session:
        assert session.scalar(select(func.count()).where(NotifyOutboxRow.status == "sending")) == 30


def test_snapshot_counts_by_channel_and_status_and_oldest_age(
        factory: sessionmaker[Session], clock: Clock) -> None:
    with transaction(factory) as session:
        notify_outbox.enqueue(session, event="complaint_received", recipients=[WA, MAIL], params=PARAMS,
                              idempotency_key="complaint:50:received", now=clock.now)
    with factory() as session:
        snap = notify_outbox.snapshot(session, now=clock.now + timedelta(seconds=90))
    assert snap.counts == {("whatsapp", "queued"): 1, ("email", "queued"): 1}
    assert snap.oldest_undelivered_seconds == 90


def test_the_self_hosted_gateway_provider_sends_text_with_retries(
        runtime: NotifyRuntime, factory: sessionmaker[Session], fake_graph: FakeGraph, clock: Clock) -> None:
    from pydantic import SecretStr

    from pdn_ops.notify.channels.whatsapp import GatewayProvider

    runtime.senders[Channel.WHATSAPP] = GatewayProvider(fake_graph.url, SecretStr("admin:gw-pass"), timeout=2)
    with transaction(factory) as session:
        notify_outbox.enqueue(session, event="complaint_verified", recipients=[WA], params=PARAMS,
                              idempotency_key="complaint:60:verified", now=clock.now)
    fake_graph.fail_count = 1
    assert deliver_due(runtime).retried == 1
    clock.advance(minutes=1)
    assert deliver_due(runtime).sent == 1
    (accepted,) = fake_graph.accepted
    assert accepted.body["phone"] == "6281200000001@s.whatsapp.net"
    assert "PDN-2026-000042" in accepted.body["message"]
    (row,) = rows(factory)
    assert (row.status, row.provider, row.provider_message_id) == ("sent", "gateway", accepted.wamid)


def test_cloud_api_template_messages_name_the_approved_template(
        runtime: NotifyRuntime, factory: sessionmaker[Session], fake_graph: FakeGraph, clock: Clock) -> None:
    runtime.use_templates = True
    with transaction(factory) as session:
        notify_outbox.enqueue(session, event="complaint_returned", recipients=[WA],
                              params={**PARAMS, "reason": "foto kurang jelas"}, idempotency_key="complaint:61:ret",
                              now=clock.now)
    assert deliver_due(runtime).sent == 1
    (body,) = fake_graph.sends()
    assert body["type"] == "template" and body["template"]["name"] == "pdn_complaint_returned"
    assert body["template"]["language"] == {"code": "id"}
    assert [p["text"] for p in body["template"]["components"][0]["parameters"]] == [
        "PDN-2026-000042", "foto kurang jelas", PARAMS["link"]]
    assert body["biz_opaque_callback_data"] == f"complaint:61:ret:whatsapp:{ADMIN_WA}"


def test_the_start_hook_runs_a_worker_inside_the_app_and_stops_with_it(
        notify_engine, fake_graph: FakeGraph) -> None:
    import time

    from fastapi.testclient import TestClient

    from pdn_ops.app.factory import create_app
    from pdn_ops.app.hooks import notify_worker
    from pdn_ops.app.runtime import build_runtime
    from pdn_ops.core.settings import load_settings
    from tests.notify.fake_graph import TOKEN

    settings = load_settings(demo=True, database_url=notify_engine.url.render_as_string(hide_password=False),
                             whatsapp_provider="meta", whatsapp_base_url=fake_graph.url,
                             whatsapp_phone_number_id="1234", whatsapp_access_token=TOKEN,
                             whatsapp_use_templates=False, notify_poll_seconds=0.05)
    app = create_app(build_runtime(settings, engine=notify_engine), start_hooks=[notify_worker])
    with TestClient(app):
        runtime = app.state.runtime.notify.delivery
        with transaction(runtime.sessions) as session:
            session.add(AuditRow(actor="opd-admin", action="submit", subject="complaint:70"))
            session.flush()  # the state change first, as callers do: the transaction holds the write lock
            notify_outbox.enqueue(session, event="complaint_received", recipients=[WA], params=PARAMS,
                                  idempotency_key="complaint:70:received")
        deadline = time.monotonic() + 20
        while not fake_graph.accepted and time.monotonic() < deadline:
            time.sleep(0.02)
    assert len(fake_graph.accepted) == 1
    worker_threads = [t for t in threading.enumerate() if t.name == "pdn-ops-notify"]
    assert worker_threads == [], "the worker stopped with the app"


def test_migration_0004_upgrades_and_downgrades(fresh_db_url: str) -> None:
    from sqlalchemy import inspect

    from pdn_ops.core.db import migrate
    from pdn_ops.core.db.engine import make_engine

    migrate.upgrade(fresh_db_url, "0004")
    engine = make_engine(fresh_db_url)
    try:
        assert {"notify_outbox", "notify_inbound", "notify_preferences"} <= set(inspect(engine).get_table_names())
        migrate.downgrade(fresh_db_url, "0001")
        names = set(inspect(engine).get_table_names())
        assert not {n for n in names if n.startswith("notify_")} and "opds" in names
        assert migrate.current_revision(engine) == "0001"
    finally:
        engine.dispose()


def test_the_access_token_never_reaches_logs_or_recorded_errors(
        runtime: NotifyRuntime, factory: sessionmaker[Session], fake_graph: FakeGraph, clock: Clock,
        caplog: pytest.LogCaptureFixture) -> None:
    from pydantic import SecretStr

    from pdn_ops.notify.channels.whatsapp import MetaCloudProvider

    runtime.senders[Channel.WHATSAPP] = MetaCloudProvider(fake_graph.url, "v21.0", "1234",
                                                          SecretStr("EAAG-revoked-token-xyz"), timeout=2)
    with transaction(factory) as session:
        notify_outbox.enqueue(session, event="complaint_closed", recipients=[WA], params=PARAMS,
                              idempotency_key="complaint:90:closed", now=clock.now)
    with caplog.at_level("DEBUG"):
        assert deliver_due(runtime).retried == 1, "a refused token is retried (a person renews it), not dropped"
    (row,) = rows(factory)
    assert "401" in (row.last_error or "") and "190" in (row.last_error or "")
    assert "EAAG-revoked-token-xyz" not in caplog.text + (row.last_error or "") + repr(runtime)
