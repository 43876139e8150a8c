"""The resolution report and the monthly report as PDF files, on SQLite and PostgreSQL, parsed back with pypdf."""

from __future__ import annotations

import io
import re

import pytest
from pypdf import PdfReader
from sqlalchemy import select

from pdn_ops.complaints import pdf
from pdn_ops.complaints.tables import ComplaintRow
from pdn_ops.core.db.tables import utcnow
from pdn_ops.core.i18n import translate
from tests.complaints.world import World, file_complaint, jpeg, png

ATTACHMENT = re.compile(r'^attachment; filename="[a-z0-9-]+\.pdf"$')


def _text(body: bytes) -> str:
    reader = PdfReader(io.BytesIO(body))
    return "\n".join(page.extract_text() for page in reader.pages)


def _images(body: bytes) -> int:
    return sum(len(page.images) for page in PdfReader(io.BytesIO(body)).pages)


@pytest.fixture(scope="module")
def fixed_complaint(world: World) -> int:
    """A Dinkes complaint with two photos, worked through to fixed, with a work note."""
    admin = world.client("admin-dinkes")
    response = file_complaint(admin, f"vm:{world.vm['web-dinkes']}",
                              description="Situs layanan kesehatan tidak bisa dibuka — kode 502 sejak pagi",
                              photos=[("layar.jpg", jpeg((320, 240)), "image/jpeg"),
                                      ("galat.png", png((200, 200)), "image/png")])
    assert response.status_code == 303
    complaint_id = int(response.headers["location"].rsplit("/", 1)[-1])
    eng = world.client("engineer")
    for action in ("verify", "start"):
        assert eng.post(f"/complaints/{complaint_id}/actions/{action}").status_code == 303
    assert eng.post(f"/complaints/{complaint_id}/notes", data={"body": "nginx dijalankan ulang"}).status_code == 303
    assert eng.post(f"/complaints/{complaint_id}/actions/fix").status_code == 303
    return complaint_id


def test_the_resolution_report_pdf_has_the_complaint_opd_category_and_work(world: World,
                                                                           fixed_complaint: int) -> None:
    response = world.client("engineer").get(f"/complaints/{fixed_complaint}/report.pdf")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    disposition = response.headers["content-disposition"]
    assert ATTACHMENT.match(disposition) and f"complaint-{fixed_complaint}-report.pdf" in disposition
    text = _text(response.content)
    assert f"#{fixed_complaint}" in text and "Dinas Kesehatan" in text
    assert translate("complaints.category.site_down", "id") in text, "the category, in Indonesian"
    assert "kode 502" in text and "—" in text, "the description, with characters outside Latin-1"
    assert "nginx dijalankan ulang" in text and "Selesai dikerjakan" in text
    assert _images(response.content) == 2, "both photos as thumbnails"
    english = world.client("engineer").get(f"/complaints/{fixed_complaint}/report.pdf?photos=0&lang=en")
    text_en = _text(english.content)
    assert f"Resolution report for complaint #{fixed_complaint}" in text_en and translate("complaints.category.site_down", "en") in text_en
    assert _images(english.content) == 0


def test_opd_users_get_their_report_without_work_notes_and_another_opd_gets_404(world: World,
                                                                             fixed_complaint: int) -> None:
    own = world.client("head-dinkes").get(f"/complaints/{fixed_complaint}/report.pdf")
    assert own.status_code == 200
    text = _text(own.content)
    assert f"#{fixed_complaint}" in text and "nginx dijalankan ulang" not in text
    # The timeline says a note was written, never what it says (work notes are Diskominfo's working papers).
    timeline = world.client("head-dinkes").get(f"/api/v1/complaints/{fixed_complaint}/timeline").json()
    notes = [e for e in timeline if e["action"] == "complaint.note"]
    assert len(notes) == 1 and notes[0]["detail"] == ""
    assert "nginx dijalankan ulang" not in world.client("head-dinkes").get(f"/complaints/{fixed_complaint}").text
    staff = world.client("engineer").get(f"/api/v1/complaints/{fixed_complaint}/timeline").json()
    assert [e["detail"] for e in staff if e["action"] == "complaint.note"] == ["nginx dijalankan ulang"]
    other = world.client("admin-disdik").get(f"/complaints/{fixed_complaint}/report.pdf")
    missing = world.client("admin-disdik").get("/complaints/999999/report.pdf")
    assert other.status_code == missing.status_code == 404
    assert other.headers["content-type"] == missing.headers["content-type"]


def test_the_monthly_pdf_has_the_figures_per_opd_and_overall(world: World, fixed_complaint: int) -> None:
    month = utcnow().astimezone(world.ctx.settings.tz).strftime("%Y-%m")
    with world.ctx.sessions() as session:
        received = session.scalars(select(ComplaintRow).where(ComplaintRow.opd_id == world.opd["dinkes"],
                                                             ComplaintRow.submitted_at.is_not(None))).all()
    head = world.client("head-dinkes")
    html = head.get("/reports/monthly", params={"month": month}).text
    response = head.get("/reports/monthly.pdf", params={"month": month})
    assert response.status_code == 200 and ATTACHMENT.match(response.headers["content-disposition"])
    assert f"complaints-{month}-opd.pdf" in response.headers["content-disposition"]
    text = _text(response.content)
    from pdn_ops.core.i18n.formatting import Formatter

    named = Formatter("id", world.ctx.settings.tz).month(*(int(x) for x in month.split("-")))
    assert "Dinas Kesehatan" in text and f"Laporan bulanan pengaduan {named}" in text
    resolved = re.search(r'id="resolved">(\d+)<', html)
    assert resolved is not None
    assert re.search(rf"Pengaduan masuk\s+{len(received)}\b", text), text[:600]
    assert re.search(rf"Diselesaikan\s+{resolved.group(1)}\b", text)
    assert re.search(r"Kepatuhan SLA\s+100 %", text)
    assert str(fixed_complaint) in text and translate("complaints.category.site_down", "id") in text
    assert "Dinas Pendidikan" not in text
    overall = world.client("supervisor").get("/reports/monthly.pdf", params={"month": month, "lang": "en"})
    assert "all.pdf" in overall.headers["content-disposition"]
    overall_text = _text(overall.content)
    assert "All OPDs" in overall_text and "Complaints received" in overall_text
    chosen = world.client("supervisor").get("/reports/monthly.pdf", params={"month": month, "opd": "dinkes"})
    assert f"complaints-{month}-dinkes.pdf" in chosen.headers["content-disposition"]


def test_another_opds_monthly_report_is_a_missing_page(world: World) -> None:
    admin = world.client("admin-disdik")
    for path in ("/reports/monthly.pdf", "/reports/monthly", "/reports/monthly.csv"):
        assert admin.get(path, params={"opd": "dinkes"}).status_code == 404, path
        assert admin.get(path, params={"opd": "no-such-opd"}).status_code == 404, path
        assert admin.get(path, params={"opd": "disdik"}).status_code == 200, path
    assert world.client("supervisor").get("/reports/monthly.pdf", params={"opd": "nope"}).status_code == 404
    assert world.client("supervisor").get("/reports/monthly.pdf", params={"month": "2026-13"}).status_code == 400


def test_file_names_are_generated_never_taken_from_input() -> None:
    assert pdf.safe_part('dinkes"; filename="x.exe') == "dinkes---filename--x-exe"
    assert pdf.safe_part("Ünïcode/../..") == "n-code"
    assert pdf.safe_part("") == "x"
