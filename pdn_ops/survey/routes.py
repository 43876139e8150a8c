"""The survey pages: OPD users answer (or skip) the invitations; staff read the IKM report (page, PDF, XLSX).

Engineers see the aggregates only; the supervisor's copy adds the suggestions and their follow-up. Nobody sees
who answered what: it is not stored (``tables``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from pdn_ops.accounts import OpdUser, Principal, Role, Staff, Supervisor
from pdn_ops.complaints import Office
from pdn_ops.core.db.tables import MAX_ID, utcnow
from pdn_ops.core.errors import NotFound, SurveyInvalid
from pdn_ops.core.parts import CoreParts
from pdn_ops.survey import export, service
from pdn_ops.survey.model import ELEMENTS, SCORES, Period, PeriodKind, parse_period, period_of
from pdn_ops.web import charts
from pdn_ops.web.deps import Ctx, DbSession, get_language, unit_of_work
from pdn_ops.web.templating import flash_redirect, render, translators

router = APIRouter(include_in_schema=False)
TREND = 6


def _valid_id(complaint_id: int) -> int:
    if not 0 < complaint_id <= MAX_ID:
        raise NotFound("no such survey")
    return complaint_id


@router.get("/survey", response_class=HTMLResponse)
def pending(request: Request, user: OpdUser, session: DbSession) -> HTMLResponse:
    return render(request, "survey/pending.html", items=service.pending_for(session, user))


def _form(request: Request, session: DbSession, user: Principal, complaint_id: int, *,
          chosen: dict[str, int] | None = None, suggestion: str = "", missing: list[str] | None = None,
          status_code: int = 200) -> HTMLResponse:
    row = service.invitation(session, user, _valid_id(complaint_id))
    return render(request, "survey/form.html", status_code=status_code, complaint_id=complaint_id,
                  done=row.outcome, elements=ELEMENTS, scores=SCORES, chosen=chosen or {},
                  suggestion=suggestion, missing=missing or [])


@router.get("/survey/{complaint_id}", response_class=HTMLResponse)
def survey_form(request: Request, user: OpdUser, session: DbSession, complaint_id: int) -> HTMLResponse:
    return _form(request, session, user, complaint_id)


@router.post("/survey/{complaint_id}", response_model=None)
async def survey_answer(request: Request, ctx: Ctx, user: OpdUser, complaint_id: int) -> Response:
    form = await request.form()
    chosen: dict[str, int] = {}
    for element in ELEMENTS:
        value = form.get(element)
        if isinstance(value, str) and value.isdigit() and int(value) in SCORES:
            chosen[element] = int(value)
    raw = form.get("suggestion")
    suggestion = raw[: service.MAX_SUGGESTION] if isinstance(raw, str) else ""
    missing = [e for e in ELEMENTS if e not in chosen]
    def store() -> Response:
        if missing:
            with ctx.sessions() as session:
                return _form(request, session, user, complaint_id, chosen=chosen, suggestion=suggestion,
                             missing=missing, status_code=400)
        with unit_of_work(ctx) as session:
            service.answer(session, user, _valid_id(complaint_id), [chosen[e] for e in ELEMENTS], suggestion,
                           today=datetime.now(ctx.settings.tz).date())
        return flash_redirect("/survey", "survey_thanks")

    return await run_in_threadpool(store)


@router.post("/survey/{complaint_id}/skip")
def survey_skip(ctx: Ctx, user: OpdUser, complaint_id: int) -> Response:
    with unit_of_work(ctx) as session:
        service.skip(session, user, _valid_id(complaint_id))
    return flash_redirect("/survey", "survey_skipped")


# --- the IKM report ----------------------------------------------------------------------------------------------

def _period(ctx: CoreParts, code: str | None, kind: str | None) -> Period:
    if code:
        try:
            return parse_period(code)
        except SurveyInvalid:
            raise NotFound("no such period") from None
    chosen = PeriodKind(kind) if kind in {k.value for k in PeriodKind} else PeriodKind.QUARTER
    return period_of(datetime.now(ctx.settings.tz).date(), chosen)


def _report(ctx: CoreParts, session: DbSession, user: Principal, code: str | None,
            kind: str | None) -> service.PeriodReport:
    return service.period_report(session, _period(ctx, code, kind), ctx.settings.tz, trend_length=TREND,
                                 with_suggestions=user.role is Role.SUPERVISOR)


PeriodCode = Annotated[str | None, Query(alias="period", max_length=10)]
Kind = Annotated[str | None, Query(max_length=10)]


@router.get("/survey-report", response_class=HTMLResponse)
def report_page(request: Request, ctx: Ctx, user: Staff, session: DbSession, period: PeriodCode = None,
                kind: Kind = None) -> HTMLResponse:
    report = _report(ctx, session, user, period, kind)
    t, _ = translators(get_language(request))
    values = [float(ikm.value) if ikm else None for _, ikm in report.trend]
    chart = charts.line(values, t("survey.report.trend_label"), unit_max=100.0)
    kinds = [(k.value, period_of(datetime.now(ctx.settings.tz).date(), k).code) for k in PeriodKind]
    return render(request, "survey/report.html", report=report, chart=chart, kinds=kinds,
                  can_follow_up=user.role is Role.SUPERVISOR, printed_at=datetime.now(ctx.settings.tz))


def _office(ctx: CoreParts) -> Office:
    s = ctx.settings
    return Office(government=s.office_government, name=s.office_name, address=s.office_address, logo=s.office_logo,
                  signatory_name=s.signatory_name, signatory_nip=s.signatory_nip, signatory_title=s.signatory_title)


@router.get("/survey-report.pdf")
def report_pdf(request: Request, ctx: Ctx, user: Staff, session: DbSession, period: PeriodCode = None,
               kind: Kind = None) -> Response:
    report = _report(ctx, session, user, period, kind)
    lang = get_language(request)
    body = export.report_pdf(report, _office(ctx), lang=lang, printed_at=datetime.now(ctx.settings.tz))
    return Response(body, media_type="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="ikm-{report.period.code}.pdf"'})


@router.get("/survey-report.xlsx")
def report_xlsx(request: Request, ctx: Ctx, user: Staff, session: DbSession, period: PeriodCode = None,
                kind: Kind = None) -> Response:
    report = _report(ctx, session, user, period, kind)
    body = export.report_xlsx(report, lang=get_language(request))
    return Response(body, media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": f'attachment; filename="ikm-{report.period.code}.xlsx"'})


@router.post("/survey-report/suggestions/{response_id}")
def follow_up(ctx: Ctx, user: Supervisor, response_id: int,
              text: Annotated[str, Form(max_length=service.MAX_SUGGESTION)] = "",
              period: Annotated[str, Form(max_length=10)] = "") -> Response:
    if not 0 < response_id <= MAX_ID:
        raise NotFound("no such suggestion")
    with unit_of_work(ctx) as session:
        service.record_follow_up(session, user, response_id, text, now=utcnow())
    try:
        code = parse_period(period).code
    except SurveyInvalid:
        code = ""
    return flash_redirect(f"/survey-report?period={code}" if code else "/survey-report", "survey_follow_up")
