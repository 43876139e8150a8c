"""Who is asking, as FastAPI dependencies: ``CurrentUser``, ``Staff`` and the roles of the procedure.

A role a user lacks answers 404, like a page that does not exist: users should not learn what exists.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from pdn_ops.accounts.model import OPD_ROLES, Principal, Role
from pdn_ops.accounts.parts import accounts_parts


def current_principal_or_none(request: Request) -> Principal | None:
    return accounts_parts(request).authenticate(request)


def current_principal(request: Request) -> Principal:
    principal = current_principal_or_none(request)
    if principal is None:
        raise HTTPException(status_code=401, detail="login required")
    return principal


def current_principal_in(request: Request, session: Session) -> Principal:
    """``current_principal``, looked up in the caller's session when the authenticator can (one connection)."""
    authenticate = accounts_parts(request).authenticate
    in_session = getattr(authenticate, "in_session", None)
    principal: Principal | None = in_session(request, session) if in_session else authenticate(request)
    if principal is None:
        raise HTTPException(status_code=401, detail="login required")
    return principal


def guarded_principal_in(request: Request, session: Session) -> tuple[Principal, int | None]:
    """For the hot reads: the principal, possibly from the authenticator's token cache, and the id of the API
    token the read must guard its query with (``token_still_valid``); None when nothing needs guarding.
    A guarded read that finds nothing asks ``confirmed_principal_in`` (a revoked token then answers 401)."""
    authenticate = accounts_parts(request).authenticate
    guarded = getattr(authenticate, "guarded", None)
    if guarded is None:
        return current_principal_in(request, session), None
    principal, token_id = guarded(request, session)
    if principal is None:
        raise HTTPException(status_code=401, detail="login required")
    return principal, token_id


def confirmed_principal_in(request: Request, session: Session) -> Principal:
    """The full lookup after a guarded read came back empty (401 if the credential is gone)."""
    confirm = getattr(accounts_parts(request).authenticate, "confirm", None)
    principal: Principal | None = confirm(request, session) if confirm else None
    if principal is None:
        raise HTTPException(status_code=401, detail="login required")
    return principal


def require_staff(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    if not principal.is_staff:
        raise HTTPException(status_code=404, detail="Not Found")
    return principal


def _need(principal: Principal, *roles: Role) -> Principal:
    if principal.role not in roles:
        raise HTTPException(status_code=404, detail="Not Found")
    return principal


def require_opd_head(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    return _need(principal, Role.OPD_HEAD)


def require_opd_admin(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    return _need(principal, Role.OPD_ADMIN)


def require_opd_user(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    return _need(principal, *OPD_ROLES)


def require_supervisor(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    return _need(principal, Role.SUPERVISOR)


CurrentUser = Annotated[Principal, Depends(current_principal)]
Staff = Annotated[Principal, Depends(require_staff)]
OpdHead = Annotated[Principal, Depends(require_opd_head)]
OpdAdmin = Annotated[Principal, Depends(require_opd_admin)]
OpdUser = Annotated[Principal, Depends(require_opd_user)]
Supervisor = Annotated[Principal, Depends(require_supervisor)]
