"""A filing is one atomic act: photos reach the store only with their committed rows; a retry or a double click
with the form's key never makes a second complaint, and its answer names the complaint already filed; the janitor
settles what a crash left."""

from __future__ import annotations

import os
import time
import uuid

from sqlalchemy import func, select

from pdn_ops.complaints import service as complaints
from pdn_ops.complaints.tables import AttachmentRow, ComplaintRow
from pdn_ops.core import photos
from pdn_ops.core.db.engine import transaction
from tests.complaints.world import jpeg


def _store_names(world) -> set[str]:
    folder = photos.attachment_dir(world.data_dir)
    return {p.name for p in folder.iterdir() if p.is_file()}


def _staged(world) -> set[str]:
    return {p.name for p in photos.staging_dir(world.data_dir).iterdir()}


def _post(client, key: str, asset: str, description: str):
    return client.post("/complaints", data={"asset": asset, "category": "site_down", "description": description,
                                            "idempotency_key": key},
                       files=[("photo", ("layar.jpg", jpeg(), "image/jpeg"))])


def test_the_form_carries_a_fresh_idempotency_key_each_time(world) -> None:
    admin = world.client("admin-dinkes")
    first, second = admin.get("/complaints/new").text, admin.get("/complaints/new").text
    key = 'name="idempotency_key" value="'
    assert key in first and key in second
    assert first.split(key)[1][:32] != second.split(key)[1][:32]


def test_a_retry_with_the_same_key_names_the_complaint_already_filed(world) -> None:
    admin = world.client("admin-dinkes")
    asset = f"vm:{world.vm['web-dinkes']}"
    key, text = uuid.uuid4().hex, f"Situs mati, dicoba dua kali {uuid.uuid4().hex}"
    first = _post(admin, key, asset, text)
    assert first.status_code == 303
    again = _post(admin, key, asset, text)
    assert again.status_code == 303
    assert again.headers["location"] == first.headers["location"] + "?ok=already_filed"
    page = admin.get(again.headers["location"])
    assert "sudah diajukan sebelumnya" in page.text
    with transaction(world.ctx.sessions) as session:
        assert session.scalar(select(func.count()).select_from(ComplaintRow)
                              .where(ComplaintRow.description == text)) == 1


def test_photos_reach_the_store_only_after_the_commit_and_never_after_a_rollback(world) -> None:
    before = _store_names(world)
    with transaction(world.ctx.sessions) as session:
        admin = complaints_principal(session)
        prepared = complaints.prepare_uploads([("a.jpg", jpeg())])
        draft = complaints.Draft(asset=f"vm:{world.vm['web-dinkes']}", category="site_down",
                                 description="Foto baru masuk setelah commit")
        row = complaints.submit(session, admin, draft, prepared, config=world.ctx.complaints.config)
        session.flush()
        assert _store_names(world) == before, "nothing in the store before the commit"
        assert len(_staged(world)) == 2
        names = {a.stored_name for a in session.scalars(select(AttachmentRow).where(
            AttachmentRow.complaint_id == row.id))}
    assert names <= _store_names(world) and not _staged(world)

    try:
        with transaction(world.ctx.sessions) as session:
            admin = complaints_principal(session)
            complaints.submit(session, admin, draft, complaints.prepare_uploads([("b.jpg", jpeg())]),
                              config=world.ctx.complaints.config)
            session.flush()
            raise RuntimeError("the request failed after the rows were written")
    except RuntimeError:
        pass
    assert not _staged(world), "a rolled-back filing leaves no file"
    assert _store_names(world) == before | names | _thumbs(world, names)


def _thumbs(world, names: set[str]) -> set[str]:
    with transaction(world.ctx.sessions) as session:
        return set(session.scalars(select(AttachmentRow.thumb_name).where(AttachmentRow.stored_name.in_(names))))


def complaints_principal(session):
    from tests.complaints.world import principal_named

    return principal_named(session, "admin-dinkes")


def test_the_janitor_publishes_what_a_crash_left_after_the_commit_and_removes_the_rest(world) -> None:
    # A crash after the commit: the rows name files still in staging. A crash before it: staged files nobody names.
    # An orphan in the store (from before staging existed).
    with transaction(world.ctx.sessions) as session:
        admin = complaints_principal(session)
        draft = complaints.Draft(asset=f"vm:{world.vm['web-dinkes']}", category="site_down",
                                 description="Tersimpan, lalu proses mati")
        row = complaints.submit(session, admin, draft, complaints.prepare_uploads([("c.jpg", jpeg())]),
                                config=world.ctx.complaints.config)
        session.flush()
        committed = {(a.stored_name, a.thumb_name) for a in session.scalars(
            select(AttachmentRow).where(AttachmentRow.complaint_id == row.id))}
        session.info.pop("pdn_after_commit")  # as if the process died between the commit and the move
    stray = photos.stage(photos.prepare(jpeg(), "d.jpg"), world.data_dir)
    orphan = photos.attachment_dir(world.data_dir) / "0123456789abcdef0123456789abcdef.jpg"
    orphan.write_bytes(b"left by an older version")
    old = time.time() - 3600
    for path in [*photos.staging_dir(world.data_dir).iterdir(), orphan]:
        os.utime(path, (old, old))
    with transaction(world.ctx.sessions) as session:
        swept = complaints.sweep_photos(session, world.data_dir, min_age_s=600)
    assert (swept.published, swept.removed_staged, swept.removed_orphans) == (2, 2, 1)
    (stored, thumb), = committed
    assert {stored, thumb} <= _store_names(world)
    assert not _staged(world) and not orphan.exists()
    assert stray.stored_name not in _store_names(world)
    assert admin_can_see_photo(world, row.id)


def admin_can_see_photo(world, complaint_id: int) -> bool:
    admin = world.client("admin-dinkes")
    with transaction(world.ctx.sessions) as session:
        attachment = session.scalar(select(AttachmentRow.id).where(AttachmentRow.complaint_id == complaint_id))
    return admin.get(f"/complaints/{complaint_id}/photos/{attachment}").status_code == 200
