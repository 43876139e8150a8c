"""Plain types shared by the outbox, the providers and the inbound handlers (no I/O, no database)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final


class Channel(StrEnum):
    WHATSAPP = "whatsapp"
    EMAIL = "email"


class Status(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"  # claimed by a worker; the outcome is not recorded yet
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


# Callbacks may arrive out of order (read before delivered): a status only ever moves to a higher rank.
STATUS_RANK: Final = {Status.QUEUED: 0, Status.SENDING: 1, Status.FAILED: 2, Status.SENT: 3,
                      Status.DELIVERED: 4, Status.READ: 5}



@dataclass(frozen=True, slots=True)
class EventSpec:
    """One kind of notification: its catalogue keys, whether it bypasses quiet hours, and its template fields."""

    name: str
    urgent: bool
    # The ordered parameters of the approved WhatsApp template (the Cloud API takes them positionally).
    template_params: tuple[str, ...]


EVENTS: Final[dict[str, EventSpec]] = {spec.name: spec for spec in (
    EventSpec("complaint_received", False, ("number", "link")),
    EventSpec("complaint_returned", False, ("number", "reason", "link")),
    EventSpec("complaint_verified", False, ("number", "link")),
    EventSpec("complaint_fixed", False, ("number", "link")),
    EventSpec("complaint_closed", False, ("number", "link")),
    EventSpec("sla_at_risk", True, ("number", "percent", "link")),
    EventSpec("remediation_failed", True, ("number", "playbook", "link")),
    # An alert from Alertmanager (pdn_ops.alerts): firing or resolved, with the playbooks that fit its target.
    EventSpec("health_alert", True, ("alert", "state", "link", "playbooks")),
    # Replies to a message the person just sent: always immediate, never held for quiet hours.
    EventSpec("intake_reply", True, ("number", "link")),
    EventSpec("intake_refused", True, ()),
    EventSpec("intake_media_refused", True, ("reason",)),
    # A draft sent over WhatsApp/e-mail still lacks something the service standard requires (wiring: intake).
    EventSpec("intake_incomplete", True, ("number", "missing")),
    # A complaint reached Selesai: the OPD is asked, once, how the service did (pdn_ops.survey).
    EventSpec("survey_invitation", False, ("number", "link")),
    # A complaint about the service itself arrived over WhatsApp or e-mail (pdn_ops.public): acknowledged at once.
    EventSpec("service_feedback_received", True, ()),
)}

# Events engineers receive ("engineers get SLA-at-risk and remediation-failed alerts").
ENGINEER_EVENTS: Final = frozenset({"sla_at_risk", "remediation_failed", "health_alert"})


@dataclass(frozen=True, slots=True)
class Recipient:
    """Where one message goes: an address on a channel, in a language; ``user_id`` selects stored preferences.

    The address is checked where messages enter the outbox (``outbox.enqueue``, with ``pdn_ops.core.contacts``)."""

    channel: Channel
    address: str
    language: str = "id"
    user_id: int | None = None

    def __post_init__(self) -> None:
        if self.language not in ("id", "en"):
            raise ValueError("language must be 'id' or 'en'")


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """What a provider needs to send one outbox row, already rendered in the recipient's language."""

    idempotency_key: str
    event: str
    channel: Channel
    address: str
    language: str
    subject: str
    text: str
    html: str | None = None
    template_name: str | None = None
    template_params: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SendResult:
    provider: str
    provider_message_id: str | None


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A provider's delivery report: for our message id, or for our idempotency key echoed back."""

    provider_message_id: str
    status: Status
    at_epoch: int | None = None
    idempotency_key: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class InboundMedia:
    media_id: str
    mime_type: str | None = None


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message a person sent us: a WhatsApp message or an e-mail, before any lookup."""

    channel: Channel
    external_id: str
    sender: str
    text: str
    media: tuple[InboundMedia, ...] = ()
    # E-mail carries its images inline; WhatsApp carries media ids fetched later through the provider.
    attachments: tuple[tuple[str, bytes], ...] = field(default=(), repr=False)
