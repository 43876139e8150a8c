"""The complaint procedure's settings in the database: read, save (validated, audited), and a live cache.

- ``current(session, defaults)``: the stored settings, or the environment's defaults until a supervisor saves.
- ``save(...)``: supervisors only; refuses a stale revision (two supervisors cannot silently overwrite each other);
  writes one audit row with every old and new value; when the holiday list changes, recomputes the due and
  at-risk instants of every running working-day complaint in the same transaction, with a timeline entry on each
  complaint whose due date moved (``complaint.sla_recomputed``).
- ``LiveSettings``: the app's ``TermsSource`` for ``ComplaintConfig``. Pages read it through a cache of
  ``ttl`` seconds (5 by default; a cache hit is a clock read), so every worker process follows a change within
  seconds without a restart; state changes read the row in their own transaction, so a due date is never
  computed from stale settings.

What is not recomputed, on purpose: the SLA length and mode of complaints already running (they keep the terms
they were filed under, see ``complaints.terms_of``), and time counted before a complaint was last returned to the
OPD (it is kept as a number of counted seconds; only the running stretch since the last resume is recounted).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pdn_ops.accounts import Principal, Role
from pdn_ops.complaints.model import RUNNING_STATES
from pdn_ops.complaints.procedure import ProcedureSettings, changes
from pdn_ops.complaints.service import Terms, _store_clock, clock_of
from pdn_ops.complaints.sla import SlaPolicy
from pdn_ops.complaints.tables import ComplaintRow, ProcedureSettingsRow
from pdn_ops.core.db.tables import AuditRow, utcnow
from pdn_ops.core.errors import Conflict, PermissionDenied

ROW_ID = 1
SUBJECT = "settings:complaints"


@dataclass(frozen=True, slots=True)
class Stored:
    settings: ProcedureSettings
    revision: int  # 0: nothing saved yet, the environment's values apply
    updated_at: datetime | None
    updated_by: str | None

    @property
    def from_environment(self) -> bool:
        return self.revision == 0


@dataclass(frozen=True, slots=True)
class Saved:
    stored: Stored
    changed: list[str]
    recomputed: int  # running complaints whose due date moved


def _settings_of(row: ProcedureSettingsRow) -> ProcedureSettings:
    return ProcedureSettings(sla_days=row.sla_days, sla_working_days=row.sla_working_days,
                             holidays=frozenset(date.fromisoformat(d) for d in row.holidays or []),
                             autoclose_days=row.autoclose_days)


def current(session: Session, defaults: ProcedureSettings) -> Stored:
    row = session.get(ProcedureSettingsRow, ROW_ID)
    if row is None:
        return Stored(defaults, 0, None, None)
    return Stored(_settings_of(row), row.revision, row.updated_at, row.updated_by)


def history(session: Session, limit: int = 20) -> list[AuditRow]:
    stmt = select(AuditRow).where(AuditRow.subject == SUBJECT).order_by(AuditRow.id.desc()).limit(limit)
    return list(session.scalars(stmt))


def save(session: Session, actor: Principal, new: ProcedureSettings, *, defaults: ProcedureSettings,
         timezone: str, expected_revision: int | None = None, now: datetime | None = None) -> Saved:
    """Store ``new`` (already checked by ``domain.procedure.check``); see the module docstring."""
    if actor.role is not Role.SUPERVISOR:
        raise PermissionDenied("only a supervisor changes the procedure's settings")
    now = now or utcnow()
    # The row is the lock: concurrent saves queue on it (SQLite: the caller's BEGIN IMMEDIATE does the same).
    row = session.scalar(select(ProcedureSettingsRow).where(ProcedureSettingsRow.id == ROW_ID).with_for_update())
    before = Stored(_settings_of(row), row.revision, row.updated_at, row.updated_by) if row is not None \
        else Stored(defaults, 0, None, None)
    if expected_revision is not None and expected_revision != before.revision:
        raise Conflict("the settings were changed by someone else meanwhile; reload and try again")
    changed = changes(before.settings, new)
    if not changed:
        return Saved(before, [], 0)
    if row is None:
        row = ProcedureSettingsRow(id=ROW_ID, revision=0)
        session.add(row)
    row.sla_days = new.sla_days
    row.sla_working_days = new.sla_working_days
    row.holidays = new.holiday_list()
    row.autoclose_days = new.autoclose_days
    row.revision = before.revision + 1
    row.updated_at = now
    row.updated_by = actor.username
    recomputed = 0
    if new.holidays != before.settings.holidays:
        recomputed = recompute_due_dates(session, new.policy(timezone), actor=actor.username, now=now)
    origin = "environment" if before.from_environment else f"revision {before.revision}"
    detail = f"revision {row.revision} (from {origin}): " + "; ".join(changed)
    if recomputed:
        detail += f"; due dates recomputed for {recomputed} running complaint(s)"
    session.add(AuditRow(at=now, actor=actor.username, action="settings.update", subject=SUBJECT,
                         detail=detail[:4000]))
    session.flush()
    return Saved(Stored(new, row.revision, now, actor.username), changed, recomputed)


def recompute_due_dates(session: Session, policy: SlaPolicy, *, actor: str, now: datetime) -> int:
    """Recount the running stretch of every running working-day complaint under the new holiday list.

    Only working-day clocks count holidays. Rows are locked (FOR UPDATE on PostgreSQL) so a concurrent state
    change waits for this transaction instead of writing instants computed from the old list.
    """
    stmt = select(ComplaintRow).where(ComplaintRow.state.in_([str(s) for s in RUNNING_STATES]),
                                      ComplaintRow.sla_running_since.is_not(None),
                                      ComplaintRow.sla_mode == "working")
    moved = 0
    for row in session.scalars(stmt.order_by(ComplaintRow.id).with_for_update()):
        old_due = row.sla_due_at
        _store_clock(row, clock_of(row, policy))
        if row.sla_due_at != old_due:
            moved += 1
            session.add(AuditRow(at=now, actor=actor, action="complaint.sla_recomputed",
                                 subject=f"complaint:{row.id}",
                                 detail=f"{_iso(old_due)} -> {_iso(row.sla_due_at)} (holidays changed)"))
    return moved


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="minutes") if value is not None else "-"


@dataclass(frozen=True, slots=True)
class _Snapshot:
    revision: int
    terms: Terms
    expires: float


class LiveSettings:
    """The app's live terms (one per runtime, in ``ComplaintsParts.terms``; no module state). Thread-safe."""

    def __init__(self, sessions: sessionmaker[Session], defaults: ProcedureSettings, timezone: str, *,
                 ttl: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.sessions = sessions
        self.defaults = defaults
        self.timezone = timezone
        self.ttl = ttl
        self._clock = clock
        self._snapshot: _Snapshot | None = None
        self._lock = threading.Lock()

    def cached(self) -> Terms:
        snapshot = self._snapshot
        if snapshot is not None and self._clock() < snapshot.expires:
            return snapshot.terms
        # One thread refreshes; the others keep using the previous terms meanwhile instead of queueing.
        if snapshot is not None and not self._lock.acquire(blocking=False):
            return snapshot.terms
        if snapshot is None:
            self._lock.acquire()
        try:
            with self.sessions() as session:
                return self.fresh(session)
        finally:
            self._lock.release()

    def fresh(self, session: Session) -> Terms:
        stored = current(session, self.defaults)
        return self._remember(stored).terms

    def stored(self, session: Session) -> Stored:
        stored = current(session, self.defaults)
        self._remember(stored)
        return stored

    def invalidate(self) -> None:
        self._snapshot = None

    def _remember(self, stored: Stored) -> _Snapshot:
        previous = self._snapshot
        if previous is not None and previous.revision == stored.revision:
            # Same settings: keep the same policy object (the lists compare it cheaply per row).
            snapshot = _Snapshot(stored.revision, previous.terms, self._clock() + self.ttl)
        else:
            terms = Terms(stored.settings.policy(self.timezone), stored.settings.autoclose_after())
            snapshot = _Snapshot(stored.revision, terms, self._clock() + self.ttl)
        self._snapshot = snapshot
        return snapshot
