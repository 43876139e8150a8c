"""The ``pdn-ops`` command: serve, demo, db and inventory here; user, notify, remediation and lab subcommands from
their own modules."""

from __future__ import annotations

import importlib
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import click

import pdn_ops
from pdn_ops.app.cli_options import db_url_option, runtime_from, settings_from
from pdn_ops.app.cli_users import user
from pdn_ops.app.cli_workers import notify, remediation
from pdn_ops.app.runtime import Runtime
from pdn_ops.core.errors import DatabaseNotReady, InventoryError


class _Commands(click.Group):
    """The main group, with the lab's commands loaded only when asked for (the lab extra may not be installed,
    and nothing of the product imports the lab)."""

    LAZY: ClassVar[dict[str, str]] = {"lab": "pdn_ops.lab.cli:lab"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.LAZY])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.LAZY:
            module, _, name = self.LAZY[cmd_name].partition(":")
            found: click.Command = getattr(importlib.import_module(module), name)
            return found
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(pdn_ops.__version__, prog_name="pdn-ops")
def main() -> None:
    """pdn-ops keeps a regency data centre's hosted VMs and websites running."""
    # Libraries' INFO lines (apscheduler, paramiko, uvicorn, alembic) stay out of the console; pdn-ops's own
    # notices stay in. PDN_OPS_LOG_LEVEL=DEBUG|INFO shows everything from that level.
    chosen = os.environ.get("PDN_OPS_LOG_LEVEL", "").upper()
    logging.basicConfig(level=getattr(logging, chosen, logging.WARNING) if chosen else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not chosen:
        logging.getLogger("pdn_ops").setLevel(logging.INFO)


@main.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


def _resolved_url(database_url: str | None) -> str:
    settings = settings_from(database_url=database_url, demo=True)
    if not settings.database_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings.effective_database_url


@db.command("upgrade")
@db_url_option
@click.argument("revision", default="head")
def db_upgrade(database_url: str | None, revision: str) -> None:
    """Migrate the database up to REVISION (default: the newest)."""
    from pdn_ops.core.db import migrate

    migrate.upgrade(_resolved_url(database_url), revision)
    click.echo(f"database at revision {revision}")


@db.command("downgrade")
@db_url_option
@click.argument("revision")
def db_downgrade(database_url: str | None, revision: str) -> None:
    """Migrate the database down to REVISION ('base' removes every table)."""
    from pdn_ops.core.db import migrate

    migrate.downgrade(_resolved_url(database_url), revision)
    click.echo(f"database at revision {revision}")


@db.command("current")
@db_url_option
def db_current(database_url: str | None) -> None:
    """Print the database's revision and the newest one."""
    from pdn_ops.core.db import migrate
    from pdn_ops.core.db.engine import make_engine

    engine = make_engine(_resolved_url(database_url))
    try:
        click.echo(f"current: {migrate.current_revision(engine)}  head: {migrate.head_revision()}")
    finally:
        engine.dispose()


@main.group()
def inventory() -> None:
    """Check and load the inventory file."""


@inventory.command("check")
@click.argument("file", type=click.Path(path_type=Path))
def inventory_check(file: Path) -> None:
    """Validate FILE; print every problem as FILE:LINE: key: message (exit 1), or a summary (exit 0)."""
    from pdn_ops.core.inventory import load_inventory

    try:
        inv = load_inventory(file)
    except InventoryError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        click.echo(f"{len(exc.problems)} problem(s) in {file}", err=True)
        sys.exit(1)
    click.echo(f"{file}: OK: {inv.summary()}")


@inventory.command("sync")
@db_url_option
@click.option("--inventory", "inventory_path", type=click.Path(path_type=Path), envvar="PDN_OPS_INVENTORY",
              default=None, help="Inventory file (default: PDN_OPS_INVENTORY or inventory.example.yaml).")
def inventory_sync(database_url: str | None, inventory_path: Path | None) -> None:
    """Upsert OPDs, VMs and sites from the inventory; retire (never delete) what disappeared."""
    from pdn_ops.core.db import migrate
    from pdn_ops.core.db.engine import make_engine, make_sessionmaker, transaction
    from pdn_ops.core.inventory import load_inventory
    from pdn_ops.core.inventory_sync import sync_inventory

    settings = settings_from(database_url=database_url, inventory=inventory_path, demo=True)
    try:
        inv = load_inventory(settings.inventory)
    except InventoryError as exc:
        raise click.ClickException("\n".join(exc.problems)) from None
    engine = make_engine(settings.effective_database_url)
    try:
        migrate.require_current(engine)
        with transaction(make_sessionmaker(engine)) as session:
            report = sync_inventory(session, inv)
    except DatabaseNotReady as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    click.echo(f"{inv.summary()}: {report.summary()}")


@main.command()
@db_url_option
@click.option("--inventory", "inventory_path", type=click.Path(path_type=Path), envvar="PDN_OPS_INVENTORY",
              default=None)
@click.option("--listen", default=None, envvar="PDN_OPS_LISTEN", help="HOST:PORT (default 127.0.0.1:8000).")
def serve(database_url: str | None, inventory_path: Path | None, listen: str | None) -> None:
    """Run the web service (and its single scheduler) in the foreground."""
    from pdn_ops.app.factory import create_app
    from pdn_ops.app.hooks import (
        notify_worker,
        real_collectors,
        remediation_worker,
        scheduler_hook,
        sweep_photos_at_start,
        sync_inventory_at_start,
    )

    settings = settings_from(database_url=database_url, inventory=inventory_path, listen=listen)
    app = create_app(runtime_from(settings), start_hooks=[
        sync_inventory_at_start, sweep_photos_at_start, scheduler_hook(build_factory=real_collectors), notify_worker,
        remediation_worker])
    _serve(app, settings.host, settings.port)


def _serve(app: Any, host: str, port: int, *, log_level: str = "info") -> None:
    import uvicorn

    from pdn_ops.web import access_log

    # A bounded graceful stop: SIGTERM under load lets requests in flight finish for at most 5 s, then closes.
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level,  # configures uvicorn's loggers
                            timeout_graceful_shutdown=5)
    access_log.install()  # after that configuration, which would otherwise drop the filter
    uvicorn.Server(config).run()


@main.command()
@click.option("--listen", default=None, envvar="PDN_OPS_LISTEN", help="HOST:PORT (default 127.0.0.1:8000).")
@click.option("--lab/--no-lab", "with_lab", default=True, show_default=True,
              help="Start the lab (a Proxmox cluster on loopback with live VMs) and use its inventory.")
def demo(listen: str | None, with_lab: bool) -> None:
    """`make run`: migrate the default SQLite database, start the lab and serve the demo on embedded defaults."""

    from pdn_ops.app.factory import create_app
    from pdn_ops.app.hooks import (
        notify_worker,
        real_collectors,
        remediation_worker,
        scheduler_hook,
        sweep_photos_at_start,
        sync_inventory_at_start,
    )
    from pdn_ops.core.db import migrate

    settings = settings_from(demo=True, listen=listen)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.effective_database_url)
    running_lab = None
    panel = None
    if with_lab:
        from pdn_ops.lab.demo import start_demo_lab

        running_lab = start_demo_lab(settings.data_dir / "lab")
        # The lab's inventory names its token as a file: reference, so the service reads it like any secret.
        settings = settings_from(demo=True, listen=listen, inventory=running_lab.inventory_path)
    try:
        runtime = runtime_from(settings)
        banner: list[str] = []
        app = create_app(runtime, start_hooks=[sync_inventory_at_start, sweep_photos_at_start,
                                               _demo_accounts(banner), scheduler_hook(build_factory=real_collectors),
                                               notify_worker, remediation_worker])
        base = f"http://{settings.host}:{settings.port}"
        banner[:0] = [f"pdn-ops demo: {base}/  (database {settings.effective_database_url})"]
        if running_lab is not None:
            from pdn_ops.app import lab_demo

            runtime.health.site_ca_file = str(running_lab.ca_file)  # the lab's sites use its own CA
            # Only here, beside a lab in this process: a page for staff to break the lab's VMs from the browser.
            panel = lab_demo.mount(app, running_lab)
            banner.insert(1, f"lab: break things from the browser (as engineer): {base}/lab")
        # The address and the accounts are the last lines printed, once the server answers.
        threading.Thread(target=_print_when_ready, args=(settings.host, settings.port, banner), daemon=True,
                         name="demo-banner").start()
        _serve(app, settings.host, settings.port, log_level="warning")
    finally:
        if panel is not None:
            panel.close()
        if running_lab is not None:
            running_lab.stop()


def _demo_accounts(banner: list[str]) -> Callable[[Runtime], None]:
    """Demo mode: create the demo accounts (after the inventory sync made the OPDs); the banner lists them."""

    def hook(runtime: Runtime) -> None:
        from pdn_ops.accounts import service as accounts
        from pdn_ops.core.db.engine import transaction

        with transaction(runtime.sessions) as session:
            made = accounts.ensure_demo_accounts(session)
        banner.append(f"demo accounts (password {accounts.DEMO_PASSWORD!r}):")
        banner.extend(f"  {username:<16} {role:<11} {opd}" for username, role, opd in made)

    return hook


def _print_when_ready(host: str, port: int, lines: list[str], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.1)
    else:
        return  # the server never came up; its own error says why
    click.echo("\n".join(lines))


main.add_command(user)
main.add_command(notify)
main.add_command(remediation)
