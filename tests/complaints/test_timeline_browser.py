"""The complaint timeline with a long remediation run (plans, UPIDs, output) fits a 360-px phone, in Chromium."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser_fixtures import VIEWPORTS
from tests.complaints.test_browser import _fits, _login, _page
from tests.complaints.test_browser import server as server  # the module's uvicorn fixture, reused
from tests.complaints.test_timeline_web import add_run
from tests.complaints.world import World, file_complaint


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_the_timeline_fits_the_screen_for_staff_and_opd_users(browser: Any, server: str, world: World,
                                                               viewport: str) -> None:
    url = file_complaint(world.client("admin-dinkes"), f"vm:{world.vm['web-dinkes']}").headers["location"]
    run_id = add_run(world, int(url.rsplit("/", 1)[1]), steps=4)
    for username in ("engineer", "admin-dinkes"):
        context, page = _page(browser, viewport)
        try:
            _login(page, server, username)
            page.goto(f"{server}{url}")
            events = page.locator("ol.timeline > li")
            assert events.count() >= 4
            assert (page.locator(f'a[href="/remediation/runs/{run_id}"]').count() > 0) == (username == "engineer")
            _fits(page)
        finally:
            context.close()
