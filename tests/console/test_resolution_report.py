"""The resolution report an office signs: the playbook, its steps, the closing evidence, a letterhead, a report
number and a signature block, on the printable page and in the PDF alike (parsed back with pypdf)."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from pypdf import PdfReader

from pdn_ops.core.db.engine import transaction
from pdn_ops.core.db.tables import utcnow
from pdn_ops.runs.tables import RemediationRunRow
from tests.complaints.test_timeline_web import add_run
from tests.complaints.world import World, file_complaint

OFFICE = {"office_government": "PEMERINTAH KABUPATEN CONTOH", "office_name": "DINAS KOMUNIKASI DAN INFORMATIKA",
          "office_address": "Jl. Merdeka No. 1", "signatory_name": "Drs. Budi Santoso", "signatory_nip":
          "197001012000031001", "signatory_title": "Kepala Dinas", "report_number_pattern": "{seq:03d}/LP/{month}/{year}"}


@pytest.fixture(scope="module")
def fixed(world: World) -> str:
    world.ctx.settings = world.ctx.settings.model_copy(update=OFFICE)
    admin = world.client("admin-dinkes")
    url = file_complaint(admin, f"vm:{world.vm['web-dinkes']}").headers["location"]
    complaint_id = int(url.rsplit("/", 1)[1])
    engineer = world.client("engineer")
    assert engineer.post(f"{url}/actions/verify").status_code == 303
    run_id = add_run(world, complaint_id, steps=3)
    with transaction(world.ctx.sessions) as session:  # what the closure job writes when the checks pass
        run = session.get(RemediationRunRow, run_id)
        assert run is not None
        now = utcnow()
        run.closure = "confirmed"
        run.evidence = {"checks_after": {"vm:pdn1/101": [{"at": (now + timedelta(seconds=s)).isoformat(), "ok": True,
                                                          "failure": None} for s in (10, 20)]}}
    return url


def _pdf_text(body: bytes) -> str:
    return " ".join(" ".join(page.extract_text().split()) for page in PdfReader(io.BytesIO(body)).pages)


@pytest.mark.parametrize("username", ["engineer", "admin-dinkes"])
def test_the_report_names_the_playbook_its_steps_and_the_closing_evidence_on_the_page_and_in_the_pdf(
        world: World, fixed: str, username: str) -> None:
    client = world.client(username)
    page = client.get(f"{fixed}/report").text
    number = f"{int(fixed.rsplit('/', 1)[1]):03d}/LP/"
    expected = ("Mulai ulang VM", "Menemukan VM di klaster", "Mematikan VM dengan tertib",
                "2 dari 2 pemeriksaan lulus", "dipastikan oleh pemeriksaan kesehatan", "DINAS KOMUNIKASI DAN INFORMATIKA",
                "PEMERINTAH KABUPATEN CONTOH", number, "Drs. Budi Santoso", "197001012000031001", "Kepala Dinas",
                "Teknisi penanggung jawab")
    for text in expected:
        assert text in page, text
    pdf = _pdf_text(client.get(f"{fixed}/report.pdf", params={"photos": "0"}).content)
    for text in expected:
        assert text in pdf, text
    assert "UPID" not in pdf and "UPID" not in page.split('id="work-done"', 1)[1].split("</div>", 1)[0]


def test_the_english_report_speaks_english(world: World, fixed: str) -> None:
    page = world.client("engineer").get(f"{fixed}/report", params={"lang": "en"}).text
    assert "Restart VM" in page and "Shut the VM down gracefully" in page and "2 of 2 checks passed" in page


def test_every_step_of_every_playbook_has_a_name_in_both_languages() -> None:
    import ast
    from pathlib import Path

    from pdn_ops.core.i18n import catalogue
    from remediation.playbooks import base

    step_classes = {"Check", "ApiTask", "SshAction", "GrowDisk"} | {
        name for name, value in vars(base).items() if isinstance(value, type) and hasattr(value, "run")}
    names = {node.args[0].value
             for path in Path(base.__file__).parent.glob("*.py")
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in step_classes
             and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)}
    assert len(names) >= 15, names
    missing = sorted(n for n in names if set(catalogue().get(f"remediation.step_name.{n}", {})) != {"id", "en"})
    assert not missing, missing
