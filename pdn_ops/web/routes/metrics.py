"""GET /metrics for Prometheus: rendered from the state snapshot by pdn_ops.metrics; never a history query.

Open without login like /healthz: it carries ids and states, no secrets and no user text. Keep it on the
internal network (see deploy/prometheus).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.registry import CollectorRegistry

from pdn_ops.metrics import AREA_COLLECTORS, SnapshotCache, build_registry, render
from pdn_ops.services import health_queries
from pdn_ops.web.context import AppContext
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


@router.get("/metrics")
def metrics(ctx: Ctx) -> Response:
    cache, registry = _metrics_state(ctx)
    return Response(render(cache, registry), media_type=CONTENT_TYPE_LATEST)
