"""The landing page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from pdn_ops.core import fleet
from pdn_ops.web.deps import DbSession
from pdn_ops.web.templating import render

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def home(request: Request, session: DbSession) -> HTMLResponse:
    return render(request, "home.html", counts=fleet.counts(session))
