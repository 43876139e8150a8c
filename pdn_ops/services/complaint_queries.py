"""Read side of complaints: the engineers' queue, an OPD's list, the timeline, attachments and the OPD inbox.

Lists use keyset pagination (a cursor naming the last row seen), never OFFSET, so page 2,000 costs what page 1
costs; the indexes in ``complaint_tables`` match the orderings here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, or_, select, update
from sqlalchemy.orm import Session

from pdn_ops.db.complaint_tables import (
    AttachmentRow,
    ComplaintRow,
    ComplaintVersionRow,
    NotificationRow,
    UserRow,
    WorkNoteRow,
)
from pdn_ops.db.tables import AuditRow, OpdRow, utcnow
from pdn_ops.domain.access import Principal
from pdn_ops.domain.complaints import State
from pdn_ops.errors import NotFound
from pdn_ops.services.complaints import get, scoped

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
                ComplaintRow.sla_risk80_at, ComplaintRow.sla_breached)


def _fetch(session: Session, stmt: Select[Any], light: bool, limit: int) -> list[Any]:
    if light:
        narrow = stmt.with_only_columns(*LIST_COLUMNS)
        return list(session.execute(narrow.limit(limit + 1)).all())
    return list(session.scalars(stmt.limit(limit + 1)))


def _limit(limit: int) -> int:
    return max(1, min(limit, MAX_PAGE))


def queue(session: Session, principal: Principal, *, cursor: str | None = None, limit: int = PAGE,
          light: bool = False) -> Page:
    """Running complaints (submitted, verified, in progress), the least SLA time left first."""
    if not principal.is_staff:
        raise NotFound("no such page")
    limit = _limit(limit)
    stmt = select(ComplaintRow).where(ComplaintRow.sla_due_at.is_not(None))
    if cursor:
        raw_due, _, raw_id = cursor.rpartition("~")
        try:
            due, last_id = datetime.fromisoformat(raw_due), int(raw_id)
        except ValueError:
            raise NotFound("bad cursor") from None
        stmt = stmt.where(or_(ComplaintRow.sla_due_at > due,
                              and_(ComplaintRow.sla_due_at == due, ComplaintRow.id > last_id)))
    rows = _fetch(session, stmt.order_by(ComplaintRow.sla_due_at, ComplaintRow.id), light, limit)
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if rows else None
    next_cursor = f"{last.sla_due_at.isoformat()}~{last.id}" if more and last and last.sla_due_at else None
    return Page(rows, next_cursor)


def listing(session: Session, principal: Principal, *, state: str | None = None, opd_id: int | None = None,
            cursor: str | None = None, limit: int = PAGE, light: bool = False) -> Page:
    """Newest first; OPD users get only their OPD whatever ``opd_id`` says."""
    limit = _limit(limit)
    stmt = scoped(select(ComplaintRow), principal)
    if opd_id is not None and principal.is_staff:
        stmt = stmt.where(ComplaintRow.opd_id == opd_id)
    if state:
        try:
            stmt = stmt.where(ComplaintRow.state == str(State(state)))
        except ValueError:
            raise NotFound("no such state") from None
    if cursor:
        if not cursor.isdigit():
            raise NotFound("bad cursor")
        stmt = stmt.where(ComplaintRow.id < int(cursor))
    rows = _fetch(session, stmt.order_by(ComplaintRow.id.desc()), light, limit)
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, str(rows[-1].id) if more and rows else None)


def opd_names(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return {r.id: r.name for r in session.execute(select(OpdRow.id, OpdRow.name).where(OpdRow.id.in_(ids)))}


def opd_by_code(session: Session, code: str) -> OpdRow | None:
    return session.scalar(select(OpdRow).where(OpdRow.code == code))


def opds(session: Session) -> list[OpdRow]:
    return list(session.scalars(select(OpdRow).where(OpdRow.retired_at.is_(None)).order_by(OpdRow.name)))


def timeline(session: Session, row: ComplaintRow) -> list[AuditRow]:
    stmt = select(AuditRow).where(AuditRow.subject == f"complaint:{row.id}").order_by(AuditRow.at, AuditRow.id)
    return list(session.scalars(stmt))


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
