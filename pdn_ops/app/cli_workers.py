"""``pdn-ops notify worker`` and ``pdn-ops remediation worker``: the workers as processes of their own.

Both build the same runtime as ``serve`` (the complaint procedure's stored terms, the intake of complaints over
WhatsApp and e-mail, the engineers' alerts), so a separate process behaves like the thread inside the service.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from pathlib import Path
from types import FrameType

import click

from pdn_ops.app.cli_options import runtime_from, settings_from


@click.group()
def notify() -> None:
    """Notifications over WhatsApp and e-mail."""


@notify.command("worker")
@click.option("--once", is_flag=True, help="Run one delivery and inbound pass, then exit.")
def notify_worker(once: bool) -> None:
    """Deliver the outbox and act on inbound messages until stopped (SIGTERM/SIGINT)."""
    from pdn_ops.notify.worker import NotifyWorker, build_runtime, deliver_due, process_inbound

    settings = settings_from()
    runtime = runtime_from(settings)
    from pdn_ops.public.intake import MessageFeedback

    rt = build_runtime(settings, runtime.sessions, intake=runtime.complaints.intake,
                       feedback=MessageFeedback(settings.secret_key.get_secret_value()))
    click.echo(f"notify worker {rt.worker_id}: channels {sorted(c.value for c in rt.senders)}")
    if once:
        report = deliver_due(rt)
        process_inbound(rt)
        click.echo(f"sent {report.sent}, retried {report.retried}, unknown {report.unknown}, "
                   f"failed {report.failed}, recovered {report.recovered}")
        runtime.engine.dispose()
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
    runtime.engine.dispose()


@click.group()
def remediation() -> None:
    """Remediation runs: the worker that executes them."""


@remediation.command("worker")
@click.option("--database-url", envvar="PDN_OPS_DATABASE_URL", required=True)
@click.option("--inventory", "inventory_path", envvar="PDN_OPS_INVENTORY", required=True,
              type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--once", is_flag=True, help="Recover, execute what is queued, close what can be closed, then exit.")
@click.option("--worker-id", default=None, help="Name in the journal (default: host:pid).")
def remediation_worker(database_url: str, inventory_path: Path, once: bool, worker_id: str | None) -> None:
    """Execute queued remediation runs; at start, reconcile runs a dead worker left behind.

    Like the worker thread of ``serve``, it also closes succeeded runs once their checks pass (the complaint
    becomes fixed and the OPD is told) or marks them ineffective and alerts the engineers. The other settings
    (data directory, public URL, the complaint procedure's defaults) come from the PDN_OPS_* environment.
    """
    from pdn_ops.app.hooks import remediation_config
    from pdn_ops.core.errors import InventoryError
    from pdn_ops.core.inventory import load_inventory
    from pdn_ops.runs.worker import Worker, inventory_clients

    # demo=True only waives the web secret, which a worker never uses.
    runtime = runtime_from(settings_from(database_url=database_url, inventory=inventory_path, demo=True))
    try:
        runtime.inventory = load_inventory(inventory_path)
    except InventoryError as exc:
        raise click.ClickException(str(exc)) from None
    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    name = worker_id or f"{socket.gethostname()}:{os.getpid()}"
    runner = Worker(runtime.engine, runtime.sessions, runtime.inventory,
                    inventory_clients(runtime.inventory, runtime.inventory_dir), remediation_config(runtime, name))
    try:
        if once:
            count = runner.run_pending()
            click.echo(f"{name}: executed {count} run(s)")
            closed = runner.close_runs()
            if closed:
                click.echo(f"{name}: closed {', '.join(f'run #{run_id} {how}' for run_id, how in closed)}")
            return
        runner.loop(lambda: stopping)
    finally:
        runner.close()
        runtime.engine.dispose()
