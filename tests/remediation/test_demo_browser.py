"""The demo as a visitor uses it, in a real Chromium on a 360 px phone: ship a bad update to a lab VM from the lab
panel, then roll it back from the remediation pages (suggested snapshot, plan, request, approval) and watch the
site come back. The app, the remediation worker thread, the lab and its guest are all real."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pdn_ops.accounts.model import Principal, Role
from pdn_ops.app import lab_demo
from pdn_ops.app.factory import create_app
from pdn_ops.app.hooks import remediation_worker as start_hook
from pdn_ops.app.hooks import sync_inventory_at_start
from pdn_ops.app.runtime import build_runtime
from pdn_ops.core.db import migrate
from pdn_ops.core.settings import load_settings
from tests.health_world import Served
from tests.support import free_port

ENGINEER = Principal(user_id=1, username="engineer", role=Role.ENGINEER, opd_id=None)
SUPERVISOR = Principal(user_id=2, username="supervisor", role=Role.SUPERVISOR, opd_id=None)
AS = {"who": ENGINEER}  # four eyes: the test switches to a second person to approve


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    from tests.lab_fixtures import require_lab

    require_lab()
    from pdn_ops.lab.lab import Lab

    directory = tmp_path_factory.mktemp("demo")
    lab = Lab.start(directory / "lab", vms=1, sites=1, time_scale=0.02)
    url = f"sqlite:///{directory / 'app.sqlite3'}"
    migrate.upgrade(url)
    settings = load_settings(demo=True, database_url=url, inventory=lab.inventory_path, run_scheduler=False,
                             data_dir=directory)
    app = create_app(build_runtime(settings), start_hooks=[sync_inventory_at_start, start_hook])
    app.state.runtime.accounts.authenticate = lambda request: AS["who"]
    panel = lab_demo.mount(app, lab)
    port = free_port()
    try:
        with Served(app, port):
            yield f"http://127.0.0.1:{port}", lab
    finally:
        panel.close()
        lab.stop()
        app.state.runtime.engine.dispose()


def _site(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def _fits(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"{page.url} is {width} px wide on a 360 px screen"


def test_a_visitor_ships_a_bad_update_and_rolls_it_back_from_the_ui(demo: tuple[str, Any], browser: Any) -> None:
    base, lab = demo
    AS["who"] = ENGINEER
    site = lab.guest(101).site_urls[0]
    page = browser.new_page(viewport={"width": 360, "height": 740}, locale="en-GB")
    page.set_default_timeout(20_000)
    try:
        page.goto(base + "/lab?lang=en")
        _fits(page)
        page.get_by_role("button", name="Ship a bad update (snapshot first)").click()
        page.wait_for_selector("li[data-state=done]")  # the panel reloads itself until the fault is applied
        assert _site(site) == 500
        page.get_by_role("link", name="Roll back to a snapshot…").click()
        suggested = page.wait_for_selector("[data-suggested]")  # reloads itself until the list is read
        _fits(page)
        name = suggested.get_attribute("data-suggested")
        assert name is not None and name.startswith("before_update_")
        assert page.locator(f"input[value='{name}']").is_checked()
        page.get_by_role("button", name="Dry run").click()
        assert f"snapshot/{name}/rollback" in page.content()
        page.get_by_role("button", name="Request this run").click()
        assert page.get_by_role("button", name="Approve this run").count() == 0  # not by the requester
        AS["who"] = SUPERVISOR
        page.reload()
        page.get_by_role("button", name="Approve this run").click()
        # The page follows the run by itself (htmx polling), without a reload.
        page.wait_for_selector(".run-state[data-state=succeeded]", timeout=60_000)
        deadline = time.monotonic() + 60
        _fits(page)
        while _site(site) != 200:  # the VM was started after the rollback; its guest boots
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert Path(lab.guest(101).state_file.path).exists() and lab.guest(101).state()["release"]["version"] == "1.4.2"
    finally:
        page.close()
