"""Engine and session factories. Built by the app factory or the CLI, never at import."""

from __future__ import annotations

import logging
import select
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from pdn_ops.core.errors import TextRefused

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 5000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling breaks SAVEPOINT; let SQLAlchemy emit BEGIN itself (see _sqlite_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets the web process read while the scheduler writes; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    # A unit of work that will write may ask to start as the writer (execution option sqlite_begin="IMMEDIATE"):
    # SQLite cannot turn a reader into a writer once another writer has committed (SQLITE_BUSY_SNAPSHOT is not
    # retried), whereas BEGIN IMMEDIATE simply waits up to the busy timeout for its turn.
    mode = connection.get_execution_options().get("sqlite_begin", "")
    connection.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")


def pool_arguments(*, pool_size: int, max_overflow: int, pool_timeout: float) -> dict[str, Any]:
    """The bounded pool of a serving process: a request waits at most ``pool_timeout`` for a connection, then
    SQLAlchemy raises its ``TimeoutError``, which the web shell answers 503 with Retry-After."""
    return {"pool_size": pool_size, "max_overflow": max_overflow, "pool_timeout": pool_timeout}


_PLAIN = frozenset({int, float, bool, type(None), datetime})


def _has_nul(value: Any) -> bool:
    # Called for every statement with all its parameters (thousands of rows for a bulk write): exact type checks
    # first and one loop per container, instead of an isinstance chain and a recursive call per value.
    kind = type(value)
    if kind is str:
        return "\x00" in value
    if kind is dict:
        items: Any = value.values()
    elif kind is list or kind is tuple:
        items = value
    elif isinstance(value, str):
        return "\x00" in value
    elif isinstance(value, dict):
        items = value.values()
    elif isinstance(value, list | tuple):
        items = value
    else:
        return False
    for item in items:
        kind = type(item)
        if kind is str:
            if "\x00" in item:
                return True
        elif kind not in _PLAIN and _has_nul(item):
            return True
    return False


def _refuse_nul(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
    # The last line against a NUL byte in any text, whichever route or worker it came through: PostgreSQL fails
    # with an error that had become a 500 (and SQLite stored it silently); both now refuse it the same way.
    if parameters and _has_nul(parameters):
        raise TextRefused("a text holds a NUL byte")


def make_engine(url: str, **kwargs: Any) -> Engine:
    engine = _make_engine(url, **kwargs)
    event.listen(engine, "before_cursor_execute", _refuse_nul)
    return engine


def _make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        if ":memory:" in url or url in ("sqlite://", "sqlite:///"):
            # An in-memory database lives in one connection (SingletonThreadPool): no pool to size.
            for name in ("pool_size", "max_overflow", "pool_timeout"):
                kwargs.pop(name, None)
        engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # No pre-ping: on a healthy pool it is one round trip more per checkout (a third of a hot list's). A connection
    # the server or a proxy closed while it idled in the pool is seen locally instead (_closed_while_idle), and the
    # pool retries the checkout with a new connection; recycling bounds the age of any other; a connection that
    # died silently fails its first statement (503 with Retry-After) and the pool then replaces every older one.
    kwargs.setdefault("pool_recycle", POOL_RECYCLE_S)
    engine = create_engine(url, **kwargs)
    event.listen(engine, "checkout", _closed_while_idle)
    return engine


POOL_RECYCLE_S = 1800


def _closed_while_idle(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """A connection idle in the pool has nothing to read: if its socket is readable (the server's FATAL notice, a
    FIN or a reset), it is gone. One poll(2) on the socket, no round trip; DisconnectionError makes the pool retry
    the checkout with a fresh connection."""
    fileno = getattr(dbapi_connection, "fileno", None)
    if fileno is None:
        return
    try:
        poller = select.poll()
        poller.register(fileno(), select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP)
        ready = poller.poll(0)
    except (OSError, ValueError, sa_exc.SQLAlchemyError, _psycopg_error()) as exc:
        raise sa_exc.DisconnectionError("pooled connection unusable") from exc
    if ready:
        raise sa_exc.DisconnectionError("pooled connection closed by the server while idle")


def _psycopg_error() -> type[BaseException]:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency; the SQLite-only tools may lack it
        return OSError
    return psycopg.Error


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    with factory() as session, session.begin():
        yield session


@contextmanager
def read_only(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session for a few independent reads. On PostgreSQL it runs in autocommit: no BEGIN and ROLLBACK round
    trips around the reads (SQLite's BEGIN is an in-process call and keeps its snapshot)."""
    with factory() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        yield session


# --- side effects that must follow the transaction's outcome (files staged for it) ------------------------------
_AFTER_COMMIT = "pdn_after_commit"
_AFTER_ROLLBACK = "pdn_after_rollback"


def after_commit(session: Session, action: Callable[[], None]) -> None:
    """Run ``action`` once the session's transaction has committed (e.g. publish the files staged for it)."""
    session.info.setdefault(_AFTER_COMMIT, []).append(action)


def after_rollback(session: Session, action: Callable[[], None]) -> None:
    """Run ``action`` if the session's transaction rolls back instead (e.g. remove the staged files)."""
    session.info.setdefault(_AFTER_ROLLBACK, []).append(action)


_COMMITTING = "pdn_committing"


def _run(session: Session, which: str) -> None:
    committing = session.info.pop(_COMMITTING, False)
    actions = session.info.pop(which, [])
    session.info.pop(_AFTER_ROLLBACK if which == _AFTER_COMMIT else _AFTER_COMMIT, None)
    if which == _AFTER_ROLLBACK and committing:
        # The COMMIT itself failed (the connection dropped): the rows may or may not be stored. Leave the files
        # to the janitor, which publishes them if a committed row names them and removes them otherwise.
        return
    for action in actions:
        try:
            action()
        except OSError:
            # The rows are committed (or gone) whatever a file operation does now; the janitor finishes the job.
            log.warning("after-transaction file step failed; the photo janitor will finish it", exc_info=True)


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    if session.info.get(_AFTER_COMMIT):
        session.info[_COMMITTING] = True


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    _run(session, _AFTER_COMMIT)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    _run(session, _AFTER_ROLLBACK)


@event.listens_for(Session, "after_soft_rollback")
def _after_soft_rollback(session: Session, previous: SessionTransaction) -> None:
    # A rollback that never reached the database (no statement had run yet) fires only this one.
    if previous.parent is None and session.info.get(_AFTER_ROLLBACK):
        _run(session, _AFTER_ROLLBACK)
