"""The WhatsApp Cloud API webhook: GET verification, POST deliveries authenticated by X-Hub-Signature-256.

The POST body is read raw (capped), its HMAC checked in constant time BEFORE parsing; a wrong, missing or
re-serialised signature is refused with 403 and nothing is recorded. A valid delivery is recorded in one
transaction (messages by provider id, status callbacks applied) and answered 200 at once; the notification
worker does the rest. This route sets no cookie and reads none, so CSRF protection must exempt /webhooks/.
"""

from __future__ import annotations

import hmac
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from pdn_ops.core.db.engine import transaction
from pdn_ops.core.errors import WebhookMalformed
from pdn_ops.notify.channels import whatsapp_webhook as webhook
from pdn_ops.notify.inbound import record_webhook
from pdn_ops.web.deps import Ctx

router = APIRouter(prefix="/webhooks", tags=["webhooks"], include_in_schema=False)
log = logging.getLogger(__name__)


@router.get("/whatsapp")
def verify(request: Request, ctx: Ctx) -> Response:
    params = request.query_params
    expected = ctx.settings.whatsapp_verify_token
    token = params.get("hub.verify_token", "")
    if (params.get("hub.mode") != "subscribe" or expected is None
            or not hmac.compare_digest(token.encode(), expected.get_secret_value().encode())):
        return PlainTextResponse("forbidden", status_code=403)
    challenge = params.get("hub.challenge", "")
    if not challenge.isdigit() or len(challenge) > 64:
        # Meta sends a number; echoing anything else would make this an open reflector.
        return PlainTextResponse("bad challenge", status_code=400)
    return PlainTextResponse(challenge)


async def _read_capped(request: Request, limit: int) -> bytes | None:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/whatsapp")
async def receive(request: Request, ctx: Ctx) -> Response:
    raw = await _read_capped(request, webhook.MAX_BODY_BYTES)
    if raw is None:
        return JSONResponse({"detail": "body too large"}, status_code=413)
    secret = ctx.settings.whatsapp_app_secret
    header = request.headers.get("x-hub-signature-256")
    if secret is None or not webhook.signature_valid(raw, header, secret.get_secret_value()):
        log.warning("WhatsApp webhook refused: %s signature", "missing" if not header else "invalid")
        return JSONResponse({"detail": "invalid signature"}, status_code=403)
    try:
        messages, statuses = await run_in_threadpool(webhook.parse, raw)  # up to 1 MB of JSON: not on the loop
    except WebhookMalformed as exc:
        return JSONResponse({"detail": str(exc)}, status_code=400)
    def _record() -> dict[str, int]:
        with transaction(ctx.sessions) as session:
            return record_webhook(session, messages, statuses)

    outcome = await run_in_threadpool(_record)  # a blocking database call must not stall the event loop
    return JSONResponse({"status": "ok", **outcome})
