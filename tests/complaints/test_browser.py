"""The whole procedure in headless Chromium, on a desktop and a 360-px phone, on SQLite and PostgreSQL.

head assigns admin -> admin files with a photo -> engineer returns -> admin corrects -> engineer verifies ->
engineer fixes -> OPD confirms -> the report shows it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.browser_fixtures import VIEWPORTS, menu_link
from tests.complaints.world import PASSWORD, World, jpeg
from tests.support import serve_in_thread


@pytest.fixture(scope="module")
def server(world: World) -> Iterator[str]:
    with serve_in_thread(world.app) as base:
        yield base


def _page(browser, viewport: str):
    context = browser.new_context(viewport=VIEWPORTS[viewport], locale="id-ID")
    return context, context.new_page()


def _login(page, base: str, username: str, password: str = PASSWORD) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("Nama pengguna").fill(username)
    page.get_by_label("Kata sandi").fill(password)
    page.get_by_role("button", name="Masuk").click()
    page.wait_for_url(re.compile(r"/complaints"))


def _fits(page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"{page.url} scrolls sideways: {width}px"


def _state(page) -> str:
    return page.locator("#state").inner_text()


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_the_six_steps_in_a_real_browser(browser, server: str, world: World, viewport: str) -> None:
    base = server
    admin_name = f"petugas-{viewport}"
    head_ctx, head = _page(browser, viewport)
    admin_ctx, admin = _page(browser, viewport)
    eng_ctx, eng = _page(browser, viewport)
    try:
        # Step 1: the head assigns an admin (a disposition).
        _login(head, base, "head-dinkes")
        menu_link(head, "Admin OPD").click()
        head.get_by_label("Nama pengguna").fill(admin_name)
        head.get_by_label("Nama lengkap").fill("Petugas Dinkes")
        head.get_by_label("Kata sandi awal (minimal 10 karakter)").fill("petugas-password-1")
        head.get_by_label("Catatan disposisi").fill("Disposisi: tangani pengaduan hosting")
        head.get_by_role("button", name="Tunjuk admin").click()
        head.wait_for_url(re.compile(r"/opd/admins$"))
        assert admin_name in head.locator("table").inner_text()
        _fits(head)

        # Step 2: the new admin files a complaint with a photo, seeing each asset's health first.
        _login(admin, base, admin_name, "petugas-password-1")
        menu_link(admin, "Buat pengaduan").click()
        assert "Kondisi: Tidak diketahui" in admin.locator("fieldset").inner_text()
        admin.get_by_label(re.compile(r"VM web-dinkes")).check()
        admin.get_by_label("Kategori").select_option("site_down")
        admin.get_by_label("Uraian masalah teknis").fill("Portal Dinkes tidak dapat dibuka sejak pukul 07.00")
        admin.get_by_label(re.compile(r"^Foto")).set_input_files(
            files=[{"name": "layar.jpg", "mimeType": "image/jpeg", "buffer": jpeg()}])
        _fits(admin)
        admin.get_by_role("button", name="Kirim pengaduan").click()
        admin.wait_for_url(re.compile(r"/complaints/\d+$"))
        url = admin.url
        assert _state(admin) == "Diajukan"
        assert admin.locator(".photos img").count() == 1
        assert admin.evaluate("document.querySelector('.photos img').naturalWidth") > 0, "the thumbnail loads"

        # Step 3: the engineer finds it in the queue and returns it with a reason.
        _login(eng, base, "engineer")
        eng.goto(f"{base}/complaints/queue")
        complaint_id = url.rsplit("/", 1)[1]
        eng.get_by_role("link", name=f"#{complaint_id}").click()
        eng.get_by_label("Alasan").fill("Mohon sertakan pesan galat yang muncul")
        eng.get_by_role("button", name="Kembalikan ke OPD").click()
        eng.wait_for_url(url)
        assert _state(eng) == "Dikembalikan untuk dilengkapi"

        # The admin corrects and sends again (version 2; version 1 is kept).
        admin.goto(url)
        admin.get_by_role("link", name="Lengkapi dan kirim ulang").click()
        description = admin.get_by_label("Uraian masalah teknis")
        description.fill("Portal Dinkes menampilkan galat 502 Bad Gateway sejak pukul 07.00")
        admin.get_by_role("button", name="Kirim ulang").click()
        admin.wait_for_url(url)
        assert _state(admin) == "Diajukan" and "502 Bad Gateway" in admin.locator(".description").inner_text()

        # Step 3 and 4: verified, worked on with a note, fixed.
        eng.goto(url)
        eng.get_by_role("button", name="Verifikasi").click()
        eng.wait_for_url(url)
        eng.get_by_role("button", name="Tindak lanjuti").click()
        eng.wait_for_url(url)
        eng.get_by_label("Tambah catatan").fill("nginx upstream php-fpm mati; layanan dijalankan ulang")
        eng.get_by_role("button", name="Tambah catatan").click()
        eng.wait_for_url(re.compile(re.escape(url)))
        assert eng.locator("a", has_text="kondisi terkini").get_attribute("href").startswith("/fleet/vm/")
        eng.get_by_role("button", name="Tandai selesai dikerjakan").click()
        eng.wait_for_url(url)
        assert _state(eng) == "Menunggu konfirmasi OPD"
        _fits(eng)

        # Step 5 and 6: the OPD is told in its inbox and confirms the service runs again.
        admin.goto(f"{base}/inbox")
        assert "menunggu konfirmasi OPD" in admin.locator(".inbox").inner_text()
        admin.get_by_role("link", name=f"#{complaint_id}").first.click()
        admin.get_by_role("button", name="Layanan sudah berjalan, tutup").click()
        admin.wait_for_url(url)
        assert _state(admin) == "Selesai"

        # The output: the resolution report and the monthly report.
        eng.goto(f"{url}/report")
        report = eng.locator("article").inner_text()
        assert "Selesai" in report and "php-fpm" in report and "502 Bad Gateway" in report
        _fits(eng)
        admin.goto(f"{base}/reports/monthly")
        assert f"#{complaint_id}" in admin.locator("#report-rows").inner_text()
        _fits(admin)
        # Keyboard: the first Tab reaches the skip link.
        admin.keyboard.press("Tab")
        assert admin.evaluate("document.activeElement.className") == "skip"
    finally:
        for context in (head_ctx, admin_ctx, eng_ctx):
            context.close()
