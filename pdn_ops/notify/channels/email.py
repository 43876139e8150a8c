"""E-mail: sending over SMTP (STARTTLS or implicit TLS, AUTH) and reading the service mailbox over IMAP.

TLS is always verified (the system CAs, plus ``ca_file`` for a private relay); there is no switch to turn it off.
The Message-ID of an outgoing mail is derived from the outbox idempotency key, so if an unknown outcome ever
leads to a second copy, mail clients that collapse duplicates by Message-ID show it once.

SMTP errors are mapped like the WhatsApp ones: nothing sent yet (connect, TLS, AUTH, 4xx) -> DeliveryRetryable;
recipient or content refused with 5xx -> DeliveryRejected; connection lost during or after DATA -> DeliveryUnknown.
"""

from __future__ import annotations

import contextlib
import email.policy
import hashlib
import imaplib
import re
import smtplib
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, parseaddr
from pathlib import Path

from pydantic import SecretStr

from pdn_ops.core.errors import DeliveryRejected, DeliveryRetryable, DeliveryUnknown
from pdn_ops.notify.media import MAX_BYTES
from pdn_ops.notify.model import Channel, InboundMessage, OutboundMessage, SendResult

MAX_INBOUND_MAIL_BYTES = 6 * MAX_BYTES  # up to five photos plus text and MIME overhead
MAX_ATTACHMENTS = 5


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


def message_id_for(idempotency_key: str, from_addr: str) -> str:
    domain = parseaddr(from_addr)[1].rpartition("@")[2] or "pdn-ops.invalid"
    return f"<{hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]}@{domain}>"


@dataclass
class SmtpSender:
    host: str
    port: int
    security: str  # starttls | tls | none
    from_addr: str
    username: str = ""
    password: SecretStr | None = None
    ca_file: Path | None = None
    timeout: float = 20.0
    name: str = "smtp"
    channel: Channel = Channel.EMAIL
    idempotent: bool = False

    def build(self, message: OutboundMessage) -> EmailMessage:
        mail = EmailMessage(policy=email.policy.SMTP)
        mail["Subject"] = message.subject
        mail["From"] = self.from_addr
        mail["To"] = message.address
        mail["Date"] = format_datetime(datetime.now(UTC))
        mail["Message-ID"] = message_id_for(message.idempotency_key, self.from_addr)
        mail["Content-Language"] = message.language
        mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: auto-responders must not answer this
        mail.set_content(message.text)
        if message.html:
            mail.add_alternative(message.html, subtype="html")
        return mail

    def _connect(self) -> smtplib.SMTP:
        context = tls_context(self.ca_file)
        smtp: smtplib.SMTP
        if self.security == "tls":
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            if self.security == "starttls":
                smtp.starttls(context=context)
            if self.username:
                password = self.password.get_secret_value() if self.password else ""
                smtp.login(self.username, password)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def send(self, message: OutboundMessage) -> SendResult:
        mail = self.build(message)
        try:
            smtp = self._connect()
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryRetryable(f"SMTP: authentication refused ({exc.smtp_code})") from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryRetryable(f"SMTP: cannot connect ({type(exc).__name__})") from exc
        try:
            smtp.send_message(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if all(code >= 500 for code in codes):
                raise DeliveryRejected(f"SMTP: recipient refused ({codes[0]})") from exc
            raise DeliveryRetryable(f"SMTP: recipient deferred ({codes[0]})") from exc
        except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as exc:
            if exc.smtp_code >= 500:
                raise DeliveryRejected(f"SMTP: message refused ({exc.smtp_code})") from exc
            raise DeliveryRetryable(f"SMTP: message deferred ({exc.smtp_code})") from exc
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise DeliveryUnknown(f"SMTP: connection lost while sending ({type(exc).__name__})") from exc
        finally:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()
        return SendResult(provider=self.name, provider_message_id=str(mail["Message-ID"]))


def is_automatic(raw: bytes) -> bool:
    """RFC 3834: auto-replies, bounces and list traffic are never answered, or two robots would talk forever."""
    headers = BytesParser(policy=email.policy.default).parsebytes(raw, headersonly=True)
    auto = str(headers.get("Auto-Submitted", "no")).strip().lower()
    precedence = str(headers.get("Precedence", "")).strip().lower()
    sender = parseaddr(str(headers.get("From", "")))[1].lower()
    return (auto != "no" or precedence in ("bulk", "junk", "list", "auto_reply")
            or sender.startswith(("mailer-daemon@", "postmaster@")) or headers.get("List-Id") is not None)


def parse_inbound(raw: bytes) -> InboundMessage:
    """A received mail as an inbound message: sender address, subject and plain text, image attachments."""
    mail = BytesParser(policy=email.policy.default).parsebytes(raw)
    sender = parseaddr(str(mail.get("From", "")))[1].strip().lower()
    message_id = str(mail.get("Message-ID", "")).strip()
    external_id = message_id or f"sha256:{hashlib.sha256(raw).hexdigest()}"
    subject = str(mail.get("Subject", "")).strip()
    body = mail.get_body(preferencelist=("plain", "html"))
    text = ""
    if body is not None:
        text = body.get_content()
        if body.get_content_type() == "text/html":
            text = re.sub(r"<[^>]+>", " ", text)  # enough to read a complaint; it is stored as text, never HTML
    attachments: list[tuple[str, bytes]] = []
    for part in mail.iter_attachments():
        if len(attachments) >= MAX_ATTACHMENTS:
            break
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            attachments.append((str(part.get_filename() or "attachment"), payload))
    full_text = f"{subject}\n\n{text.strip()}".strip() if subject else text.strip()
    # Identity is the Message-ID, not the IMAP UID: UIDs are per mailbox and reset with UIDVALIDITY.
    return InboundMessage(Channel.EMAIL, external_id[:400], sender, full_text, (), tuple(attachments))


@dataclass
class ImapMailbox:
    host: str
    port: int
    security: str  # tls | starttls | none
    username: str
    password: SecretStr | None
    mailbox: str = "INBOX"
    ca_file: Path | None = None
    timeout: float = 30.0

    def _connect(self) -> imaplib.IMAP4:
        context = tls_context(self.ca_file)
        client: imaplib.IMAP4
        if self.security == "tls":
            client = imaplib.IMAP4_SSL(self.host, self.port, ssl_context=context, timeout=self.timeout)
        else:
            client = imaplib.IMAP4(self.host, self.port, timeout=self.timeout)
        try:
            if self.security == "starttls":
                client.starttls(ssl_context=context)
            client.login(self.username, self.password.get_secret_value() if self.password else "")
            status, _ = client.select(self.mailbox)
            if status != "OK":
                raise imaplib.IMAP4.error(f"cannot select mailbox {self.mailbox!r}")
        except BaseException:
            client.shutdown()
            raise
        return client

    def fetch_unseen(self, limit: int = 50) -> list[tuple[str, bytes | None]]:
        """(uid, raw) for unseen mails, oldest first, without marking them seen; raw is None when too large."""
        client = self._connect()
        try:
            status, data = client.uid("SEARCH", "UNSEEN")
            if status != "OK" or not data or not data[0]:
                return []
            uids = data[0].decode().split()[:limit]
            found: list[tuple[str, bytes | None]] = []
            for uid in uids:
                status, sized = client.uid("FETCH", uid, "(RFC822.SIZE)")
                match = re.search(rb"RFC822\.SIZE (\d+)", sized[0] if sized and isinstance(sized[0], bytes) else b"")
                if match and int(match.group(1)) > MAX_INBOUND_MAIL_BYTES:
                    found.append((uid, None))
                    continue
                status, parts = client.uid("FETCH", uid, "(BODY.PEEK[])")
                raw = next((p[1] for p in parts if isinstance(p, tuple)), None)
                if status == "OK" and isinstance(raw, bytes):
                    found.append((uid, raw))
            return found
        finally:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                client.logout()

    def mark_seen(self, uids: list[str]) -> None:
        if not uids:
            return
        client = self._connect()
        try:
            client.uid("STORE", ",".join(uids), "+FLAGS", "(\\Seen)")
        finally:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                client.logout()
