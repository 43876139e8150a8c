"""A real ``pdn-ops serve`` process for load and fault runs: migrated database, inventory synced, users made.

Used by ``bench/load_mixed.py`` and by the tests under ``tests/load/``. The server runs as its own process (its own
event loop, GIL and thread pool), as in production; it is stopped by PID (SIGTERM, then SIGKILL after a bound).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "load-test-password-1"
SECRET = "load-test-secret-key-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class World:
    """Who logs in during a run: OPD admins of each OPD, engineers; the assets each OPD admin may file about."""

    admins: dict[str, list[str]] = field(default_factory=dict)  # opd code -> usernames
    engineers: list[str] = field(default_factory=list)
    assets: dict[str, list[str]] = field(default_factory=dict)  # opd code -> asset refs ("vm:1", "site:2")


def prepare(database_url: str, data_dir: Path, *, admins_per_opd: int = 10, engineers: int = 5,
            inventory: Path | None = None, sync: bool = True) -> World:
    """Migrate, sync the example inventory and create the accounts (one argon2 hash shared by all). With
    ``sync=False`` the database is the one a running ``pdn-ops demo`` made (migrated, its lab's inventory synced):
    only the accounts are added, for the OPDs and assets found there."""
    from sqlalchemy.exc import OperationalError

    from pdn_ops.accounts import service as accounts
    from pdn_ops.core.db import migrate
    from pdn_ops.core.db.engine import make_engine, make_sessionmaker, transaction
    from pdn_ops.core.inventory import load_inventory
    from pdn_ops.core.inventory_sync import sync_inventory

    data_dir.mkdir(parents=True, exist_ok=True)
    if sync:
        migrate.upgrade(database_url)
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    world = World()
    try:
        if sync:
            with transaction(sessions) as session:
                sync_inventory(session, load_inventory(inventory or ROOT / "inventory.example.yaml"))
        hashed = accounts.hash_password(PASSWORD)
        for attempt in range(5):
            world = World()
            try:
                _make_accounts(sessions, world, hashed, admins_per_opd, engineers)
                break
            except OperationalError as exc:
                # A running demo's scheduler may hold SQLite's lock past the busy timeout on a loaded machine.
                if "locked" not in str(exc) or attempt == 4:
                    raise
                time.sleep(1.0)
    finally:
        engine.dispose()
    return world


def _make_accounts(sessions: Any, world: World, hashed: str, admins_per_opd: int, engineers: int) -> None:
    from sqlalchemy import select

    from pdn_ops.accounts import service as accounts
    from pdn_ops.accounts.model import Role
    from pdn_ops.core.db.engine import transaction
    from pdn_ops.core.db.tables import OpdRow, SiteRow, VmRow

    with transaction(sessions) as session:
        # A writer from the start: a running demo's scheduler writes meanwhile, and SQLite cannot turn a reader
        # into a writer once another writer has committed.
        session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
        for opd in session.scalars(select(OpdRow).order_by(OpdRow.id)):
            refs = [f"vm:{i}" for i in session.scalars(select(VmRow.id).where(VmRow.opd_id == opd.id))]
            refs += [f"site:{i}" for i in session.scalars(select(SiteRow.id).where(SiteRow.opd_id == opd.id))]
            if not refs:
                continue
            world.assets[opd.code] = refs
            names = [f"admin{n}-{opd.code}" for n in range(admins_per_opd)]
            for name in names:
                accounts.create_user(session, username=name, password=PASSWORD, role=Role.OPD_ADMIN,
                                     opd_code=opd.code, password_hash=hashed, actor="load")
            world.admins[opd.code] = names
        for n in range(engineers):
            name = f"engineer{n}"
            accounts.create_user(session, username=name, password=PASSWORD, role=Role.ENGINEER,
                                 password_hash=hashed, actor="load")
            world.engineers.append(name)


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    data_dir: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 15.0) -> float:
        """SIGTERM, wait; SIGKILL past ``timeout``. Returns how long the stop took."""
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return time.monotonic() - started

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


def server_env(database_url: str, data_dir: Path, port: int, extra: Mapping[str, str] | None = None
               ) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PDN_OPS_")}
    env.update({
        "PDN_OPS_DATABASE_URL": database_url, "PDN_OPS_DATA_DIR": str(data_dir),
        "PDN_OPS_SECRET_KEY": SECRET, "PDN_OPS_INVENTORY": str(ROOT / "inventory.example.yaml"),
        "PDN_OPS_LISTEN": f"127.0.0.1:{port}", "PDN_OPS_RUN_SCHEDULER": "0", "PDN_OPS_NOTIFY_WORKER": "0",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra or {})
    return env


def start(database_url: str, data_dir: Path, *, extra_env: Mapping[str, str] | None = None,
          port: int | None = None, log_path: Path | None = None, start_timeout: float = 60.0,
          command: Sequence[str] = ("serve",)) -> Server:
    """``command``: ``("serve",)`` (production's process), or ``("demo",)`` (`make run`: SQLite in the data
    directory, the lab, the scheduler and the workers in the same process)."""
    port = port or free_port()
    log_path = log_path or data_dir / f"server-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", "from pdn_ops.app.cli import main; main()", *command],
            cwd=ROOT, env=server_env(database_url, data_dir, port, extra_env), stdout=log,
            stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", process, log_path, data_dir)
    deadline = time.monotonic() + start_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"pdn-ops {command[0]} exited ({process.returncode}):\n{server.log()[-3000:]}")
        try:
            with urllib.request.urlopen(server.url + "/healthz", timeout=1) as answer:
                if answer.status == 200:
                    return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError(f"pdn-ops {command[0]} did not answer /healthz in {start_timeout} s:\n{server.log()[-3000:]}")


@contextmanager
def running(database_url: str, data_dir: Path, **kwargs: object) -> Iterator[Server]:
    server = start(database_url, data_dir, **kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()
