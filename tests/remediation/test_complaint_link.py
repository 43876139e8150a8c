"""The closure's complaint link against the real complaints service: fixed, the OPD informed, with evidence."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from pdn_ops.complaints import service as complaints
from pdn_ops.complaints.model import Action, State
from pdn_ops.complaints.service import ComplaintConfig
from pdn_ops.complaints.tables import NotificationRow
from pdn_ops.core.db.tables import AuditRow
from pdn_ops.runs.closure import complaint_link
from tests.complaints.test_complaint_service import Named, _file

EVIDENCE = {"summary": "restart service: succeeded; before failed, after active",
            "checks_after": {"site:https://x/": [{"ok": True}, {"ok": True}, {"ok": True}]}, "run_log": []}


def test_confirmed_run_marks_the_verified_complaint_fixed_and_informs_the_opd(session: Session,
                                                                              tmp_path: Path) -> None:
    named = Named(session)
    config = ComplaintConfig(data_dir=tmp_path)
    complaint_id = _file(session, named, config)
    complaints.act(session, named.users["engineer"], complaint_id, Action.VERIFY, config=config)
    complaint_link(config)(complaint_id, EVIDENCE, session)
    row = complaints.get(session, named.users["engineer"], complaint_id)
    assert row.state == State.FIXED
    kinds = [n.kind for n in session.scalars(select(NotificationRow).where(NotificationRow.complaint_id == complaint_id))]
    assert "fixed" in kinds
    fixed = session.scalar(select(AuditRow).where(AuditRow.action == "complaint.fix",
                                                  AuditRow.subject == f"complaint:{complaint_id}"))
    assert fixed is not None and fixed.actor == "pdn-ops"
    # What reaches the OPD's inbox carries no machine text: no run summary, no internal target names.
    details = session.scalars(select(NotificationRow.detail).where(NotificationRow.complaint_id == complaint_id))
    assert not [d for d in details if "restart service" in d or "site:" in d]


def test_unverified_complaint_is_left_to_the_engineer(session: Session, tmp_path: Path) -> None:
    named = Named(session)
    config = ComplaintConfig(data_dir=tmp_path)
    complaint_id = _file(session, named, config)
    complaint_link(config)(complaint_id, EVIDENCE, session)
    assert complaints.get(session, named.users["engineer"], complaint_id).state == State.SUBMITTED
    assert session.scalar(select(AuditRow).where(AuditRow.action == "remediation.complaint_not_updated")) is not None
