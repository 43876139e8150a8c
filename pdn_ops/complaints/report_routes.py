"""Monthly report (per OPD and overall) with its CSV export.

Uptime comes through the ``asset_uptime`` seam of ``ComplaintsParts`` (the health history); without it the
report says that uptime is not available.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from pdn_ops.accounts import CurrentUser
from pdn_ops.complaints import pdf
from pdn_ops.complaints import reports as complaint_reports
from pdn_ops.complaints.parts import ComplaintsParts, Config, Parts
from pdn_ops.core import fleet
from pdn_ops.core.db.tables import utcnow
from pdn_ops.web import charts
from pdn_ops.web.deps import Ctx, DbSession, get_language
from pdn_ops.web.templating import render, translators

router = APIRouter(include_in_schema=False)


def _report(ctx: Ctx, user: CurrentUser, session: DbSession, config: Config, month: str,
            opd: str) -> complaint_reports.MonthlyReport:
    # Another OPD's (or an unknown) code answers 404 like a missing page; an OPD user's own code is their report.
    opd_row = complaint_reports.chosen_opd(session, user, opd)
    try:
        return complaint_reports.monthly(session, user, month=month, tz=config.policy.tz,
                                         opd_id=opd_row.id if opd_row else None, policy=config.policy)
    except ValueError:
        raise HTTPException(status_code=400, detail="month must be YYYY-MM") from None


def _uptime(parts: ComplaintsParts, session: DbSession, report: complaint_reports.MonthlyReport,
            ) -> list[tuple[str, float]] | None:
    """Uptime of the assets of the OPD reported on (all OPDs' for the overall report), from the health history."""
    if parts.asset_uptime is None:
        return None
    start, end = complaint_reports.month_bounds(report.month, parts.config.policy.tz)
    return list(parts.asset_uptime(session, start, end, report.opd_id))


@router.get("/reports/monthly", response_class=HTMLResponse)
def monthly(request: Request, ctx: Ctx, user: CurrentUser, session: DbSession, parts: Parts, month: str = "",
            opd: str = "") -> HTMLResponse:
    config = parts.config
    month = month or datetime.now(config.policy.tz).strftime("%Y-%m")
    report = _report(ctx, user, session, config, month, opd)
    uptime = _uptime(parts, session, report)
    coverage = parts.backup_coverage(session, utcnow(), report.opd_id) if parts.backup_coverage else None
    year, mon = (int(x) for x in month.split("-"))
    return render(request, "complaints/monthly.html", report=report, month=month, opd=opd, uptime=uptime,
                  backup_coverage=coverage,
                  opds=fleet.opds(session) if user.is_staff else [], charts=charts,
                  pictures=complaint_reports.pictures(report), month_name=(year, mon),
                  office=complaint_reports.office_from(ctx.settings),
                  printed_at=datetime.now(config.policy.tz))


@router.get("/reports/monthly.csv")
def monthly_csv(request: Request, ctx: Ctx, user: CurrentUser, session: DbSession, config: Config, month: str = "",
                opd: str = "") -> Response:
    """The month's complaints for a spreadsheet: the reader's language, a BOM and ';' (see to_people_csv)."""
    month = month or datetime.now(config.policy.tz).strftime("%Y-%m")
    report = _report(ctx, user, session, config, month, opd)
    lang = get_language(request)
    t, tk = translators(lang)
    body = complaint_reports.to_people_csv(report, config.policy.tz, lang=lang, t=t, tk=tk)
    return Response(body, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="complaints-{pdf.safe_part(month)}.csv"'})


@router.get("/reports/monthly.xlsx")
def monthly_xlsx(request: Request, ctx: Ctx, user: CurrentUser, session: DbSession, config: Config,
                 month: str = "", opd: str = "") -> Response:
    month = month or datetime.now(config.policy.tz).strftime("%Y-%m")
    report = _report(ctx, user, session, config, month, opd)
    t, tk = translators(get_language(request))
    body = complaint_reports.to_xlsx(report, config.policy.tz, t=t, tk=tk, title=month)
    return Response(body, media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition":
                             f'attachment; filename="complaints-{pdf.safe_part(month)}.xlsx"'})


@router.get("/reports/monthly.pdf")
def monthly_pdf(request: Request, ctx: Ctx, user: CurrentUser, session: DbSession, parts: Parts, month: str = "",
                opd: str = "") -> Response:
    config = parts.config
    month = month or datetime.now(config.policy.tz).strftime("%Y-%m")
    report = _report(ctx, user, session, config, month, opd)
    t, tk = translators(get_language(request))
    uptime = _uptime(parts, session, report)
    with parts.pdf_gate.slot():
        body = pdf.monthly_pdf(report, t=t, tk=tk, tz=config.policy.tz, uptime=uptime,
                               printed_at=datetime.now(config.policy.tz),
                               office=complaint_reports.office_from(ctx.settings), lang=get_language(request))
    scope = opd if opd and report.opd_name else ("opd" if report.opd_name else "all")
    name = f"complaints-{pdf.safe_part(month)}-{pdf.safe_part(scope)}.pdf"
    return Response(body, media_type="application/pdf", headers=pdf.attachment_headers(name))
