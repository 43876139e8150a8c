"""The notification worker: delivers the outbox, acts on inbound messages, polls the service mailbox.

One-step functions (``deliver_due``, ``process_inbound``, ``poll_mailbox``) each claim their work atomically, so
any number of worker threads or processes can run them; ``NotifyWorker`` loops over them in a thread, and
``start_notify_worker`` is the ``create_app(start_hooks=[...])`` hook. Web requests never send anything.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from pdn_ops.core.db.faults import OutageLog, database_fault
from pdn_ops.core.db.tables import utcnow
from pdn_ops.core.errors import DeliveryError, DeliveryRejected, DeliveryUnknown
from pdn_ops.core.settings import Settings
from pdn_ops.notify import inbound as notify_inbound
from pdn_ops.notify import outbox as notify_outbox
from pdn_ops.notify import rendering as templates
from pdn_ops.notify.channels.email import ImapMailbox, SmtpSender, is_automatic, parse_inbound
from pdn_ops.notify.channels.whatsapp import GatewayProvider, MediaSource, MetaCloudProvider, Sender
from pdn_ops.notify.intake import ComplaintIntake, FeedbackIntake
from pdn_ops.notify.model import Channel, SendResult
from pdn_ops.notify.policy import RetryPolicy

log = logging.getLogger(__name__)


@dataclass
class NotifyRuntime:
    sessions: sessionmaker[Session]
    senders: dict[Channel, Sender]
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    lease: timedelta = timedelta(seconds=60)
    unknown_grace: timedelta = timedelta(minutes=10)
    use_templates: bool = True
    media: MediaSource | None = None
    intake: ComplaintIntake | None = None
    feedback: FeedbackIntake | None = None  # complaints about the service, before the complaint intake
    mailbox: ImapMailbox | None = None
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    clock: Callable[[], datetime] = utcnow


@dataclass
class DeliveryReport:
    sent: int = 0
    retried: int = 0
    unknown: int = 0
    failed: int = 0
    recovered: int = 0


def deliver_due(rt: NotifyRuntime, *, limit: int = 20) -> DeliveryReport:
    """One pass: requeue messages whose outcome stayed unknown past the grace window, then send what is due."""
    report = DeliveryReport()
    now = rt.clock()
    idempotent = frozenset(ch for ch, sender in rt.senders.items() if sender.idempotent)
    report.recovered = notify_outbox.recover_unknown(rt.sessions, now=now, grace=rt.unknown_grace,
                                                     idempotent_channels=idempotent,
                                                     max_attempts=rt.retry.max_attempts)
    claims = notify_outbox.claim_due(rt.sessions, worker_id=rt.worker_id, now=now, lease=rt.lease, limit=limit,
                                     channels=frozenset(rt.senders))
    for claim in claims:
        sender = rt.senders[claim.channel]
        try:
            message = templates.render(
                idempotency_key=claim.idempotency_key, event=claim.event, channel=claim.channel,
                address=claim.address, language=claim.language, params=claim.params,
                use_templates=rt.use_templates and sender.name == "meta" and not claim.event.startswith("intake_"),
            )
            try:
                result: SendResult = sender.send(message)
            except DeliveryError:
                raise
            except Exception as exc:
                # A bug or an unmapped library error after the request may have gone out: unknown, never blind.
                log.exception("notification %s via %s: unexpected error", claim.id, sender.name)
                raise DeliveryUnknown(f"unexpected {type(exc).__name__}") from exc
        except DeliveryError as exc:
            status = notify_outbox.record_error(rt.sessions, claim, error=exc,
                                                policy=rt.retry, now=rt.clock())
            log.warning("notification %s via %s: %s (now %s)", claim.id, sender.name, exc, status)
            if status == "queued":
                report.retried += 1
            elif status == "failed":
                report.failed += 1
            else:
                report.unknown += 1
            continue
        except (KeyError, ValueError) as exc:
            # A row that cannot be rendered will never render: fail it rather than retry forever.
            notify_outbox.record_error(rt.sessions, claim, error=DeliveryRejected(f"cannot render: {exc}"),
                                       policy=rt.retry, now=rt.clock())
            report.failed += 1
            continue
        notify_outbox.record_sent(rt.sessions, claim, result=result, now=rt.clock())
        report.sent += 1
    return report


def process_inbound(rt: NotifyRuntime, *, limit: int = 10) -> int:
    """Act on recorded inbound messages; returns how many were completed in this pass."""
    if rt.intake is None:
        return 0
    done = 0
    for claim in notify_inbound.claim_inbound(rt.sessions, now=rt.clock(), lease=rt.lease, limit=limit):
        try:
            with rt.sessions() as session, session.begin():
                admin = rt.intake.registered_admin(session, channel=claim.channel, address=claim.sender)
            # Strangers' media is never downloaded; registered admins' media is fetched outside any transaction.
            fetched = (notify_inbound.fetch_photos(claim, rt.media) if admin is not None
                       else notify_inbound.FetchedPhotos([], []))
            with rt.sessions() as session, session.begin():
                outcome = notify_inbound.complete_inbound(session, claim, intake=rt.intake, admin=admin,
                                                          fetched=fetched, now=rt.clock(), feedback=rt.feedback)
            log.info("inbound %s message %s: %s", claim.channel.value, claim.id, outcome)
            done += 1
        except DeliveryError as exc:
            notify_inbound.release_inbound(rt.sessions, claim, error=str(exc), now=rt.clock(),
                                           retry_in=rt.retry.delay(1), max_attempts=rt.retry.max_attempts)
            log.warning("inbound message %s will be retried: %s", claim.id, exc)
        except Exception as exc:
            # The intake (complaint code) failed: its transaction rolled back; record it, retry, give up at the cap.
            log.exception("inbound message %s: the intake failed", claim.id)
            notify_inbound.release_inbound(rt.sessions, claim, error=f"intake error: {type(exc).__name__}",
                                           now=rt.clock(), retry_in=rt.retry.delay(1),
                                           max_attempts=rt.retry.max_attempts)
    return done


def poll_mailbox(rt: NotifyRuntime) -> int:
    """Record unseen mails of the service mailbox, then flag them seen; returns how many were new."""
    if rt.mailbox is None:
        return 0
    found = rt.mailbox.fetch_unseen()
    fresh = 0
    with rt.sessions() as session, session.begin():
        for uid, raw in found:
            if raw is None:
                log.warning("mail uid %s is larger than the intake limit; left for a person", uid)
                continue
            if is_automatic(raw):
                log.info("mail uid %s is an automatic message (auto-reply, bounce, list); not answered", uid)
                continue
            fresh += notify_inbound.record_messages(session, [parse_inbound(raw)], now=rt.clock())
    # Flagged only after the commit: a crash in between records nothing twice (the Message-ID is unique).
    rt.mailbox.mark_seen([uid for uid, _ in found])
    return fresh


def build_runtime(settings: Settings, sessions: sessionmaker[Session], *,
                  intake: ComplaintIntake | None = None, feedback: FeedbackIntake | None = None) -> NotifyRuntime:
    """The runtime the settings describe; channels without settings are simply absent (their messages wait)."""
    senders: dict[Channel, Sender] = {}
    media: MediaSource | None = None
    if settings.whatsapp_provider == "meta" and settings.whatsapp_access_token is not None:
        meta = MetaCloudProvider(settings.whatsapp_base_url, settings.whatsapp_api_version,
                                 settings.whatsapp_phone_number_id, settings.whatsapp_access_token,
                                 timeout=settings.whatsapp_timeout)
        senders[Channel.WHATSAPP], media = meta, meta
    elif settings.whatsapp_provider == "gateway" and settings.whatsapp_gateway_url:
        senders[Channel.WHATSAPP] = GatewayProvider(settings.whatsapp_gateway_url, settings.whatsapp_gateway_token,
                                                    timeout=settings.whatsapp_timeout)
    if settings.smtp_host:
        senders[Channel.EMAIL] = SmtpSender(settings.smtp_host, settings.smtp_port, settings.smtp_security,
                                            settings.smtp_from, settings.smtp_username, settings.smtp_password,
                                            settings.smtp_ca_file, settings.smtp_timeout)
    mailbox = None
    if settings.imap_host:
        mailbox = ImapMailbox(settings.imap_host, settings.imap_port, settings.imap_security,
                              settings.imap_username, settings.imap_password, settings.imap_mailbox,
                              settings.imap_ca_file)
    return NotifyRuntime(
        sessions=sessions, senders=senders, media=media, intake=intake, feedback=feedback, mailbox=mailbox,
        retry=RetryPolicy(settings.notify_max_attempts, settings.notify_backoff_base_seconds,
                          settings.notify_backoff_max_seconds),
        lease=timedelta(seconds=settings.notify_lease_seconds),
        unknown_grace=timedelta(seconds=settings.notify_unknown_grace_seconds),
        use_templates=settings.whatsapp_use_templates,
    )


class NotifyWorker(threading.Thread):
    """Loops over the one-step functions until stopped; an error in one pass is logged and the loop goes on."""

    def __init__(self, rt: NotifyRuntime, *, poll_seconds: float = 2.0, mailbox_seconds: float = 60.0) -> None:
        super().__init__(name="pdn-ops-notify", daemon=True)
        self.rt, self.poll_seconds, self.mailbox_seconds = rt, poll_seconds, mailbox_seconds
        self.stopping = threading.Event()
        self.outages = OutageLog(log, "notification worker waits")

    def run(self) -> None:
        next_mail = time.monotonic()
        while not self.stopping.is_set():
            if self.rt.mailbox is not None and time.monotonic() >= next_mail:
                self._guarded(poll_mailbox)
                next_mail = time.monotonic() + self.mailbox_seconds
            for step in (deliver_due, process_inbound):
                self._guarded(step)
            self.stopping.wait(self.poll_seconds)

    def _guarded(self, step: Callable[[NotifyRuntime], Any]) -> None:
        try:
            step(self.rt)
        except Exception as exc:  # the loop must outlive a database hiccup; a bug's traceback is logged
            if (kind := database_fault(exc)) is not None:
                self.outages.failed(kind, exc)  # one line per outage, not a traceback every poll
            else:
                log.exception("notification worker step %s failed", step.__name__)
        else:
            self.outages.succeeded()

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        self.join(timeout)


def start_notify_worker(settings: Settings, sessions: sessionmaker[Session], *,
                        intake: ComplaintIntake | None,
                        feedback: FeedbackIntake | None = None) -> NotifyWorker | None:
    """One worker thread inside the service (``PDN_OPS_NOTIFY_WORKER=1``); ``intake`` turns inbound messages into
    complaints (the complaint feature's ``ComplaintsIntake``)."""
    if not settings.notify_worker:
        return None
    worker = NotifyWorker(build_runtime(settings, sessions, intake=intake, feedback=feedback),
                          poll_seconds=settings.notify_poll_seconds,
                          mailbox_seconds=settings.imap_poll_seconds)
    worker.start()
    return worker
