"""Inbound e-mail from a real IMAP server (Dovecot as a plain process on loopback), IMAPS and STARTTLS."""

from __future__ import annotations

import imaplib
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pdn_ops.notify.channels.email import ImapMailbox
from pdn_ops.notify.tables import NotifyInboundRow, NotifyOutboxRow
from pdn_ops.notify.worker import NotifyRuntime, poll_mailbox, process_inbound
from tests.notify import intake_impl
from tests.notify.conftest import ADMIN_EMAIL
from tests.notify.test_whatsapp_webhook import png_bytes
from tests.notify.tls_certs import Certs, make_certs
from tests.support import free_port, missing, port_open, require_binary

MAILBOX_USER, MAILBOX_PASSWORD = "intake@pdn.example.go.id", "imap-pass-1"

CONFIG = """
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{d}/tls/server.pem
ssl_key = <{d}/tls/server.key
auth_mechanisms = plain login
mail_uid = nobody
mail_gid = nogroup
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={d}/home/%u
}}
mail_location = maildir:{d}/mail/%u
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
default_login_user = dovenull
default_internal_user = dovecot
"""


@dataclass
class Dovecot:
    imap_port: int
    imaps_port: int
    certs: Certs

    def mailbox(self, security: str = "tls") -> ImapMailbox:
        port = self.imaps_port if security == "tls" else self.imap_port
        return ImapMailbox("127.0.0.1", port, security, MAILBOX_USER, SecretStr(MAILBOX_PASSWORD),
                           ca_file=self.certs.ca_file, timeout=10)

    def client(self) -> imaplib.IMAP4_SSL:
        context = ssl.create_default_context(cafile=str(self.certs.ca_file))
        client = imaplib.IMAP4_SSL("127.0.0.1", self.imaps_port, ssl_context=context, timeout=10)
        client.login(MAILBOX_USER, MAILBOX_PASSWORD)
        return client


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    binary = require_binary("dovecot", "/usr/sbin/dovecot")
    if shutil.which("chown") is None:
        missing("chown", "coreutils")
    # Not under pytest's 0700 temp root: Dovecot's mail processes run as nobody and must reach the maildir.
    directory = Path(tempfile.mkdtemp(prefix="pdnops-dovecot-"))
    directory.chmod(0o755)
    try:
        for sub in ("run", "state", "mail", "home"):
            (directory / sub).mkdir()
        shutil.chown(directory / "mail", "nobody", "nogroup")
        shutil.chown(directory / "home", "nobody", "nogroup")
        certs = make_certs(directory / "tls")
        (directory / "passwd").write_text(f"{MAILBOX_USER}:{{PLAIN}}{MAILBOX_PASSWORD}::::::\n")
        imap_port, imaps_port = free_port(), free_port()
        config = directory / "dovecot.conf"
        config.write_text(CONFIG.format(d=directory, imap_port=imap_port, imaps_port=imaps_port))
        process = subprocess.Popen([binary, "-F", "-c", str(config)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 15
            while not (port_open("127.0.0.1", imaps_port) and port_open("127.0.0.1", imap_port)):
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (directory / "dovecot.log")
                    detail = log.read_text()[-500:] if log.exists() else ""
                    missing("Dovecot", f"did not start: {detail or process.stderr.read()[-500:]!r}")  # type: ignore[union-attr]
                time.sleep(0.05)
            yield Dovecot(imap_port, imaps_port, certs)
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
            if process.stderr is not None:
                process.stderr.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def empty_mailbox(dovecot: Dovecot) -> Dovecot:
    client = dovecot.client()
    try:
        _, count = client.select("INBOX")
        if count and count[0] not in (b"0", None):
            client.store("1:*", "+FLAGS", "(\\Deleted)")
            client.expunge()
    finally:
        client.logout()
    return dovecot


def append(dovecot: Dovecot, *, sender: str, subject: str, body: str, message_id: str,
           photo: bytes | None = None, auto: bool = False) -> None:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"], mail["Message-ID"] = sender, MAILBOX_USER, subject, message_id
    if auto:
        mail["Auto-Submitted"] = "auto-replied"
    mail.set_content(body)
    if photo is not None:
        mail.add_attachment(photo, maintype="image", subtype="jpeg", filename="layar.jpg")
    client = dovecot.client()
    try:
        status, _ = client.append("INBOX", None, None, mail.as_bytes())
        assert status == "OK"
    finally:
        client.logout()


def test_mail_from_a_registered_address_starts_a_complaint_and_strangers_are_refused(
        empty_mailbox: Dovecot, runtime: NotifyRuntime, factory: sessionmaker[Session]) -> None:
    append(empty_mailbox, sender=f"Admin Dinkes <{ADMIN_EMAIL.upper()}>", subject="Situs dinkes mati",
           body="Sejak pagi situs tidak bisa dibuka. {{ 7*7 }}", message_id="<m1@dinkes.example.go.id>",
           photo=png_bytes())
    append(empty_mailbox, sender="someone@gmail.example", subject="halo", body="tolong",
           message_id="<m2@gmail.example>")
    append(empty_mailbox, sender="someone@gmail.example", subject="Out of office", body="cuti",
           message_id="<m2b@gmail.example>", auto=True)
    runtime.mailbox = empty_mailbox.mailbox("tls")
    assert poll_mailbox(runtime) == 2, "the auto-reply is not recorded"
    assert poll_mailbox(runtime) == 0, "flagged seen after being recorded"
    assert process_inbound(runtime) == 2
    with factory() as session:
        (draft,) = session.execute(select(intake_impl.drafts)).all()
        replies = {(r.event, r.channel, r.address) for r in session.scalars(select(NotifyOutboxRow))}
    assert draft.opd_code == "dinkes" and draft.photos == ["image/png"]
    assert draft.texts == ["Situs dinkes mati\n\nSejak pagi situs tidak bisa dibuka. {{ 7*7 }}"]
    assert replies == {("intake_reply", "email", ADMIN_EMAIL), ("intake_refused", "email", "someone@gmail.example")}


def test_a_mail_seen_twice_is_recorded_once_over_starttls(
        empty_mailbox: Dovecot, runtime: NotifyRuntime, factory: sessionmaker[Session]) -> None:
    append(empty_mailbox, sender=ADMIN_EMAIL, subject="VM lambat", body="mohon dicek",
           message_id="<m3@dinkes.example.go.id>")
    runtime.mailbox = empty_mailbox.mailbox("starttls")
    assert poll_mailbox(runtime) == 1
    client = empty_mailbox.client()  # as if the flag had been lost (a crash before STORE \Seen)
    try:
        client.select("INBOX")
        client.store("1:*", "-FLAGS", "(\\Seen)")
    finally:
        client.logout()
    assert poll_mailbox(runtime) == 0, "the Message-ID is already recorded"
    with factory() as session:
        assert len(session.scalars(select(NotifyInboundRow)).all()) == 1


def test_a_wrong_mailbox_password_is_an_error_not_silence(empty_mailbox: Dovecot, runtime: NotifyRuntime) -> None:
    box = empty_mailbox.mailbox("tls")
    box.password = SecretStr("wrong")
    runtime.mailbox = box
    with pytest.raises(imaplib.IMAP4.error):
        poll_mailbox(runtime)
