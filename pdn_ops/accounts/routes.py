"""Log in and out, change the password, API tokens, the OPD head's admins (step 1)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pdn_ops.accounts import auth
from pdn_ops.accounts import service as accounts
from pdn_ops.accounts.deps import CurrentUser, OpdHead
from pdn_ops.accounts.model import Principal
from pdn_ops.accounts.parts import accounts_parts
from pdn_ops.core.db.engine import read_only
from pdn_ops.core.errors import Conflict, LoginFailed, LoginThrottled, WeakPassword
from pdn_ops.web.deps import Ctx, DbSession, unit_of_work
from pdn_ops.web.templating import render

router = APIRouter(include_in_schema=False)


def _safe_next(target: str | None) -> str:
    # Only local paths: "//evil.example" and "/\\evil" would leave the site.
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/complaints"


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/complaints") -> HTMLResponse:
    return render(request, "login.html", next=_safe_next(next), error=None, username="")


@router.post("/login")
def login(request: Request, ctx: Ctx, username: Annotated[str, Form(max_length=200)] = "",
          password: Annotated[str, Form(max_length=1000)] = "", next: Annotated[str, Form()] = "/complaints",
          ) -> Response:
    client = request.client.host if request.client else "unknown"
    failure: Exception | None = None
    key = ""
    gate = accounts_parts(request).password_gate
    # Read, check the password outside any transaction (behind the gate), then write briefly: argon2 inside the
    # write transaction held SQLite's lock for every login. A login that raced a password change or a re-hash
    # checks again against the new hash.
    for _attempt in range(3):
        try:
            with read_only(ctx.sessions) as session:
                candidate = accounts.login_candidate(session, username=username, client=client)
        except LoginThrottled as exc:
            failure = exc
            break
        with gate.slot():
            verdict = accounts.check_password(candidate, password)
        try:
            with unit_of_work(ctx) as session:
                if not verdict.ok:
                    # Committed: a failed attempt is what throttling counts.
                    accounts.login_failed(session, candidate)
                    failure = LoginFailed("unknown user or wrong password")
                    break
                key, _, _ = accounts.start_session(session, candidate, verdict)
                old = request.cookies.get(auth.SESSION_COOKIE)
                if old:
                    accounts.logout(session, old)
            break
        except accounts.CredentialsChanged:
            continue
    else:
        failure = LoginFailed("the account kept changing")
    if isinstance(failure, LoginThrottled):
        return render(request, "login.html", status_code=429, next=_safe_next(next), error="auth.throttled",
                      username=username)
    if failure is not None:
        # One answer for an unknown user, a wrong password and a deactivated account.
        return render(request, "login.html", status_code=401, next=_safe_next(next), error="auth.failed",
                      username=username)
    response = RedirectResponse(_safe_next(next), status_code=303)
    auth.set_session_cookie(request, response, key)
    return response


@router.post("/logout")
def logout(request: Request, ctx: Ctx) -> Response:
    key = request.cookies.get(auth.SESSION_COOKIE)
    if key:
        with unit_of_work(ctx) as session:
            accounts.logout(session, key)
    response = RedirectResponse("/login", status_code=303)
    auth.clear_session_cookie(response)
    return response


@router.get("/account", response_class=HTMLResponse)
def account(request: Request, user: CurrentUser, session: DbSession) -> HTMLResponse:
    return render(request, "account.html", tokens=accounts.list_tokens(session, user), new_token=None, error=None)


@router.post("/account/password")
def change_password(request: Request, ctx: Ctx, user: CurrentUser, current: Annotated[str, Form()] = "",
                    new: Annotated[str, Form()] = "") -> Response:
    try:
        with read_only(ctx.sessions) as session:
            old_hash = accounts.stored_hash(session, user.user_id)
        with accounts_parts(request).password_gate.slot():  # argon2 twice, outside any transaction
            new_hash = accounts.prepare_password_change(old_hash, current=current, new=new)
        with unit_of_work(ctx) as session:
            accounts.apply_password_change(session, user, old_hash=old_hash, new_hash=new_hash)
    except (LoginFailed, WeakPassword, accounts.CredentialsChanged) as exc:
        key = "auth.password_weak" if isinstance(exc, WeakPassword) else "auth.password_wrong"
        with ctx.sessions() as session:
            tokens = accounts.list_tokens(session, user)
        return render(request, "account.html", status_code=400, tokens=tokens, new_token=None, error=key)
    response = RedirectResponse("/login", status_code=303)
    auth.clear_session_cookie(response)  # every session of the user ended; log in again with the new password
    return response


@router.post("/account/tokens", response_class=HTMLResponse)
def create_token(request: Request, ctx: Ctx, user: CurrentUser,
                 name: Annotated[str, Form(max_length=100)] = "") -> HTMLResponse:
    with unit_of_work(ctx) as session:
        token, _ = accounts.create_token(session, user, name)
        tokens = accounts.list_tokens(session, user)
    # Shown once; only its hash is stored.
    return render(request, "account.html", tokens=tokens, new_token=token, error=None)


@router.post("/account/tokens/{token_id}/revoke")
def revoke_token(ctx: Ctx, user: CurrentUser, token_id: int) -> Response:
    with unit_of_work(ctx) as session:
        accounts.revoke_token(session, user, token_id)
    return RedirectResponse("/account", status_code=303)


@router.get("/opd/admins", response_class=HTMLResponse)
def admins(request: Request, head: OpdHead, session: DbSession) -> HTMLResponse:
    return _admins_page(request, head, session, error=None, form={})


def _admins_page(request: Request, head: Principal, session: DbSession, *, error: str | None,
                 form: dict[str, str], status_code: int = 200) -> HTMLResponse:
    return render(request, "admins.html", status_code=status_code, admins=accounts.opd_admins(session, head),
                  dispositions=accounts.dispositions(session, head),
                  names=accounts.usernames(session, {d.admin_id for d in accounts.dispositions(session, head)}),
                  error=error, form=form)


@router.post("/opd/admins")
def assign_admin(request: Request, ctx: Ctx, head: OpdHead, username: Annotated[str, Form(max_length=64)] = "",
                 display_name: Annotated[str, Form(max_length=200)] = "",
                 password: Annotated[str, Form(max_length=1000)] = "",
                 note: Annotated[str, Form(max_length=2000)] = "") -> Response:
    form = {"username": username, "display_name": display_name, "note": note}
    try:
        with unit_of_work(ctx) as session:
            accounts.assign_admin(session, head, username=username, display_name=display_name, password=password,
                                  note=note)
    except (ValueError, Conflict, WeakPassword) as exc:
        key = "admins.error.username"
        if isinstance(exc, WeakPassword):
            key = "auth.password_weak"
        elif isinstance(exc, Conflict):
            key = "admins.error.exists"
        with ctx.sessions() as session:
            return _admins_page(request, head, session, error=key, form=form, status_code=400)
    return RedirectResponse("/opd/admins", status_code=303)


@router.post("/opd/admins/{user_id}/revoke")
def revoke_admin(ctx: Ctx, head: OpdHead, user_id: int, note: Annotated[str, Form(max_length=2000)] = "",
                 ) -> Response:
    with unit_of_work(ctx) as session:
        accounts.revoke_admin(session, head, user_id, note)
    return RedirectResponse("/opd/admins", status_code=303)
