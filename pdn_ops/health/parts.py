"""What the health feature keeps for the app's lifetime, and how a request reaches it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from fastapi import Request
from prometheus_client.registry import Collector, CollectorRegistry

from pdn_ops.health.metrics import SnapshotCache, build_registry


@dataclass(eq=False)
class HealthParts:
    # The latest state snapshot and its rendered series: /metrics and the jobs that write health data share it.
    snapshot: SnapshotCache
    # Other features' collectors for /metrics (complaints, notifications, runs), registered by the composition root.
    area_collectors: Sequence[Collector] = ()
    # A CA for the sites' certificates besides the system's (the demo's lab signs its sites with its own).
    site_ca_file: str | None = None
    registry: CollectorRegistry = field(init=False)

    def __post_init__(self) -> None:
        self.registry = build_registry(self.snapshot.get, self.area_collectors)


async def health_parts(request: Request) -> HealthParts:
    parts = request.app.state.runtime.health
    assert isinstance(parts, HealthParts)
    return parts
