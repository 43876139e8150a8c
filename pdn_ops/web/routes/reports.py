"""Monthly report (per OPD and overall) with its CSV export.

Seam: ``ctx.extras["asset_uptime"](session, start, end, opd_id) -> [(label, fraction)]`` from the health
history; without it the report says that uptime is not available.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from pdn_ops.services import complaint_queries, complaint_reports
from pdn_ops.web.deps import Ctx, CurrentUser, DbSession
from pdn_ops.web.roles import Config
from pdn_ops.web.templating import render

router = APIRouter(include_in_schema=False)


def _report(ctx: Ctx, user: CurrentUser, session: DbSession, config: Config, month: str,
            opd: str) -> complaint_reports.MonthlyReport:
    opd_row = complaint_queries.opd_by_code(session, opd) if opd and user.is_staff else None
    try:
        return complaint_reports.monthly(session, user, month=month, tz=config.policy.tz,
                                         opd_id=opd_row.id if opd_row else None)
    except ValueError:
        raise HTTPException(status_code=400, detail="month must be YYYY-MM") from None


@router.get("/reports/monthly", response_class=HTMLResponse)
def monthly(request: Request, ctx: Ctx, user: CurrentUser, session: DbSession, config: Config, month: str = "",
            opd: str = "") -> HTMLResponse:
    month = month or datetime.now(config.policy.tz).strftime("%Y-%m")
    report = _report(ctx, user, session, config, month, opd)
    uptime_seam = ctx.extras.get("asset_uptime")
    uptime = None
    if uptime_seam is not None:
        start, end = complaint_reports.month_bounds(month, config.policy.tz)
        uptime = uptime_seam(session, start, end, user.opd_scope() if not user.is_staff else None)
    return render(request, "complaints/monthly.html", report=report, month=month, opd=opd, uptime=uptime,
                  opds=complaint_queries.opds(session) if user.is_staff else [])


@router.get("/reports/monthly.csv")
def monthly_csv(ctx: Ctx, user: CurrentUser, session: DbSession, config: Config, month: str = "",
                opd: str = "") -> Response:
    month = month or datetime.now(config.policy.tz).strftime("%Y-%m")
    report = _report(ctx, user, session, config, month, opd)
    return Response(complaint_reports.to_csv(report, config.policy.tz), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="complaints-{month}.csv"'})
