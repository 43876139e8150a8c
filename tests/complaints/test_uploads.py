"""Photo uploads: refused with a reason that keeps the form, re-encoded without EXIF/GPS, served only to the OPD."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image
from sqlalchemy import select

from pdn_ops.complaints.tables import AttachmentRow
from pdn_ops.core import photos
from pdn_ops.core.db.engine import transaction
from pdn_ops.core.db.tables import AuditRow, utcnow
from tests.complaints.world import file_complaint, jpeg, png

DESCRIPTION = "Server web dinkes mati & <b>tidak</b> bisa diakses sejak 07:00"


def pixel_bomb_png(width: int = 60000, height: int = 60000) -> bytes:
    """A tiny file that claims 3.6 gigapixels (the decoder would need gigabytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + \
        chunk(b"IEND", b"")


def jpeg_with_gps() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    gps = {1: "S", 2: (6.0, 10.0, 30.0), 3: "E", 4: (106.0, 49.0, 0.0)}
    exif[0x8825] = gps
    return jpeg(size=(80, 60), exif=exif.tobytes())


REFUSED = [
    ("script disguised as a JPEG", "foto.jpg", b"<script>alert(document.cookie)</script>", "image/jpeg",
     "bukan foto JPEG, PNG atau WebP"),
    ("SVG", "gambar.svg", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', "image/svg+xml",
     "bukan foto JPEG, PNG atau WebP"),
    ("oversized", "besar.jpg", jpeg() + b"\0" * (photos.MAX_BYTES + 1), "image/jpeg", "lebih dari 10 MB"),
    ("pixel bomb", "bom.png", pixel_bomb_png(), "image/png", "resolusi gambar terlalu besar"),
    ("truncated", "potong.jpg", jpeg(size=(400, 300))[:700], "image/jpeg", "rusak atau terpotong"),
    ("GIF", "anim.gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "image/gif", "bukan foto"),
]


@pytest.mark.parametrize(("case", "name", "data", "declared", "reason"), REFUSED, ids=[r[0] for r in REFUSED])
def test_a_refused_upload_says_why_and_keeps_what_was_typed(world, case, name, data, declared, reason) -> None:
    admin = world.client("admin-dinkes")
    asset = f"vm:{world.vm['web-dinkes']}"
    response = file_complaint(admin, asset, description=DESCRIPTION, category="disk_full",
                              photos=[("ok.png", png(), "image/png"), (name, data, declared)])
    assert response.status_code == 400, case
    assert reason in response.text
    assert "Server web dinkes mati &amp; &lt;b&gt;tidak&lt;/b&gt; bisa diakses" in response.text, "description kept"
    assert 'value="disk_full" selected' in response.text and f'value="{asset}" checked' in response.text


def test_hostile_file_names_are_cleaned_and_never_used_on_disk(world) -> None:
    admin = world.client("admin-dinkes")
    names = ["../../../etc/passwd.jpg", "a\x00b\r\nc\u202e.jpg", "C:\\Windows\\evil.png"]
    response = file_complaint(admin, f"site:{world.site['Portal Dinkes']}",
                              photos=[(n, jpeg() if n.endswith("jpg") else png(), "image/jpeg") for n in names])
    assert response.status_code == 303, response.text
    complaint_id = int(response.headers["location"].rsplit("/", 1)[1])
    with transaction(world.ctx.sessions) as session:
        stored = session.scalars(select(AttachmentRow).where(AttachmentRow.complaint_id == complaint_id)
                                 .order_by(AttachmentRow.id)).all()
    # The HTTP client percent-encodes control characters in the part header; what arrives is cleaned regardless.
    assert stored[0].original_name == "passwd.jpg" and stored[2].original_name == "evil.png"
    assert all(ch.isprintable() and ch not in "/\\" for a in stored for ch in a.original_name)
    for a in stored:
        assert "/" not in a.stored_name and (world.data_dir / "attachments" / a.stored_name).is_file()
    assert stored[2].media_type == "image/png", "the type comes from the content, not the declared type"


def test_photos_are_reencoded_without_exif_and_served_safely_only_to_their_opd(world) -> None:
    admin = world.client("admin-dinkes")
    original = jpeg_with_gps()
    assert Image.open(io.BytesIO(original)).getexif().get(0x8825) is not None
    response = file_complaint(admin, f"vm:{world.vm['web-dinkes']}", photos=[("gps.jpg", original, "image/jpeg")])
    url = response.headers["location"]
    with transaction(world.ctx.sessions) as session:
        photo_id = session.scalar(select(AttachmentRow.id).where(
            AttachmentRow.complaint_id == int(url.rsplit("/", 1)[1])))
    served = admin.get(f"{url}/photos/{photo_id}")
    assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
    assert served.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in served.headers["content-security-policy"]
    assert served.headers["content-disposition"] == f'inline; filename="complaint-{url.rsplit("/", 1)[1]}-photo-{photo_id}.jpg"'
    image = Image.open(io.BytesIO(served.content))
    assert dict(image.getexif()) == {}, "EXIF (GPS, camera) is gone"
    thumb = admin.get(f"{url}/photos/{photo_id}/thumb")
    assert thumb.status_code == 200 and Image.open(io.BytesIO(thumb.content)).size[0] <= 320
    engineer = world.client("engineer")
    assert engineer.get(f"{url}/photos/{photo_id}").status_code == 200
    other = world.client("admin-disdik")
    assert other.get(f"{url}/photos/{photo_id}").status_code == 404
    assert other.get(f"{url}/photos/{photo_id}/thumb").status_code == 404
    with transaction(world.ctx.sessions) as session:
        views = session.scalars(select(AuditRow.actor).where(AuditRow.action == "complaint.photo_view",
                                                             AuditRow.subject == f"complaint:{url.rsplit('/', 1)[1]}"))
        assert sorted(views) == ["admin-dinkes", "engineer"], "full views are recorded with who"


def test_webp_is_accepted_and_six_photos_are_too_many(world) -> None:
    admin = world.client("admin-dinkes")
    out = io.BytesIO()
    Image.new("RGB", (50, 50), (10, 200, 10)).save(out, "WEBP")
    ok = file_complaint(admin, f"vm:{world.vm['web-dinkes']}", photos=[("x.bin", out.getvalue(), "text/plain")])
    assert ok.status_code == 303
    too_many = file_complaint(admin, f"vm:{world.vm['web-dinkes']}",
                              photos=[(f"{i}.jpg", jpeg(), "image/jpeg") for i in range(6)])
    assert too_many.status_code == 400 and "1 sampai 5 foto" in too_many.text
    none = admin.post("/complaints", data={"asset": f"vm:{world.vm['web-dinkes']}", "category": "slow",
                                           "description": "Lambat sekali hari ini"})
    assert none.status_code == 400 and "1 sampai 5 foto" in none.text


def test_clean_name_drops_directories_and_control_characters() -> None:
    assert photos.clean_name("../../etc/passwd.jpg") == "passwd.jpg"
    assert photos.clean_name("a\x00b\r\nc\u202e.jpg") == "abc.jpg"
    assert photos.clean_name("C:\\Windows\\evil.png") == "evil.png"
    assert photos.clean_name("...") == "photo" and photos.clean_name(None) == "photo"
    assert len(photos.clean_name("x" * 500 + ".jpg")) == 120


def test_bodies_over_the_limit_are_refused_before_they_are_spooled(world) -> None:
    from fastapi.testclient import TestClient

    from pdn_ops.web.middleware import BodyLimit
    from tests.complaints.world import login

    limited = TestClient(BodyLimit(world.app, limit=50_000), follow_redirects=False)
    login(limited, "admin-dinkes")
    response = file_complaint(limited, f"vm:{world.vm['web-dinkes']}",
                              photos=[("big.jpg", jpeg() + b"\0" * 100_000, "image/jpeg")])
    assert response.status_code == 413


def test_photos_are_decoded_before_the_write_transaction_opens(world, monkeypatch) -> None:
    """While a photo is decoded, another writer can commit: SQLite's single write lock is not held meanwhile."""
    real_prepare = photos.prepare
    writes: list[str] = []

    def prepare_while_someone_writes(data: bytes, name: str | None) -> photos.PreparedPhoto:
        # On SQLite this BEGIN IMMEDIATE would wait for the busy timeout and fail if the request held the lock.
        with transaction(world.ctx.sessions) as session:
            session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
            session.add(AuditRow(at=utcnow(), actor="probe",
                                 action="probe.write", subject="probe", detail=""))
        writes.append(name or "")
        return real_prepare(data, name)

    monkeypatch.setattr(photos, "prepare", prepare_while_someone_writes)
    admin = world.client("admin-dinkes")
    response = file_complaint(admin, f"vm:{world.vm['web-dinkes']}")
    assert response.status_code == 303, response.text
    assert writes == ["layar.jpg"]
