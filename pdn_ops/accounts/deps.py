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
