"""The published standard (versions kept) and complaints about the service (public form, queue, answers)."""

from __future__ import annotations

from sqlalchemy import select

from pdn_ops.core.db.engine import transaction
from pdn_ops.public.model import check_feedback
from pdn_ops.public.tables import ServiceFeedbackRow
from tests.complaints.world import csrf_of


def test_the_standard_is_public_with_its_defaults_and_every_version_is_kept(world) -> None:
    anonymous = world.client()
    page = anonymous.get("/standard")
    assert page.status_code == 200
    text = page.text
    assert "Tidak dipungut biaya" in text and "Paling lama 7 hari" in text
    assert text.count("<li>", text.index('id="std-procedure"'), text.index('id="std-time"')) == 6, "six steps"
    assert 'href="/service-complaint"' in text
    assert "Free of charge" in anonymous.get("/standard?lang=en").text

    supervisor = world.client("supervisor")
    form = {"requirements": "Surat permohonan\nFoto gangguan", "procedure": "Ajukan\nVerifikasi\nPerbaiki",
            "time": "Paling lama 5 hari kerja.", "cost": "Gratis.", "product": "Layanan pulih.",
            "complaints": "Sampaikan keluhan ke Diskominfo.", "email": "Pengaduan@Diskominfo.example.go.id",
            "whatsapp": "+62 811 0000 0000"}
    refused = supervisor.post("/standard", data={**form, "cost": "  ", "whatsapp": "0811"})
    assert refused.status_code == 400 and 'href="#f-cost"' in refused.text and 'href="#f-whatsapp"' in refused.text
    assert supervisor.post("/standard", data=form).status_code == 303
    assert supervisor.post("/standard", data={**form, "time": "Paling lama 3 hari kerja."}).status_code == 303
    now = anonymous.get("/standard").text
    assert "Paling lama 3 hari kerja." in now and "pengaduan@diskominfo.example.go.id" in now
    assert "+6281100000000" in now
    assert now.count('href="/standard/versions/') >= 2
    with transaction(world.ctx.sessions) as session:
        from pdn_ops.public.tables import StandardVersionRow
        count = len(session.scalars(select(StandardVersionRow.id)).all())
    older = anonymous.get(f"/standard/versions/{count - 1}").text
    assert "Paling lama 5 hari kerja." in older, "the previous version is still readable"
    assert world.client("engineer").get("/standard/edit").status_code == 404


def test_a_service_complaint_from_the_public_form_is_answered_and_timed(world) -> None:
    anonymous = world.client()
    token = csrf_of(anonymous, "/service-complaint")
    hostile = "<script>alert(1)</script> layanan lambat dijawab"
    sent = anonymous.post("/service-complaint", data={"csrf_token": token, "name": "Warga", "message": hostile,
                                                      "contact": "warga@example.org"})
    assert sent.status_code == 303
    assert anonymous.post("/service-complaint", data={"name": "x"}).status_code == 403, "the form's token"
    short = anonymous.post("/service-complaint", data={"csrf_token": token, "message": "pendek"})
    assert short.status_code == 400 and 'href="#fb-message"' in short.text
    huge = anonymous.post("/service-complaint", data={"csrf_token": token, "message": "a" * 50_000})
    assert huge.status_code in (413, 422), "capped before it is read into a field"

    supervisor = world.client("supervisor")
    queue = supervisor.get("/service-complaints").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in queue and "<script>alert(1)" not in queue
    with transaction(world.ctx.sessions) as session:
        row = session.scalars(select(ServiceFeedbackRow).order_by(ServiceFeedbackRow.id.desc())).first()
        assert row is not None and row.channel == "web" and "127.0.0.1" not in row.client
        feedback_id = row.id
    assert supervisor.post(f"/service-complaints/{feedback_id}/answer",
                           data={"text": "Sudah kami tindak lanjuti"}).status_code == 303
    answered = supervisor.get("/service-complaints").text
    assert "dijawab setelah" in answered and "Sudah kami tindak lanjuti" in answered
    assert world.client("engineer").get("/service-complaints").status_code == 404

    # Five an hour from one address, then 429 with Retry-After (the earlier posts of this module count too).
    codes = [anonymous.post("/service-complaint", data={"csrf_token": token, "message": f"keluhan nomor {i:02d}"}
                            ).status_code for i in range(6)]
    assert codes[-1] == 429 and codes.count(303) <= 4
    last = anonymous.post("/service-complaint", data={"csrf_token": token, "message": "keluhan sekali lagi"})
    assert last.status_code == 429 and last.headers["retry-after"] == "3600"


def test_the_form_normalises_and_caps_what_anyone_types() -> None:
    draft, errors = check_feedback("  Budi\r\n ", "+62 812 3456 7890", "Pelayanan\r\nlambat\u200b sekali")
    assert not errors and draft.name == "Budi" and draft.message == "Pelayanan\nlambat sekali"
    _, errors = check_feedback("x" * 200, "bukan kontak", "a" * 2001)
    assert set(errors) == {"name", "contact", "message"}
