"""The one typed runtime: built once from the settings by ``build_runtime`` and shared by the web app, the CLI,
the scheduler and every worker.

Each feature owns the dataclass of its parts (``pdn_ops.<feature>.parts``) and the seams other features fill in;
this module is the only place that knows them all, so it wires the seams: the complaint pages see the health
model's asset states and uptime and the runs linked to a complaint; /metrics carries every feature's series.
A test builds a runtime, then replaces a part by assigning it (``runtime.accounts.authenticate = ...``) before
``create_app(runtime)``, or overrides a route's dependency through FastAPI's ``dependency_overrides``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from pdn_ops.accounts.auth import Authenticator
from pdn_ops.accounts.parts import AccountsParts
from pdn_ops.complaints import notifications as complaint_notifications
from pdn_ops.complaints import stats as complaint_stats
from pdn_ops.complaints.config import ComplaintSettings, complaint_config, load_complaint_settings
from pdn_ops.complaints.intake import ComplaintsIntake
from pdn_ops.complaints.metrics import ComplaintCollector
from pdn_ops.complaints.parts import ComplaintsParts, PlaybookChoice
from pdn_ops.complaints.procedure_store import LiveSettings
from pdn_ops.complaints.tables import ComplaintRow
from pdn_ops.core.db import migrate
from pdn_ops.core.db.engine import make_engine, make_sessionmaker, pool_arguments
from pdn_ops.core.gates import Gate
from pdn_ops.core.parts import CoreParts
from pdn_ops.core.settings import Settings
from pdn_ops.health import assets as asset_health
from pdn_ops.health import queries as health_queries
from pdn_ops.health import safety
from pdn_ops.health.metrics import SnapshotCache
from pdn_ops.health.parts import HealthParts
from pdn_ops.notify import outbox as notify_outbox
from pdn_ops.notify.metrics import NotifyCollector
from pdn_ops.notify.parts import NotifyParts
from pdn_ops.runs import choices as remediation_choices
from pdn_ops.runs import snapshots
from pdn_ops.runs.metrics import RemediationCollector
from pdn_ops.runs.model import Policy
from pdn_ops.runs.parts import RunsParts
from pdn_ops.runs.timeline_facts import linked_runs
from pdn_ops.survey import service as survey_invitations

if TYPE_CHECKING:
    from pdn_ops.core.scheduler import SchedulerService


@dataclass(eq=False)
class Runtime(CoreParts):
    accounts: AccountsParts = field(kw_only=True)
    complaints: ComplaintsParts = field(kw_only=True)
    health: HealthParts = field(kw_only=True)
    runs: RunsParts = field(kw_only=True)
    notify: NotifyParts = field(kw_only=True)
    # The scheduler, in the process that won the leader election (started by the scheduler's start hook).
    scheduler: SchedulerService | None = field(default=None, kw_only=True)

    @property
    def inventory_dir(self) -> Path:
        """Where the inventory's relative secret and key references are resolved."""
        return Path(self.settings.inventory).resolve().parent


def build_runtime(settings: Settings, *, engine: Engine | None = None, check_database: bool = True,
                  complaint_settings: ComplaintSettings | None = None,
                  policy: Policy | None = None) -> Runtime:
    """Everything the processes share, from the settings; the database must be at the newest revision."""
    engine = engine or make_engine(settings.effective_database_url, **pool_arguments(
        pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow, pool_timeout=settings.db_pool_timeout))
    if check_database:
        migrate.require_current(engine)  # raises DatabaseNotReady naming the command to run
    sessions = make_sessionmaker(engine)
    chosen = complaint_settings or load_complaint_settings()
    # The procedure's terms follow the supervisor's settings screen (stored; the environment gives the defaults).
    terms = LiveSettings(sessions, chosen.procedure(), chosen.timezone)
    config = complaint_config(settings.data_dir, chosen, terms=terms)
    # WhatsApp/e-mail messages to the OPD for each state change, in the same transaction (the outbox).
    config.listeners.add(complaint_notifications.make_listener(settings.public_url))
    # Selesai invites the OPD to the satisfaction survey, in the same transaction (pdn_ops.survey).
    config.listeners.add(survey_invitations.make_listener(settings.public_url))
    runtime = Runtime(
        settings=settings, engine=engine, sessions=sessions,
        accounts=AccountsParts(authenticate=Authenticator(sessions), password_gate=Gate(
            "password checks", limit=settings.password_checks, queue=settings.password_queue,
            wait_seconds=settings.password_wait_seconds)),
        complaints=ComplaintsParts(config=config, terms=terms, intake=ComplaintsIntake(config, settings.public_url),
                                   asset_states=asset_health.states, asset_uptime=asset_health.uptime,
                                   backup_coverage=safety.coverage,
                                   linked_runs=linked_runs,
                                   photo_gate=Gate("photo processing", limit=settings.photo_checks,
                                                   queue=settings.photo_queue,
                                                   wait_seconds=settings.photo_wait_seconds),
                                   pdf_gate=Gate("PDF rendering", limit=settings.pdf_renders, queue=settings.pdf_queue,
                                                 wait_seconds=settings.pdf_wait_seconds, retry_after=10)),
        health=HealthParts(
            snapshot=SnapshotCache(lambda: health_queries.load_snapshot(sessions),
                                   load_delta=lambda targets, opds: health_queries.load_delta(
                                       sessions, targets_written=targets, opds=opds)),
            area_collectors=(ComplaintCollector(complaint_stats.reader(sessions)),
                             NotifyCollector(notify_outbox.snapshot_reader(sessions)),
                             RemediationCollector(sessions))),
        runs=RunsParts(policy=policy or Policy(approval_playbooks=settings.approval_playbook_set,
                                                    approvals=settings.approval_approvals,
                                                    approvers=settings.approver_set)),
        notify=NotifyParts(),
    )
    _wire_inventory_seams(runtime)
    return runtime


def _wire_inventory_seams(runtime: Runtime) -> None:
    """Seams that read the inventory at call time: the start hook loads it after the runtime is built."""

    def playbooks(session: Session, row: ComplaintRow) -> list[PlaybookChoice]:
        return remediation_choices.for_complaint(session, runtime.inventory, row, policy=runtime.runs.policy)

    runtime.complaints.playbooks = playbooks
    runtime.runs.snapshots = snapshots.SnapshotCache(
        fetch=snapshots.inventory_fetch(lambda: runtime.inventory, runtime.inventory_dir))
