"""Complaints wired to notifications: state changes fill the outbox; WhatsApp messages file real complaints.

Both engines (the module's ``world``), the real app, the real webhook route and worker pass, and the fake Graph API
of the notify tests as the only simulated part (the provider).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select

from pdn_ops.app.factory import create_app
from pdn_ops.app.runtime import build_runtime
from pdn_ops.complaints import service as complaints
from pdn_ops.complaints.model import Action
from pdn_ops.complaints.notifications import make_listener
from pdn_ops.complaints.tables import ComplaintRow, IntakeDraftRow, NotificationRow
from pdn_ops.core.db.engine import transaction
from pdn_ops.core.db.tables import utcnow
from pdn_ops.core.settings import load_settings
from pdn_ops.notify.channels.whatsapp import MetaCloudProvider
from pdn_ops.notify.model import Channel
from pdn_ops.notify.policy import RetryPolicy
from pdn_ops.notify.tables import NotifyOutboxRow
from pdn_ops.notify.worker import NotifyRuntime, deliver_due, process_inbound
from tests.complaints.world import World, jpeg, principal_named
from tests.notify.fake_graph import TOKEN, FakeGraph, envelope, signed

DINKES_WA = "+6281200000001"  # the dinkes contact in inventory.example.yaml
DINKES_EMAIL = "admin@dinkes.example.go.id"
STRANGER_WA = "+6281299999999"
APP_SECRET = "wiring-app-secret"


def outbox_for(world: World, complaint_id: int, event: str) -> list[NotifyOutboxRow]:
    with world.ctx.sessions() as session:
        return list(session.scalars(select(NotifyOutboxRow).where(
            NotifyOutboxRow.idempotency_key.startswith(f"complaint:{complaint_id}:{event}:"))
            .order_by(NotifyOutboxRow.id)))


def file_by_service(world: World, username: str, asset: str) -> int:
    config = world.ctx.complaints.config
    with transaction(world.ctx.sessions) as session:
        row = complaints.submit(session, principal_named(session, username), complaints.Draft(
            asset=asset, category="site_down", description="Situs tidak bisa dibuka sejak pagi"),
            [("layar.jpg", jpeg())], config=config)
        return row.id


def test_each_state_change_enqueues_one_message_per_opd_channel_and_replays_add_none(world: World) -> None:
    config = world.ctx.complaints.config
    complaint_id = file_by_service(world, "admin-dinkes", f"vm:{world.vm['web-dinkes']}")
    received = outbox_for(world, complaint_id, "complaint_received")
    assert sorted((r.channel, r.address) for r in received) == [("email", DINKES_EMAIL), ("whatsapp", DINKES_WA)]
    assert received[0].params["number"] == f"#{complaint_id}"
    assert str(received[0].params["link"]).endswith(f"/complaints/{complaint_id}")

    at = utcnow() + timedelta(seconds=1)
    with transaction(world.ctx.sessions) as session:
        complaints.act(session, principal_named(session, "engineer"), complaint_id, Action.RETURN,
                       reason="Foto kurang jelas", config=config, now=at)
    returned = outbox_for(world, complaint_id, "complaint_returned")
    assert len(returned) == 2 and {r.params["reason"] for r in returned} == {"Foto kurang jelas"}
    # Step 5 ("inform the OPD"): one in-app notice and exactly one message per channel.
    with world.ctx.sessions() as session:
        notices = session.scalar(select(func.count()).select_from(NotificationRow).where(
            NotificationRow.complaint_id == complaint_id, NotificationRow.kind == "returned"))
    assert notices == 1 and sorted(r.channel for r in returned) == ["email", "whatsapp"]

    # Replaying the same change (a retried listener call) enqueues nothing new.
    replay = complaints.ComplaintEvent(complaint_id=complaint_id, opd_id=world.opd["dinkes"], action="return",
                                       from_state="submitted", to_state="returned", actor="engineer", at=at,
                                       reason="Foto kurang jelas")
    listener = make_listener(world.ctx.settings.public_url)
    for _ in range(3):
        with transaction(world.ctx.sessions) as session:
            listener(session, replay)
    assert [r.id for r in outbox_for(world, complaint_id, "complaint_returned")] == [r.id for r in returned]

    # A second, later return of the same complaint is a new change and gets its own messages.
    with transaction(world.ctx.sessions) as session:
        complaints.resubmit(session, principal_named(session, "admin-dinkes"), complaint_id, complaints.Draft(
            asset=f"vm:{world.vm['web-dinkes']}", category="site_down",
            description="Situs tidak bisa dibuka, foto diperjelas"), [], config=config, now=at + timedelta(1))
        complaints.act(session, principal_named(session, "engineer"), complaint_id, Action.RETURN,
                       reason="Masih kurang", config=config, now=at + timedelta(2))
    assert len(outbox_for(world, complaint_id, "complaint_returned")) == 4
    assert len(outbox_for(world, complaint_id, "complaint_received")) == 4  # submit and resubmit


def test_an_opd_without_contacts_gets_no_messages_and_the_change_still_commits(world: World) -> None:
    # disdik's only contact is an e-mail address: its complaints reach that one channel only.
    complaint_id = file_by_service(world, "admin-disdik", f"vm:{world.vm['simpeg-disdik']}")
    rows = outbox_for(world, complaint_id, "complaint_received")
    assert [(r.channel, r.address) for r in rows] == [("email", "it@disdik.example.go.id")]


# --- WhatsApp intake ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def graph() -> Iterator[FakeGraph]:
    server = FakeGraph().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def webhook_app(world: World, graph: FakeGraph) -> Iterator[tuple[TestClient, NotifyRuntime]]:
    url = world.ctx.engine.url.render_as_string(hide_password=False)
    settings = load_settings(demo=True, database_url=url, data_dir=world.data_dir, whatsapp_provider="meta",
                             whatsapp_base_url=graph.url, whatsapp_phone_number_id="1234",
                             whatsapp_access_token=TOKEN, whatsapp_app_secret=APP_SECRET,
                             whatsapp_verify_token="wiring-verify", notify_worker=False)
    app = create_app(build_runtime(settings, engine=world.ctx.engine))
    ctx = app.state.runtime
    meta = MetaCloudProvider(graph.url, "v21.0", "1234", SecretStr(TOKEN), timeout=2.0)
    runtime = NotifyRuntime(sessions=ctx.sessions, senders={Channel.WHATSAPP: meta}, media=meta,
                            intake=ctx.complaints.intake, retry=RetryPolicy(5, 30, 600),
                            use_templates=False, worker_id="wiring-test")
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, runtime


def send(client: TestClient, message: dict[str, Any]) -> None:
    raw, headers = signed(envelope(messages=[message]), APP_SECRET)
    assert client.post("/webhooks/whatsapp", content=raw, headers=headers).status_code == 200


def text(wamid: str, sender: str, body: str) -> dict[str, Any]:
    return {"from": sender.lstrip("+"), "id": wamid, "timestamp": "1764300000", "type": "text",
            "text": {"body": body}}


def image(wamid: str, sender: str, media_id: str, caption: str = "") -> dict[str, Any]:
    return {"from": sender.lstrip("+"), "id": wamid, "timestamp": "1764300000", "type": "image",
            "image": {"id": media_id, "mime_type": "image/jpeg", "sha256": "x", "caption": caption}}


def bodies_to(graph: FakeGraph, number: str, since: int) -> list[str]:
    return [s["text"]["body"] for s in graph.sends()[since:] if s["to"] == number.lstrip("+")]


def complaint_ids(world: World) -> set[int]:
    with world.ctx.sessions() as session:
        return set(session.scalars(select(ComplaintRow.id)))


def test_a_registered_admin_files_a_real_complaint_over_whatsapp(
        world: World, webhook_app: tuple[TestClient, NotifyRuntime], graph: FakeGraph) -> None:
    client, runtime = webhook_app
    before, sent = complaint_ids(world), len(graph.sends())
    send(client, text("wamid.W1", DINKES_WA, "Tolong, aplikasi kami error terus"))
    process_inbound(runtime)
    deliver_due(runtime)
    first = bodies_to(graph, DINKES_WA, sent)
    # No asset named yet: the reply lists this OPD's assets (and only this OPD's) and asks for a photo.
    assert any("web-dinkes" in b and "Portal Dinkes" in b for b in first), first
    assert not any("simpeg" in b.lower() for b in first)
    assert complaint_ids(world) == before

    send(client, text("wamid.W2", DINKES_WA, "Yang bermasalah web-dinkes, halaman login putih"))
    graph.media["m-wire-1"] = (jpeg(), "image/jpeg")
    send(client, image("wamid.W3", DINKES_WA, "m-wire-1", "ini tangkapan layarnya"))
    send(client, image("wamid.W3", DINKES_WA, "m-wire-1", "ini tangkapan layarnya"))  # a replayed delivery
    process_inbound(runtime)
    deliver_due(runtime)
    (new_id,) = complaint_ids(world) - before
    with world.ctx.sessions() as session:
        row = session.get(ComplaintRow, new_id)
        assert row is not None
        assert (row.opd_id, row.vm_id, row.state) == (world.opd["dinkes"], world.vm["web-dinkes"], "submitted")
        assert "halaman login putih" in row.description and "error terus" in row.description
        draft = session.scalar(select(IntakeDraftRow).where(IntakeDraftRow.complaint_id == new_id))
        assert draft is not None and draft.messages == 3
    replies = bodies_to(graph, DINKES_WA, sent)
    assert any(f"#{new_id}" in b and f"/complaints/{new_id}" in b for b in replies), replies

    admin = world.client("admin-dinkes")
    page = admin.get(f"/complaints/{new_id}")
    assert page.status_code == 200 and "halaman login putih" in page.text
    assert world.client("admin-disdik").get(f"/complaints/{new_id}").status_code == 404

    # The next message starts a new draft instead of reopening the filed complaint.
    send(client, text("wamid.W4", DINKES_WA, "Portal Dinkes juga lambat"))
    process_inbound(runtime)
    assert complaint_ids(world) - before == {new_id}
    with world.ctx.sessions() as session:
        open_drafts = list(session.scalars(select(IntakeDraftRow).where(
            IntakeDraftRow.address == DINKES_WA, IntakeDraftRow.complaint_id.is_(None))))
    assert len(open_drafts) == 1 and open_drafts[0].asset == f"site:{world.site['Portal Dinkes']}"


def test_an_unknown_number_creates_no_complaint_and_no_draft(
        world: World, webhook_app: tuple[TestClient, NotifyRuntime], graph: FakeGraph) -> None:
    client, runtime = webhook_app
    before, sent = complaint_ids(world), len(graph.sends())
    graph.media["m-wire-x"] = (jpeg(), "image/jpeg")
    send(client, image("wamid.X1", STRANGER_WA, "m-wire-x", "web-dinkes mati total sejak pagi"))
    process_inbound(runtime)
    deliver_due(runtime)
    assert complaint_ids(world) == before
    with world.ctx.sessions() as session:
        assert session.scalar(select(IntakeDraftRow.id).where(IntakeDraftRow.address == STRANGER_WA)) is None
    (reply,) = bodies_to(graph, STRANGER_WA, sent)
    assert "belum terdaftar" in reply


def test_engineers_get_one_sla_at_risk_alert_per_threshold(world: World) -> None:
    from pdn_ops.complaints.notifications import enqueue_sla_at_risk
    from pdn_ops.notify.model import Recipient

    complaint_id = file_by_service(world, "admin-dinkes", f"vm:{world.vm['web-dinkes']}")
    with world.ctx.sessions() as session:
        row = session.get(ComplaintRow, complaint_id)
        assert row is not None and row.sla_risk50_at is not None and row.sla_risk80_at is not None
        risk50, risk80 = row.sla_risk50_at, row.sla_risk80_at
    engineers = [Recipient(Channel.EMAIL, "engineer@diskominfo.example.go.id", "en")]
    url = world.ctx.settings.public_url

    def alerts() -> list[NotifyOutboxRow]:
        return outbox_for(world, complaint_id, "sla_at_risk")

    with transaction(world.ctx.sessions) as session:
        enqueue_sla_at_risk(session, risk50 - timedelta(seconds=1), engineers=engineers, public_url=url)
    assert alerts() == []
    for _ in range(3):
        with transaction(world.ctx.sessions) as session:
            enqueue_sla_at_risk(session, risk50 + timedelta(seconds=1), engineers=engineers, public_url=url)
    assert [(a.address, a.params["percent"]) for a in alerts()] == [("engineer@diskominfo.example.go.id", "50")]
    for _ in range(2):
        with transaction(world.ctx.sessions) as session:
            enqueue_sla_at_risk(session, risk80 + timedelta(seconds=1), engineers=engineers, public_url=url)
    assert [a.params["percent"] for a in alerts()] == ["50", "80"]
    assert all(a.urgent for a in alerts())
