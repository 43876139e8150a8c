"""The application factory. Everything the app needs is built here from Settings, never at import."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

import pdn_ops
from pdn_ops.accounts import auth
from pdn_ops.accounts import routes as accounts
from pdn_ops.accounts import user_routes as users
from pdn_ops.app.context import AppContext
from pdn_ops.complaints import api as complaints_api
from pdn_ops.complaints import report_routes as reports
from pdn_ops.complaints import routes as complaints
from pdn_ops.complaints import settings_routes as procedure_settings
from pdn_ops.complaints.intake import ComplaintsIntake
from pdn_ops.complaints.model import TransitionError
from pdn_ops.core.db import migrate
from pdn_ops.core.db.engine import make_engine, make_sessionmaker
from pdn_ops.core.errors import Conflict, NotFound, PermissionDenied
from pdn_ops.core.settings import Settings
from pdn_ops.health import assets as asset_health
from pdn_ops.health import metrics_routes as metrics
from pdn_ops.health import routes as fleet
from pdn_ops.notify import routes as whatsapp_webhook
from pdn_ops.runs import auto_routes as remediation_auto
from pdn_ops.runs import routes as remediation
from pdn_ops.web import home
from pdn_ops.web import probes as health
from pdn_ops.web.middleware import BodyLimit, SecurityHeaders
from pdn_ops.web.templating import make_environment, render

log = logging.getLogger(__name__)


PACKAGE = Path(pdn_ops.__file__).parent
STATIC = PACKAGE / "web" / "static"
# Each feature keeps its pages beside its routes; the names stay unique across features.
TEMPLATE_DIRS = tuple(PACKAGE / feature / "templates"
                      for feature in ("accounts", "complaints", "health", "runs", "app"))


# A hook later issues use to start workers (scheduler, remediation, outbox) inside the lifespan.
StartHook = Callable[[AppContext], Callable[[], None] | None]


def create_app(settings: Settings, *, engine: Engine | None = None, start_hooks: list[StartHook] | None = None,
               check_database: bool = True) -> FastAPI:
    engine = engine or make_engine(settings.effective_database_url)
    ctx = AppContext(settings=settings, engine=engine, sessions=make_sessionmaker(engine))
    if check_database:
        migrate.require_current(engine)  # raises DatabaseNotReady naming the command to run
    auth.install(ctx)  # accounts: ctx.extras["authenticate"], the complaint configuration and its listeners
    # Complaints over WhatsApp/e-mail: the notify worker reads the intake from here.
    ctx.extras.setdefault("complaint_intake", ComplaintsIntake(ctx.extras["complaint_config"], settings.public_url))
    # The complaint pages' seams into the health model: live state per asset, uptime for monthly reports.
    ctx.extras.setdefault("asset_health", asset_health.states)
    ctx.extras.setdefault("asset_uptime", asset_health.uptime)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stoppers: list[Callable[[], None]] = []
        for hook in start_hooks or []:
            stop = hook(ctx)
            if stop is not None:
                stoppers.append(stop)
        try:
            yield
        finally:
            for stop in reversed(stoppers):
                stop()

    app = FastAPI(title="pdn-ops", version=pdn_ops.__version__, lifespan=lifespan,
                  docs_url="/api/docs", openapi_url="/api/v1/openapi.json", redoc_url=None,
                  dependencies=[Depends(auth.csrf_guard)])
    app.state.ctx = ctx
    app.state.jinja = make_environment(TEMPLATE_DIRS)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    # The JSON API first: routes are matched in order, and its lists are the hottest requests.
    for module in (complaints_api, health, home, metrics, fleet, accounts, complaints, reports, whatsapp_webhook,
                   remediation, remediation_auto, procedure_settings, users):
        app.include_router(module.router)

    app.add_middleware(BodyLimit)

    app.add_middleware(SecurityHeaders)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if _wants_json(request):
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
    @app.exception_handler(TransitionError)
    async def domain_conflict(request: Request, exc: Exception) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": str(exc)}, status_code=409)
        return render(request, "error.html", status_code=409, message_key="error.conflict")

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        # The traceback goes to the log; the page shows no internals (no secrets, no SQL, no paths).
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        if _wants_json(request):
            return JSONResponse({"detail": "internal server error"}, status_code=500)
        return render(request, "error.html", status_code=500, message_key="error.server")

    return app


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", "")
