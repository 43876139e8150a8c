"""What the remediation-runs feature keeps for the app's lifetime, and how its routes reach it."""

from __future__ import annotations

from dataclasses import dataclass, field

from pdn_ops.core.parts import CoreParts
from pdn_ops.runs.model import Policy
from pdn_ops.runs.snapshots import SnapshotCache


@dataclass(eq=False)
class RunsParts:
    # The limits every request and automatic rule is checked against (sizes, cooldowns, approvals).
    policy: Policy = field(default_factory=Policy)
    # VM snapshots for the restore form, read in background threads (never in a request); None: no inventory.
    snapshots: SnapshotCache | None = None
    # The demo's lab panel is mounted: the runs page links to it.
    lab_demo: bool = False


def runs_of(ctx: CoreParts) -> RunsParts:
    """The runs parts of the app's runtime (``pdn_ops.app.runtime.Runtime`` extends ``CoreParts``)."""
    parts = getattr(ctx, "runs", None)
    assert isinstance(parts, RunsParts)
    return parts
