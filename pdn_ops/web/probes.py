"""Liveness and readiness for load balancers and Prometheus blackbox probes."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from pdn_ops.core.db import migrate
from pdn_ops.core.errors import DatabaseNotReady
from pdn_ops.web.deps import Ctx

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    # On the event loop, not in a worker thread: it must answer even when every thread waits on the database.
    return {"status": "ok"}


def disk_problem(data_dir: Path, min_free_bytes: int) -> str | None:
    """Why the data directory cannot take a filing now, or None. A small write (synced) finds what free-space
    figures miss (a quota, a read-only remount)."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(data_dir).free
        if free < min_free_bytes:
            return f"disk almost full ({free // 1024} KiB free)"
        with tempfile.TemporaryFile(dir=data_dir) as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        return f"data directory not writable ({exc.strerror})"
    return None


@router.get("/readyz")
def readyz(ctx: Ctx) -> JSONResponse:
    headers = {"Retry-After": "5"}
    problem = disk_problem(ctx.settings.data_dir, ctx.settings.min_free_disk_mb * 1024 * 1024)
    if problem is not None:
        return JSONResponse({"status": "not ready", "reason": problem}, status_code=503, headers=headers)
    try:
        migrate.require_current(ctx.engine)
    except DatabaseNotReady as exc:
        return JSONResponse({"status": "not ready", "reason": str(exc)}, status_code=503, headers=headers)
    except SQLAlchemyError:
        return JSONResponse({"status": "not ready", "reason": "database unreachable"}, status_code=503,
                            headers=headers)
    return JSONResponse({"status": "ready"})
