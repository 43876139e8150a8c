"""Error answers of the web shell: JSON for the API, a page in the reader's language for people.

A domain outcome a user may not see (NotFound, PermissionDenied) answers exactly like a page that does not exist;
a conflict with the current state answers 409; anything else is logged with its traceback and answers a plain
500 that shows no internals (no secrets, no SQL, no paths). Faults that are not bugs (the pool exhausted, the
database down or locked, the disk full, a full gate) answer 503/507 with Retry-After (``pdn_ops.web.overload``).

Every handler here is ``async`` and so runs on the event loop: pages render with ``lookup=False`` (only what the
request already knows of its reader), never with a database call. A loop waiting for a pool connection inside
a 500 page is what froze the service under load for good.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from pdn_ops.core.db.faults import OutageLog
from pdn_ops.core.errors import Conflict, NotFound, Overloaded, PermissionDenied, TextRefused
from pdn_ops.web.input_guard import invalid_body
from pdn_ops.web.overload import classify, fault_response, wants_json
from pdn_ops.web.templating import render

log = logging.getLogger(__name__)


def install_error_handlers(app: FastAPI, outages: OutageLog) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 503 and not (exc.headers or {}).get("Retry-After"):
            # Every 503 says when to come back (e.g. the inventory not loaded yet, just after a start).
            exc = StarletteHTTPException(503, exc.detail, headers={**(exc.headers or {}), "Retry-After": "5"})
        if wants_json(request):
            if exc.status_code == 422 and isinstance(exc.detail, dict) and "errors" in exc.detail:
                # One shape for every 422 of the API: {errors: {field: reason}, message, detail} (``detail`` as
                # before, for clients that read it).
                return invalid_body(request, exc.detail["errors"], detail=exc.detail)
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        if exc.status_code == 401:
            return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
        if exc.status_code == 403:
            return render(request, "error.html", status_code=403, lookup=False, message_key="error.forbidden")
        key = {404: "error.not_found", 413: "error.too_large", 422: "error.invalid"}.get(exc.status_code,
                                                                                          "error.server")
        return render(request, "error.html", status_code=exc.status_code, lookup=False, message_key=key,
                      headers=exc.headers)

    # Domain outcomes: what a user may not see answers exactly like what does not exist.
    @app.exception_handler(NotFound)
    @app.exception_handler(PermissionDenied)
    async def domain_not_found(request: Request, exc: Exception) -> Response:
        return await http_error(request, StarletteHTTPException(status_code=404, detail="Not Found"))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        # Field by field ("body.name", "query.limit"), with the reason; unknown JSON fields are named the same way.
        errors = {".".join(str(p) for p in error.get("loc", ())) or "request": str(error.get("type", "invalid"))
                  for error in exc.errors()}
        if wants_json(request):
            return invalid_body(request, errors, detail=jsonable_encoder(exc.errors()))
        return render(request, "error.html", status_code=422, lookup=False, message_key="error.invalid")

    @app.exception_handler(TextRefused)
    async def text_refused(request: Request, exc: Exception) -> Response:
        if wants_json(request):
            return invalid_body(request, {"text": "control_characters"})
        return render(request, "error.html", status_code=422, lookup=False, message_key="error.invalid")

    @app.exception_handler(Conflict)
    async def domain_conflict(request: Request, exc: Exception) -> Response:
        if wants_json(request):
            return JSONResponse({"detail": str(exc)}, status_code=409)
        return render(request, "error.html", status_code=409, lookup=False, message_key="error.conflict")

    # Registered per class so they run inside the app (Starlette re-raises what reaches the catch-all handler,
    # and the server then logs a traceback for each request).
    @app.exception_handler(Overloaded)
    @app.exception_handler(sa_exc.TimeoutError)
    @app.exception_handler(sa_exc.DBAPIError)
    @app.exception_handler(OSError)
    async def fault(request: Request, exc: Exception) -> Response:
        found = classify(exc)
        if found is None:
            raise exc  # a bug: the catch-all below logs it and answers 500
        outages.failed(found.kind, exc)
        return fault_response(request, found)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        # The traceback goes to the log; the page shows no internals (no secrets, no SQL, no paths).
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        if wants_json(request):
            return JSONResponse({"detail": "internal server error"}, status_code=500)
        return render(request, "error.html", status_code=500, lookup=False, message_key="error.server")

