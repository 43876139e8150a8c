"""The application factory: the web app over a runtime built by ``pdn_ops.app.runtime``, never at import."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import anyio.to_thread
from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

import pdn_ops
from pdn_ops.accounts import auth
from pdn_ops.accounts import routes as accounts
from pdn_ops.accounts import user_routes as users
from pdn_ops.alerts import duty_routes as duty_pages
from pdn_ops.alerts import routes as alertmanager_webhook
from pdn_ops.app.runtime import Runtime
from pdn_ops.complaints import api as complaints_api
from pdn_ops.complaints import home_panel as complaints_home
from pdn_ops.complaints import report_routes as reports
from pdn_ops.complaints import routes as complaints
from pdn_ops.complaints import settings_routes as procedure_settings
from pdn_ops.core.db.faults import OutageLog
from pdn_ops.core.i18n import catalogue
from pdn_ops.health import home_panel as health_home
from pdn_ops.health import metrics_routes as metrics
from pdn_ops.health import routes as fleet
from pdn_ops.notify import routes as whatsapp_webhook
from pdn_ops.public import routes as public_pages
from pdn_ops.public import status_routes as status_pages
from pdn_ops.runs import auto_routes as remediation_auto
from pdn_ops.runs import home_panel as runs_home
from pdn_ops.runs import routes as remediation
from pdn_ops.survey import home_panel as survey_home
from pdn_ops.survey import routes as survey
from pdn_ops.web import home
from pdn_ops.web import probes as health
from pdn_ops.web.errors import install_error_handlers
from pdn_ops.web.input_guard import InputGuard, JsonGuard, refuse_control_characters
from pdn_ops.web.middleware import BodyLimit, SecurityHeaders
from pdn_ops.web.openapi import install_openapi
from pdn_ops.web.overload import Admission
from pdn_ops.web.templating import PageIdentity, make_environment

log = logging.getLogger(__name__)


PACKAGE = Path(pdn_ops.__file__).parent
STATIC = PACKAGE / "web" / "static"
# Each feature keeps its pages beside its routes; the names stay unique across features.
TEMPLATE_DIRS = tuple(PACKAGE / feature / "templates"
                      for feature in ("accounts", "complaints", "health", "runs", "survey", "public", "alerts", "app"))


# Runs when the app starts (workers, the scheduler, the inventory sync); returns how to stop what it started.
StartHook = Callable[[Runtime], Callable[[], None] | None]


def create_app(runtime: Runtime, *, start_hooks: Sequence[StartHook] = ()) -> FastAPI:
    """The web app over a built runtime (``build_runtime``); ``start_hooks`` run in the lifespan, in order."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Sync routes run in AnyIO's worker threads: bounded, and sized with the database pool in mind.
        anyio.to_thread.current_default_thread_limiter().total_tokens = runtime.settings.worker_threads
        stoppers: list[Callable[[], None]] = []
        for hook in start_hooks:
            stop = hook(runtime)
            if stop is not None:
                stoppers.append(stop)
        try:
            yield
        finally:
            for stop in reversed(stoppers):
                stop()

    app = FastAPI(title="pdn-ops", version=pdn_ops.__version__, lifespan=lifespan,
                  docs_url="/api/docs", openapi_url="/api/v1/openapi.json", redoc_url=None,
                  dependencies=[Depends(refuse_control_characters), Depends(auth.csrf_guard)])
    app.state.runtime = runtime
    app.state.page_identity = PageIdentity(user=auth.principal_or_none, csrf_token=auth.csrf_token,
                                           finish=auth.finish_response, known_user=auth.known_principal,
                                           known_csrf_token=auth.known_csrf_token)
    app.state.jinja = make_environment(TEMPLATE_DIRS)
    for page in ("base.html", "error.html"):  # compiled now: error pages render on the loop without file I/O
        app.state.jinja.get_template(page)
    catalogue()  # parsed now, not by the first burst of requests (and not on the loop by an error page)
    # Each feature's part of the homes, in the order a reader scans them (pdn_ops.web.home).
    app.state.home_panels = (survey_home.panel, complaints_home.panel, health_home.panel, runs_home.panel)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    # The JSON API first: routes are matched in order, and its lists are the hottest requests.
    for module in (complaints_api, health, home, metrics, fleet, accounts, complaints, reports, whatsapp_webhook,
                   alertmanager_webhook, remediation, remediation_auto, procedure_settings, users, survey,
                   public_pages, status_pages, duty_pages):
        app.include_router(module.router)
    if runtime.settings.office_logo is not None:
        app.include_router(home.logo_router)

    outages = OutageLog(logging.getLogger("pdn_ops.web.overload"))
    app.state.outages = outages
    app.add_middleware(BodyLimit)
    app.add_middleware(JsonGuard)
    app.add_middleware(InputGuard)
    # Outside the body limit and inside the security headers, so that its 503 carries them too.
    app.add_middleware(Admission, limit=runtime.settings.max_requests_in_flight, outages=outages)
    app.add_middleware(SecurityHeaders)

    install_error_handlers(app, outages)
    install_openapi(app)
    return app
