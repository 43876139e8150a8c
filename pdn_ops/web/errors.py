"""Error answers of the web shell: JSON for the API, a page in the reader's language for people.

A domain outcome a user may not see (NotFound, PermissionDenied) answers exactly like a page that does not exist;
a conflict with the current state answers 409; anything else is logged with its traceback and answers a plain
500 that shows no internals (no secrets, no SQL, no paths).
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from pdn_ops.core.errors import Conflict, NotFound, PermissionDenied
from pdn_ops.web.templating import render

log = logging.getLogger(__name__)


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", "")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if wants_json(request):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        if exc.status_code == 401:
            return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
        if exc.status_code == 403:
            return render(request, "error.html", status_code=403, message_key="error.forbidden")
        key = {404: "error.not_found", 413: "error.too_large"}.get(exc.status_code, "error.server")
        return render(request, "error.html", status_code=exc.status_code, message_key=key)

    # Domain outcomes: what a user may not see answers exactly like what does not exist.
    @app.exception_handler(NotFound)
    @app.exception_handler(PermissionDenied)
    async def domain_not_found(request: Request, exc: Exception) -> Response:
        return await http_error(request, StarletteHTTPException(status_code=404, detail="Not Found"))

    @app.exception_handler(Conflict)
    async def domain_conflict(request: Request, exc: Exception) -> Response:
        if wants_json(request):
            return JSONResponse({"detail": str(exc)}, status_code=409)
        return render(request, "error.html", status_code=409, message_key="error.conflict")

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        # The traceback goes to the log; the page shows no internals (no secrets, no SQL, no paths).
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        if wants_json(request):
            return JSONResponse({"detail": "internal server error"}, status_code=500)
        return render(request, "error.html", status_code=500, message_key="error.server")

