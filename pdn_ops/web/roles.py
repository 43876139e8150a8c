"""Role dependencies beyond ``CurrentUser`` / ``Staff``, and a committed unit of work for state-changing routes.

A role a user lacks answers 404, like a page that does not exist: users should not learn what exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from pdn_ops.accounts.model import OPD_ROLES, Principal, Role
from pdn_ops.app.context import AppContext
from pdn_ops.complaints.service import ComplaintConfig
from pdn_ops.core.db.engine import transaction
from pdn_ops.web.deps import current_principal


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


# Async on purpose: FastAPI runs a sync dependency in the thread pool, a hop that costs more than this lookup.
async def app_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


async def complaint_config(request: Request) -> ComplaintConfig:
    config: ComplaintConfig = request.app.state.ctx.extras["complaint_config"]
    return config


OpdHead = Annotated[Principal, Depends(require_opd_head)]
OpdAdmin = Annotated[Principal, Depends(require_opd_admin)]
OpdUser = Annotated[Principal, Depends(require_opd_user)]
Supervisor = Annotated[Principal, Depends(require_supervisor)]
Config = Annotated[ComplaintConfig, Depends(complaint_config)]
FastCtx = Annotated[AppContext, Depends(app_ctx)]


@contextmanager
def unit_of_work(ctx: AppContext) -> Iterator[Session]:
    """Committed before the route builds its redirect, so the next page sees the change.

    It starts as a writer on SQLite (BEGIN IMMEDIATE), so concurrent state changes queue instead of failing.
    """
    with transaction(ctx.sessions) as session:
        session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
        yield session
