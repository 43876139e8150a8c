"""GET /metrics for Prometheus: rendered from the state snapshot by pdn_ops.metrics; never a history query.

Open without login like /healthz: it carries ids and states, no secrets and no user text. Keep it on the
internal network (see deploy/prometheus).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from pdn_ops.metrics import AREA_COLLECTORS, SnapshotCache, build_registry
from pdn_ops.services import health_queries
from pdn_ops.web.context import AppContext
from pdn_ops.web.deps import Ctx

router = APIRouter(include_in_schema=False)


def registry_for(ctx: AppContext) -> CollectorRegistry:
    registry: CollectorRegistry | None = ctx.extras.get("metrics_registry")
    if registry is None:
        sessions = ctx.sessions
        cache = ctx.extras.setdefault(
            "health_snapshot_cache", SnapshotCache(lambda: health_queries.load_snapshot(sessions)))
        registry = build_registry(cache.get, [factory(ctx) for factory in AREA_COLLECTORS])
        ctx.extras["metrics_registry"] = registry
    return registry


@router.get("/metrics")
def metrics(ctx: Ctx) -> Response:
    return Response(generate_latest(registry_for(ctx)), media_type=CONTENT_TYPE_LATEST)
