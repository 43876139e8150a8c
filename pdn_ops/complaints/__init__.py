"""The complaint procedure of the service standard: intake, states, SLA, reports, pages and API.

This module is the feature's public face: other features import from here, never from its modules."""

from __future__ import annotations

from pdn_ops.complaints.model import Action, State
from pdn_ops.complaints.notifications import complaint_link, complaint_number, engineer_recipients, opd_recipients
from pdn_ops.complaints.parts import PlaybookChoice
from pdn_ops.complaints.pdf import Document, letterhead, signatures
from pdn_ops.complaints.reports import Office, safe_cell
from pdn_ops.complaints.service import ComplaintEvent, act, get
from pdn_ops.complaints.tables import ComplaintRow
from pdn_ops.complaints.timeline import RunFact, StepFact

__all__ = [
    "Action",
    "ComplaintEvent",
    "ComplaintRow",
    "Document",
    "Office",
    "PlaybookChoice",
    "RunFact",
    "State",
    "StepFact",
    "act",
    "complaint_link",
    "complaint_number",
    "engineer_recipients",
    "get",
    "letterhead",
    "opd_recipients",
    "safe_cell",
    "signatures",
]
