"""Plain ASGI middlewares of the web shell: security headers on every response, the request body limit."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The same headers on every response. A plain ASGI middleware: Starlette's ``@app.middleware("http")`` runs each
# request in an extra task with a body stream in between, which measurably cost the hot JSON lists.
# Pages load scripts, styles and images only from this origin: no inline script anywhere (an injected one would
# not run), no framing, forms post only here. The API's Swagger page (/api/docs) is FastAPI's own, with an inline
# script and a CDN, so it goes without this header (it shows no user data).
CSP = (b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
       b"base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
_SECURITY_HEADERS = ((b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"),
                     (b"x-frame-options", b"DENY"))
_NO_CSP_PATHS = ("/api/docs",)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in _SECURITY_HEADERS if h[0] not in present)
                if b"content-security-policy" not in present and not scope["path"].startswith(_NO_CSP_PATHS):
                    headers.append((b"content-security-policy", CSP))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimit:
    """Refuse request bodies above ``limit`` bytes (413) before they are spooled to disk.

    Five photos of 10 MB plus the form fit well under the default; the check counts the bytes actually received,
    so a missing or false Content-Length does not get around it.
    """

    def __init__(self, app: Any, limit: int = 64 * 1024 * 1024) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(send)
            return
        seen = 0

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge()
            return message

        try:
            await self.app(scope, counted, send)
        except BodyTooLarge:
            await _too_large(send)


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when the body passes the limit: an HTTPException, so FastAPI passes it on as 413."""

    def __init__(self) -> None:
        super().__init__(status_code=413, detail="request body too large")


async def _too_large(send: Any) -> None:
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
    await send({"type": "http.response.body", "body": b"request body too large"})
