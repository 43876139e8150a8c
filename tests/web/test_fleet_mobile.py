"""The fleet pages on a 360 px phone, in a real Chromium: nothing wider than the screen."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from pdn_ops.accounts.model import Principal, Role
from pdn_ops.app.factory import create_app
from pdn_ops.app.runtime import build_runtime
from pdn_ops.core.db import migrate
from pdn_ops.core.db.engine import transaction
from pdn_ops.core.db.tables import SiteRow
from pdn_ops.core.settings import load_settings
from tests.health_world import SITE_B, Served, record_world
from tests.support import free_port


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('mobile') / 'app.sqlite3'}"
    migrate.upgrade(url)
    app = create_app(build_runtime(load_settings(demo=True, database_url=url, run_scheduler=False)))
    app.state.runtime.accounts.authenticate = lambda request: Principal(1, "eng", Role.ENGINEER, None)
    with transaction(app.state.runtime.sessions) as session:
        record_world(session)
        site_id = session.scalar(select(SiteRow.id).where(SiteRow.url == SITE_B))
    assert site_id is not None
    port = free_port()
    with Served(app, port):
        yield f"http://127.0.0.1:{port}", site_id
    app.state.runtime.engine.dispose()


def test_fleet_pages_fit_a_360_px_screen(served: tuple[str, int], browser) -> None:
    base, site_id = served
    page = browser.new_page(viewport={"width": 360, "height": 740}, locale="id-ID")
    try:
        for path in ("/fleet", f"/fleet/site/{site_id}"):
            response = page.goto(base + path)
            assert response is not None and response.status == 200, path
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 360, f"{path} is {width} px wide on a 360 px screen"
        page.goto(base + "/fleet")
        assert page.locator("h1").inner_text() == "Armada VM dan situs"
        assert page.locator(".card .state-down").count() >= 2
    finally:
        page.close()
