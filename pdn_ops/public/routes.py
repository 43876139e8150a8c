"""Public pages (no login): the published service standard and the form for complaints about the service; and
the supervisor's side of both (editing the standard, answering the service complaints).

The form is open to anyone, so everything in it is hostile: the body is capped by the shell (BodyLimit), control
characters are refused by the shell's input guard, each field is capped and normalised here, the answer never
echoes more than the sender typed back to the sender, and each sender address may send a few an hour.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from pdn_ops.accounts import Supervisor
from pdn_ops.core.db.tables import MAX_ID, utcnow
from pdn_ops.core.errors import NotFound, Throttled
from pdn_ops.core.parts import CoreParts
from pdn_ops.public import service
from pdn_ops.public.model import (
    MAX_FEEDBACK,
    MAX_NAME,
    MAX_PART,
    STANDARD_PARTS,
    StandardContent,
    check_feedback,
    check_standard,
)
from pdn_ops.web.deps import Ctx, DbSession, get_language, unit_of_work
from pdn_ops.web.templating import flash_redirect, render

router = APIRouter(include_in_schema=False)


def _fallback(request: Request, ctx: CoreParts) -> StandardContent:
    s = ctx.settings
    # The standard's time is the complaint procedure's SLA as the supervisor set it (the complaints' live terms).
    terms = getattr(getattr(request.app.state.runtime, "complaints", None), "terms", None)
    days = int(terms.cached().policy.days) if terms is not None else 7
    return service.default_standard(get_language(request), email=s.service_email, whatsapp=s.service_whatsapp,
                                    sla_days=days)


@router.get("/standard", response_class=HTMLResponse)
def standard(request: Request, ctx: Ctx, session: DbSession) -> HTMLResponse:
    current = service.current_standard(session, _fallback(request, ctx))
    return render(request, "public/standard.html", standard=current, parts=STANDARD_PARTS,
                  history=service.standard_history(session))


@router.get("/standard/versions/{number}", response_class=HTMLResponse)
def standard_version(request: Request, session: DbSession, number: int) -> HTMLResponse:
    if not 0 < number <= MAX_ID:
        raise NotFound("no such version")
    return render(request, "public/standard.html", standard=service.standard_version(session, number),
                  parts=STANDARD_PARTS, history=service.standard_history(session))


def _edit_page(request: Request, ctx: CoreParts, session: DbSession, *, form: dict[str, str] | None = None,
               errors: dict[str, str] | None = None, status_code: int = 200) -> HTMLResponse:
    current = service.current_standard(session, _fallback(request, ctx))
    if form is None:
        form = {**current.content.parts, "email": current.content.email, "whatsapp": current.content.whatsapp}
    return render(request, "public/standard_edit.html", status_code=status_code, form=form, errors=errors or {},
                  parts=STANDARD_PARTS, standard=current, max_part=MAX_PART)


@router.get("/standard/edit", response_class=HTMLResponse)
def standard_edit(request: Request, ctx: Ctx, user: Supervisor, session: DbSession) -> HTMLResponse:
    return _edit_page(request, ctx, session)


@router.post("/standard", response_model=None)
async def standard_save(request: Request, ctx: Ctx, user: Supervisor) -> Response:
    data = await request.form()
    form = {name: str(data.get(name) or "")[: MAX_PART + 1] for name in (*STANDARD_PARTS, "email", "whatsapp")}
    content, errors = check_standard({p: form[p] for p in STANDARD_PARTS}, form["email"], form["whatsapp"])

    def store() -> Response:
        if errors:
            with ctx.sessions() as session:
                return _edit_page(request, ctx, session, form=form, errors=errors, status_code=400)
        with unit_of_work(ctx) as session:
            service.save_standard(session, user, content, now=utcnow())
        return flash_redirect("/standard", "standard_saved")

    return await run_in_threadpool(store)


# --- complaints about the service ----------------------------------------------------------------------------------

def _feedback_page(request: Request, ctx: CoreParts, *, form: dict[str, str] | None = None,
                   errors: dict[str, str] | None = None, status_code: int = 200,
                   headers: dict[str, str] | None = None) -> HTMLResponse:
    return render(request, "public/feedback.html", status_code=status_code, headers=headers,
                  form=form or {"name": "", "contact": "", "message": ""}, errors=errors or {},
                  max_message=MAX_FEEDBACK, max_name=MAX_NAME, email=ctx.settings.service_email,
                  whatsapp=ctx.settings.service_whatsapp)


@router.get("/service-complaint", response_class=HTMLResponse)
def feedback_form(request: Request, ctx: Ctx) -> HTMLResponse:
    return _feedback_page(request, ctx)


@router.post("/service-complaint", response_model=None)
def feedback_send(request: Request, ctx: Ctx,
                  name: Annotated[str, Form(max_length=MAX_NAME * 2)] = "",
                  contact: Annotated[str, Form(max_length=300)] = "",
                  message: Annotated[str, Form(max_length=MAX_FEEDBACK * 2)] = "") -> Response:
    draft, errors = check_feedback(name, contact, message)
    form = {"name": draft.name, "contact": draft.contact, "message": draft.message}
    if errors:
        return _feedback_page(request, ctx, form=form, errors=errors, status_code=400)
    address = request.client.host if request.client else "unknown"
    key = service.client_key(ctx.settings.secret_key.get_secret_value(), f"web:{address}")
    try:
        with unit_of_work(ctx) as session:
            service.receive_feedback(session, draft, channel="web", client=key, now=utcnow())
    except Throttled as exc:
        return _feedback_page(request, ctx, form=form, errors={"form": "feedback.error.throttled"}, status_code=429,
                              headers={"Retry-After": str(exc.retry_after)})
    return flash_redirect("/service-complaint", "feedback_received")


def _period_start(ctx: CoreParts, days: int) -> tuple[datetime, datetime]:
    end = utcnow()
    return end - timedelta(days=days), end


@router.get("/service-complaints", response_class=HTMLResponse)
def feedback_queue(request: Request, ctx: Ctx, user: Supervisor, session: DbSession) -> HTMLResponse:
    start, end = _period_start(ctx, 90)
    return render(request, "public/feedback_queue.html", waiting=service.feedback_queue(session, answered=False),
                  answered=service.feedback_queue(session, answered=True, limit=30),
                  stats=service.feedback_stats(session, start, end), now=end)


@router.post("/service-complaints/{feedback_id}/answer")
def feedback_answer(ctx: Ctx, user: Supervisor, feedback_id: int,
                    text: Annotated[str, Form(max_length=MAX_FEEDBACK)] = "") -> Response:
    if not 0 < feedback_id <= MAX_ID:
        raise NotFound("no such service complaint")
    if not text.strip():
        return flash_redirect("/service-complaints", "feedback_answer_empty")
    with unit_of_work(ctx) as session:
        service.answer_feedback(session, user, feedback_id, text, now=utcnow())
    return flash_redirect("/service-complaints", "feedback_answered")
