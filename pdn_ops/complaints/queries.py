"""Read side of complaints: the engineers' queue, an OPD's list, the timeline, attachments and the OPD inbox.

Lists use keyset pagination (a cursor naming the last row seen), never OFFSET, so page 2,000 costs what page 1
costs; the indexes in ``complaint_tables`` match the orderings here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any, cast

from sqlalchemy import Integer, Select, bindparam, func, select, tuple_, update
from sqlalchemy.orm import Session

from pdn_ops.accounts import Principal, UserRow, token_still_valid
from pdn_ops.complaints import timeline as tl
from pdn_ops.complaints.model import State
from pdn_ops.complaints.service import get
from pdn_ops.complaints.tables import AttachmentRow, ComplaintRow, ComplaintVersionRow, NotificationRow, WorkNoteRow
from pdn_ops.core.db.tables import MAX_ID, AuditRow, utcnow
from pdn_ops.core.errors import NotFound

PAGE = 50
MAX_PAGE = 200


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[ComplaintRow]
    next_cursor: str | None


# What a list shows: no description, no audit columns. Plain rows (not ORM objects) keep a page of 200 cheap;
# they carry the same attribute names, so code that reads a ComplaintRow reads these too.
LIST_COLUMNS = (ComplaintRow.id, ComplaintRow.opd_id, ComplaintRow.vm_id, ComplaintRow.site_id,
                ComplaintRow.category, ComplaintRow.state, ComplaintRow.version, ComplaintRow.created_at,
                ComplaintRow.submitted_at, ComplaintRow.fixed_at, ComplaintRow.closed_at, ComplaintRow.auto_closed,
                ComplaintRow.merged_into_id, ComplaintRow.sla_mode, ComplaintRow.sla_budget, ComplaintRow.sla_elapsed,
                ComplaintRow.sla_running_since, ComplaintRow.sla_due_at, ComplaintRow.sla_risk50_at,
                ComplaintRow.sla_risk80_at, ComplaintRow.sla_breached, ComplaintRow.assignee_id,
                ComplaintRow.priority)


def _limit(limit: int) -> int:
    return max(1, min(limit, MAX_PAGE))


# The lists are the hottest queries of the app. Each shape of query (which filters are present, light or ORM rows)
# is built once with bound parameters: a statement object memoises its cache key, so a request only binds values
# instead of building, coercing and keying a new statement every time.
_LIMIT = bindparam("limit", type_=Integer)


def _base(light: bool) -> Select[Any]:
    if light:
        return cast(Select[Any], select(*LIST_COLUMNS))
    return select(ComplaintRow)


_GUARD = bindparam("guard_token_id", type_=Integer)


@cache
def _queue_statement(after: bool, light: bool, mine: bool = False, guarded: bool = False) -> Select[Any]:
    stmt = _base(light)
    if guarded:
        stmt = stmt.where(token_still_valid(_GUARD))
    stmt = stmt.where(ComplaintRow.sla_due_at.is_not(None))
    if mine:
        stmt = stmt.where(ComplaintRow.assignee_id == bindparam("assignee_id", type_=Integer))
    if after:
        # A row-value comparison: both engines turn it into one range scan of ix_complaints_sla_due_at_id.
        key = tuple_(bindparam("after_due", type_=ComplaintRow.sla_due_at.type), bindparam("after_id", type_=Integer))
        stmt = stmt.where(tuple_(ComplaintRow.sla_due_at, ComplaintRow.id) > key)
    return stmt.order_by(ComplaintRow.sla_due_at, ComplaintRow.id).limit(_LIMIT)


@cache
def _listing_statement(opd: bool, state: bool, before: bool, light: bool, guarded: bool = False) -> Select[Any]:
    stmt = _base(light)
    if guarded:
        stmt = stmt.where(token_still_valid(_GUARD))
    if opd:
        stmt = stmt.where(ComplaintRow.opd_id == bindparam("opd_id", type_=Integer))
    if state:
        stmt = stmt.where(ComplaintRow.state == bindparam("state", type_=ComplaintRow.state.type))
    if before:
        stmt = stmt.where(ComplaintRow.id < bindparam("before_id", type_=Integer))
    return stmt.order_by(ComplaintRow.id.desc()).limit(_LIMIT)


def _fetch(session: Session, stmt: Select[Any], params: dict[str, Any], light: bool) -> list[Any]:
    if light:
        # Plain columns need none of the ORM's loading machinery: run them on the session's connection.
        return list(session.connection().execute(stmt, params).all())
    return list(session.scalars(stmt, params))


def queue(session: Session, principal: Principal, *, cursor: str | None = None, limit: int = PAGE,
          light: bool = False, assignee_id: int | None = None, token_guard: int | None = None) -> Page:
    """Running complaints (submitted, verified, in progress), the least SLA time left first; with
    ``assignee_id`` only those assigned to that person ("my complaints"). With ``token_guard`` (an API token id
    from a cached lookup) the query returns nothing once that token is revoked."""
    if not principal.is_staff:
        raise NotFound("no such page")
    limit = _limit(limit)
    params: dict[str, Any] = {"limit": limit + 1}
    if cursor:
        raw_due, _, raw_id = cursor.rpartition("~")
        try:
            params["after_due"], params["after_id"] = datetime.fromisoformat(raw_due), int(raw_id)
        except ValueError:
            raise NotFound("bad cursor") from None
        if not 0 <= params["after_id"] <= MAX_ID:
            raise NotFound("bad cursor")
        if params["after_due"].tzinfo is None:
            raise NotFound("bad cursor")
    if assignee_id is not None:
        params["assignee_id"] = assignee_id
    if token_guard is not None:
        params["guard_token_id"] = token_guard
    rows = _fetch(session, _queue_statement(bool(cursor), light, assignee_id is not None, token_guard is not None),
                  params, light)
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if rows else None
    # "Z", not "+00:00": a "+" in a URL's query string reads as a space, and cursors travel in URLs unencoded.
    next_cursor = (f"{last.sla_due_at.astimezone(UTC).isoformat().replace('+00:00', 'Z')}~{last.id}"
                   if more and last and last.sla_due_at else None)
    return Page(rows, next_cursor)


def listing(session: Session, principal: Principal, *, state: str | None = None, opd_id: int | None = None,
            cursor: str | None = None, limit: int = PAGE, light: bool = False, token_guard: int | None = None) -> Page:
    """Newest first; OPD users get only their OPD whatever ``opd_id`` says (``token_guard``: as for ``queue``)."""
    limit = _limit(limit)
    params: dict[str, Any] = {"limit": limit + 1}
    # Tenancy: an OPD user's scope comes from the session's principal, never from the request.
    scope = principal.opd_scope()
    if scope is not None:
        params["opd_id"] = scope
    elif opd_id is not None and principal.is_staff:
        params["opd_id"] = opd_id
    if state:
        try:
            params["state"] = str(State(state))
        except ValueError:
            raise NotFound("no such state") from None
    if cursor:
        if not cursor.isdigit() or len(cursor) > 10 or int(cursor) > MAX_ID:
            raise NotFound("bad cursor")
        params["before_id"] = int(cursor)
    if token_guard is not None:
        params["guard_token_id"] = token_guard
    stmt = _listing_statement("opd_id" in params, "state" in params, "before_id" in params, light,
                              token_guard is not None)
    rows = _fetch(session, stmt, params, light)
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, str(rows[-1].id) if more and rows else None)


# The runs feature's ``linked_runs``: the runs linked to a complaint, with their steps (one query).
LinkedRuns = Callable[[Session, int], list[tl.RunFact]]


def timeline(session: Session, principal: Principal, row: ComplaintRow, *, runs: LinkedRuns) -> list[tl.Entry]:
    """The complaint's timeline with every linked remediation run, as ``principal`` may see it.

    ``runs`` reads the linked runs with their steps (the runs feature's ``linked_runs``: one query, however many
    runs and steps); then one query reads the audit rows of the complaint and of those runs. What an OPD user is
    shown, and why, is decided in ``pdn_ops.complaints.timeline``.
    """
    facts = runs(session, row.id)
    subjects = [f"{tl.COMPLAINT_SUBJECT}{row.id}", *(f"{tl.RUN_SUBJECT}{fact.id}" for fact in facts)]
    audits = [tl.AuditFact(a.at, a.actor, a.action, a.subject, a.detail) for a in session.execute(
        select(AuditRow.at, AuditRow.actor, AuditRow.action, AuditRow.subject, AuditRow.detail)
        .where(AuditRow.subject.in_(subjects)).order_by(AuditRow.at, AuditRow.id))]
    return tl.build(audits, facts, tl.Audience.STAFF if principal.is_staff else tl.Audience.OPD)


def versions(session: Session, row: ComplaintRow) -> list[ComplaintVersionRow]:
    stmt = select(ComplaintVersionRow).where(ComplaintVersionRow.complaint_id == row.id)
    return list(session.scalars(stmt.order_by(ComplaintVersionRow.number)))


def attachments(session: Session, row: ComplaintRow) -> list[AttachmentRow]:
    stmt = select(AttachmentRow).where(AttachmentRow.complaint_id == row.id).order_by(AttachmentRow.id)
    return list(session.scalars(stmt))


def notes(session: Session, principal: Principal, row: ComplaintRow) -> list[tuple[WorkNoteRow, str]]:
    """Work notes are Diskominfo's working papers; OPD users see the outcome, not the notes."""
    if not principal.is_staff:
        return []
    stmt = (select(WorkNoteRow, UserRow.display_name).join(UserRow, UserRow.id == WorkNoteRow.author_id)
            .where(WorkNoteRow.complaint_id == row.id).order_by(WorkNoteRow.id))
    return [(note, name) for note, name in session.execute(stmt)]


def attachment(session: Session, principal: Principal, complaint_id: int, attachment_id: int, *,
               record: bool) -> AttachmentRow:
    """An attachment of a complaint the principal may see; a full view is recorded in the timeline."""
    row = get(session, principal, complaint_id)
    found = session.scalar(select(AttachmentRow).where(AttachmentRow.id == attachment_id,
                                                       AttachmentRow.complaint_id == row.id))
    if found is None:
        raise NotFound("no such attachment")
    if record:
        session.add(AuditRow(at=utcnow(), actor=principal.username, action="complaint.photo_view",
                             subject=f"complaint:{row.id}", detail=f"#{found.id}"))
    return found


def inbox(session: Session, principal: Principal, *, limit: int = 50) -> list[NotificationRow]:
    scope = principal.opd_scope()
    if scope is None:
        return []
    stmt = select(NotificationRow).where(NotificationRow.opd_id == scope)
    return list(session.scalars(stmt.order_by(NotificationRow.id.desc()).limit(limit)))


def unread_count(session: Session, principal: Principal) -> int:
    scope = principal.opd_scope()
    if scope is None:
        return 0
    stmt = select(func.count()).select_from(NotificationRow).where(NotificationRow.opd_id == scope,
                                                                   NotificationRow.read_at.is_(None))
    return int(session.scalar(stmt) or 0)


def mark_read(session: Session, principal: Principal) -> None:
    scope = principal.opd_scope()
    if scope is None:
        return
    session.execute(update(NotificationRow).where(NotificationRow.opd_id == scope,
                                                  NotificationRow.read_at.is_(None)).values(read_at=utcnow()))
