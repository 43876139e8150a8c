"""Authentication and CSRF for the web layer.

- ``install(ctx)`` puts the ``authenticate`` callable that ``pdn_ops.web.deps.current_principal`` uses into
  ``ctx.extras`` (plus the complaint configuration and its listener registry).
- A session cookie holds only a random id (HttpOnly, SameSite=Lax, Secure behind HTTPS); a bearer token in the
  ``Authorization`` header authenticates scripts and then the cookie is ignored, which is why token requests
  need no CSRF token.
- ``csrf_guard`` runs on every route of the app (an app-wide dependency): a state-changing request made with a
  session must carry the session's synchroniser token (form field ``csrf_token`` or header ``X-CSRF-Token``);
  without a session (the login form) it must match a per-browser token cookie.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable

from fastapi import HTTPException, Request, Response

from pdn_ops.complaint_settings import ComplaintSettings, complaint_config
from pdn_ops.db.engine import transaction
from pdn_ops.domain.access import Principal
from pdn_ops.services import accounts
from pdn_ops.web.context import AppContext

SESSION_COOKIE = "pdn_session"
PRE_CSRF_COOKIE = "pdn_csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def make_authenticator(ctx: AppContext) -> Callable[[Request], Principal | None]:
    def authenticate(request: Request) -> Principal | None:
        if hasattr(request.state, "auth"):
            cached: accounts.Authenticated | None = request.state.auth
            return cached.principal if cached else None
        found: accounts.Authenticated | None = None
        token = _bearer(request)
        key = request.cookies.get(SESSION_COOKIE)
        if token is not None or key:
            with transaction(ctx.sessions) as session:
                if token is not None:
                    found = accounts.by_api_token(session, token)
                elif key:
                    found = accounts.by_session_key(session, key)
        request.state.auth = found
        return found.principal if found else None

    return authenticate


def install(ctx: AppContext) -> None:
    ctx.extras["authenticate"] = make_authenticator(ctx)
    ctx.extras["complaint_config"] = complaint_config(ctx.settings.data_dir, ComplaintSettings())
    ctx.extras["complaint_listeners"] = ctx.extras["complaint_config"].listeners


def principal_or_none(request: Request) -> Principal | None:
    authenticate = request.app.state.ctx.extras.get("authenticate")
    return authenticate(request) if authenticate else None


def csrf_token(request: Request) -> str:
    """The token a form on this page must send back."""
    principal_or_none(request)
    auth: accounts.Authenticated | None = getattr(request.state, "auth", None)
    if auth is not None and auth.csrf_token:
        return auth.csrf_token
    existing = request.cookies.get(PRE_CSRF_COOKIE) or getattr(request.state, "new_pre_csrf", None)
    if existing:
        return str(existing)
    fresh = secrets.token_urlsafe(32)
    request.state.new_pre_csrf = fresh
    return fresh


def finish_response(request: Request, response: Response) -> None:
    """Set the pre-session CSRF cookie if this page created one."""
    fresh = getattr(request.state, "new_pre_csrf", None)
    if fresh:
        response.set_cookie(PRE_CSRF_COOKIE, fresh, httponly=True, samesite="lax", path="/",
                            secure=request.url.scheme == "https")


async def csrf_guard(request: Request) -> None:
    if request.method in SAFE_METHODS or _bearer(request) is not None:
        return
    principal_or_none(request)
    auth: accounts.Authenticated | None = getattr(request.state, "auth", None)
    expected = auth.csrf_token if auth is not None else request.cookies.get(PRE_CSRF_COOKIE)
    sent = request.headers.get("x-csrf-token")
    if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get("csrf_token")
        sent = value if isinstance(value, str) else None
    if not expected or not sent or not hmac.compare_digest(sent, expected):
        raise HTTPException(status_code=403, detail="CSRF token missing or wrong")


def set_session_cookie(request: Request, response: Response, key: str) -> None:
    response.set_cookie(SESSION_COOKIE, key, httponly=True, samesite="lax", path="/",
                        secure=request.url.scheme == "https", max_age=int(accounts.SESSION_LIFETIME.total_seconds()))
    response.delete_cookie(PRE_CSRF_COOKIE, path="/")


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")
