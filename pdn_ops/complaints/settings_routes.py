"""The supervisor's settings of the complaint procedure: a page and ``/api/v1/settings/complaints``.

Engineers see the settings read-only (they work to these terms); only a supervisor changes them; OPD users get
404, as for every staff page. A save takes effect at once in this process and within the cache period
(``LiveSettings.ttl``) in every other worker, without a restart.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from pdn_ops.accounts import Principal, Role, Staff, Supervisor
from pdn_ops.complaints import holiday_proposal
from pdn_ops.complaints import procedure_store as procedure_settings
from pdn_ops.complaints.parts import Parts
from pdn_ops.complaints.procedure import ProcedureSettings, check
from pdn_ops.complaints.procedure_store import LiveSettings, Stored
from pdn_ops.core.errors import Conflict, SettingsInvalid
from pdn_ops.core.i18n import translate
from pdn_ops.core.parts import CoreParts
from pdn_ops.web.deps import Ctx, DbSession, get_language, unit_of_work
from pdn_ops.web.templating import render

router = APIRouter()
PAGE = "/settings/complaints"


def _form_of(settings: ProcedureSettings) -> dict[str, str]:
    return {"sla_days": str(settings.sla_days), "sla_mode": "working" if settings.sla_working_days else "calendar",
            "holidays": "\n".join(settings.holiday_list()), "autoclose_days": f"{settings.autoclose_days:g}"}


def _page(request: Request, ctx: CoreParts, live: LiveSettings, user: Principal, *, form: dict[str, str] | None = None,
          errors: dict[str, Any] | None = None, problem: str | None = None, status_code: int = 200,
          proposal_years: list[int] | None = None, proposed: tuple[int, list[Any], int] | None = None
          ) -> HTMLResponse:
    with ctx.sessions() as session:
        stored = live.stored(session)
        history = procedure_settings.history(session)
    return render(request, "settings.html", status_code=status_code, stored=stored, defaults=live.defaults,
                  timezone=live.timezone, form=form or _form_of(stored.settings), errors=errors or {},
                  problem=problem, history=history, can_edit=user.role is Role.SUPERVISOR,
                  proposal_years=proposal_years or [], proposed=proposed,
                  saved=request.query_params.get("saved") == "1",
                  recomputed=int(request.query_params.get("recomputed", "0") or 0)
                  if request.query_params.get("recomputed", "0").isdigit() else 0)


@router.get(PAGE, response_class=HTMLResponse, include_in_schema=False)
def settings_page(request: Request, ctx: Ctx, parts: Parts, user: Staff, propose: int | None = None) -> HTMLResponse:
    """``?propose=YEAR`` (supervisor): the year's public holidays and cuti bersama added to the form, not saved."""
    this_year = datetime.now(parts.config.policy.tz).year
    years = [this_year + i for i in range(holiday_proposal.PROPOSAL_YEARS)]
    if propose is None or propose not in years or user.role is not Role.SUPERVISOR:
        return _page(request, ctx, parts.terms, user, proposal_years=years)
    proposed = holiday_proposal.proposal(propose, get_language(request))
    with ctx.sessions() as session:
        current = parts.terms.stored(session).settings
    form = _form_of(current)
    merged = sorted(set(current.holiday_list()) | {d.isoformat() for d, _name in proposed})
    form["holidays"] = "\n".join(merged)
    return _page(request, ctx, parts.terms, user, form=form, proposal_years=years,
                 proposed=(propose, proposed, len(merged) - len(current.holiday_list())))


@router.post(PAGE, include_in_schema=False)
def save_settings(request: Request, ctx: Ctx, parts: Parts, user: Supervisor,
                  sla_days: Annotated[str, Form(max_length=20)] = "",
                  sla_mode: Annotated[str, Form(max_length=20)] = "",
                  holidays: Annotated[str, Form(max_length=20000)] = "",
                  autoclose_days: Annotated[str, Form(max_length=20)] = "",
                  revision: Annotated[str, Form(max_length=20)] = "") -> Response:
    form = {"sla_days": sla_days, "sla_mode": sla_mode, "holidays": holidays, "autoclose_days": autoclose_days}
    live = parts.terms
    try:
        new = check(sla_days=sla_days, sla_working_days=sla_mode, holidays=holidays,
                    autoclose_days=autoclose_days)
        with unit_of_work(ctx) as session:
            saved = procedure_settings.save(session, user, new, defaults=live.defaults, timezone=live.timezone,
                                            expected_revision=int(revision) if revision.isdigit() else None)
    except SettingsInvalid as exc:
        # Every problem at once, everything typed kept.
        return _page(request, ctx, live, user, form=form, errors=exc.errors, status_code=400)
    except Conflict:
        return _page(request, ctx, live, user, form=form, problem="settings.error.stale", status_code=409)
    live.invalidate()
    return RedirectResponse(f"{PAGE}?saved=1&recomputed={saved.recomputed}", status_code=303)


# --- JSON API ---------------------------------------------------------------------------------------------------

class ProcedureValues(BaseModel):
    # An unknown field is refused (422 naming it), not silently ignored: a typo must not look like success.
    model_config = ConfigDict(extra="forbid")

    sla_days: int
    sla_mode: Literal["calendar", "working"]
    holidays: list[date]
    autoclose_days: float


class ProcedureSettingsOut(ProcedureValues):
    timezone: str
    source: Literal["environment", "database"]
    revision: int
    updated_at: datetime | None
    updated_by: str | None
    defaults: ProcedureValues


class ProcedureSettingsIn(BaseModel):
    """Loose types on purpose: every field is checked by the same rules as the form, with one error per field."""
    # An unknown field is refused (422 naming it), not silently ignored: a typo must not look like success.
    model_config = ConfigDict(extra="forbid")


    sla_days: Any = Field(default=None, examples=[7])
    sla_mode: Any = Field(default=None, examples=["working"])
    holidays: Any = Field(default=None, examples=[["2026-12-25", "2027-01-01"]])
    autoclose_days: Any = Field(default=None, examples=[3])
    revision: int | None = Field(default=None, description="the revision read; a stale one is refused with 409")


class ProcedureSaved(ProcedureSettingsOut):
    changed: list[str]
    recomputed: int


def _values(settings: ProcedureSettings) -> ProcedureValues:
    return ProcedureValues(sla_days=settings.sla_days, sla_mode="working" if settings.sla_working_days else "calendar",
                           holidays=sorted(settings.holidays), autoclose_days=settings.autoclose_days)


def _out(live: LiveSettings, stored: Stored) -> ProcedureSettingsOut:
    return ProcedureSettingsOut(**_values(stored.settings).model_dump(), timezone=live.timezone,
                                source="environment" if stored.from_environment else "database",
                                revision=stored.revision, updated_at=stored.updated_at, updated_by=stored.updated_by,
                                defaults=_values(live.defaults))


API = "/api/v1/settings/complaints"


@router.get(API, tags=["settings"])
def get_settings(parts: Parts, user: Staff, session: DbSession) -> ProcedureSettingsOut:
    live = parts.terms
    return _out(live, live.stored(session))


@router.put(API, tags=["settings"], responses={409: {"description": "stale revision"},
                                                422: {"description": "one error per bad field"}})
def put_settings(ctx: Ctx, parts: Parts, user: Supervisor, body: ProcedureSettingsIn) -> ProcedureSaved:
    live = parts.terms
    try:
        new = check(sla_days=body.sla_days, sla_working_days=body.sla_mode, holidays=body.holidays,
                    autoclose_days=body.autoclose_days)
        with unit_of_work(ctx) as session:
            saved = procedure_settings.save(session, user, new, defaults=live.defaults, timezone=live.timezone,
                                            expected_revision=body.revision)
    except SettingsInvalid as exc:
        fields = {"sla_working_days": "sla_mode"}
        raise HTTPException(status_code=422, detail={
            "errors": {fields.get(k, k): v.key for k, v in exc.errors.items()},
            "messages": {fields.get(k, k): translate(v.key, user.language, **v.params)
                         for k, v in exc.errors.items()}}) from None
    live.invalidate()
    return ProcedureSaved(**_out(live, saved.stored).model_dump(), changed=saved.changed,
                          recomputed=saved.recomputed)

