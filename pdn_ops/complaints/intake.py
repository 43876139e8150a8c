"""The real ``ComplaintIntake``: OPD admins file complaints over WhatsApp or e-mail through the complaints service.

Who may write: a number or address listed among an OPD's contacts in the inventory (user accounts carry no phone
or e-mail), acting as that OPD's admin account (the contact's ``username`` if it names one, else the OPD's first
active admin). Anyone else gets the refusal reply and creates nothing.

The conversation is the smallest the service standard allows: each sender has one open draft; every message adds
its words and photos; the asset is found when a message names a VM or a site (name, host or URL) of that OPD and
no other. Once the draft has an asset, a description of the minimum length and at least one photo, it is filed
with ``complaints.submit`` (same validation, same photo handling, same listeners as the portal) in the inbound
message's transaction. Until then each message gets the draft number plus a message saying what is missing,
listing the OPD's assets when none was named.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from pdn_ops.accounts import Principal, Role, UserRow, principal_of
from pdn_ops.complaints import service as complaints
from pdn_ops.complaints.model import Category
from pdn_ops.complaints.notifications import complaint_link, complaint_number
from pdn_ops.complaints.tables import ComplaintRow, IntakeDraftPhotoRow, IntakeDraftRow
from pdn_ops.core import photos as photo_store
from pdn_ops.core.db.tables import OpdRow, SiteRow, VmRow, utcnow
from pdn_ops.core.errors import ComplaintInvalid, PermissionDenied
from pdn_ops.core.i18n import translate
from pdn_ops.notify import Channel, CheckedPhoto, IntakeReply, Recipient, RegisteredAdmin, enqueue

EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}
MAX_LISTED_ASSETS = 20


def _token_pattern(word: str) -> re.Pattern[str]:
    # A name counts only as a whole word: "web" must not match inside "webmail-01".
    return re.compile(rf"(?<![\w.-]){re.escape(word.lower())}(?![\w-])")


@dataclass
class ComplaintsIntake:
    config: complaints.ComplaintConfig
    public_url: str

    # --- who is writing ----------------------------------------------------------------------------------------

    def registered_admin(self, session: Session, *, channel: Channel, address: str) -> RegisteredAdmin | None:
        field = "whatsapp" if channel is Channel.WHATSAPP else "email"
        wanted = address.strip().lower()
        if not wanted:
            return None
        for opd in session.scalars(select(OpdRow).where(OpdRow.retired_at.is_(None)).order_by(OpdRow.id)):
            for contact in opd.contacts or []:
                if (contact.get(field) or "").strip().lower() != wanted:
                    continue
                user = self._admin_user(session, opd.id, contact.get("username"))
                if user is None:
                    return None  # a contact without an admin account cannot own a complaint
                language = contact.get("language") or user.language
                return RegisteredAdmin(opd_code=opd.code, user_id=user.id, name=contact.get("name"),
                                       language=language if language in ("id", "en") else "id")
        return None

    @staticmethod
    def _admin_user(session: Session, opd_id: int, username: str | None) -> UserRow | None:
        stmt = select(UserRow).where(UserRow.opd_id == opd_id, UserRow.role == str(Role.OPD_ADMIN),
                                     UserRow.active.is_(True)).order_by(UserRow.id)
        if username:
            named = session.scalar(stmt.where(UserRow.username == username))
            if named is not None:
                return named
        return session.scalars(stmt).first()

    # --- the conversation --------------------------------------------------------------------------------------

    def start_or_continue(self, session: Session, *, admin: RegisteredAdmin, channel: Channel, address: str,
                          text: str, photos: list[CheckedPhoto]) -> IntakeReply:
        principal = self._principal(session, admin)
        now = utcnow()
        draft = session.scalars(select(IntakeDraftRow).where(
            IntakeDraftRow.channel == channel.value, IntakeDraftRow.address == address,
            IntakeDraftRow.opd_id == principal.opd_id, IntakeDraftRow.complaint_id.is_(None))
            .order_by(IntakeDraftRow.id).with_for_update()).first()
        created = draft is None
        if draft is None:
            assert principal.opd_id is not None
            draft = IntakeDraftRow(opd_id=principal.opd_id, user_id=principal.user_id, channel=channel.value,
                                   address=address, asset="", texts=[], messages=0, created_at=now, updated_at=now)
            session.add(draft)
            session.flush()
        draft.messages += 1
        draft.updated_at = now
        words = text.strip()
        if words:
            draft.texts = [*draft.texts, words[:complaints.MAX_DESCRIPTION]]
        stored = len(list(session.scalars(select(IntakeDraftPhotoRow.id).where(
            IntakeDraftPhotoRow.draft_id == draft.id))))
        for photo in photos[:max(0, photo_store.MAX_PHOTOS - stored)]:
            session.add(IntakeDraftPhotoRow(draft_id=draft.id, media_type=photo.mime_type, content=photo.content,
                                            created_at=now))
        session.flush()
        choices = self._assets(session, principal)
        if not draft.asset and words:
            named = [ref for ref, names in choices.items() if any(_token_pattern(n).search(words.lower())
                                                                   for n in names)]
            if len(named) == 1:
                draft.asset = named[0]
        filed = self._file_if_complete(session, principal, draft)
        if filed is not None:
            return IntakeReply(number=complaint_number(filed.id), link=complaint_link(self.public_url, filed.id),
                               created=True)
        self._tell_missing(session, admin, channel, address, draft, principal)
        return IntakeReply(number=f"DRAF-{draft.id}", link=f"{self.public_url.rstrip('/')}/complaints/new",
                           created=created)

    @staticmethod
    def _principal(session: Session, admin: RegisteredAdmin) -> Principal:
        user = session.get(UserRow, admin.user_id) if admin.user_id is not None else None
        if user is None or not user.active or user.role != Role.OPD_ADMIN:
            raise PermissionDenied("the sender is no longer an active OPD admin")
        return principal_of(user)

    @staticmethod
    def _assets(session: Session, principal: Principal) -> dict[str, list[str]]:
        """Each asset of the admin's OPD with the words that name it (VM name; site name, host and URL)."""
        found: dict[str, list[str]] = {}
        for vm in session.scalars(select(VmRow).where(VmRow.opd_id == principal.opd_id,
                                                      VmRow.retired_at.is_(None)).order_by(VmRow.name)):
            found[f"vm:{vm.id}"] = [vm.name]
        for site in session.scalars(select(SiteRow).where(SiteRow.opd_id == principal.opd_id,
                                                          SiteRow.retired_at.is_(None)).order_by(SiteRow.url)):
            host = urlsplit(site.url).hostname or ""
            found[f"site:{site.id}"] = [n for n in (site.name, host, site.url.rstrip("/")) if n]
        return found

    def _file_if_complete(self, session: Session, principal: Principal,
                          draft: IntakeDraftRow) -> ComplaintRow | None:
        description = "\n".join(draft.texts).strip()[:complaints.MAX_DESCRIPTION]
        stored = list(session.scalars(select(IntakeDraftPhotoRow).where(
            IntakeDraftPhotoRow.draft_id == draft.id).order_by(IntakeDraftPhotoRow.id)))
        if not draft.asset or len(description) < complaints.MIN_DESCRIPTION or not stored:
            return None
        uploads = [(f"{draft.channel}-{i}.{EXTENSIONS.get(p.media_type, 'jpg')}", p.content)
                   for i, p in enumerate(stored, 1)]
        form = complaints.Draft(asset=draft.asset, category=str(Category.OTHER), description=description)
        try:
            row = complaints.submit(session, principal, form, uploads, config=self.config)
        except ComplaintInvalid:
            return None  # e.g. the asset was retired meanwhile: the draft stays open and the reply says so
        draft.complaint_id = row.id
        for photo in stored:
            session.delete(photo)  # the complaint keeps its own re-encoded copies
        session.flush()
        return row

    def _tell_missing(self, session: Session, admin: RegisteredAdmin, channel: Channel, address: str,
                      draft: IntakeDraftRow, principal: Principal) -> None:
        language = admin.language
        parts: list[str] = []
        if not draft.asset:
            labels = [a.label for a in complaints.assets(session, principal)][:MAX_LISTED_ASSETS]
            parts.append(translate("intake.missing.asset", language, assets="; ".join(labels) or "-"))
        if len("\n".join(draft.texts).strip()) < complaints.MIN_DESCRIPTION:
            parts.append(translate("intake.missing.description", language))
        if not session.scalar(select(IntakeDraftPhotoRow.id).where(IntakeDraftPhotoRow.draft_id == draft.id)):
            parts.append(translate("intake.missing.photo", language))
        if not parts:
            parts.append(translate("intake.missing.invalid", language))
        enqueue(session, event="intake_incomplete",
                recipients=[Recipient(channel, address, language, admin.user_id)],
                params={"number": f"DRAF-{draft.id}", "missing": " ".join(parts)},
                idempotency_key=f"intake-draft:{draft.id}:{draft.messages}")

