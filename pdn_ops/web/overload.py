"""Overload and faults with a shape: what is not a bug answers 503 (or 507) with Retry-After, never 500, never a hang.

- ``Admission`` (a plain ASGI middleware) serves at most ``max_requests_in_flight`` requests at once; the next one
  is answered 503 at once. Probes and static files pass: /healthz must answer whatever the load.
- ``classify`` names the faults that are not bugs: no pool connection within the pool timeout (busy), the
  database unreachable or locked (unavailable), the disk full (507), a full gate (``Overloaded``).
- ``OutageLog`` writes one line when a fault starts and one when it ends (with how many requests it refused),
  instead of a traceback per request: a 20 s PostgreSQL outage under load had written 10 MB of them.

Every answer here is built without a database lookup or file I/O, because it may run on the event loop.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import exc as sa_exc
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pdn_ops.core.errors import Overloaded
from pdn_ops.core.i18n import translate
from pdn_ops.web.deps import get_language
from pdn_ops.web.templating import render

log = logging.getLogger(__name__)

# Paths that must answer under any load (liveness, readiness) or cost nothing (static files).
UNCOUNTED_PREFIXES = ("/healthz", "/readyz", "/static/")
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str  # busy | database | locked | disk_full | <gate name>
    status: int  # 503 or 507
    retry_after: int
    message_key: str


def _disk_full_text(text: str) -> bool:
    lowered = text.lower()
    # SQLite: "database or disk is full"; PostgreSQL: SQLSTATE 53100 "could not extend file ... No space left".
    return "disk is full" in lowered or "no space left on device" in lowered or "could not extend file" in lowered


def classify(exc: BaseException) -> Fault | None:
    """The fault ``exc`` stands for, or None if it is a bug (which stays a logged 500)."""
    if isinstance(exc, Overloaded):
        return Fault(exc.what, 503, exc.retry_after, "error.busy")
    if isinstance(exc, sa_exc.TimeoutError):
        return Fault("busy", 503, 2, "error.busy")
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        return Fault("disk_full", 507, 60, "error.disk_full")
    if isinstance(exc, sa_exc.DBAPIError):
        text = str(exc.orig) if exc.orig is not None else str(exc)
        if _disk_full_text(text) or getattr(exc.orig, "pgcode", None) == "53100":
            return Fault("disk_full", 507, 60, "error.disk_full")
        if "database is locked" in text.lower() or "database is busy" in text.lower():
            return Fault("locked", 503, 2, "error.busy")
        if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError) or exc.connection_invalidated:
            return Fault("database", 503, 5, "error.unavailable")
    return None


class OutageLog:
    """One log line when a kind of fault starts, one when it ends; nothing in between.

    A fault has ended when a counted request succeeds ``quiet_seconds`` after the last failure of that kind.
    Thread-safe: failures are noted from worker threads and the event loop alike.
    """

    def __init__(self, quiet_seconds: float = 2.0) -> None:
        self.quiet_seconds = quiet_seconds
        self._lock = threading.Lock()
        self._open: dict[str, tuple[float, float, int]] = {}  # kind -> (started, last failure, refused)

    def failed(self, fault: Fault, exc: BaseException) -> None:
        now = time.monotonic()
        with self._lock:
            started, _, refused = self._open.get(fault.kind, (now, now, 0))
            first = fault.kind not in self._open
            self._open[fault.kind] = (started, now, refused + 1)
        if first:
            # The exception's class and first line only: a driver's message may carry a host, never a secret,
            # but a traceback per request is what filled the disk.
            reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            log.warning("%s: answering %d with Retry-After until it passes (%s: %s)", _TITLES.get(
                fault.kind, f"{fault.kind} at its limit"), fault.status, type(exc).__name__, reason)

    def succeeded(self) -> None:
        if not self._open:  # the common case, without the lock
            return
        now = time.monotonic()
        ended: list[tuple[str, float, int]] = []
        with self._lock:
            for kind, (started, last, refused) in list(self._open.items()):
                if now - last >= self.quiet_seconds:
                    del self._open[kind]
                    ended.append((kind, last - started, refused))
        for kind, lasted, refused in ended:
            log.warning("%s: over after %.1f s, %d request(s) answered with Retry-After",
                        _TITLES.get(kind, f"{kind} at its limit"), lasted, refused)

    @property
    def open_kinds(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._open)


_TITLES = {"busy": "database pool exhausted", "database": "database unreachable", "locked": "database locked",
           "disk_full": "disk full"}


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", "")


def fault_response(request: Request, fault: Fault) -> Response:
    """503/507 with Retry-After in the reader's language: JSON for the API, a page for people (no lookups)."""
    headers = {"Retry-After": str(fault.retry_after)}
    if wants_json(request):
        message = translate(fault.message_key, get_language(request))
        return JSONResponse({"detail": fault.kind, "message": message}, status_code=fault.status, headers=headers)
    return render(request, "error.html", status_code=fault.status, lookup=False, headers=headers,
                  message_key=fault.message_key)


class Admission:
    """At most ``limit`` requests in flight; beyond it 503 with Retry-After at once (no queue that only grows).

    Also tells the outage log when a counted request succeeded, which is how a fault is seen to have ended.
    """

    def __init__(self, app: ASGIApp, limit: int = 120, outages: OutageLog | None = None) -> None:
        self.app = app
        self.limit = limit
        self.outages = outages or OutageLog()
        self.in_flight = 0  # only touched on the event loop
        self.refused = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(UNCOUNTED_PREFIXES):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            self.refused += 1
            response = fault_response(Request(scope), Fault("admission", 503, 2, "error.busy"))
            await response(scope, receive, send)
            return
        self.in_flight += 1
        status = 0

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            self.in_flight -= 1
        if 0 < status < 500:
            self.outages.succeeded()
