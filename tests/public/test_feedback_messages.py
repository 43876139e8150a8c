"""Complaints about the service over WhatsApp and e-mail: a message starting with LAYANAN goes to the service
queue from anyone (acknowledged once an hour per sender); any other message keeps its usual path."""

from __future__ import annotations

from sqlalchemy import select

from pdn_ops.notify.inbound import record_messages
from pdn_ops.notify.model import Channel, InboundMessage
from pdn_ops.notify.tables import NotifyInboundRow, NotifyOutboxRow
from pdn_ops.notify.worker import NotifyRuntime, process_inbound
from pdn_ops.public.intake import MessageFeedback
from pdn_ops.public.model import feedback_from_message
from pdn_ops.public.tables import ServiceFeedbackRow

STRANGER = "+6281399990001"


def test_layanan_messages_reach_the_service_queue_from_anyone(world) -> None:
    sessions = world.ctx.sessions
    with sessions() as session, session.begin():
        record_messages(session, [
            InboundMessage(Channel.WHATSAPP, "wamid.FB1", STRANGER, "LAYANAN: petugas tidak membalas pesan kami"),
            InboundMessage(Channel.EMAIL, "<fb2@example.org>", "warga@example.org",
                           "layanan\nformulir pengaduan sulit ditemukan di situs"),
            InboundMessage(Channel.WHATSAPP, "wamid.FB3", STRANGER, "situs kami mati"),
        ])
    runtime = NotifyRuntime(sessions=sessions, senders={}, intake=world.ctx.complaints.intake,
                            feedback=MessageFeedback("a-test-secret-of-some-length"))
    assert process_inbound(runtime) == 3
    with sessions() as session:
        rows = session.execute(select(ServiceFeedbackRow.channel, ServiceFeedbackRow.contact,
                                      ServiceFeedbackRow.message).order_by(ServiceFeedbackRow.id.desc()).limit(2)
                               ).all()
        outcomes = dict(session.execute(select(NotifyInboundRow.external_id, NotifyInboundRow.outcome)).all())
        acks = session.scalars(select(NotifyOutboxRow.address).where(
            NotifyOutboxRow.event == "service_feedback_received")).all()
    assert set(rows) == {("whatsapp", STRANGER, "petugas tidak membalas pesan kami"),
                         ("email", "warga@example.org", "formulir pengaduan sulit ditemukan di situs")}
    assert outcomes["wamid.FB1"] == "service_feedback" and outcomes["<fb2@example.org>"] == "service_feedback"
    assert outcomes["wamid.FB3"] == "refused", "a stranger's other message is still refused"
    assert sorted(acks) == sorted([STRANGER, "warga@example.org"])


def test_the_keyword_is_a_word_at_the_start() -> None:
    assert feedback_from_message("  Layanan lambat sekali") == "lambat sekali"
    assert feedback_from_message("LAYANANKU mati") is None
    assert feedback_from_message("situs layanan mati") is None
