"""Liveness and readiness for load balancers and Prometheus blackbox probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from pdn_ops.core.db import migrate
from pdn_ops.core.errors import DatabaseNotReady
from pdn_ops.web.deps import Ctx

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(ctx: Ctx) -> JSONResponse:
    try:
        migrate.require_current(ctx.engine)
    except DatabaseNotReady as exc:
        return JSONResponse({"status": "not ready", "reason": str(exc)}, status_code=503)
    except SQLAlchemyError:
        return JSONResponse({"status": "not ready", "reason": "database unreachable"}, status_code=503)
    return JSONResponse({"status": "ready"})
