"""``pdn-ops notify``: run the notification worker as its own process (the web process can also host it)."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import click

log = logging.getLogger(__name__)


@click.group()
def notify() -> None:
    """Notifications over WhatsApp and e-mail."""


@notify.command("worker")
@click.option("--once", is_flag=True, help="Run one delivery and inbound pass, then exit.")
def worker(once: bool) -> None:
    """Deliver the outbox and act on inbound messages until stopped (SIGTERM/SIGINT)."""
    from pdn_ops.core.db import migrate
    from pdn_ops.core.db.engine import make_engine, make_sessionmaker
    from pdn_ops.core.errors import ConfigError, DatabaseNotReady
    from pdn_ops.core.settings import load_settings
    from pdn_ops.notify.worker import NotifyWorker, build_runtime, deliver_due, process_inbound

    try:
        settings = load_settings()
        engine = make_engine(settings.effective_database_url)
        migrate.require_current(engine)
    except (ConfigError, DatabaseNotReady) as exc:
        raise click.ClickException(str(exc)) from None
    rt = build_runtime(settings, make_sessionmaker(engine))
    click.echo(f"notify worker {rt.worker_id}: channels {sorted(c.value for c in rt.senders)}")
    if once:
        report = deliver_due(rt)
        process_inbound(rt)
        click.echo(f"sent {report.sent}, retried {report.retried}, unknown {report.unknown}, "
                   f"failed {report.failed}, recovered {report.recovered}")
        engine.dispose()
        return
    loop = NotifyWorker(rt, poll_seconds=settings.notify_poll_seconds, mailbox_seconds=settings.imap_poll_seconds)
    done = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    loop.start()
    done.wait()
    loop.stop()
    engine.dispose()
