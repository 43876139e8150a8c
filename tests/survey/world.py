"""Bring a complaint of Dinas Kesehatan to Selesai the way people do, for the survey's tests."""

from __future__ import annotations

from sqlalchemy import select

from pdn_ops.complaints import Action, ComplaintRow, act
from pdn_ops.core.db.engine import transaction
from tests.complaints.world import World, file_complaint, principal_named


def closed_complaint(world: World) -> int:
    admin = world.client("admin-dinkes")
    assert file_complaint(admin, f"vm:{world.vm['web-dinkes']}").status_code == 303
    config = world.ctx.complaints.config
    with transaction(world.ctx.sessions) as session:
        cid = session.scalar(select(ComplaintRow.id).where(ComplaintRow.opd_id == world.opd["dinkes"])
                             .order_by(ComplaintRow.id.desc()))
        assert cid is not None
        engineer = principal_named(session, "engineer")
        for step in (Action.VERIFY, Action.START, Action.FIX):
            act(session, engineer, cid, step, config=config)
        act(session, principal_named(session, "admin-dinkes"), cid, Action.CONFIRM, config=config)
    return cid
