"""The complaint procedure: intake, every state change (through ``_transition`` only), notes, auto-close.

Tenancy by construction: every function takes the acting ``Principal`` and reaches complaints only through
``scoped()``, which limits OPD users to the OPD of their session. Another OPD's complaint raises ``NotFound``,
exactly like a missing one.

Seams for other parts of pdn-ops:
- ``ComplaintListeners``: callables ``(session, ComplaintEvent) -> None`` run inside the same transaction after
  every state change (the notification outbox plugs in here); the runtime keeps one in its
  ``ComplaintConfig``.
- ``close_stale(session, now)``: the scheduler's job for step 6 (auto-close after the configured period).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from pdn_ops.accounts import Principal, Role, staff_name
from pdn_ops.complaints.model import (
    RUNNING_STATES,
    Action,
    Category,
    Priority,
    State,
    next_state,
    priority_from_impact,
)
from pdn_ops.complaints.sla import DAY, SlaClock, SlaPolicy, SlaStatus, status_for_fraction
from pdn_ops.complaints.tables import AttachmentRow, ComplaintRow, ComplaintVersionRow, NotificationRow, WorkNoteRow
from pdn_ops.core import photos
from pdn_ops.core.db.engine import after_commit, after_rollback
from pdn_ops.core.db.tables import AuditRow, SiteRow, VmRow, utcnow
from pdn_ops.core.errors import ComplaintInvalid, Conflict, NotFound, PermissionDenied, TransitionError

MAX_DESCRIPTION = 5000
MIN_DESCRIPTION = 10
# In-app notices the OPD receives (step 5); the outbox listener may add WhatsApp/e-mail for the same events.
NOTIFY_OPD = {Action.RETURN: "returned", Action.FIX: "fixed", Action.MERGE: "merged", Action.VERIFY: "verified"}


@dataclass(frozen=True, slots=True)
class ComplaintEvent:
    complaint_id: int
    opd_id: int
    action: str
    from_state: str | None
    to_state: str
    actor: str
    at: datetime
    reason: str = ""


Listener = Callable[[Session, ComplaintEvent], None]


class ComplaintListeners:
    """An explicit registry of listeners; no module-level state, the app owns one and passes it in."""

    def __init__(self, listeners: Sequence[Listener] = ()) -> None:
        self._listeners: list[Listener] = list(listeners)

    def add(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def __iter__(self) -> Iterator[Listener]:
        return iter(list(self._listeners))


@dataclass(frozen=True, slots=True)
class Terms:
    """The procedure's terms in force: the SLA policy for clocks that start now, and the auto-close period."""

    policy: SlaPolicy
    autoclose_after: timedelta


class TermsSource(Protocol):
    """Where live terms come from (``services.procedure_settings.LiveSettings``: the supervisor's settings)."""

    def cached(self) -> Terms:
        """Terms at most a few seconds old, for pages and lists (no query on most calls)."""

    def fresh(self, session: Session) -> Terms:
        """Terms read in ``session``'s own transaction, for state changes."""


class ComplaintConfig:
    """What the complaint services need besides a session: where photos go, the terms, the listeners.

    ``policy`` and ``autoclose_after`` are read on every use. With a ``terms`` source (the app's), they follow the
    supervisor's settings in every process without a restart: ``policy`` from a short cache (pages and lists),
    ``policy_in(session)`` from the database in the caller's transaction (state changes, so a due date is never
    computed from stale settings). Without one (tests, scripts) the values given here apply.
    """

    __slots__ = ("_autoclose_after", "_policy", "_terms", "data_dir", "listeners")

    def __init__(self, data_dir: Path, policy: SlaPolicy | None = None,
                 autoclose_after: timedelta = timedelta(days=3), listeners: ComplaintListeners | None = None,
                 terms: TermsSource | None = None) -> None:
        self.data_dir = data_dir
        self.listeners = listeners if listeners is not None else ComplaintListeners()
        self._policy = policy or SlaPolicy()
        self._autoclose_after = autoclose_after
        self._terms = terms

    @property
    def policy(self) -> SlaPolicy:
        return self._terms.cached().policy if self._terms is not None else self._policy

    @property
    def autoclose_after(self) -> timedelta:
        return self._terms.cached().autoclose_after if self._terms is not None else self._autoclose_after

    def terms_in(self, session: Session) -> Terms:
        if self._terms is None:
            return Terms(self._policy, self._autoclose_after)
        return self._terms.fresh(session)

    def policy_in(self, session: Session) -> SlaPolicy:
        return self.terms_in(session).policy



# --- tenancy ---------------------------------------------------------------------------------------------------

def scoped(stmt: Select[Any], principal: Principal) -> Select[Any]:
    scope = principal.opd_scope()
    return stmt if scope is None else stmt.where(ComplaintRow.opd_id == scope)


def get(session: Session, principal: Principal, complaint_id: int, *, for_update: bool = False) -> ComplaintRow:
    stmt = scoped(select(ComplaintRow).where(ComplaintRow.id == complaint_id), principal)
    if for_update:
        stmt = stmt.with_for_update()
    row: ComplaintRow | None = session.scalar(stmt)
    if row is None:
        raise NotFound("no such complaint")
    return row


@dataclass(frozen=True, slots=True)
class Asset:
    kind: str  # vm | site
    id: int
    label: str
    opd_id: int

    @property
    def ref(self) -> str:
        return f"{self.kind}:{self.id}"


def assets(session: Session, principal: Principal) -> list[Asset]:
    """The VMs and sites the principal may file a complaint about (OPD users: their own OPD only)."""
    scope = principal.opd_scope()
    vms = select(VmRow).where(VmRow.retired_at.is_(None)).order_by(VmRow.name)
    sites = select(SiteRow).where(SiteRow.retired_at.is_(None)).order_by(SiteRow.url)
    if scope is not None:
        vms, sites = vms.where(VmRow.opd_id == scope), sites.where(SiteRow.opd_id == scope)
    found = [Asset("vm", vm.id, f"VM {vm.name} ({vm.cluster}/{vm.vmid})", vm.opd_id) for vm in session.scalars(vms)]
    found += [Asset("site", s.id, f"{s.name or s.url} ({s.url})", s.opd_id) for s in session.scalars(sites)]
    return found


def _asset_for(session: Session, principal: Principal, ref: str) -> Asset | None:
    kind, _, raw = ref.partition(":")
    if kind not in ("vm", "site") or not raw.isdigit():
        return None
    for asset in assets(session, principal):
        if asset.kind == kind and asset.id == int(raw):
            return asset
    return None


def asset_label(session: Session, row: ComplaintRow) -> str:
    if row.vm_id is not None:
        vm = session.get(VmRow, row.vm_id)
        return f"VM {vm.name} ({vm.cluster}/{vm.vmid})" if vm else "-"
    site = session.get(SiteRow, row.site_id) if row.site_id is not None else None
    return f"{site.name or site.url} ({site.url})" if site else "-"


# --- the one place where state changes ------------------------------------------------------------------------

def terms_of(row: ComplaintRow, policy: SlaPolicy) -> SlaPolicy:
    """The policy a complaint is judged by: once its clock has started, the length and the calendar or working-day
    mode it was filed under (kept in ``sla_budget``/``sla_mode``); the holidays and the zone are always current.

    So a supervisor's new SLA length applies to new complaints only, while a holiday added later counts for every
    running working-day complaint.
    """
    if row.submitted_at is None:
        return policy
    working = row.sla_mode == "working"
    if policy.budget == row.sla_budget and policy.working_days == working:
        return policy  # the usual case: no new object per row on the hot lists
    return replace(policy, days=max(1, round(row.sla_budget / DAY)), working_days=working)


def clock_of(row: ComplaintRow, policy: SlaPolicy) -> SlaClock:
    policy = terms_of(row, policy)
    return SlaClock(policy=policy, elapsed=row.sla_elapsed, running_since=row.sla_running_since,
                    started=row.submitted_at is not None, stopped=row.state in (State.FIXED, State.CLOSED,
                                                                               State.MERGED))


def _store_clock(row: ComplaintRow, clock: SlaClock) -> None:
    row.sla_mode = clock.policy.mode
    row.sla_budget = clock.policy.budget
    row.sla_elapsed = clock.elapsed
    row.sla_running_since = clock.running_since
    row.sla_due_at = clock.due_at()
    row.sla_risk50_at = clock.instant_of_fraction(clock.policy.thresholds[0])
    row.sla_risk80_at = clock.instant_of_fraction(clock.policy.thresholds[1])
    if clock.stopped:
        row.sla_breached = clock.elapsed >= clock.policy.budget


def _transition(session: Session, row: ComplaintRow, action: Action, *, actor: str, role: Role | None,
                reason: str, now: datetime, config: ComplaintConfig, detail: str = "") -> ComplaintEvent:
    """Every state change goes through here: state, SLA clock, timestamps, audit row, OPD inbox, listeners."""
    before = State(row.state) if row.state else None
    if action is Action.SUBMIT:
        target = State.SUBMITTED
    else:
        if before is None:
            raise TransitionError("a complaint without a state")
        target = next_state(before, action, role, reason)
    clock = clock_of(row, config.policy_in(session))
    if target in RUNNING_STATES:
        clock = clock.start(now)
        row.submitted_at = row.submitted_at or now
    elif target is State.RETURNED:
        clock = clock.pause(now)
    else:
        clock = clock.stop(now)
    row.state = str(target)
    row.updated_at = now
    if target is State.FIXED:
        row.fixed_at = now
    elif target is State.CLOSED:
        row.closed_at = now
        row.auto_closed = action is Action.AUTO_CLOSE
    elif action is Action.REOPEN:
        row.fixed_at = None
    _store_clock(row, clock)
    session.flush()
    text = reason.strip()[:2000]
    session.add(AuditRow(at=now, actor=actor, action=f"complaint.{action}", subject=f"complaint:{row.id}",
                         detail=detail or text))
    if action in NOTIFY_OPD:
        session.add(NotificationRow(opd_id=row.opd_id, complaint_id=row.id, kind=NOTIFY_OPD[action], detail=text,
                                    created_at=now))
    event = ComplaintEvent(complaint_id=row.id, opd_id=row.opd_id, action=str(action),
                           from_state=str(before) if before else None, to_state=str(target), actor=actor, at=now,
                           reason=text)
    for listener in config.listeners:
        listener(session, event)
    return event


# --- intake (step 2) and correction ----------------------------------------------------------------------------

@dataclass
class Draft:
    asset: str = ""
    category: str = ""
    description: str = ""


def _validate(session: Session, principal: Principal, draft: Draft, photo_count: int,
              need_photos: bool) -> tuple[Asset, Category, str]:
    errors: dict[str, str] = {}
    asset = _asset_for(session, principal, draft.asset)
    if asset is None:
        errors["asset"] = "complaints.error.asset"
    try:
        category = Category(draft.category)
    except ValueError:
        errors["category"] = "complaints.error.category"
        category = Category.OTHER
    description = draft.description.strip()
    if not MIN_DESCRIPTION <= len(description) <= MAX_DESCRIPTION:
        errors["description"] = "complaints.error.description"
    if photo_count > photos.MAX_PHOTOS or (need_photos and photo_count < 1):
        errors["photos"] = "complaints.error.photo_count"
    if errors:
        raise ComplaintInvalid(errors)
    assert asset is not None
    return asset, category, description


# An upload as the routes and the WhatsApp/e-mail intake hand it over: (file name, bytes), or already prepared
# (checked and re-encoded outside the transaction, see photos.prepare).
Upload = tuple[str, bytes] | photos.PreparedPhoto


def prepare_uploads(uploads: Sequence[Upload]) -> list[photos.PreparedPhoto]:
    """Check and re-encode every file (all or nothing: the first bad one raises PhotoRefused)."""
    return [u if isinstance(u, photos.PreparedPhoto) else photos.prepare(u[1], u[0]) for u in uploads]


def _store_photos(session: Session, principal: Principal, row: ComplaintRow, uploads: Sequence[Upload],
                  config: ComplaintConfig, now: datetime) -> None:
    staged: list[str] = []
    data_dir = config.data_dir
    # Published into the store only once the rows are committed; removed if the transaction fails.
    after_commit(session, lambda: photos.publish(data_dir, staged))
    after_rollback(session, lambda: photos.discard(data_dir, staged))
    for prepared in prepare_uploads(uploads):  # every file is checked before any is written
        stored = photos.stage(prepared, data_dir)
        staged += [stored.stored_name, stored.thumb_name]
        session.add(AttachmentRow(complaint_id=row.id, version=row.version, stored_name=stored.stored_name,
                                  thumb_name=stored.thumb_name, media_type=stored.media_type,
                                  original_name=stored.original_name, size=stored.size, width=stored.width,
                                  height=stored.height, uploaded_by=principal.user_id, created_at=now))


def _version(session: Session, principal: Principal, row: ComplaintRow, now: datetime) -> None:
    session.add(ComplaintVersionRow(complaint_id=row.id, number=row.version, category=row.category,
                                    description=row.description, vm_id=row.vm_id, site_id=row.site_id,
                                    author_id=principal.user_id, created_at=now))


IDEMPOTENCY_KEY_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_")


def clean_idempotency_key(value: str | None) -> str | None:
    """A key as the form or the API sends it (8-64 of [A-Za-z0-9_-]); anything else counts as no key."""
    value = (value or "").strip()
    if 8 <= len(value) <= 64 and set(value) <= IDEMPOTENCY_KEY_CHARS:
        return value
    return None


def already_filed(session: Session, principal: Principal, key: str | None) -> ComplaintRow | None:
    """The complaint this author already filed with this key, if any (a retry, a double click)."""
    if key is None:
        return None
    return session.scalar(select(ComplaintRow).where(ComplaintRow.created_by == principal.user_id,
                                                     ComplaintRow.idempotency_key == key))


def submit(session: Session, principal: Principal, draft: Draft, uploads: Sequence[Upload], *,
           config: ComplaintConfig, now: datetime | None = None, idempotency_key: str | None = None) -> ComplaintRow:
    """File a complete complaint (asset, category, description, 1..5 photos); the SLA clock starts now.

    With ``idempotency_key``, the caller checks ``already_filed`` first in the same transaction; the unique index
    refuses a second row with the same key if two requests race."""
    if principal.role is not Role.OPD_ADMIN:
        raise PermissionDenied("only an OPD admin files complaints")
    now = now or utcnow()
    asset, category, description = _validate(session, principal, draft, len(uploads), need_photos=True)
    row = ComplaintRow(opd_id=asset.opd_id, vm_id=asset.id if asset.kind == "vm" else None,
                       site_id=asset.id if asset.kind == "site" else None, category=str(category),
                       description=description, state="", version=1, created_by=principal.user_id,
                       idempotency_key=idempotency_key, created_at=now, updated_at=now)
    row.priority = str(_impact(session, row))
    session.add(row)
    session.flush()
    _store_photos(session, principal, row, uploads, config, now)
    _version(session, principal, row, now)
    _transition(session, row, Action.SUBMIT, actor=principal.username, role=principal.role, reason="", now=now,
                config=config)
    return row


def resubmit(session: Session, principal: Principal, complaint_id: int, draft: Draft,
             uploads: Sequence[Upload], *, config: ComplaintConfig, remove_photos: Collection[int] = (),
             now: datetime | None = None) -> ComplaintRow:
    """The OPD admin corrects a returned complaint: a new version, earlier ones kept; the clock resumes.

    ``remove_photos`` are attachments the admin chose not to keep (a wrong screenshot); ids of other complaints'
    photos are ignored. Their rows go; their files are left to the photo janitor, which removes files no
    attachment names, so a rolled-back correction never loses a photo it kept.
    """
    now = now or utcnow()
    row = get(session, principal, complaint_id, for_update=True)
    if row.state != State.RETURNED or principal.role is not Role.OPD_ADMIN:
        raise Conflict("only a returned complaint can be corrected, by an OPD admin")
    attached = list(session.scalars(select(AttachmentRow).where(AttachmentRow.complaint_id == row.id)))
    removed = [a for a in attached if a.id in set(remove_photos)]
    kept = len(attached) - len(removed)
    asset, category, description = _validate(session, principal, draft, len(uploads), need_photos=kept == 0)
    if kept + len(uploads) > photos.MAX_PHOTOS:
        raise ComplaintInvalid({"photos": "complaints.error.photo_count"})
    for attachment in removed:
        session.delete(attachment)
    if removed:
        session.add(AuditRow(at=now, actor=principal.username, action="complaint.photo_removed",
                             subject=f"complaint:{row.id}",
                             detail=", ".join(a.original_name or f"#{a.id}" for a in removed)))
    row.version += 1
    row.vm_id = asset.id if asset.kind == "vm" else None
    row.site_id = asset.id if asset.kind == "site" else None
    row.category, row.description = str(category), description
    _store_photos(session, principal, row, uploads, config, now)
    _version(session, principal, row, now)
    _transition(session, row, Action.RESUBMIT, actor=principal.username, role=principal.role, reason="", now=now,
                config=config, detail=f"v{row.version}")
    return row


def act(session: Session, principal: Principal, complaint_id: int, action: Action, *, reason: str = "",
        merge_into: int | None = None, config: ComplaintConfig, now: datetime | None = None) -> ComplaintRow:
    """A person's step on a complaint (verify, return, start, fix, confirm, reopen, merge)."""
    now = now or utcnow()
    row = get(session, principal, complaint_id, for_update=True)
    if action in (Action.SUBMIT, Action.RESUBMIT, Action.AUTO_CLOSE):
        raise TransitionError(f"{action} is not a manual step")
    detail = ""
    if action is Action.MERGE:
        if merge_into is None or merge_into == row.id:
            raise TransitionError("merge needs another complaint")
        target = get(session, principal, merge_into)
        if target.opd_id != row.opd_id or target.state in (State.CLOSED, State.MERGED):
            raise TransitionError("a duplicate merges into an open complaint of the same OPD")
        row.merged_into_id = target.id
        detail = f"#{target.id} {reason.strip()}".strip()
        session.add(AuditRow(at=now, actor=principal.username, action="complaint.merged_from",
                             subject=f"complaint:{target.id}", detail=f"#{row.id}"))
    _transition(session, row, action, actor=principal.username, role=principal.role, reason=reason, now=now,
                config=config, detail=detail)
    return row


def _impact(session: Session, row: ComplaintRow) -> Priority:
    """Other open complaints about the same asset raise the priority (pdn_ops.complaints.model)."""
    same_asset = (ComplaintRow.vm_id == row.vm_id) if row.vm_id is not None else (ComplaintRow.site_id == row.site_id)
    others = session.scalar(select(func.count()).select_from(ComplaintRow).where(
        same_asset, ComplaintRow.state.in_([str(s) for s in RUNNING_STATES]), ComplaintRow.id != (row.id or 0)))
    return priority_from_impact(row.category, other_reports=int(others or 0))


def assign(session: Session, principal: Principal, complaint_id: int, *, assignee_id: int | None,
           now: datetime | None = None) -> ComplaintRow:
    """Give the complaint an owner at Diskominfo: an engineer takes it (or lets it go); a supervisor gives it to
    any engineer or supervisor. ``assignee_id`` None leaves it unassigned."""
    if not principal.is_staff:
        raise NotFound("no such complaint")
    row = get(session, principal, complaint_id, for_update=True)
    if principal.role is not Role.SUPERVISOR and assignee_id not in (principal.user_id, None):
        raise PermissionDenied("an engineer assigns complaints to themselves only")
    if principal.role is not Role.SUPERVISOR and assignee_id is None and row.assignee_id not in (principal.user_id,
                                                                                                 None):
        raise PermissionDenied("only the supervisor takes a complaint away from another engineer")
    name = ""
    if assignee_id is not None:
        name = staff_name(session, assignee_id) or ""
        if not name:
            raise Conflict("the assignee must be an active engineer or supervisor")
    row.assignee_id = assignee_id
    row.updated_at = now or utcnow()
    session.add(AuditRow(at=row.updated_at, actor=principal.username, action="complaint.assigned",
                         subject=f"complaint:{row.id}", detail=name))
    return row


def set_priority(session: Session, principal: Principal, complaint_id: int, priority: str,
                 now: datetime | None = None) -> ComplaintRow:
    if not principal.is_staff:
        raise NotFound("no such complaint")
    try:
        chosen = Priority(priority)
    except ValueError:
        raise Conflict("the priority must be high, medium or low") from None
    row = get(session, principal, complaint_id, for_update=True)
    row.priority = str(chosen)
    row.updated_at = now or utcnow()
    session.add(AuditRow(at=row.updated_at, actor=principal.username, action=f"complaint.priority_{chosen}",
                         subject=f"complaint:{row.id}", detail=""))
    return row


def add_note(session: Session, principal: Principal, complaint_id: int, body: str,
             now: datetime | None = None) -> WorkNoteRow:
    if not principal.is_staff:
        raise NotFound("no such complaint")
    row = get(session, principal, complaint_id)
    text = body.strip()
    if not text:
        raise ComplaintInvalid({"note": "complaints.error.note"})
    now = now or utcnow()
    note = WorkNoteRow(complaint_id=row.id, author_id=principal.user_id, body=text[:MAX_DESCRIPTION], created_at=now)
    session.add(note)
    session.add(AuditRow(at=now, actor=principal.username, action="complaint.note", subject=f"complaint:{row.id}",
                         detail=text[:200]))
    return note


def record(session: Session, complaint_id: int, *, actor: str, action: str, detail: str = "",
           now: datetime | None = None) -> None:
    """Add an entry to a complaint's timeline without changing its state (e.g. ``remediation.started``).

    For other parts of pdn-ops (remediation runs linked to a complaint); the complaint page shows the action
    text as it is unless the catalogue has ``complaints.event.<last part>``.
    """
    session.add(AuditRow(at=now or utcnow(), actor=actor, action=action, subject=f"complaint:{complaint_id}",
                         detail=detail[:2000]))


def close_stale(session: Session, now: datetime, *, after: timedelta | None = None,
                config: ComplaintConfig | None = None) -> list[int]:
    """Close complaints that stayed fixed without an OPD answer for ``after``; noted as closed automatically.

    Claims each row with FOR UPDATE SKIP LOCKED (PostgreSQL) so two schedulers never close the same one twice.
    """
    config = config or ComplaintConfig(data_dir=Path())
    limit = now - (after if after is not None else config.terms_in(session).autoclose_after)
    stmt = select(ComplaintRow).where(ComplaintRow.state == str(State.FIXED), ComplaintRow.fixed_at <= limit)
    closed = []
    for row in session.scalars(stmt.order_by(ComplaintRow.id).with_for_update(skip_locked=True)):
        _transition(session, row, Action.AUTO_CLOSE, actor="system", role=None, reason="", now=now, config=config)
        closed.append(row.id)
    return closed


# --- reading ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SlaView:
    status: SlaStatus
    remaining: float | None  # counted seconds; None before the clock starts
    due_at: datetime | None
    running: bool
    used: float | None = None  # the share of the SLA budget already counted, for the SLA bar (0..1, may exceed 1)


def sla_verdict(row: ComplaintRow, now: datetime, policy: SlaPolicy | None = None) -> str:
    """The SLA column of the reports: ``met`` or ``breached`` once resolved; before that ``breached`` as soon as
    the deadline has passed, else ``running``; ``none`` before submission and for merged complaints."""
    if row.submitted_at is None or row.state == State.MERGED:
        return "none"
    if row.state in (State.FIXED, State.CLOSED):
        return "breached" if row.sla_breached else "met"
    return "breached" if sla_view(row, now, policy).status is SlaStatus.BREACHED else "running"


def sla_view(row: ComplaintRow, now: datetime, policy: SlaPolicy | None = None) -> SlaView:
    if row.submitted_at is None:
        return SlaView(SlaStatus.NOT_STARTED, None, None, False)
    if row.sla_running_since is not None and row.sla_due_at is not None:
        if now >= row.sla_due_at:
            status = SlaStatus.BREACHED
        elif row.sla_risk80_at is not None and now >= row.sla_risk80_at:
            status = SlaStatus.AT_RISK_80
        elif row.sla_risk50_at is not None and now >= row.sla_risk50_at:
            status = SlaStatus.AT_RISK_50
        else:
            status = SlaStatus.OK
        # Counting depends only on the mode (and holidays), not on the length: one column to compare per row.
        counting = policy if policy is not None and policy.working_days == (row.sla_mode == "working") \
            else terms_of(row, policy or SlaPolicy())
        elapsed = row.sla_elapsed + counting.counted_seconds(row.sla_running_since, now)
        return SlaView(status, row.sla_budget - elapsed, row.sla_due_at, True, elapsed / row.sla_budget)
    status = status_for_fraction(row.sla_elapsed / row.sla_budget)
    return SlaView(status, row.sla_budget - row.sla_elapsed, None, False, row.sla_elapsed / row.sla_budget)


def photo_names_known(session: Session, names: set[str]) -> set[str]:
    """Which of ``names`` an attachment row names (as its photo or its thumbnail): the photo janitor's question."""
    known: set[str] = set()
    ordered = sorted(names)
    for start in range(0, len(ordered), 500):
        chunk = ordered[start:start + 500]
        for stored, thumb in session.execute(select(AttachmentRow.stored_name, AttachmentRow.thumb_name).where(
                or_(AttachmentRow.stored_name.in_(chunk), AttachmentRow.thumb_name.in_(chunk)))):
            known.update({stored, thumb})
    return known & names


def sweep_photos(session: Session, data_dir: Path, *, min_age_s: float = 600.0) -> photos.Swept:
    """The photo janitor: finish or undo what a crash left in the staging folder; remove unnamed files."""
    return photos.sweep(data_dir, lambda names: photo_names_known(session, names), min_age_s=min_age_s)
