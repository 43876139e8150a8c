"""Keys the templates choose at run time (tk(family, value)) exist for every value, in both languages."""

from __future__ import annotations

import re
from pathlib import Path

from pdn_ops.accounts.model import Role
from pdn_ops.complaints.model import Action, Category, Priority, State
from pdn_ops.complaints.service import NOTIFY_OPD
from pdn_ops.complaints.sla import SlaStatus
from pdn_ops.core.i18n import catalogue
from pdn_ops.runs.model import Risk, StepStatus
from pdn_ops.runs.model import State as RunState
from remediation import registry

PACKAGE = Path(__file__).resolve().parents[2] / "pdn_ops"
FAMILIES: dict[str, set[str]] = {
    "complaints.state": {str(s) for s in State},
    "complaints.category": {str(c) for c in Category},
    "complaints.action": {"verify", "return", "start", "fix", "confirm", "reopen", "merge", "edit"},
    "complaints.sla": {str(s) for s in SlaStatus},
    "complaints.report.sla": {"met", "breached", "running", "none"},
    "complaints.event": {str(a) for a in Action} | {"merged_from", "note", "photo_view"},
    "role": {str(r) for r in Role},
    "inbox.kind": set(NOTIFY_OPD.values()),
    "admins.action": {"assign", "revoke"},
    "users.status": {"active", "inactive", "all"},
    "users.done": {"created", "contact", "role", "deactivated", "reactivated", "password"},
    "complaints.priority": {str(p) for p in Priority},
    "users.audit": {f"user.{a}" for a in ("create", "contact", "deactivate", "reactivate", "login", "password",
                                          "password_reset", "role")},
    "remediation.state": {str(s) for s in RunState},
    "remediation.step_state": {str(s) for s in StepStatus},
    "remediation.risk": {str(r) for r in Risk},
    "remediation.playbook": set(registry.PLAYBOOKS),
    "remediation.closure": {"confirming", "confirmed", "ineffective"},
    "remediation.step_name": set(),  # tests/console/test_resolution_report.py reads every playbook's steps
}


def test_every_family_used_by_a_template_is_complete() -> None:
    used = set()
    for template in PACKAGE.rglob("templates/**/*.html"):
        used |= set(re.findall(r"""\btk\(\s*['"]([\w.]+)['"]""", template.read_text()))
    assert used <= set(FAMILIES), f"describe these families in FAMILIES: {sorted(used - set(FAMILIES))}"
    keys = set(catalogue())
    missing = sorted(f"{family}.{value}" for family in used for value in FAMILIES[family]
                     if f"{family}.{value}" not in keys)
    assert not missing, missing
