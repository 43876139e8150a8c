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

import logging
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pdn_ops.core.db.faults import OutageLog, database_fault
from pdn_ops.core.errors import Overloaded
from pdn_ops.core.i18n import translate
from pdn_ops.web.deps import get_language
from pdn_ops.web.templating import render

log = logging.getLogger(__name__)

# Paths that must answer under any load (liveness, readiness) or cost nothing (static files).
UNCOUNTED_PREFIXES = ("/healthz", "/readyz", "/static/")


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str  # busy | database | locked | disk_full | <gate name>
    status: int  # 503 or 507
    retry_after: int
    message_key: str


def classify(exc: BaseException) -> Fault | None:
    """The fault ``exc`` stands for, or None if it is a bug (which stays a logged 500)."""
    if isinstance(exc, Overloaded):
        return Fault(exc.what, 503, exc.retry_after, "error.busy")
    kind = database_fault(exc)
    if kind == "disk_full":
        return Fault(kind, 507, 60, "error.disk_full")
    if kind in ("busy", "locked"):
        return Fault(kind, 503, 2, "error.busy")
    if kind == "database":
        return Fault(kind, 503, 5, "error.unavailable")
    return None


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
        self.outages = outages or OutageLog(log)
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
