"""POST /webhooks/alertmanager: Alertmanager's webhook receiver (``deploy/alertmanager/alertmanager.yml``).

Authenticated by a bearer token (``PDN_OPS_ALERTMANAGER_TOKEN``, or ``_FILE``; Alertmanager sends it from its
``http_config.authorization``); without a token configured the route refuses every post. The body is read in
full (BodyLimit caps it), parsed, and recorded in a worker thread: nothing blocks the event loop.
"""

from __future__ import annotations

import hmac
import json
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from pdn_ops.alerts import duty_service, model, service
from pdn_ops.core.db.tables import utcnow
from pdn_ops.core.parts import CoreParts
from pdn_ops.web.deps import Ctx, unit_of_work

router = APIRouter(prefix="/webhooks", include_in_schema=False)
log = logging.getLogger(__name__)


def _authorised(request: Request, ctx: CoreParts) -> bool:
    token = ctx.settings.alertmanager_token
    if token is None:
        return False
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.get_secret_value().encode())


@router.post("/alertmanager")
async def receive(request: Request, ctx: Ctx) -> Response:
    if not _authorised(request, ctx):
        return JSONResponse({"detail": "Alertmanager posts need the bearer token (PDN_OPS_ALERTMANAGER_TOKEN)"},
                            status_code=401, headers={"WWW-Authenticate": 'Bearer realm="alertmanager"'})
    try:
        alerts = model.parse(json.loads(await request.body()))
    except (ValueError, UnicodeDecodeError) as exc:  # PayloadError and JSONDecodeError are ValueErrors
        return JSONResponse({"detail": f"not recorded: {exc}"}, status_code=400)

    def record() -> service.Received:
        with unit_of_work(ctx) as session:  # a writer from the start: concurrent deliveries queue on SQLite
            # The engineers on duty (the roster), or every active engineer when nobody is.
            engineers, _ = duty_service.recipients(session, utcnow(), ctx.settings.tz)
            return service.receive(session, alerts, engineers=engineers, public_url=ctx.settings.public_url)

    result = await run_in_threadpool(record)
    log.info("alertmanager: %d alert(s) recorded, %d message(s) to engineers", result.recorded, result.notified)
    return JSONResponse({"recorded": result.recorded, "notified": result.notified})
