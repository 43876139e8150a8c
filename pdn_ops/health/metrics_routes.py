"""GET /metrics for Prometheus: rendered from the state snapshot by pdn_ops.health.metrics; never a history query.

It carries ids and states of every OPD's assets (no secrets, no user text), so it is not a portal page: with
``PDN_OPS_METRICS_TOKEN`` set, Prometheus sends that token as a bearer credential (``authorization`` in the
scrape config); without one, only loopback clients (a Prometheus on the same host) are served.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from pdn_ops.core.parts import CoreParts
from pdn_ops.health.metrics import render
from pdn_ops.health.parts import HealthParts, health_parts
from pdn_ops.web.deps import Ctx

router = APIRouter(include_in_schema=False)


def _allowed(request: Request, ctx: CoreParts) -> bool:
    token = ctx.settings.metrics_token
    if token is not None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.get_secret_value().encode())
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@router.get("/metrics")
def metrics(request: Request, ctx: Ctx, parts: Annotated[HealthParts, Depends(health_parts)]) -> Response:
    if not _allowed(request, ctx):
        return Response("metrics need the bearer token\n", status_code=401, media_type="text/plain",
                        headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    return Response(render(parts.snapshot, parts.registry), media_type=CONTENT_TYPE_LATEST)
