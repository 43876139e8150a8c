"""Annotated dependency aliases shared by the routes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from pdn_ops.accounts.model import Principal
from pdn_ops.app.context import AppContext
from pdn_ops.core.i18n import LANGUAGES, negotiate

LANG_COOKIE = "pdn_lang"


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def get_session(ctx: Annotated[AppContext, Depends(get_ctx)]) -> Iterator[Session]:
    with ctx.sessions() as session, session.begin():
        yield session


def get_language(request: Request) -> str:
    chosen = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
    if chosen in LANGUAGES:
        return chosen
    return negotiate(request.headers.get("accept-language"))


Ctx = Annotated[AppContext, Depends(get_ctx)]
DbSession = Annotated[Session, Depends(get_session)]
Language = Annotated[str, Depends(get_language)]


# Authentication is pluggable so pages can be built before the account system lands: the account system stores
# a callable in ctx.extras["authenticate"] that maps a request to a Principal (or None when not logged in).
def current_principal_or_none(request: Request) -> Principal | None:
    ctx: AppContext = request.app.state.ctx
    authenticate = ctx.extras.get("authenticate")
    if authenticate is None:
        return None
    principal: Principal | None = authenticate(request)
    return principal


def current_principal(request: Request) -> Principal:
    principal = current_principal_or_none(request)
    if principal is None:
        raise HTTPException(status_code=401, detail="login required")
    return principal


def current_principal_in(request: Request, session: Session) -> Principal:
    """``current_principal``, looked up in the caller's session when the authenticator can (one connection)."""
    ctx: AppContext = request.app.state.ctx
    authenticate = ctx.extras.get("authenticate")
    in_session = getattr(authenticate, "in_session", None)
    principal: Principal | None = in_session(request, session) if in_session else current_principal_or_none(request)
    if principal is None:
        raise HTTPException(status_code=401, detail="login required")
    return principal


def require_staff(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    if not principal.is_staff:
        # Staff pages answer like missing pages to OPD users: they should not learn what exists.
        raise HTTPException(status_code=404, detail="Not Found")
    return principal


CurrentUser = Annotated[Principal, Depends(current_principal)]
Staff = Annotated[Principal, Depends(require_staff)]
