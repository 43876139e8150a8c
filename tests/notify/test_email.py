"""E-mail against a real SMTP server on loopback (aiosmtpd): STARTTLS, implicit TLS, AUTH, multipart, languages."""

from __future__ import annotations

import email
import email.policy
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pdn_ops.core.db.engine import transaction
from pdn_ops.notify import outbox as notify_outbox
from pdn_ops.notify.channels.email import SmtpSender, message_id_for
from pdn_ops.notify.model import Channel, Recipient
from pdn_ops.notify.policy import RetryPolicy
from pdn_ops.notify.tables import NotifyOutboxRow
from pdn_ops.notify.worker import NotifyRuntime, deliver_due
from tests.notify.conftest import ADMIN_EMAIL, ADMIN_WA, Clock
from tests.notify.fake_graph import FakeGraph
from tests.notify.tls_certs import Certs, make_certs
from tests.support import free_port

SMTP_USER, SMTP_PASSWORD = "pdn-ops", "smtp-password-1"


@dataclass
class Mailroom:
    received: list[EmailMessage] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 Message accepted for delivery"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
                SMTP_USER.encode(), SMTP_PASSWORD.encode()):
            self.logins.append(auth_data.login.decode())
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("tls"))


def _server_context(certs: Certs) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(certs.cert_file), str(certs.key_file))
    return context


@pytest.fixture
def starttls_server(certs: Certs) -> Iterator[tuple[Mailroom, int]]:
    room = Mailroom()
    port = free_port()
    controller = Controller(room, hostname="127.0.0.1", port=port, tls_context=_server_context(certs),
                            require_starttls=True, auth_required=True, auth_require_tls=True,
                            authenticator=room.authenticate)
    controller.start()
    try:
        yield room, port
    finally:
        controller.stop()


@pytest.fixture
def implicit_tls_server(certs: Certs) -> Iterator[tuple[Mailroom, int]]:
    room = Mailroom()
    port = free_port()
    # aiosmtpd does not count an implicit-TLS connection as TLS for auth_require_tls; the socket is TLS anyway.
    controller = Controller(room, hostname="127.0.0.1", port=port, ssl_context=_server_context(certs),
                            auth_required=True, auth_require_tls=False, authenticator=room.authenticate,
                            server_hostname="127.0.0.1")
    controller.start()
    try:
        yield room, port
    finally:
        controller.stop()


def sender(port: int, certs: Certs, *, security: str = "starttls", password: str = SMTP_PASSWORD,
           ca_file: Path | None = None) -> SmtpSender:
    return SmtpSender("127.0.0.1", port, security, "Layanan PDN <pdn-ops@diskominfo.example.go.id>", SMTP_USER,
                      SecretStr(password), ca_file if ca_file is not None else certs.ca_file, timeout=5)


def mail_runtime(factory: sessionmaker[Session], clock: Clock, smtp: SmtpSender) -> NotifyRuntime:
    return NotifyRuntime(sessions=factory, senders={Channel.EMAIL: smtp}, retry=RetryPolicy(5, 30, 600),
                         use_templates=False, worker_id="mail-worker", clock=clock)


PARAMS = {"number": "PDN-2026-000007", "link": "https://pdn.example.go.id/complaints/7",
          "reason": "Deskripsi {{ 7*7 }} <b>tebal</b>"}


def outbox(factory: sessionmaker[Session]) -> list[NotifyOutboxRow]:
    with factory() as session:
        return list(session.scalars(select(NotifyOutboxRow).order_by(NotifyOutboxRow.id)))


def test_mail_goes_out_over_starttls_with_auth_as_text_and_html_in_the_recipients_language(
        factory: sessionmaker[Session], clock: Clock, certs: Certs, starttls_server: tuple[Mailroom, int]) -> None:
    room, port = starttls_server
    with transaction(factory) as session:
        notify_outbox.enqueue(session, now=clock(), event="complaint_returned", params=PARAMS, idempotency_key="c:7:returned",
                              recipients=[Recipient(Channel.EMAIL, ADMIN_EMAIL, "id"),
                                          Recipient(Channel.EMAIL, "head@dinkes.example.go.id", "en")])
    rt = mail_runtime(factory, clock, sender(port, certs))
    assert deliver_due(rt).sent == 2
    assert room.logins == [SMTP_USER, SMTP_USER]
    by_to = {str(m["To"]): m for m in room.received}
    indonesian, english = by_to[ADMIN_EMAIL], by_to["head@dinkes.example.go.id"]
    assert str(indonesian["Subject"]) == "Pengaduan PDN-2026-000007 dikembalikan untuk dilengkapi"
    assert str(english["Subject"]) == "Complaint PDN-2026-000007 returned for correction"
    assert indonesian.get_content_type() == "multipart/alternative"
    text = indonesian.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = indonesian.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Deskripsi {{ 7*7 }} <b>tebal</b>" in text and "49" not in text
    assert "Deskripsi {{ 7*7 }} &lt;b&gt;tebal&lt;/b&gt;" in html and "49" not in html
    assert str(indonesian["Message-ID"]).strip() == message_id_for(f"c:7:returned:email:{ADMIN_EMAIL}",
                                                           "pdn-ops@diskominfo.example.go.id")
    assert {r.status for r in outbox(factory)} == {"sent"}


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_mail_goes_out_over_implicit_tls(factory: sessionmaker[Session], clock: Clock, certs: Certs,
                                         implicit_tls_server: tuple[Mailroom, int]) -> None:
    room, port = implicit_tls_server
    with transaction(factory) as session:
        notify_outbox.enqueue(session, now=clock(), event="complaint_closed", params=PARAMS, idempotency_key="c:7:closed",
                              recipients=[Recipient(Channel.EMAIL, ADMIN_EMAIL, "en")])
    assert deliver_due(mail_runtime(factory, clock, sender(port, certs, security="tls"))).sent == 1
    assert [str(m["Subject"]) for m in room.received] == ["Complaint PDN-2026-000007 closed"]


def test_a_wrong_password_or_an_untrusted_certificate_keeps_the_mail_queued(
        factory: sessionmaker[Session], clock: Clock, certs: Certs, starttls_server: tuple[Mailroom, int],
        tmp_path: Path) -> None:
    room, port = starttls_server
    with transaction(factory) as session:
        notify_outbox.enqueue(session, now=clock(), event="complaint_closed", params=PARAMS, idempotency_key="c:8:closed",
                              recipients=[Recipient(Channel.EMAIL, ADMIN_EMAIL, "id")])
    assert deliver_due(mail_runtime(factory, clock, sender(port, certs, password="wrong"))).retried == 1
    (row,) = outbox(factory)
    assert row.status == "queued" and "authentication" in (row.last_error or "")
    assert "wrong" not in (row.last_error or "") and SMTP_PASSWORD not in (row.last_error or "")
    clock.advance(minutes=5)
    other_ca = make_certs(tmp_path / "other").ca_file
    assert deliver_due(mail_runtime(factory, clock, sender(port, certs, ca_file=other_ca))).retried == 1
    clock.advance(minutes=5)
    assert deliver_due(mail_runtime(factory, clock, sender(port, certs))).sent == 1
    assert len(room.received) == 1


STEP5 = ("complaint_received", "complaint_returned", "complaint_verified", "complaint_fixed", "complaint_closed")


def test_every_step5_notification_arrives_exactly_once_on_both_channels_despite_faults(
        factory: sessionmaker[Session], clock: Clock, certs: Certs, starttls_server: tuple[Mailroom, int],
        fake_graph: FakeGraph, runtime: NotifyRuntime) -> None:
    room, port = starttls_server
    recipients = [Recipient(Channel.WHATSAPP, ADMIN_WA, "id"), Recipient(Channel.EMAIL, ADMIN_EMAIL, "id")]
    for event in STEP5:
        with transaction(factory) as session:
            notify_outbox.enqueue(session, now=clock(), event=event, params=PARAMS, idempotency_key=f"c:9:{event}",
                                  recipients=recipients)
            # A state change retried by its caller enqueues the same key again: still one message.
            notify_outbox.enqueue(session, now=clock(), event=event, params=PARAMS, idempotency_key=f"c:9:{event}",
                                  recipients=recipients)
    rt = mail_runtime(factory, clock, sender(port, certs))
    rt.senders[Channel.WHATSAPP] = runtime.senders[Channel.WHATSAPP]
    fake_graph.fail_count = 4  # the WhatsApp provider is down for the first passes
    for _ in range(8):
        deliver_due(rt)
        clock.advance(minutes=30)
    subjects = sorted(str(m["Subject"]) for m in room.received)
    assert len(subjects) == 5 and len(set(subjects)) == 5
    assert len(fake_graph.accepted) == 5
    assert len({a.body["biz_opaque_callback_data"] for a in fake_graph.accepted}) == 5
    assert {r.status for r in outbox(factory)} == {"sent"} and len(outbox(factory)) == 10
