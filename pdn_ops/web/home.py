"""The landing page."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse

from pdn_ops.core import fleet
from pdn_ops.web.deps import DbSession, runtime_of
from pdn_ops.web.templating import render

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def home(request: Request, session: DbSession) -> HTMLResponse:
    return render(request, "home.html", counts=fleet.counts(session))

# Mounted only when PDN_OPS_OFFICE_LOGO is set, so that no route answers 404 to everyone by design.
logo_router = APIRouter(include_in_schema=False)


@logo_router.get("/office/logo")
def office_logo(request: Request) -> FileResponse:
    """The office's logo from settings, for the header and the printable letterhead."""
    logo = runtime_of(request).settings.office_logo
    if logo is None:
        raise HTTPException(status_code=404)
    return FileResponse(logo, headers={"Cache-Control": "public, max-age=86400"})
