"""The complaint procedure's messages over WhatsApp and e-mail: a ``ComplaintListeners`` listener over the outbox.

Runs inside the transaction of the state change (``complaints._transition``), so a message exists exactly when
the change commits. The OPD is reached through the contacts of its inventory entry; each distinct address gets
one message per channel. Engineers are reached through the optional phone and e-mail a supervisor sets on their
account (``engineer_recipients``), for SLA-at-risk alerts. The idempotency key names the
complaint, the event and the instant of the change, so replaying the same change enqueues nothing new while a
later change of the same kind (returned twice) is a new message.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from pdn_ops.accounts import Role, UserRow
from pdn_ops.complaints.model import RUNNING_STATES, Action
from pdn_ops.complaints.service import ComplaintEvent, Listener
from pdn_ops.complaints.tables import ComplaintRow
from pdn_ops.core.db.tables import OpdRow
from pdn_ops.notify import Channel, Recipient, enqueue

# Step 5 of the procedure ("inform the OPD") and the other changes the OPD hears about; start, reopen and merge
# are visible in the portal only (the OPD caused them, or a duplicate is folded into a complaint it already has).
EVENT_OF_ACTION: dict[str, str] = {
    Action.SUBMIT: "complaint_received",
    Action.RESUBMIT: "complaint_received",
    Action.RETURN: "complaint_returned",
    Action.VERIFY: "complaint_verified",
    Action.FIX: "complaint_fixed",
    Action.CONFIRM: "complaint_closed",
    Action.AUTO_CLOSE: "complaint_closed",
}


def complaint_number(complaint_id: int) -> str:
    """The number people see, the same as in the portal's lists."""
    return f"#{complaint_id}"


def complaint_link(public_url: str, complaint_id: int) -> str:
    return f"{public_url.rstrip('/')}/complaints/{complaint_id}"


def contact_recipients(contacts: Iterable[dict[str, str]]) -> list[Recipient]:
    """One recipient per distinct (channel, address) among an OPD's contacts; malformed entries are skipped."""
    found: dict[tuple[Channel, str], Recipient] = {}
    for contact in contacts:
        language = contact.get("language", "id")
        language = language if language in ("id", "en") else "id"
        for channel, field in ((Channel.WHATSAPP, "whatsapp"), (Channel.EMAIL, "email")):
            address = (contact.get(field) or "").strip()
            if channel is Channel.EMAIL:
                address = address.lower()
            if not address or (channel, address) in found:
                continue
            try:
                found[(channel, address)] = Recipient(channel, address, language)
            except ValueError:
                continue  # the inventory loader validates contacts; a bad one must not block the state change
    return list(found.values())


def opd_recipients(session: Session, opd_id: int) -> list[Recipient]:
    opd = session.get(OpdRow, opd_id)
    return contact_recipients(opd.contacts or []) if opd is not None else []


def engineer_recipients(session: Session) -> list[Recipient]:
    """Active engineers with a WhatsApp number and/or an e-mail address on their account, in their language."""
    rows = session.execute(select(UserRow.id, UserRow.phone, UserRow.email, UserRow.language).where(
        UserRow.role == str(Role.ENGINEER), UserRow.active.is_(True),
        or_(UserRow.phone.is_not(None), UserRow.email.is_not(None))).order_by(UserRow.id))
    found: list[Recipient] = []
    for row in rows:
        language = row.language if row.language in ("id", "en") else "id"
        for channel, address in ((Channel.WHATSAPP, row.phone), (Channel.EMAIL, row.email)):
            if not address:
                continue
            try:
                found.append(Recipient(channel, address, language, user_id=row.id))
            except ValueError:
                continue  # validated when saved; a bad legacy value must not stop the others' alerts
    return found


def make_listener(public_url: str) -> Listener:
    def notify_opd(session: Session, event: ComplaintEvent) -> None:
        name = EVENT_OF_ACTION.get(event.action)
        if name is None:
            return
        recipients = opd_recipients(session, event.opd_id)
        if not recipients:
            return
        params: dict[str, object] = {"number": complaint_number(event.complaint_id),
                                     "link": complaint_link(public_url, event.complaint_id)}
        if name == "complaint_returned":
            params["reason"] = event.reason or "-"
        key = f"complaint:{event.complaint_id}:{name}:{event.at.isoformat()}"
        enqueue(session, event=name, recipients=recipients, params=params, idempotency_key=key, now=event.at)

    return notify_opd


def enqueue_sla_at_risk(session: Session, now: datetime, *, engineers: Sequence[Recipient],
                        public_url: str) -> int:
    """Alert engineers about running complaints past 50 % or 80 % of their SLA; returns messages created.

    Only the highest threshold crossed is sent (a late run past 80 % does not send a stale 50 % alert too). The
    key names the complaint version, so running this every minute sends each alert once, and a corrected
    (resubmitted) complaint can alert again.
    """
    if not engineers:
        return 0
    stmt = select(ComplaintRow).where(ComplaintRow.state.in_([str(s) for s in RUNNING_STATES]),
                                      ComplaintRow.sla_running_since.is_not(None),
                                      ComplaintRow.sla_risk50_at <= now).order_by(ComplaintRow.id)
    created = 0
    for row in session.scalars(stmt):
        percent = 80 if row.sla_risk80_at is not None and row.sla_risk80_at <= now else 50
        created += len(enqueue(
            session, event="sla_at_risk", recipients=list(engineers), now=now,
            params={"number": complaint_number(row.id), "percent": percent,
                    "link": complaint_link(public_url, row.id)},
            idempotency_key=f"complaint:{row.id}:sla_at_risk:{percent}:v{row.version}"))
    return created
