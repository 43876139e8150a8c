"""The landing page: a home per role, made of the panels each feature contributes.

The shell does not know the features (they sit above it): the composition root lists their panel functions in
``app.state.home_panels``. A panel is ``(request, session, user) -> (template, context) | None``; it answers
None when it has nothing for that reader. The panels part of the page is polled (htmx) so the home moves by itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse
from sqlalchemy.orm import Session

from pdn_ops.core import fleet
from pdn_ops.web.deps import DbSession, runtime_of
from pdn_ops.web.templating import ANONYMOUS, PageIdentity, render

router = APIRouter(include_in_schema=False)

Panel = tuple[str, dict[str, Any]]
HomePanel = Callable[[Request, Session, Any], Panel | None]


def panels_for(request: Request, session: Session) -> list[Panel]:
    identity: PageIdentity = getattr(request.app.state, "page_identity", ANONYMOUS)
    user = identity.user(request)
    if user is None:
        return []
    chosen: Sequence[HomePanel] = getattr(request.app.state, "home_panels", ())
    return [p for p in (panel(request, session, user) for panel in chosen) if p is not None]


@router.get("/", response_class=HTMLResponse)
def home(request: Request, session: DbSession) -> HTMLResponse:
    return render(request, "home.html", counts=fleet.counts(session), panels=panels_for(request, session))


@router.get("/home/panels", response_class=HTMLResponse)
def home_panels(request: Request, session: DbSession) -> HTMLResponse:
    """The moving part of the home page, polled every 10 s."""
    return render(request, "_home_panels.html", panels=panels_for(request, session))


# Mounted only when PDN_OPS_OFFICE_LOGO is set, so that no route answers 404 to everyone by design.
logo_router = APIRouter(include_in_schema=False)


@logo_router.get("/office/logo")
def office_logo(request: Request) -> FileResponse:
    """The office's logo from settings, for the header and the printable letterhead."""
    logo = runtime_of(request).settings.office_logo
    if logo is None:
        raise HTTPException(status_code=404)
    return FileResponse(logo, headers={"Cache-Control": "public, max-age=86400"})
