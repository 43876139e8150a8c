"""A small real ComplaintIntake for tests: admins are the inventory's OPD contacts, drafts live in a test table.

This is the seam the complaint code implements for real (users with roles and phone numbers, complaints with
versions and photos). It runs in the inbound handler's transaction, like the real one will.
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, Integer, MetaData, String, Table, insert, select, update
from sqlalchemy.orm import Session

from pdn_ops.core.db.tables import OpdRow
from pdn_ops.notify.intake import IntakeReply, RegisteredAdmin
from pdn_ops.notify.media import CheckedPhoto
from pdn_ops.notify.model import Channel

metadata = MetaData()
drafts = Table(
    "test_intake_drafts", metadata,
    Column("id", Integer, primary_key=True),
    Column("opd_code", String(63), nullable=False),
    Column("address", String(320), nullable=False),
    Column("texts", JSON, nullable=False),
    Column("photos", JSON, nullable=False),
)


class ContactsIntake:
    def __init__(self, public_url: str = "http://127.0.0.1:8000") -> None:
        self.public_url = public_url

    def registered_admin(self, session: Session, *, channel: Channel, address: str) -> RegisteredAdmin | None:
        field = "whatsapp" if channel is Channel.WHATSAPP else "email"
        wanted = address.lower()
        for opd in session.scalars(select(OpdRow).where(OpdRow.retired_at.is_(None)).order_by(OpdRow.id)):
            for contact in opd.contacts:
                if (contact.get(field) or "").lower() == wanted:
                    return RegisteredAdmin(opd_code=opd.code, name=contact.get("name"),
                                           language=contact.get("language", "id"))
        return None

    def start_or_continue(self, session: Session, *, admin: RegisteredAdmin, channel: Channel, address: str,
                          text: str, photos: list[CheckedPhoto]) -> IntakeReply:
        row = session.execute(select(drafts).where(drafts.c.opd_code == admin.opd_code,
                                                   drafts.c.address == address)).first()
        kinds = [p.mime_type for p in photos]
        if row is None:
            draft_id = session.execute(insert(drafts).values(
                opd_code=admin.opd_code, address=address, texts=[text], photos=kinds).returning(drafts.c.id)).scalar_one()
            created = True
        else:
            draft_id = row.id
            session.execute(update(drafts).where(drafts.c.id == row.id).values(
                texts=[*row.texts, text], photos=[*row.photos, *kinds]))
            created = False
        number = f"PDN-T-{draft_id:05d}"
        return IntakeReply(number=number, link=f"{self.public_url}/complaints/{number}", created=created)
