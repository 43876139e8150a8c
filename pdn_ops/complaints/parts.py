"""What the complaint feature keeps for the app's lifetime, its seams into other features, and how a request
reaches them.

The seams are what the complaint pages show of other features, typed here and implemented there (wired by the
composition root, ``pdn_ops.app.runtime``): the live state and the uptime of an asset (health), the remediation
runs linked to a complaint and the playbooks that fit its VM (runs). Without a wiring they show nothing: every
asset "unknown", no runs, no playbooks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Protocol

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from pdn_ops.accounts import Principal
from pdn_ops.complaints.intake import ComplaintsIntake
from pdn_ops.complaints.procedure_store import LiveSettings
from pdn_ops.complaints.queries import LinkedRuns
from pdn_ops.complaints.service import ComplaintConfig
from pdn_ops.complaints.tables import ComplaintRow
from pdn_ops.complaints.timeline import RunFact
from pdn_ops.core.gates import Gate


class AssetStates(Protocol):
    """``{ref: "up" | "degraded" | "down" | "unknown"}`` for refs like ``"vm:3"`` and ``"site:1"``."""

    def __call__(self, session: Session, refs: Sequence[str]) -> Mapping[str, str]: ...


class BackupCoverage(Protocol):
    """(OPD name, VMs with a recent good backup, VMs whose backups are watched) per OPD, now (one OPD or all)."""

    def __call__(self, session: Session, now: datetime, opd_id: int | None = None) -> list[tuple[str, int, int]]:
        ...


class AssetUptime(Protocol):
    """Uptime of every active VM and site (of one OPD, or all) between two instants, as ``(label, fraction)``."""

    def __call__(self, session: Session, start: datetime, end: datetime,
                 opd_id: int | None) -> Sequence[tuple[str, float]]: ...


@dataclass(frozen=True, slots=True)
class PlaybookChoice:
    """One way to fix the complaint's VM: straight to the dry run (``url`` None) or through a page that asks first."""

    playbook: str
    target: str  # "cluster/vmid"
    risk: str
    param_name: str = ""  # the one parameter the dry run gets, already decided ("" for none)
    param_value: str = ""
    inputs: tuple[str, ...] = ()  # parameters the engineer chooses and types on the complaint page
    url: str | None = None  # a page to choose on first (the snapshot chooser)


class PlaybookChoices(Protocol):
    """The playbooks that fit the complaint's VM, least risky first (staff only)."""

    def __call__(self, session: Session, row: ComplaintRow) -> Sequence[PlaybookChoice]: ...


class ExtraActions(Protocol):
    """More links for staff on the complaint page, after the playbooks: ``[{"label": ..., "url": ...}]``."""

    def __call__(self, session: Session, row: ComplaintRow, user: Principal) -> Sequence[Mapping[str, str]]: ...


def no_states(session: Session, refs: Sequence[str]) -> Mapping[str, str]:
    return dict.fromkeys(refs, "unknown")


def no_runs(session: Session, complaint_id: int) -> list[RunFact]:
    return []


def no_playbooks(session: Session, row: ComplaintRow) -> Sequence[PlaybookChoice]:
    return []


@dataclass(eq=False)
class ComplaintsParts:
    config: ComplaintConfig
    terms: LiveSettings
    intake: ComplaintsIntake
    asset_states: AssetStates = no_states
    asset_uptime: AssetUptime | None = None  # None: the monthly report says uptime is not available
    backup_coverage: BackupCoverage | None = None  # None: the monthly report says backups are not watched
    linked_runs: LinkedRuns = no_runs
    playbooks: PlaybookChoices = no_playbooks
    extra_actions: Sequence[ExtraActions] = field(default_factory=tuple)
    # The CPU-heavy parts, each with a bounded queue (beyond it 503 + Retry-After): decoding and re-encoding
    # uploaded photos (~50-300 ms each), rendering a PDF report (up to a few seconds with photos). The runtime
    # builds them from the settings (PDN_OPS_PHOTO_*, PDN_OPS_PDF_*); these defaults are the same, for 2 cores.
    photo_gate: Gate = field(default_factory=lambda: Gate("photo processing", limit=2, queue=40,
                                                          wait_seconds=15.0))
    pdf_gate: Gate = field(default_factory=lambda: Gate("PDF rendering", limit=1, queue=8, wait_seconds=20.0,
                                                        retry_after=10))


# Async on purpose: FastAPI runs a sync dependency in the thread pool, a hop that costs more than this lookup.
async def complaints_parts(request: Request) -> ComplaintsParts:
    parts = request.app.state.runtime.complaints
    assert isinstance(parts, ComplaintsParts)
    return parts


async def complaint_config(request: Request) -> ComplaintConfig:
    return (await complaints_parts(request)).config


Parts = Annotated[ComplaintsParts, Depends(complaints_parts)]
Config = Annotated[ComplaintConfig, Depends(complaint_config)]
