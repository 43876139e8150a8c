"""Headless Debian Chromium driven by Playwright, for the browser tests of every area.

Module-scoped on purpose: Playwright's sync API keeps an event loop running in the main thread while it is open,
which would break any later test that runs a loop of its own (asyncio.run, pytest-asyncio).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support import missing

CHROMIUM = Path("/usr/bin/chromium")
# No outside lookups: every name but localhost resolves to nothing.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync", "--disable-quic",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1"]
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 360, "height": 740}}


# The future-clock run (make test-future) moves this process's clock with libfaketime; Chromium and Playwright's
# Node driver hang under that library. The browser keeps the real clock, as a user's own device would.
FAKETIME_VARS = ("LD_PRELOAD", "FAKETIME", "FAKETIME_DONT_FAKE_MONOTONIC")


@contextmanager
def _browser_clock() -> Iterator[None]:
    saved = {name: os.environ.pop(name) for name in FAKETIME_VARS if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        missing("Chromium", f"{CHROMIUM} is not installed (Debian package chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("Playwright", "the playwright Python package is not installed (test extra)")
    with _browser_clock():
        driver = sync_playwright().start()
        try:
            chromium = driver.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        except BaseException:
            driver.stop()
            raise
    try:
        yield chromium
    finally:
        chromium.close()
        driver.stop()


def menu_link(page: Any, name: str) -> Any:
    """The menu's link called `name`, with the menu opened first where it is collapsed (a phone)."""
    toggle = page.locator("#menu-toggle")
    if toggle.count() and toggle.is_visible() and toggle.get_attribute("aria-expanded") != "true":
        toggle.click()
    return page.locator("#menu").get_by_role("link", name=name, exact=True)
