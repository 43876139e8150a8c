"""An OPD admin confirms a fix and answers the survey on a 360-px phone in headless Chromium; the supervisor's
IKM report of the period then shows the index, its category and the chart."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from pdn_ops.complaints import Action, ComplaintRow, act
from pdn_ops.core.db.engine import transaction
from pdn_ops.survey.model import PeriodKind, period_of
from tests.browser_fixtures import VIEWPORTS
from tests.complaints.world import PASSWORD, World, build_world, file_complaint, principal_named
from tests.support import serve_in_thread

# One tap per element: 4 4 3 4 3 4 4 3 4 -> 33 / 9 x 25 = 91.67, A.
TAPS = {"requirements": 4, "procedure": 4, "time": 3, "cost": 4, "product": 3, "competence": 4, "conduct": 4,
        "complaints": 3, "facilities": 4}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    # One engine is enough here: the service and its SQL run on both in test_survey_web.py.
    data_dir: Path = tmp_path_factory.mktemp("survey-browser")
    world = build_world(f"sqlite:///{data_dir / 'app.sqlite3'}", data_dir)
    yield world
    world.ctx.engine.dispose()


def _fixed_complaint(world: World) -> int:
    assert file_complaint(world.client("admin-dinkes"), f"vm:{world.vm['web-dinkes']}").status_code == 303
    with transaction(world.ctx.sessions) as session:
        cid = session.scalar(select(ComplaintRow.id).order_by(ComplaintRow.id.desc()))
        assert cid is not None
        engineer = principal_named(session, "engineer")
        for step in (Action.VERIFY, Action.START, Action.FIX):
            act(session, engineer, cid, step, config=world.ctx.complaints.config)
    return cid


def test_an_opd_admin_answers_the_survey_on_a_phone_after_confirming(browser, world: World) -> None:
    cid = _fixed_complaint(world)
    with serve_in_thread(world.app) as base:
        context = browser.new_context(viewport=VIEWPORTS["phone"], locale="id-ID")
        try:
            page = context.new_page()
            page.goto(f"{base}/login")
            page.get_by_label("Nama pengguna").fill("admin-dinkes")
            page.get_by_label("Kata sandi").fill(PASSWORD)
            page.get_by_role("button", name="Masuk").click()
            page.wait_for_url(re.compile(r"/complaints"))
            page.goto(f"{base}/complaints/{cid}")
            page.get_by_role("button", name="Layanan sudah berjalan, tutup").click()
            page.wait_for_url(re.compile(rf"/complaints/{cid}$"))

            page.goto(f"{base}/")
            page.locator("#home-survey").get_by_role("link", name=f"#{cid}", exact=False).click()
            page.wait_for_url(re.compile(rf"/survey/{cid}$"))
            for element, score in TAPS.items():
                choice = page.locator(f"label[for='{element}-{score}']")
                box = choice.bounding_box()
                assert box is not None and box["height"] >= 44 and box["width"] >= 60, "a thumb-sized target"
                choice.click()
                assert page.locator(f"#{element}-{score}").is_checked()
            assert page.evaluate("document.documentElement.scrollWidth") <= 360, "no sideways scrolling"
            page.get_by_label("Saran dan masukan (boleh kosong)").fill("Sudah cepat, terima kasih")
            page.get_by_role("button", name="Kirim penilaian").click()
            page.wait_for_url(re.compile(r"/survey$"))
            assert "Terima kasih" in page.locator("body").inner_text()
            assert f"/survey/{cid}" not in page.content(), "answered: no longer waiting"
        finally:
            context.close()

    supervisor = world.client("supervisor")
    period = period_of(datetime.now(world.ctx.settings.tz).date(), PeriodKind.QUARTER).code
    report = supervisor.get(f"/survey-report?period={period}").text
    assert 'id="ikm-value">91,67<' in report and "A (Sangat Baik)" in report and "<svg" in report
    assert "Sudah cepat, terima kasih" in report
    assert supervisor.get(f"/survey-report.pdf?period={period}").content.startswith(b"%PDF")
