"""``pdn-ops remediation``: the worker process (several may run; on SQLite on the database's host)."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from types import FrameType

import click


@click.group()
def remediation() -> None:
    """Remediation runs: the worker that executes them."""


@remediation.command("worker")
@click.option("--database-url", envvar="PDN_OPS_DATABASE_URL", required=True)
@click.option("--inventory", "inventory_path", envvar="PDN_OPS_INVENTORY", required=True,
              type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--once", is_flag=True, help="Recover, execute what is queued, close what can be closed, then exit.")
@click.option("--worker-id", default=None, help="Name in the journal (default: host:pid).")
def worker(database_url: str, inventory_path: Path, once: bool, worker_id: str | None) -> None:
    """Execute queued remediation runs; at start, reconcile runs a dead worker left behind.

    Like the worker thread of ``serve``, it also closes succeeded runs once their checks pass (the complaint
    becomes fixed and the OPD is told) or marks them ineffective and alerts the engineers. The other settings
    (data directory, public URL, the complaint procedure's defaults) come from the PDN_OPS_* environment.
    """
    from pdn_ops.core.errors import ConfigError
    from pdn_ops.core.settings import load_settings
    from pdn_ops.runs.worker import worker_from_settings

    try:
        # demo=True only waives the web secret, which a worker never uses.
        settings = load_settings(database_url=database_url, inventory=inventory_path, demo=True)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None

    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    name = worker_id or f"{socket.gethostname()}:{os.getpid()}"
    with worker_from_settings(database_url, inventory_path, name, settings) as runner:
        if once:
            count = runner.run_pending()
            click.echo(f"{name}: executed {count} run(s)")
            closed = runner.close_runs()
            if closed:
                click.echo(f"{name}: closed {', '.join(f'run #{run_id} {how}' for run_id, how in closed)}")
            return
        runner.loop(lambda: stopping)
