"""Exactly one scheduler, however many web workers: a leader lock every worker tries, only one holds.

- PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) on a dedicated connection. The server
  releases it when that connection ends, so a crashed leader frees it at once.
- SQLite: an exclusive ``fcntl.flock`` on ``<database file>.scheduler.lock`` next to the database. The kernel
  releases it when the process exits, however it exits. (All workers share one host with SQLite anyway.)
- In-memory SQLite: one process by definition; the lock always succeeds.

Workers that do not win keep trying every few seconds (``SchedulerService``), so a dead leader is replaced.
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
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # for people: which process schedules
        self._fd = fd
        return True

    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
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
    url = engine.url
    if url.get_backend_name() == "postgresql":
        return PgAdvisoryLeaderLock(engine)
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:") or database.startswith("file::memory:"):
            return AlwaysLeader()
        return FileLeaderLock(Path(database).with_name(Path(database).name + ".scheduler.lock"))
    raise ValueError(f"no leader lock for database backend {url.get_backend_name()!r}")
