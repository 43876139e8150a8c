"""GET /metrics for Prometheus: rendered from the state snapshot by pdn_ops.health.metrics; never a history query.

It carries ids and states of every OPD's assets (no secrets, no user text), so it is not a portal page: with
``PDN_OPS_METRICS_TOKEN`` set, Prometheus sends that token as a bearer credential (``authorization`` in the
scrape config); without one, only loopback clients (a Prometheus on the same host) are served.
"""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.registry import CollectorRegistry

from pdn_ops.app.context import AppContext
from pdn_ops.health import queries as health_queries
from pdn_ops.health.metrics import AREA_COLLECTORS, SnapshotCache, build_registry, render
from pdn_ops.web.deps import Ctx

router = APIRouter(include_in_schema=False)


def _metrics_state(ctx: AppContext) -> tuple[SnapshotCache, CollectorRegistry]:
    state: tuple[SnapshotCache, CollectorRegistry] | None = ctx.extras.get("metrics_state")
    if state is None:
        sessions = ctx.sessions
        cache = ctx.extras.setdefault(
            "health_snapshot_cache", SnapshotCache(lambda: health_queries.load_snapshot(sessions)))
        state = (cache, build_registry(cache.get, [factory(ctx) for factory in AREA_COLLECTORS]))
        ctx.extras["metrics_state"] = state
    return state


def _allowed(request: Request, ctx: AppContext) -> bool:
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
def metrics(request: Request, ctx: Ctx) -> Response:
    if not _allowed(request, ctx):
        return Response("metrics need the bearer token\n", status_code=401, media_type="text/plain",
                        headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    cache, registry = _metrics_state(ctx)
    return Response(render(cache, registry), media_type=CONTENT_TYPE_LATEST)
