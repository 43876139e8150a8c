"""Hostile input refused at the edge, before any route, parser or driver sees it.

- Path: a segment with a control character, or a number beyond the largest id a row can have (``MAX_ID``, the
  32-bit INTEGER of PostgreSQL), answers 404: no such thing can exist. (2**63 had reached SQLite as an
  OverflowError and PostgreSQL as "out of range", both a 500 for any logged-in user.)
- Query string: the same, answered 422 naming the parameter.
- Form fields (``refuse_control_characters``, an app-wide dependency): a text field with a control character
  other than tab, line feed and carriage return answers 422 naming the field (a NUL byte made PostgreSQL fail
  with a 500, even in the login form's user name). Files are bytes and are not concerned.
- JSON bodies (``JsonGuard``): read up to ``limit`` bytes (413 beyond) and their nesting checked (422 beyond
  ``max_depth``) before any parser runs: a signed webhook nested 100,000 deep had ended in RecursionError.
- The database layer refuses a NUL in any string parameter as a last line (``TextRefused``, 422), for paths
  that do not come through a form (a JSON field, a webhook's text).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any
from urllib.parse import parse_qsl, unquote

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pdn_ops.core.db.tables import MAX_ID
from pdn_ops.core.i18n import translate
from pdn_ops.web.deps import get_language

# Provider callbacks carry their own formats (a numeric challenge of up to 64 digits); static files are not data.
EXEMPT_PREFIXES = ("/webhooks/", "/static/")
_NUMBER = re.compile(r"-?\d+")
ALLOWED_CONTROLS = frozenset("\t\n\r")


def has_control(text: str, allowed: frozenset[str] = frozenset()) -> bool:
    return any(unicodedata.category(ch) == "Cc" and ch not in allowed for ch in text)


def _too_big(text: str) -> bool:
    return bool(_NUMBER.fullmatch(text)) and (len(text) > 11 or abs(int(text)) > MAX_ID)


def refused_parameter(path: str, query_string: bytes) -> tuple[int, str] | None:
    """(404, segment) for a path that cannot name anything, (422, name) for a bad query parameter, or None."""
    if path.startswith(EXEMPT_PREFIXES):
        return None
    for segment in path.split("/"):
        decoded = unquote(segment)
        if has_control(decoded) or _too_big(decoded):
            return 404, "path"
    if query_string:
        try:
            pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True, errors="strict")
        except (UnicodeDecodeError, ValueError):
            return 422, "query"
        for name, value in pairs:
            if has_control(name) or has_control(value) or _too_big(value):
                return 422, name[:60] if not has_control(name) else "query"
    return None


def invalid_body(request: Request, errors: dict[str, str], *, detail: object = None) -> JSONResponse:
    """The API's one 422 shape: ``{errors: {field: reason}, message, detail}`` (the message in the reader's
    language; ``detail`` what FastAPI would have said, for clients written against it)."""
    lang = get_language(request)
    return JSONResponse({"errors": errors, "message": translate("error.invalid", lang),
                         "detail": detail if detail is not None else {"errors": errors}}, status_code=422)


class InputGuard:
    """Path and query refusals (see the module docstring); a plain ASGI middleware, so nothing else runs first."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refused = refused_parameter(scope["path"], scope.get("query_string", b""))
            if refused is not None:
                status, name = refused
                response = await _refusal(Request(scope), status, name)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _refusal(request: Request, status: int, name: str) -> Any:
    # Deferred import: the error pages import this module's neighbours.
    from pdn_ops.web.overload import wants_json
    from pdn_ops.web.templating import render

    if status == 404:
        if wants_json(request):
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        return render(request, "error.html", status_code=404, lookup=False, message_key="error.not_found")
    if wants_json(request):
        return invalid_body(request, {name: "invalid"})
    return render(request, "error.html", status_code=422, lookup=False, message_key="error.invalid")


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def refuse_control_characters(request: Request) -> None:
    """App-wide dependency: every text field of a form free of control characters (tab and newlines allowed)."""
    if request.method in ("GET", "HEAD", "OPTIONS") or request.url.path.startswith(EXEMPT_PREFIXES):
        return
    if not request.headers.get("content-type", "").startswith(FORM_TYPES):
        return
    form = await request.form()  # parsed once; the routes and the CSRF check read the same parsed form
    bad = sorted({name for name, value in form.multi_items()
                  if has_control(name) or (not isinstance(value, UploadFile)
                                           and has_control(value, ALLOWED_CONTROLS))})
    if bad:
        raise HTTPException(status_code=422, detail={"errors": {name[:60]: "control_characters" for name in bad}})


class JsonGuard:
    """A JSON body is read whole (at most ``limit`` bytes: 413 beyond) and its nesting measured (at most
    ``max_depth``: 422 beyond) before the app parses it; then it is handed on unchanged."""

    def __init__(self, app: ASGIApp, limit: int = 1024 * 1024, max_depth: int = 32) -> None:
        self.app = app
        self.limit = limit
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if not (content_type == b"application/json" or content_type.endswith(b"+json")):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                response = JSONResponse({"detail": "request body too large"}, status_code=413)
                await response(scope, receive, send)
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        # Walked in a worker thread: a megabyte of brackets is a few tens of milliseconds of CPU.
        if await run_in_threadpool(nested_deeper_than, body, self.max_depth):
            response = invalid_body(Request(scope), {"body": "nested_too_deep"})
            await response(scope, receive, send)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


_ESCAPED = re.compile(rb"\\.", re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(body: bytes, stop_above: int | None = None) -> int:
    """The deepest nesting of arrays and objects in ``body`` (brackets inside strings do not count); no parsing,
    no recursion. The regular expressions and ``translate`` run in C; only the brackets are walked."""
    brackets = _STRING.sub(b"", _ESCAPED.sub(b"", body)).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for byte in brackets:
        if byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
            if stop_above is not None and deepest > stop_above:
                break
        else:
            depth -= 1
    return deepest


def nested_deeper_than(body: bytes, max_depth: int) -> bool:
    # Fewer opening brackets than the limit cannot nest deeper: the usual case costs two counts.
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return False
    return json_depth(body, stop_above=max_depth) > max_depth
