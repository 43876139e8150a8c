"""Read-side queries over the fleet (OPDs, VMs, sites) for pages and the API."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pdn_ops.core.db.tables import OpdRow, SiteRow, VmRow


def counts(session: Session) -> dict[str, int]:
    def active(table: type[OpdRow] | type[VmRow] | type[SiteRow]) -> int:
        stmt = select(func.count()).select_from(table).where(table.retired_at.is_(None))
        return int(session.scalar(stmt) or 0)

    return {"opds": active(OpdRow), "vms": active(VmRow), "sites": active(SiteRow)}


def opd_names(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return {r.id: r.name for r in session.execute(select(OpdRow.id, OpdRow.name).where(OpdRow.id.in_(ids)))}


def opd_by_code(session: Session, code: str) -> OpdRow | None:
    return session.scalar(select(OpdRow).where(OpdRow.code == code))


def opds(session: Session) -> list[OpdRow]:
    return list(session.scalars(select(OpdRow).where(OpdRow.retired_at.is_(None)).order_by(OpdRow.name)))
