"""The supervisor's settings and users screens in headless Chromium on a 360-px phone, SQLite and PostgreSQL."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

from tests.browser_fixtures import VIEWPORTS, menu_link
from tests.complaints.world import PASSWORD, World
from tests.support import serve_in_thread


@pytest.fixture(scope="module")
def server(world: World) -> Iterator[str]:
    with serve_in_thread(world.app) as base:
        yield base


def _fits(page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"{page.url} scrolls sideways: {width}px"


def test_a_supervisor_uses_settings_and_users_on_a_phone(browser, server: str) -> None:
    context = browser.new_context(viewport=VIEWPORTS["phone"], locale="id-ID")
    page = context.new_page()
    try:
        page.goto(f"{server}/login")
        page.get_by_label("Nama pengguna").fill("supervisor")
        page.get_by_label("Kata sandi").fill(PASSWORD)
        page.get_by_role("button", name="Masuk").click()
        page.wait_for_url(re.compile(r"/complaints"))

        # Settings: a bad value is refused with its reason, what was typed stays, then a good save.
        menu_link(page, "Pengaturan").click()
        page.wait_for_url(re.compile(r"/settings/complaints$"))
        _fits(page)
        page.get_by_label("Batas waktu penyelesaian (hari)").fill("0")
        page.get_by_label("Hari kerja (Senin-Jumat, tanpa hari libur)").check()
        page.get_by_label("Hari libur (satu tanggal TTTT-BB-HH per baris)").fill("2030-12-25\n2030-02-30")
        page.get_by_role("button", name="Simpan pengaturan").click()
        assert page.get_by_role("alert").first.is_visible()
        assert "2030-02-30" in page.locator("#err-holidays").inner_text()
        assert page.get_by_label("Batas waktu penyelesaian (hari)").input_value() == "0"
        assert page.get_by_label("Hari kerja (Senin-Jumat, tanpa hari libur)").is_checked()
        _fits(page)
        page.get_by_label("Batas waktu penyelesaian (hari)").fill("7")
        page.get_by_label("Hari libur (satu tanggal TTTT-BB-HH per baris)").fill("2030-12-25")
        page.get_by_role("button", name="Simpan pengaturan").click()
        page.wait_for_url(re.compile(r"saved=1"))
        assert "Pengaturan disimpan" in page.get_by_role("status").inner_text()
        assert "holidays added: 2030-12-25" in page.locator("#settings-history").inner_text()
        _fits(page)

        # Users: create an engineer with a WhatsApp number, then deactivate the account.
        name = f"insinyur-{uuid.uuid4().hex[:4]}"
        menu_link(page, "Pengguna").click()
        page.wait_for_url(re.compile(r"/users$"))
        _fits(page)
        form = page.locator("form[method='post'][action='/users']")
        form.get_by_label("Nama pengguna").fill(name)
        form.get_by_label("Nama lengkap").fill("Insinyur Baru")
        form.get_by_label("Peran").select_option("engineer")
        form.get_by_label("Kata sandi awal (minimal 10 karakter)").fill("insinyur-pass-1")
        form.get_by_label("Nomor WhatsApp (format +62..., boleh kosong)").fill("+62 812 0000 1111")
        form.get_by_role("button", name="Buat akun").click()
        page.wait_for_url(re.compile(r"/users/\d+\?done=created"))
        assert "+6281200001111" in page.locator("#user-facts").inner_text()
        _fits(page)
        page.get_by_role("checkbox", name=re.compile("Saya yakin menonaktifkan")).check()  # the confirmation step
        page.get_by_role("button", name="Nonaktifkan akun").click()
        page.wait_for_url(re.compile(r"done=deactivated"))
        assert page.locator("#user-status").inner_text() == "nonaktif"
        _fits(page)
    finally:
        context.close()
