"""The supervisor's users screen and ``/api/v1/users``: list, create, contacts, role, (de)activate, reset password.

Supervisors only; everyone else gets 404, as for a page that does not exist (the list holds every OPD's people
and their contacts). The rules live in ``services.user_admin``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from pdn_ops.accounts import admin as user_admin
from pdn_ops.accounts import auth
from pdn_ops.accounts.deps import Supervisor
from pdn_ops.accounts.model import Principal, Role
from pdn_ops.accounts.tables import UserRow
from pdn_ops.core import fleet
from pdn_ops.core.errors import UserInvalid
from pdn_ops.core.i18n import translate
from pdn_ops.core.parts import CoreParts
from pdn_ops.web.deps import Ctx, DbSession, unit_of_work
from pdn_ops.web.paging import PageRequest, Paging, next_link, next_url
from pdn_ops.web.templating import render

router = APIRouter()
STATUSES = ("active", "inactive", "all")


def _status(value: str) -> bool | None:
    return {"active": True, "inactive": False}.get(value)


def _list_page(request: Request, session: Session, user: Principal, *, role: str, opd: str, status: str,
               form: dict[str, str] | None = None, errors: dict[str, str] | None = None,
               status_code: int = 200, paging: PageRequest | None = None) -> HTMLResponse:
    opds = fleet.opds(session)
    opd_row = fleet.opd_by_code(session, opd) if opd else None
    chosen_role = role if role in {str(r) for r in Role} else ""
    # The page keeps its order (Diskominfo, then by OPD and name): its cursor is the position of the next row.
    paging = paging or PageRequest(None, user_admin.MAX_LISTED)
    start = paging.after or 0
    rows, more = paging.cut(user_admin.list_users(
        session, user, role=chosen_role or None, opd_id=opd_row.id if opd_row else (-1 if opd else None),
        active=_status(status if status in STATUSES else "active"), offset=start, limit=paging.limit + 1))
    return render(request, "users.html", status_code=status_code, rows=rows, roles=list(Role),
                  assignable=[str(r) for r in user_admin.ASSIGNABLE], opds=opds,
                  opd_names={o.id: o.name for o in opds}, role=chosen_role, opd=opd,
                  status=status if status in STATUSES else "active", form=form or {}, errors=errors or {},
                  limit=user_admin.MAX_LISTED, next_page=next_url(request, start + len(rows) if more else None))


@router.get("/users", response_class=HTMLResponse, include_in_schema=False)
def users_page(request: Request, user: Supervisor, session: DbSession, paging: Paging, role: str = "",
               opd: str = "", status: str = "active") -> HTMLResponse:
    return _list_page(request, session, user, role=role, opd=opd, status=status, paging=paging)


@router.post("/users", include_in_schema=False)
def create_user(request: Request, ctx: Ctx, user: Supervisor,
                username: Annotated[str, Form(max_length=200)] = "",
                display_name: Annotated[str, Form(max_length=400)] = "",
                role: Annotated[str, Form(max_length=20)] = "", opd: Annotated[str, Form(max_length=64)] = "",
                password: Annotated[str, Form(max_length=1000)] = "",
                phone: Annotated[str, Form(max_length=40)] = "", email: Annotated[str, Form(max_length=400)] = "",
                language: Annotated[str, Form(max_length=5)] = "id") -> Response:
    form = {"username": username, "display_name": display_name, "role": role, "opd": opd, "phone": phone,
            "email": email, "language": language}
    try:
        with unit_of_work(ctx) as session:
            created = user_admin.create(session, user, username=username, display_name=display_name, role=role,
                                        opd_code=opd, password=password, phone=phone, email=email, language=language)
            target = created.id
    except UserInvalid as exc:
        with ctx.sessions() as session:
            return _list_page(request, session, user, role="", opd="", status="active", form=form,
                              errors=exc.errors, status_code=400)
    return RedirectResponse(f"/users/{target}?done=created", status_code=303)


def _detail_page(request: Request, ctx: CoreParts, user: Principal, user_id: int, *,
                 errors: dict[str, str] | None = None, form: dict[str, str] | None = None,
                 status_code: int = 200) -> HTMLResponse:
    with ctx.sessions() as session:
        target = user_admin.get_user(session, user, user_id)
        history = user_admin.history(session, target)
        opd_name = fleet.opd_names(session, {target.opd_id}).get(target.opd_id) \
            if target.opd_id is not None else None
    done = request.query_params.get("done", "")
    return render(request, "user.html", status_code=status_code, target=target, history=history,
                  opd_name=opd_name, errors=errors or {},
                  form=form or {"display_name": target.display_name, "phone": target.phone or "",
                                "email": target.email or "", "language": target.language},
                  roles=_roles_for(target), done=done if done in DONE else "")


DONE = frozenset({"created", "contact", "role", "deactivated", "reactivated", "password"})


def _roles_for(target: UserRow) -> list[str]:
    """The roles a supervisor may give this user: within Diskominfo, or OPD admin -> head of the same OPD."""
    if Role(target.role) in (Role.ENGINEER, Role.SUPERVISOR):
        return [str(Role.ENGINEER), str(Role.SUPERVISOR)]
    return [str(Role.OPD_HEAD)] if target.role == str(Role.OPD_ADMIN) else []


@router.get("/users/{user_id}", response_class=HTMLResponse, include_in_schema=False)
def user_page(request: Request, ctx: Ctx, user: Supervisor, user_id: int) -> HTMLResponse:
    return _detail_page(request, ctx, user, user_id)


def _after(request: Request, user: Principal, user_id: int, done: str, revoked: bool) -> Response:
    """Back to the user's page; when supervisors act on themselves their own session has just ended."""
    if revoked and user_id == user.user_id:
        response = RedirectResponse("/login", status_code=303)
        auth.clear_session_cookie(response)
        return response
    return RedirectResponse(f"/users/{user_id}?done={done}", status_code=303)


@router.post("/users/{user_id}/contact", include_in_schema=False)
def update_contact(request: Request, ctx: Ctx, user: Supervisor, user_id: int,
                   display_name: Annotated[str, Form(max_length=400)] = "",
                   phone: Annotated[str, Form(max_length=40)] = "", email: Annotated[str, Form(max_length=400)] = "",
                   language: Annotated[str, Form(max_length=5)] = "id") -> Response:
    form = {"display_name": display_name, "phone": phone, "email": email, "language": language}
    try:
        with unit_of_work(ctx) as session:
            user_admin.set_contact(session, user, user_id, display_name=display_name, phone=phone, email=email,
                                   language=language)
    except UserInvalid as exc:
        return _detail_page(request, ctx, user, user_id, errors=exc.errors, form=form, status_code=400)
    return _after(request, user, user_id, "contact", revoked=False)


@router.post("/users/{user_id}/role", include_in_schema=False)
def change_role(request: Request, ctx: Ctx, user: Supervisor, user_id: int,
                role: Annotated[str, Form(max_length=20)] = "") -> Response:
    try:
        with unit_of_work(ctx) as session:
            revoked = user_admin.change_role(session, user, user_id, role)
    except UserInvalid as exc:
        return _detail_page(request, ctx, user, user_id, errors=exc.errors, status_code=400)
    except user_admin.LastSupervisor:
        return _detail_page(request, ctx, user, user_id, errors={"role": "users.error.last_supervisor"},
                            status_code=409)
    return _after(request, user, user_id, "role", revoked=revoked is not None)


def _set_active(request: Request, ctx: CoreParts, user: Principal, user_id: int, active: bool) -> Response:
    try:
        with unit_of_work(ctx) as session:
            revoked = user_admin.set_active(session, user, user_id, active)
    except user_admin.LastSupervisor:
        return _detail_page(request, ctx, user, user_id, errors={"active": "users.error.last_supervisor"},
                            status_code=409)
    return _after(request, user, user_id, "reactivated" if active else "deactivated",
                  revoked=revoked is not None and not active)


@router.post("/users/{user_id}/deactivate", include_in_schema=False)
def deactivate(request: Request, ctx: Ctx, user: Supervisor, user_id: int) -> Response:
    return _set_active(request, ctx, user, user_id, False)


@router.post("/users/{user_id}/reactivate", include_in_schema=False)
def reactivate(request: Request, ctx: Ctx, user: Supervisor, user_id: int) -> Response:
    return _set_active(request, ctx, user, user_id, True)


@router.post("/users/{user_id}/password", include_in_schema=False)
def reset_password(request: Request, ctx: Ctx, user: Supervisor, user_id: int,
                   password: Annotated[str, Form(max_length=1000)] = "") -> Response:
    try:
        with unit_of_work(ctx) as session:
            user_admin.reset_password(session, user, user_id, password)
    except UserInvalid as exc:
        return _detail_page(request, ctx, user, user_id, errors=exc.errors, status_code=400)
    return _after(request, user, user_id, "password", revoked=True)


# --- JSON API ---------------------------------------------------------------------------------------------------

class UserOut(BaseModel):
    id: int
    username: str
    display_name: str
    role: str
    opd_id: int | None
    active: bool
    language: str
    phone: str | None
    email: str | None
    created_at: datetime
    updated_at: datetime


class UserIn(BaseModel):
    # An unknown field is refused (422 naming it), not silently ignored: a typo must not look like success.
    model_config = ConfigDict(extra="forbid")

    username: str = Field(max_length=200)
    display_name: str = Field(default="", max_length=400)
    role: str = Field(max_length=20, description="engineer, supervisor or opd_head (OPD heads assign OPD admins)")
    opd: str = Field(default="", max_length=64, description="OPD code, for an OPD head")
    password: str = Field(max_length=1000)
    phone: str = Field(default="", max_length=40, description="E.164, e.g. +6281234567890")
    email: str = Field(default="", max_length=400)
    language: str = Field(default="id", max_length=5)


class UserPatch(BaseModel):
    # An unknown field is refused (422 naming it), not silently ignored: a typo must not look like success.
    model_config = ConfigDict(extra="forbid")

    display_name: str | None = Field(default=None, max_length=400)
    phone: str | None = Field(default=None, max_length=40, description="E.164; empty string removes it")
    email: str | None = Field(default=None, max_length=400)
    language: str | None = Field(default=None, max_length=5)
    role: str | None = Field(default=None, max_length=20)
    active: bool | None = None


class PasswordIn(BaseModel):
    # An unknown field is refused (422 naming it), not silently ignored: a typo must not look like success.
    model_config = ConfigDict(extra="forbid")

    password: str = Field(max_length=1000)


def _out(row: UserRow) -> UserOut:
    return UserOut(id=row.id, username=row.username, display_name=row.display_name, role=row.role,
                   opd_id=row.opd_id, active=row.active, language=row.language, phone=row.phone, email=row.email,
                   created_at=row.created_at, updated_at=row.updated_at)


def _invalid(user: Principal, errors: dict[str, str], status_code: int = 422) -> HTTPException:
    return HTTPException(status_code=status_code, detail={
        "errors": errors, "messages": {k: translate(v, user.language) for k, v in errors.items()}})


@router.get("/api/v1/users", tags=["users"])
def api_list_users(request: Request, response: Response, user: Supervisor, session: DbSession, paging: Paging,
                   role: Annotated[str | None, Query(max_length=40)] = None,
                   opd: Annotated[str | None, Query(max_length=63)] = None,
                   active: bool | None = None) -> list[UserOut]:
    """Users by id, ``limit`` at a time; the next page is in the ``Link`` header (``cursor``)."""
    opd_row = fleet.opd_by_code(session, opd) if opd else None
    if opd and opd_row is None:
        return []
    rows, more = paging.cut(user_admin.list_users(session, user, role=role, active=active,
                                                  opd_id=opd_row.id if opd_row else None, by_id=True,
                                                  after_id=paging.after, limit=paging.limit + 1))
    next_link(request, response, rows[-1].id if more and rows else None)
    return [_out(r) for r in rows]


@router.post("/api/v1/users", status_code=201, tags=["users"])
def api_create_user(ctx: Ctx, user: Supervisor, body: UserIn) -> UserOut:
    try:
        with unit_of_work(ctx) as session:
            return _out(user_admin.create(session, user, username=body.username, display_name=body.display_name,
                                          role=body.role, opd_code=body.opd, password=body.password,
                                          phone=body.phone, email=body.email, language=body.language))
    except UserInvalid as exc:
        raise _invalid(user, exc.errors) from None


@router.get("/api/v1/users/{user_id}", tags=["users"])
def api_get_user(user: Supervisor, session: DbSession, user_id: int) -> UserOut:
    return _out(user_admin.get_user(session, user, user_id))


@router.patch("/api/v1/users/{user_id}", tags=["users"], responses={409: {"description": "last supervisor"}})
def api_update_user(ctx: Ctx, user: Supervisor, user_id: int, body: UserPatch) -> UserOut:
    """Contacts, role and active state in one transaction: all of it applies or none."""
    try:
        with unit_of_work(ctx) as session:
            target = user_admin.get_user(session, user, user_id)
            if {body.display_name, body.phone, body.email, body.language} != {None}:
                user_admin.set_contact(
                    session, user, user_id,
                    display_name=body.display_name if body.display_name is not None else target.display_name,
                    phone=body.phone if body.phone is not None else target.phone or "",
                    email=body.email if body.email is not None else target.email or "", language=body.language)
            if body.role is not None:
                user_admin.change_role(session, user, user_id, body.role)
            if body.active is not None:
                user_admin.set_active(session, user, user_id, body.active)
            return _out(target)
    except UserInvalid as exc:
        raise _invalid(user, exc.errors) from None
    except user_admin.LastSupervisor:
        raise _invalid(user, {"role" if body.role is not None else "active": "users.error.last_supervisor"},
                       409) from None


@router.post("/api/v1/users/{user_id}/password", status_code=204, tags=["users"])
def api_reset_password(ctx: Ctx, user: Supervisor, user_id: int, body: PasswordIn) -> Response:
    try:
        with unit_of_work(ctx) as session:
            user_admin.reset_password(session, user, user_id, body.password)
    except UserInvalid as exc:
        raise _invalid(user, exc.errors) from None
    return Response(status_code=204)
