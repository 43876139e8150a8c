"""The complaint procedure of the service standard: intake, states, SLA, reports, pages and API.

This module is the feature's public face: other features import from here, never from its modules."""

from __future__ import annotations

from pdn_ops.complaints.model import Action, State
from pdn_ops.complaints.notifications import engineer_recipients
from pdn_ops.complaints.parts import PlaybookChoice
from pdn_ops.complaints.service import act, get
from pdn_ops.complaints.tables import ComplaintRow
from pdn_ops.complaints.timeline import RunFact, StepFact

__all__ = [
    "Action",
    "ComplaintRow",
    "PlaybookChoice",
    "RunFact",
    "State",
    "StepFact",
    "act",
    "engineer_recipients",
    "get",
]
