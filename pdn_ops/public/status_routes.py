"""Status pages: public by OPD code (when the OPD made it public) or through the OPD's share link; and the OPD's
settings of its page. A cached page is answered on the event loop without touching the database."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from pdn_ops.accounts import OpdUser
from pdn_ops.core.db.tables import utcnow
from pdn_ops.core.errors import NotFound
from pdn_ops.core.parts import CoreParts
from pdn_ops.health import HealthParts
from pdn_ops.public import status
from pdn_ops.web import charts
from pdn_ops.web.deps import Ctx, DbSession, get_language, unit_of_work
from pdn_ops.web.templating import flash_redirect, render, translators

router = APIRouter(include_in_schema=False)
HTML = "text/html; charset=utf-8"


def pages_of(request: Request) -> status.StatusPages:
    pages = getattr(request.app.state, "status_pages", None)
    if pages is None:
        pages = request.app.state.status_pages = status.StatusPages()
    assert isinstance(pages, status.StatusPages)
    return pages


def _site_states(request: Request) -> dict[int, str]:
    health = getattr(request.app.state.runtime, "health", None)
    if not isinstance(health, HealthParts):
        return {}
    return {t.site_id: t.state for t in health.snapshot.get().targets if t.kind == "site" and t.site_id is not None}


def _build(request: Request, ctx: CoreParts, pages: status.StatusPages, kind: str, key: str, lang: str) -> bytes:
    with ctx.sessions() as session:
        known, opd_id = pages.opd_for(kind, key)
        if not known:
            opd_id = status.resolve(session, kind, key)
            pages.remember_route(kind, key, opd_id)
        if opd_id is None:
            raise NotFound("no status page here")
        cached = pages.body(opd_id, lang)
        if cached is not None:
            return cached
        page = status.page_row(session, opd_id)
        assert page is not None
        view = status.build_view(session, page, _site_states(request), utcnow(), ctx.settings.tz)
    t, _ = translators(lang)
    bars = [charts.uptime_bars(s.days, t("status.bars_label", site=s.label)) for s in view.sites]
    response = render(request, "public/status.html", lookup=False, user=None, csrf_token="", view=view, bars=bars)
    body = bytes(response.body)
    pages.remember_body(opd_id, lang, body)
    return body


async def _serve(request: Request, kind: str, key: str) -> Response:
    pages = pages_of(request)
    lang = get_language(request)
    known, opd_id = pages.opd_for(kind, key)
    body = pages.body(opd_id, lang) if known and opd_id is not None else None
    if known and opd_id is None:
        raise NotFound("no status page here")
    if body is None:
        ctx: CoreParts = request.app.state.runtime
        body = await run_in_threadpool(_build, request, ctx, pages, kind, key, lang)
    # Shared caches may keep it briefly; a share link's page must stay out of shared caches.
    cache = "public, max-age=30" if kind == "code" else "private, max-age=30"
    return Response(body, media_type=HTML, headers={"Cache-Control": cache, "Content-Language": lang})


# Plain Starlette routes, as the static files are: no FastAPI dependency resolution or validation on the hottest
# public page (the shell's middlewares still run: security headers, admission, input guard). Keys are checked here.
async def status_by_code(request: Request) -> Response:
    code = str(request.path_params["opd_code"])
    if len(code) > 63:
        raise NotFound("no status page here")
    return await _serve(request, "code", code)


async def status_by_link(request: Request) -> Response:
    token = str(request.path_params["token"])
    if len(token) > 64:
        raise NotFound("no status page here")
    return await _serve(request, "token", token)


router.add_route("/status/{opd_code}", status_by_code, methods=["GET"], include_in_schema=False)
router.add_route("/status-link/{token}", status_by_link, methods=["GET"], include_in_schema=False)


@router.get("/status-settings", response_class=HTMLResponse)
def status_settings(request: Request, ctx: Ctx, user: OpdUser, session: DbSession) -> HTMLResponse:
    assert user.opd_id is not None
    page = status.page_of(session, user.opd_id)
    return render(request, "public/status_settings.html", page=page, sites=status.opd_sites(session, user.opd_id),
                  public_url=ctx.settings.public_url.rstrip("/"),
                  opd_code=status.opd_code(session, user.opd_id))


@router.post("/status-settings")
async def status_save(request: Request, ctx: Ctx, user: OpdUser,
                      version: Annotated[str, Form(max_length=12)] = "") -> Response:
    form = await request.form()
    flags = {name: form.get(name) == "1" for name in ("enabled", "public", "show_addresses", "show_notes", "new_link")}
    ids = [int(v) for v in form.getlist("site") if isinstance(v, str) and v.isdigit() and len(v) < 10]

    def store() -> None:
        with unit_of_work(ctx) as session:
            status.save_page(session, user, site_ids=ids, version=int(version) if version.isdigit() else None,
                             **flags)

    await run_in_threadpool(store)
    assert user.opd_id is not None
    pages_of(request).forget(user.opd_id)
    return flash_redirect("/status-settings", "status_saved")
