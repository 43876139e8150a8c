"""Database faults that are not bugs, and a log that says so once per outage instead of once per request.

``database_fault`` names what an exception stands for: ``busy`` (no pool connection within the pool timeout),
``locked`` (SQLite's lock past its busy timeout), ``database`` (unreachable: refused, reset, shut down),
``disk_full`` (SQLite "database or disk is full", PostgreSQL SQLSTATE 53100, ENOSPC), or None for a bug.

``OutageLog`` writes one line when a kind of fault starts and one when it ends (with how many times it was met),
for the web shell and for every worker loop alike: a 20 s PostgreSQL outage under load had written 1,828
tracebacks (10 MB). Thread-safe.
"""

from __future__ import annotations

import errno
import logging
import threading
import time

from sqlalchemy import exc as sa_exc

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})

TITLES = {"busy": "database pool exhausted", "database": "database unreachable", "locked": "database locked",
          "disk_full": "disk full"}


def _disk_full_text(text: str) -> bool:
    lowered = text.lower()
    return "disk is full" in lowered or "no space left on device" in lowered or "could not extend file" in lowered


def database_fault(exc: BaseException) -> str | None:
    if isinstance(exc, sa_exc.TimeoutError):
        return "busy"
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        return "disk_full"
    if isinstance(exc, sa_exc.DBAPIError):
        text = str(exc.orig) if exc.orig is not None else str(exc)
        if _disk_full_text(text) or getattr(exc.orig, "pgcode", None) == "53100":
            return "disk_full"
        lowered = text.lower()
        if "database is locked" in lowered or "database is busy" in lowered:
            return "locked"
        if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError) or exc.connection_invalidated:
            return "database"
    return None


class OutageLog:
    """One log line when a kind of fault starts, one when it ends; nothing in between.

    A fault has ended when ``succeeded`` is called ``quiet_seconds`` after its last failure.
    """

    def __init__(self, logger: logging.Logger, what: str = "answering with Retry-After",
                 quiet_seconds: float = 2.0) -> None:
        self.logger = logger
        self.what = what
        self.quiet_seconds = quiet_seconds
        self._lock = threading.Lock()
        self._open: dict[str, tuple[float, float, int]] = {}  # kind -> (started, last failure, count)

    def failed(self, kind: str, exc: BaseException) -> None:
        now = time.monotonic()
        with self._lock:
            first = kind not in self._open
            started, _, count = self._open.get(kind, (now, now, 0))
            self._open[kind] = (started, now, count + 1)
        if first:
            # The class and first line only (no traceback): a driver's message names a host, never a secret.
            reason = str(exc).splitlines()[0][:300] if str(exc) else ""
            self.logger.warning("%s: %s until it passes (%s: %s)", TITLES.get(kind, f"{kind} at its limit"),
                                self.what, type(exc).__name__, reason)

    def succeeded(self) -> None:
        if not self._open:  # the common case, without the lock
            return
        now = time.monotonic()
        ended: list[tuple[str, float, int]] = []
        with self._lock:
            for kind, (started, last, count) in list(self._open.items()):
                if now - last >= self.quiet_seconds:
                    del self._open[kind]
                    ended.append((kind, last - started, count))
        for kind, lasted, count in ended:
            self.logger.warning("%s: over after %.1f s (%d time(s) met)", TITLES.get(kind, f"{kind} at its limit"),
                                lasted, count)

    @property
    def open_kinds(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._open)
