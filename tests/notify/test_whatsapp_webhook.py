"""The WhatsApp webhook through the real app, the worker, and the fake Graph API, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from pdn_ops.app.factory import create_app
from pdn_ops.app.runtime import build_runtime
from pdn_ops.core.settings import load_settings
from pdn_ops.notify.tables import NotifyInboundRow, NotifyOutboxRow
from pdn_ops.notify.worker import NotifyRuntime, deliver_due, process_inbound
from tests.notify import intake_impl
from tests.notify.conftest import ADMIN_WA, APP_SECRET, OTHER_WA, VERIFY_TOKEN
from tests.notify.fake_graph import TOKEN, FakeGraph, envelope, signed

URL = "/webhooks/whatsapp"


@pytest.fixture
def client(notify_engine: Engine, fake_graph: FakeGraph) -> Iterator[TestClient]:
    settings = load_settings(
        demo=True, database_url=str(notify_engine.url.render_as_string(hide_password=False)),
        whatsapp_provider="meta", whatsapp_base_url=fake_graph.url, whatsapp_phone_number_id="1234",
        whatsapp_access_token=TOKEN, whatsapp_app_secret=APP_SECRET, whatsapp_verify_token=VERIFY_TOKEN,
        notify_worker=False,
    )
    app = create_app(build_runtime(settings, engine=notify_engine))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def text_message(wamid: str, sender: str, body: str) -> dict[str, Any]:
    return {"from": sender.lstrip("+"), "id": wamid, "timestamp": "1764300000", "type": "text",
            "text": {"body": body}}


def image_message(wamid: str, sender: str, media_id: str, caption: str = "") -> dict[str, Any]:
    return {"from": sender.lstrip("+"), "id": wamid, "timestamp": "1764300000", "type": "image",
            "image": {"id": media_id, "mime_type": "image/jpeg", "sha256": "x", "caption": caption}}


def post_signed(client: TestClient, payload: dict[str, Any]) -> Any:
    raw, headers = signed(payload, APP_SECRET)
    return client.post(URL, content=raw, headers=headers)


def inbound_count(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return int(session.scalar(select(func.count()).select_from(NotifyInboundRow)) or 0)


def drafts(factory: sessionmaker[Session]) -> list[Any]:
    with factory() as session:
        return list(session.execute(select(intake_impl.drafts).order_by(intake_impl.drafts.c.id)))


def outbox(factory: sessionmaker[Session]) -> list[NotifyOutboxRow]:
    with factory() as session:
        return list(session.scalars(select(NotifyOutboxRow).order_by(NotifyOutboxRow.id)))


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_verification_echoes_the_challenge_only_for_the_right_token(client: TestClient) -> None:
    ok = client.get(URL, params={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN,
                                 "hub.challenge": "1158201444"})
    assert (ok.status_code, ok.text) == (200, "1158201444")
    wrong = client.get(URL, params={"hub.mode": "subscribe", "hub.verify_token": "guess",
                                    "hub.challenge": "1158201444"})
    assert wrong.status_code == 403 and "1158201444" not in wrong.text
    assert client.get(URL).status_code == 403


def test_wrong_missing_or_reserialised_signatures_are_refused_and_nothing_is_recorded(
        client: TestClient, factory: sessionmaker[Session]) -> None:
    payload = envelope(messages=[text_message("wamid.SIG1", ADMIN_WA, "situs mati")])
    raw, headers = signed(payload, APP_SECRET)
    wrong = client.post(URL, content=raw, headers={**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64})
    missing = client.post(URL, content=raw, headers={"Content-Type": "application/json"})
    other_secret = client.post(URL, content=raw, headers=signed(payload, "not-the-secret")[1])
    # Signed over a re-serialisation of the same JSON (spaces after separators), sent as the compact bytes.
    reserialised_sig = signed(payload, APP_SECRET)[1]["X-Hub-Signature-256"]
    pretty = json.dumps(payload).encode()
    reserialised = client.post(URL, content=pretty, headers={
        "X-Hub-Signature-256": reserialised_sig, "Content-Type": "application/json"})
    no_prefix = client.post(URL, content=raw, headers={**headers,
                                                       "X-Hub-Signature-256": headers["X-Hub-Signature-256"][7:]})
    assert [r.status_code for r in (wrong, missing, other_secret, reserialised, no_prefix)] == [403] * 5
    assert inbound_count(factory) == 0
    assert post_signed(client, payload).status_code == 200, "the same body with its real signature is accepted"
    assert inbound_count(factory) == 1


def test_the_same_signed_delivery_ten_times_is_processed_once(
        client: TestClient, factory: sessionmaker[Session], runtime: NotifyRuntime, fake_graph: FakeGraph) -> None:
    payload = envelope(messages=[text_message("wamid.TEN", ADMIN_WA, "Situs dinkes tidak bisa dibuka")])
    answers = [post_signed(client, payload) for _ in range(10)]
    assert [a.status_code for a in answers] == [200] * 10
    assert [a.json()["new_messages"] for a in answers] == [1] + [0] * 9
    for _ in range(3):
        process_inbound(runtime)
        deliver_due(runtime)
    (draft,) = drafts(factory)
    assert (draft.opd_code, draft.texts) == ("dinkes", ["Situs dinkes tidak bisa dibuka"])
    (reply,) = fake_graph.sends()
    assert reply["to"] == ADMIN_WA.lstrip("+") and reply["type"] == "text"
    assert "PDN-T-" in reply["text"]["body"] and "/complaints/PDN-T-" in reply["text"]["body"]


def test_a_complaint_is_started_and_continued_over_whatsapp(
        client: TestClient, factory: sessionmaker[Session], runtime: NotifyRuntime, fake_graph: FakeGraph) -> None:
    post_signed(client, envelope(messages=[text_message("wamid.C1", ADMIN_WA, "VM simpeg mati")]))
    process_inbound(runtime)
    post_signed(client, envelope(messages=[text_message("wamid.C2", ADMIN_WA, "sejak jam 8 pagi")]))
    process_inbound(runtime)
    deliver_due(runtime)
    (draft,) = drafts(factory)
    assert draft.texts == ["VM simpeg mati", "sejak jam 8 pagi"]
    bodies = [s["text"]["body"] for s in fake_graph.sends()]
    number = f"PDN-T-{draft.id:05d}"
    assert len(bodies) == 2 and all(number in b for b in bodies), "both replies carry the same number"
    with factory() as session:
        outcomes = list(session.scalars(select(NotifyInboundRow.outcome).order_by(NotifyInboundRow.id)))
    assert outcomes == ["created", "continued"]


def test_a_message_from_an_unregistered_number_gets_a_polite_refusal_and_no_complaint(
        client: TestClient, factory: sessionmaker[Session], runtime: NotifyRuntime, fake_graph: FakeGraph) -> None:
    fake_graph.media["m-stranger"] = (png_bytes(), "image/png")
    post_signed(client, envelope(messages=[image_message("wamid.X1", OTHER_WA, "m-stranger", "tolong")]))
    post_signed(client, envelope(messages=[text_message("wamid.X2", OTHER_WA, "halo?")]))
    post_signed(client, envelope(messages=[text_message("wamid.X3", OTHER_WA, "halo??")]))
    process_inbound(runtime)
    deliver_due(runtime)
    assert drafts(factory) == []
    (reply,) = fake_graph.sends()  # one refusal per sender per day, however often they write
    assert reply["to"] == OTHER_WA.lstrip("+") and "belum terdaftar" in reply["text"]["body"]
    assert not [p for m, p, _ in fake_graph.requests if m == "GET"], "a stranger's media is never downloaded"


def test_photos_are_fetched_through_the_media_endpoint_and_checked_by_content(
        client: TestClient, factory: sessionmaker[Session], runtime: NotifyRuntime, fake_graph: FakeGraph) -> None:
    fake_graph.media["m-good"] = (png_bytes(), "image/jpeg")  # the declared type is ignored; the content decides
    fake_graph.media["m-script"] = (b"<script>alert(1)</script>", "image/jpeg")
    post_signed(client, envelope(messages=[image_message("wamid.P1", ADMIN_WA, "m-good", "layar error")]))
    post_signed(client, envelope(messages=[image_message("wamid.P2", ADMIN_WA, "m-script")]))
    assert process_inbound(runtime) == 2
    deliver_due(runtime)
    (draft,) = drafts(factory)
    assert draft.photos == ["image/png"] and draft.texts == ["layar error"]
    bodies = [s["text"]["body"] for s in fake_graph.sends()]
    assert any("Foto tidak dapat diterima" in b and "bukan gambar" in b for b in bodies)
    assert sum("PDN-T-" in b for b in bodies) == 1, "the refused photo alone adds nothing to the complaint"


def test_english_speaking_admin_gets_english_replies(
        client: TestClient, factory: sessionmaker[Session], runtime: NotifyRuntime, fake_graph: FakeGraph) -> None:
    post_signed(client, envelope(messages=[text_message("wamid.EN1", "+6281200000002", "site is down")]))
    process_inbound(runtime)
    deliver_due(runtime)
    (reply,) = fake_graph.sends()
    assert reply["text"]["body"].startswith("Thank you.")


@pytest.mark.parametrize("body", [b"x" * (5 * 1024 * 1024), b"{not json", b"[1, 2, 3]", b"\xff\xfe\x00",
                                  b'{"object": "whatsapp_business_account", "entry": "nope"}'])
def test_oversized_or_malformed_bodies_get_4xx_and_never_500(
        client: TestClient, factory: sessionmaker[Session], body: bytes) -> None:
    from pdn_ops.notify.channels.whatsapp_webhook import sign

    answer = client.post(URL, content=body, headers={"X-Hub-Signature-256": sign(body, APP_SECRET),
                                                     "Content-Type": "application/json"})
    assert 400 <= answer.status_code < 500, answer.status_code
    unsigned = client.post(URL, content=body, headers={"Content-Type": "application/json"})
    assert 400 <= unsigned.status_code < 500
    assert inbound_count(factory) == 0


def test_status_callbacks_through_the_webhook_update_delivery_idempotently(
        client: TestClient, factory: sessionmaker[Session], runtime: NotifyRuntime, fake_graph: FakeGraph) -> None:
    post_signed(client, envelope(messages=[text_message("wamid.S1", ADMIN_WA, "mohon cek")]))
    process_inbound(runtime)
    deliver_due(runtime)
    (accepted,) = fake_graph.accepted
    for status in ("read", "delivered", "read", "sent", "read"):
        assert post_signed(client, fake_graph.status_callback(accepted, status)).status_code == 200
    (row,) = outbox(factory)
    assert row.status == "read" and row.provider_message_id == accepted.wamid


def test_a_chunked_body_without_length_is_capped_too(client: TestClient, factory: sessionmaker[Session]) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(80):
            yield b"y" * 65536  # 5 MB in all, announced by no Content-Length

    answer = client.post(URL, content=chunks(), headers={"X-Hub-Signature-256": "sha256=" + "0" * 64})
    assert answer.status_code == 413
    assert inbound_count(factory) == 0


def test_media_endpoint_down_keeps_the_message_and_processes_it_later(
        client: TestClient, factory: sessionmaker[Session], runtime: NotifyRuntime, fake_graph: FakeGraph) -> None:
    fake_graph.media["m-later"] = (png_bytes(), "image/png")
    fake_graph.media_fail_count = 1
    post_signed(client, envelope(messages=[image_message("wamid.L1", ADMIN_WA, "m-later", "server hang")]))
    assert process_inbound(runtime) == 0
    assert drafts(factory) == []
    assert process_inbound(runtime) == 0, "waits for its retry time"

    runtime.clock.advance(minutes=1)  # type: ignore[attr-defined]
    assert process_inbound(runtime) == 1
    (draft,) = drafts(factory)
    assert draft.photos == ["image/png"]


def test_an_intake_that_fails_rolls_back_and_gives_up_after_the_cap(
        client: TestClient, factory: sessionmaker[Session], runtime: NotifyRuntime) -> None:
    class BrokenIntake(intake_impl.ContactsIntake):
        def start_or_continue(self, session, **kwargs):
            super().start_or_continue(session, **kwargs)
            raise RuntimeError("complaint code bug")

    runtime.intake = BrokenIntake()
    post_signed(client, envelope(messages=[text_message("wamid.B1", ADMIN_WA, "halo")]))
    for _ in range(runtime.retry.max_attempts):
        assert process_inbound(runtime) == 0
        runtime.clock.advance(hours=1)  # type: ignore[attr-defined]
    assert drafts(factory) == [], "each failed attempt rolled back"
    with factory() as session:
        (row,) = session.scalars(select(NotifyInboundRow)).all()
    assert (row.status, row.outcome, row.detail) == ("failed", "error", "intake error: RuntimeError")
    assert outbox(factory) == []
