"""/duty: who is on duty now and when (the weekly rota and the overrides). Engineers read it; the supervisor
edits it. Alerts go to the engineers on duty, or to every active engineer when nobody is (``duty_service``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from pdn_ops.accounts import Principal, Role, Staff, Supervisor
from pdn_ops.alerts import duty, duty_service
from pdn_ops.core.db.tables import utcnow
from pdn_ops.core.errors import DutyInvalid
from pdn_ops.web.deps import Ctx, DbSession, get_language, unit_of_work
from pdn_ops.web.templating import flash_redirect, render, translators

router = APIRouter(include_in_schema=False)
PAGE = "/duty"


def _page(request: Request, ctx: Ctx, session: DbSession, user: Principal, *, errors: dict[str, str] | None = None,
          form: dict[str, str] | None = None, status_code: int = 200) -> HTMLResponse:
    now, tz = utcnow(), ctx.settings.tz
    starts, ends = duty_service.default_window(now, tz)
    t, _ = translators(get_language(request))
    return render(request, "alerts/duty.html", status_code=status_code,
                  roster=duty_service.roster(session, now, tz), clock=duty.clock, weekdays=duty.WEEKDAYS,
                  can_edit=user.role is Role.SUPERVISOR, errors={k: t(v) for k, v in (errors or {}).items()},
                  form={"starts": starts, "ends": ends, "start": "07:00", "end": "19:00", **(form or {})})


@router.get(PAGE, response_class=HTMLResponse)
def duty_page(request: Request, ctx: Ctx, user: Staff, session: DbSession) -> HTMLResponse:
    return _page(request, ctx, session, user)


def _int(text: str) -> int:
    return int(text) if text.isdigit() and len(text) <= 10 else 0


@router.post(f"{PAGE}/shifts", response_model=None)
async def shift_add(request: Request, ctx: Ctx, user: Supervisor,
                    user_id: Annotated[str, Form(max_length=12)] = "",
                    weekday: Annotated[str, Form(max_length=2)] = "",
                    start: Annotated[str, Form(max_length=8)] = "",
                    end: Annotated[str, Form(max_length=8)] = "") -> Response:
    def store() -> Response:
        try:
            with unit_of_work(ctx) as session:
                duty_service.add_shift(session, user, user_id=_int(user_id),
                                       weekday=_int(weekday) if weekday.isdigit() else -1,
                                       start=start, end=end, now=utcnow())
        except DutyInvalid as exc:
            with ctx.sessions() as session:
                return _page(request, ctx, session, user, errors=exc.errors, status_code=400,
                             form={"user_id": user_id, "weekday": weekday, "start": start, "end": end})
        return flash_redirect(PAGE, "duty_saved")

    return await run_in_threadpool(store)


@router.post(f"{PAGE}/shifts/{{shift_id}}/delete", response_model=None)
async def shift_remove(ctx: Ctx, user: Supervisor, shift_id: int) -> Response:
    def store() -> None:
        with unit_of_work(ctx) as session:
            duty_service.remove_shift(session, user, shift_id, utcnow())

    await run_in_threadpool(store)
    return flash_redirect(PAGE, "duty_removed")


@router.post(f"{PAGE}/overrides", response_model=None)
async def override_add(request: Request, ctx: Ctx, user: Supervisor,
                       user_id: Annotated[str, Form(max_length=12)] = "",
                       kind: Annotated[str, Form(max_length=3)] = "",
                       starts: Annotated[str, Form(max_length=20)] = "",
                       ends: Annotated[str, Form(max_length=20)] = "",
                       note: Annotated[str, Form(max_length=duty_service.MAX_NOTE)] = "") -> Response:
    def store() -> Response:
        try:
            with unit_of_work(ctx) as session:
                duty_service.add_override(session, user, user_id=_int(user_id), kind=kind, starts=starts, ends=ends,
                                          note=note, now=utcnow(), tz=ctx.settings.tz)
        except DutyInvalid as exc:
            with ctx.sessions() as session:
                return _page(request, ctx, session, user, errors=exc.errors, status_code=400,
                             form={"o_user_id": user_id, "kind": kind, "starts": starts, "ends": ends,
                                   "note": note})
        return flash_redirect(PAGE, "duty_saved")

    return await run_in_threadpool(store)


@router.post(f"{PAGE}/overrides/{{override_id}}/delete", response_model=None)
async def override_remove(ctx: Ctx, user: Supervisor, override_id: int) -> Response:
    def store() -> None:
        with unit_of_work(ctx) as session:
            duty_service.remove_override(session, user, override_id, utcnow())

    await run_in_threadpool(store)
    return flash_redirect(PAGE, "duty_removed")
