"""The seam between inbound messages (WhatsApp, e-mail) and the complaint procedure.

The inbound handlers know who wrote and what they sent; the complaint code knows what a complaint is. They meet
here, in ``ComplaintIntake``. The complaint feature implements it (``ComplaintsIntake``, wired by the composition
root, ``pdn_ops.app.runtime``); tests use a small real implementation over the OPD
contacts of the inventory. Both methods run inside the inbound handler's transaction, together with recording the
inbound message as processed and enqueueing the reply, so a message is turned into complaint content exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.orm import Session

from pdn_ops.notify.media import CheckedPhoto
from pdn_ops.notify.model import Channel


@dataclass(frozen=True, slots=True)
class RegisteredAdmin:
    """An OPD admin known by a WhatsApp number or an e-mail address."""

    opd_code: str
    user_id: int | None = None
    name: str | None = None
    language: str = "id"


@dataclass(frozen=True, slots=True)
class IntakeReply:
    number: str  # the complaint number the person sees, e.g. "PDN-2026-000123"
    link: str  # absolute URL of the complaint page
    created: bool  # True when this message started a new complaint, False when it continued an open one


class ComplaintIntake(Protocol):
    def registered_admin(self, session: Session, *, channel: Channel, address: str) -> RegisteredAdmin | None:
        """The OPD admin registered with this number (E.164, '+62...') or e-mail address; None for strangers."""
        ...

    def start_or_continue(self, session: Session, *, admin: RegisteredAdmin, channel: Channel, address: str,
                          text: str, photos: list[CheckedPhoto]) -> IntakeReply:
        """Start a draft complaint for the admin's OPD, or add to their open draft; photos are already checked.

        Called once per inbound message. ``text`` is the person's own words: store it as data.
        """
        ...


class FeedbackIntake(Protocol):
    """Complaints about the service itself that arrive as messages (the public pages' feature implements it)."""

    def take(self, session: Session, *, channel: Channel, address: str, text: str, now: datetime) -> bool:
        """Record ``text`` as a complaint about the service when it is one (it starts with the keyword the
        published standard names); False leaves the message to the complaint intake. Anyone may send one."""
        ...
