"""The console in a real browser (Debian Chromium): every role reaches every area of its menu by clicking, on a
360 px phone (the menu collapsed, in Indonesian) and at 1280 px (in English), and no page scrolls sideways."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pdn_ops.core.i18n import translate
from pdn_ops.web.menu import menu_for
from tests.browser_fixtures import VIEWPORTS, menu_link
from tests.complaints.world import PASSWORD, World, file_complaint
from tests.support import serve_in_thread

ROLES = {"engineer": "engineer", "supervisor": "supervisor", "head-dinkes": "opd_head", "admin-dinkes": "opd_admin"}


@pytest.fixture(scope="module")
def server(world: World) -> Iterator[str]:
    file_complaint(world.client("admin-dinkes"), f"vm:{world.vm['web-dinkes']}")
    with serve_in_thread(world.app) as base:
        yield base


def _fits(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"{page.url} scrolls sideways: {width}px"


@pytest.mark.parametrize(("viewport", "lang"), [("phone", "id"), ("desktop", "en")])
@pytest.mark.parametrize("username", list(ROLES))
def test_every_area_is_reachable_from_the_menu(browser: Any, server: str, username: str, viewport: str,
                                               lang: str) -> None:
    context = browser.new_context(viewport=VIEWPORTS[viewport], locale="id-ID" if lang == "id" else "en-GB")
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        page.goto(f"{server}/login?lang={lang}")
        page.get_by_label(translate("auth.username", lang)).fill(username)
        page.get_by_label(translate("auth.password", lang)).fill(PASSWORD)
        page.locator("main form button[type=submit]").click()
        page.wait_for_load_state()
        page.goto(f"{server}/")
        toggle = page.locator("#menu-toggle")
        if viewport == "phone":
            assert toggle.is_visible() and not page.locator("#menu").is_visible(), "a collapsed menu on a phone"
        else:
            assert not toggle.is_visible() and page.locator("#menu").is_visible()
        _fits(page)
        for entry in menu_for(ROLES[username], "/", demo=False)[1:]:
            menu_link(page, translate(entry.label, lang)).click()
            page.wait_for_url(f"{server}{entry.href}")
            assert page.locator('#menu a[aria-current="page"]').get_attribute("href") == entry.href
            _fits(page)
    finally:
        context.close()
