"""Locks the operating system or the database releases when their holder dies, however it dies; one
implementation for the scheduler's leader lock and the remediation workers' run locks.

- PostgreSQL: session-level advisory locks (``pg_try_advisory_lock``) on a dedicated connection. The server
  releases them when that connection ends, so a crashed holder frees them at once.
- SQLite: an exclusive ``fcntl.flock`` on a file next to the database (``<database file>.scheduler.lock``, or
  ``<database file>.runs/<run id>.lock``). The kernel releases it when the process exits. flock locks belong to
  the open file, so two holders in one process exclude each other as two processes do. (All workers share one
  host with SQLite anyway.)
- In-memory SQLite: one process by definition; every lock succeeds.

Workers that do not win the leader lock keep trying every few seconds (``SchedulerService``), so a dead leader is
replaced; a run whose worker died is taken over by the worker that gets its lock.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)
ADVISORY_KEY = 0x70646E2D6F7073  # "pdn-ops": one bigint key space shared by every pdn-ops process on the database
LOCK_CLASS = 60_606  # first key of the two-int advisory locks: "remediation run"


def sqlite_file(engine: Engine) -> Path | None:
    """The SQLite database's file, whose neighbours hold the file locks; None for PostgreSQL or in-memory."""
    if engine.url.get_backend_name() != "sqlite":
        return None
    database = engine.url.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        return None
    return Path(database)


def try_flock(path: Path) -> int | None:
    """An exclusive flock on ``path`` (created 0600): the descriptor holding it, or None if another holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def release_flock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)  # closing the last descriptor of the open file releases the flock anyway


class LeaderLock(Protocol):
    def try_acquire(self) -> bool: ...

    def held(self) -> bool: ...

    def release(self) -> None: ...


class FileLeaderLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = try_flock(self.path)
        if fd is None:
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # for people: which process schedules
        self._fd = fd
        return True

    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            release_flock(self._fd)
            self._fd = None


class PgAdvisoryLeaderLock:
    def __init__(self, engine: Engine, key: int = ADVISORY_KEY) -> None:
        self._engine = engine
        self._key = key
        self._conn: Connection | None = None

    def try_acquire(self) -> bool:
        if self._conn is not None:
            return self.held()
        conn = self._engine.connect()
        try:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key}).scalar())
            conn.commit()  # the lock is session-level; do not sit idle in a transaction
        except SQLAlchemyError:
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def held(self) -> bool:
        if self._conn is None:
            return False
        try:
            mine = self._conn.execute(text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
                "AND granted AND ((classid::bigint << 32) | objid::bigint) = :k"), {"k": self._key}).scalar()
            self._conn.commit()
        except SQLAlchemyError:
            log.warning("lost the database connection that held the scheduler lock")
            self._drop()
            return False
        if not mine:
            self._drop()
        return bool(mine)

    def release(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
            self._conn.commit()
        except SQLAlchemyError:
            log.warning("could not unlock the scheduler lock; closing its connection releases it")
        self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.invalidate()  # never return a lock-holding connection to the pool
                self._conn.close()
            finally:
                self._conn = None


class AlwaysLeader:
    def try_acquire(self) -> bool:
        return True

    def held(self) -> bool:
        return True

    def release(self) -> None:
        return None


def leader_lock_for(engine: Engine) -> LeaderLock:
    backend = engine.url.get_backend_name()
    if backend == "postgresql":
        return PgAdvisoryLeaderLock(engine)
    if backend == "sqlite":
        database = sqlite_file(engine)
        if database is None:
            return AlwaysLeader()
        return FileLeaderLock(database.with_name(database.name + ".scheduler.lock"))
    raise ValueError(f"no leader lock for database backend {backend!r}")


class RunLocks:
    """Which runs a live worker is executing. A run's lock file (SQLite) is removed once its outcome is committed:
    a finished run is never taken over (the takeover is a conditional UPDATE of a ``running`` run), so a second
    file made for the same run later cannot give a live run two owners."""

    def __init__(self, engine: Engine) -> None:
        self._conn: Connection | None = None
        if engine.url.get_backend_name() == "postgresql":
            self._conn = engine.connect()
            self._conn.execution_options(isolation_level="AUTOCOMMIT")
        database = sqlite_file(engine)
        self._dir: Path | None = None
        if database is not None:
            self._dir = database.with_name(database.name + ".runs")
            self._dir.mkdir(mode=0o700, exist_ok=True)
        self._files: dict[int, int] = {}  # run id -> the file descriptor holding its flock

    def try_lock(self, run_id: int) -> bool:
        if self._conn is not None:
            return bool(self._conn.execute(text("SELECT pg_try_advisory_lock(:c, :r)"),
                                           {"c": LOCK_CLASS, "r": run_id}).scalar())
        if self._dir is None or run_id in self._files:
            return True
        fd = try_flock(self._dir / f"{run_id}.lock")
        if fd is None:
            return False
        self._files[run_id] = fd
        return True

    def unlock(self, run_id: int, *, finished: bool = False) -> None:
        """Release; ``finished``: the run's outcome is committed, so its lock file can go too."""
        if self._conn is not None:
            self._conn.execute(text("SELECT pg_advisory_unlock(:c, :r)"), {"c": LOCK_CLASS, "r": run_id})
            return
        fd = self._files.pop(run_id, None)
        if fd is None or self._dir is None:
            return
        if finished:
            (self._dir / f"{run_id}.lock").unlink(missing_ok=True)
        release_flock(fd)

    def close(self) -> None:
        if self._conn is not None:
            # Closed for real, not returned to the pool: a pooled connection would keep holding the advisory locks.
            self._conn.invalidate()
            self._conn.close()
        for fd in self._files.values():
            release_flock(fd)
        self._files.clear()
