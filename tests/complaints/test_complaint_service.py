"""The procedure at the service layer, on SQLite and PostgreSQL: transitions, SLA, versions, merge, auto-close."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pdn_ops.accounts import service as accounts
from pdn_ops.accounts.model import Role
from pdn_ops.accounts.tables import UserRow
from pdn_ops.complaints import queries as complaint_queries
from pdn_ops.complaints import service as complaints
from pdn_ops.complaints.model import Action, State
from pdn_ops.complaints.service import ComplaintConfig, ComplaintEvent, ComplaintListeners, Draft
from pdn_ops.complaints.sla import SlaStatus
from pdn_ops.complaints.tables import AttachmentRow, ComplaintVersionRow, NotificationRow
from pdn_ops.core.db.tables import AuditRow, SiteRow, VmRow
from pdn_ops.core.errors import ComplaintInvalid, NotFound, PermissionDenied, PhotoRefused, TransitionError
from pdn_ops.core.inventory import load_inventory
from pdn_ops.core.inventory_sync import sync_inventory
from pdn_ops.runs.timeline_facts import linked_runs
from tests.complaints.world import ROOT, jpeg, principal_named

T0 = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)  # Monday 09:00 WIB


class Named:
    def __init__(self, session: Session) -> None:
        sync_inventory(session, load_inventory(ROOT / "inventory.example.yaml"))
        accounts.ensure_demo_accounts(session)
        self.users = {u: principal_named(session, u) for u in ("admin-dinkes", "head-dinkes", "admin-disdik",
                                                               "engineer", "supervisor")}
        self.vm = {v.name: v.id for v in session.scalars(select(VmRow))}
        self.site = {s.url: s.id for s in session.scalars(select(SiteRow))}


@pytest.fixture
def named(session: Session) -> Named:
    return Named(session)


@pytest.fixture
def config(tmp_path: Path) -> ComplaintConfig:
    return ComplaintConfig(data_dir=tmp_path)


def _file(session: Session, named: Named, config: ComplaintConfig, now: datetime = T0) -> int:
    draft = Draft(asset=f"vm:{named.vm['web-dinkes']}", category="site_down", description="Portal tidak bisa dibuka")
    return complaints.submit(session, named.users["admin-dinkes"], draft, [("a.jpg", jpeg())], config=config,
                             now=now).id


def test_the_six_steps_with_a_return_keep_every_version_and_pause_the_sla(session, named, config) -> None:
    seen: list[ComplaintEvent] = []
    config = ComplaintConfig(data_dir=config.data_dir, listeners=ComplaintListeners([lambda s, e: seen.append(e)]))
    admin, eng = named.users["admin-dinkes"], named.users["engineer"]
    cid = _file(session, named, config)
    row = complaints.get(session, eng, cid)
    assert row.state == State.SUBMITTED and row.sla_due_at == T0 + timedelta(days=7)
    complaints.act(session, eng, cid, Action.RETURN, reason="Foto buram", config=config, now=T0 + timedelta(days=1))
    assert row.sla_due_at is None, "the clock pauses while the OPD corrects"
    draft = Draft(asset=f"site:{named.site['http://127.0.10.1/']}", category="slow", description="Portal lambat sekali")
    complaints.resubmit(session, admin, cid, draft, [], config=config, now=T0 + timedelta(days=3))
    assert row.version == 2 and row.site_id is not None and row.vm_id is None
    assert row.sla_due_at == T0 + timedelta(days=9), "two paused days are added to the deadline"
    for step, day in ((Action.VERIFY, 3), (Action.START, 4), (Action.FIX, 5)):
        complaints.act(session, eng, cid, step, config=config, now=T0 + timedelta(days=day))
    assert row.state == State.FIXED and row.sla_running_since is None and not row.sla_breached
    complaints.act(session, admin, cid, Action.CONFIRM, config=config, now=T0 + timedelta(days=6))
    assert row.state == State.CLOSED and not row.auto_closed
    versions = session.scalars(select(ComplaintVersionRow).where(ComplaintVersionRow.complaint_id == cid)).all()
    assert [(v.number, v.category) for v in versions] == [(1, "site_down"), (2, "slow")]
    assert [e.action for e in seen] == ["submit", "return", "resubmit", "verify", "start", "fix", "confirm"]
    assert [a.action for a in complaint_queries.timeline(session, eng, row, runs=linked_runs)] == [f"complaint.{e.action}" for e in seen]
    kinds = session.scalars(select(NotificationRow.kind).where(NotificationRow.complaint_id == cid)).all()
    assert kinds == ["returned", "verified", "fixed"], "the OPD's inbox is told"
    view = complaints.sla_view(row, T0 + timedelta(days=30))
    assert view.status is SlaStatus.OK and view.remaining == 4 * 86400, "3 of 7 days used, frozen at resolution"


def test_reopen_resumes_the_clock_and_auto_close_is_noted(session, named, config) -> None:
    admin, eng = named.users["admin-dinkes"], named.users["engineer"]
    cid = _file(session, named, config)
    complaints.act(session, eng, cid, Action.VERIFY, config=config, now=T0)
    complaints.act(session, eng, cid, Action.FIX, config=config, now=T0 + timedelta(days=1))
    with pytest.raises(TransitionError, match="needs a reason"):
        complaints.act(session, admin, cid, Action.REOPEN, config=config, now=T0 + timedelta(days=2))
    complaints.act(session, admin, cid, Action.REOPEN, reason="Masih mati", config=config, now=T0 + timedelta(days=2))
    row = complaints.get(session, admin, cid)
    assert row.state == State.IN_PROGRESS and row.sla_due_at == T0 + timedelta(days=8)
    complaints.act(session, eng, cid, Action.FIX, config=config, now=T0 + timedelta(days=3))
    assert complaints.close_stale(session, T0 + timedelta(days=5)) == []
    assert complaints.close_stale(session, T0 + timedelta(days=6, seconds=1)) == [cid]
    assert row.state == State.CLOSED and row.auto_closed
    assert complaint_queries.timeline(session, eng, row, runs=linked_runs)[-1].actor == "system"


def test_another_opds_complaint_is_exactly_a_missing_one(session, named, config) -> None:
    cid = _file(session, named, config)
    other = named.users["admin-disdik"]
    for probe in (lambda: complaints.get(session, other, cid), lambda: complaints.get(session, other, 999999)):
        with pytest.raises(NotFound, match="no such complaint"):
            probe()
    with pytest.raises(NotFound):
        complaint_queries.attachment(session, other, cid, 1, record=False)
    assert complaint_queries.listing(session, other, opd_id=named.users["admin-dinkes"].opd_id).rows == [], \
        "an OPD user cannot widen the scope with request data"
    draft = Draft(asset=f"vm:{named.vm['web-dinkes']}", category="other", description="bukan VM milik kami")
    with pytest.raises(ComplaintInvalid) as refused:
        complaints.submit(session, other, draft, [("a.jpg", jpeg())], config=config)
    assert refused.value.errors == {"asset": "complaints.error.asset"}
    with pytest.raises(PermissionDenied):
        complaints.submit(session, named.users["head-dinkes"], draft, [("a.jpg", jpeg())], config=config)


def test_engineers_merge_a_duplicate_and_the_queue_is_sorted_by_time_left(session, named, config) -> None:
    eng = named.users["engineer"]
    first = _file(session, named, config, now=T0)
    second = _file(session, named, config, now=T0 + timedelta(hours=1))
    third = _file(session, named, config, now=T0 - timedelta(hours=1))
    ids = [r.id for r in complaint_queries.queue(session, eng, limit=200).rows]
    assert ids.index(third) < ids.index(first) < ids.index(second)
    page = complaint_queries.queue(session, eng, limit=1)
    assert page.next_cursor is not None
    complaints.act(session, eng, second, Action.MERGE, merge_into=first, config=config, now=T0 + timedelta(hours=2))
    row = complaints.get(session, eng, second)
    assert row.state == State.MERGED and row.merged_into_id == first and row.sla_due_at is None
    with pytest.raises(TransitionError):
        complaints.act(session, eng, third, Action.MERGE, merge_into=third, config=config)
    with pytest.raises(NotFound):
        complaint_queries.queue(session, named.users["admin-dinkes"])


def test_nothing_is_hard_deleted_and_photos_are_all_or_nothing(session, named, config) -> None:
    before = session.scalar(select(func.count()).select_from(AttachmentRow))
    draft = Draft(asset=f"vm:{named.vm['web-dinkes']}", category="site_down", description="Portal tidak bisa dibuka")
    with pytest.raises(PhotoRefused):
        complaints.submit(session, named.users["admin-dinkes"], draft, [("a.jpg", jpeg()), ("b.jpg", b"<?php")],
                          config=config)
    assert session.scalar(select(func.count()).select_from(AttachmentRow)) == before
    assert list(config.data_dir.glob("attachments/*")) == [], "no file of a refused submission is kept"
    head = named.users["head-dinkes"]
    made = accounts.assign_admin(session, head, username="operator2", display_name="Operator", password="x" * 12)
    accounts.revoke_admin(session, head, made.id, note="pindah tugas")
    assert session.get(UserRow, made.id) is not None and not session.get(UserRow, made.id).active
    actions = session.scalars(select(AuditRow.action).where(AuditRow.subject == f"user:{made.id}")).all()
    assert "disposition.assign" in actions and "disposition.revoke" in actions
    with pytest.raises(NotFound):
        accounts.revoke_admin(session, principal_named(session, "head-disdik"), made.id)


def test_roles_cannot_be_changed_except_by_a_supervisor(session, named) -> None:
    eng = named.users["engineer"]
    with pytest.raises(PermissionDenied):
        accounts.set_role(session, eng, eng.user_id, Role.SUPERVISOR)
    accounts.set_role(session, named.users["supervisor"], eng.user_id, Role.SUPERVISOR)
    with pytest.raises(ValueError, match="between an OPD and Diskominfo"):
        accounts.set_role(session, named.users["supervisor"], eng.user_id, Role.OPD_ADMIN)


def test_other_parts_can_add_timeline_entries_without_a_state_change(session, named, config) -> None:
    cid = _file(session, named, config)
    complaints.record(session, cid, actor="remediation", action="remediation.restart_service", detail="nginx",
                      now=T0 + timedelta(minutes=5))
    row = complaints.get(session, named.users["engineer"], cid)
    assert row.state == State.SUBMITTED
    assert [a.action for a in complaint_queries.timeline(session, named.users["engineer"], row, runs=linked_runs)][-1] == (
        "remediation.restart_service")


def test_the_scheduler_closes_fixed_complaints_the_opd_never_answered(session, named, config) -> None:
    from pdn_ops.complaints.jobs import complaint_jobs
    from pdn_ops.core.db.tables import utcnow

    admin, eng = named.users["admin-dinkes"], named.users["engineer"]
    long_ago = utcnow() - timedelta(days=5)
    cid = _file(session, named, config)
    complaints.act(session, eng, cid, Action.VERIFY, config=config, now=long_ago)
    complaints.act(session, eng, cid, Action.FIX, config=config, now=long_ago)
    [job] = complaint_jobs(config)
    assert (job.name, job.kind) == ("complaints:close-stale", "maintenance")
    assert job.record(session, job.collect()) == [cid]
    row = complaints.get(session, admin, cid)
    assert row.state == State.CLOSED and row.auto_closed
