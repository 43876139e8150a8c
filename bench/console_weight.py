"""What each home page weighs (HTML, CSS, JavaScript, images) and its time to first render, on the demo, in real
Chromium.

The demo is ``pdn-ops demo`` itself, as a visitor starts it: its own process on a loopback port
(``PDN_OPS_LISTEN``), a fresh data folder, the lab's cluster, VMs and sites checked by the real collectors. After
``--settle`` seconds (the homes then carry some check history in their charts), each demo role logs in and opens
its home: once with an empty cache (a new browser profile holding only the session cookie), then twice more from
the cache, as a user coming back. Sizes are the bytes of each response body as sent (uncompressed: the service
sends no gzip), from the Performance API; "inline SVG" is the part of the HTML that is charts.

    .venv/bin/python -m bench.console_weight [--settle 60] [--viewport 360]

The demo is stopped by its PID (SIGTERM, which stops its lab; SIGKILL after a bound).
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

from bench.serverproc import free_port
from tests.browser_fixtures import ARGS, CHROMIUM

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = re.compile(r"^\s+(\S+)\s+(engineer|supervisor|opd_head|opd_admin)\s")
PASSWORD = re.compile(r"password '([^']+)'")
MEASURE = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const kinds = {html: nav.encodedBodySize, css: 0, js: 0, img: 0, other: 0};
  for (const r of performance.getEntriesByType('resource')) {
    const k = r.initiatorType === 'link' ? 'css' : r.initiatorType === 'script' ? 'js'
            : r.initiatorType === 'img' ? 'img' : 'other';
    kinds[k] += r.encodedBodySize;
  }
  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
  const svg = [...document.querySelectorAll('svg')].reduce((n, s) => n + s.outerHTML.length, 0);
  return {...kinds, svg, fcp: fcp ? fcp.startTime : null, dom: nav.domContentLoadedEventEnd};
}"""


@contextmanager
def demo(data_dir: Path, start_timeout: float = 180.0) -> Iterator[tuple[str, str, list[tuple[str, str]]]]:
    """``pdn-ops demo`` on a free port; yields (base URL, demo password, [(username, role)]) once it answers."""
    port = free_port()
    env = {**os.environ, "PDN_OPS_DATA_DIR": str(data_dir), "PDN_OPS_LISTEN": f"127.0.0.1:{port}"}
    log = (data_dir / "demo.err").open("wb")
    process = subprocess.Popen([str(ROOT / ".venv" / "bin" / "pdn-ops"), "demo"], env=env, cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=log, text=True)
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        accounts: list[tuple[str, str]] = []
        password = ""
        deadline = time.monotonic() + start_timeout
        while True:  # the banner's last lines are the accounts, printed once the server answers
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"the demo did not start; see {data_dir / 'demo.err'}") from None
            if found := PASSWORD.search(line):
                password = found.group(1)
            if found := ACCOUNT.match(line):
                accounts.append((found.group(1), found.group(2)))
            elif accounts:
                break
            if accounts and lines.empty():
                time.sleep(0.5)
                if lines.empty():
                    break
        yield f"http://127.0.0.1:{port}", password, accounts
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _kib(n: float) -> str:
    return f"{n / 1024:.1f} KiB"


def _ms(value: float | None) -> str:
    return f"{value:.0f} ms" if value is not None else "–"


def measure(browser: Any, base: str, username: str, password: str, viewport: dict[str, int]
            ) -> tuple[dict[str, Any], list[float]]:
    login = browser.new_context(viewport=viewport)
    page = login.new_page()
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.locator("main form button[type=submit]").click()
    page.wait_for_load_state()
    state = login.storage_state()
    login.close()
    context = browser.new_context(viewport=viewport, storage_state=state)  # an empty cache, the cookie only
    page = context.new_page()
    page.goto(f"{base}/")
    page.wait_for_load_state("load")
    cold = page.evaluate(MEASURE)
    warm = []
    for _ in range(2):
        page.goto(f"{base}/")
        page.wait_for_load_state("load")
        fcp = page.evaluate(MEASURE)["fcp"]
        if fcp is not None:
            warm.append(float(fcp))
    context.close()
    return cold, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settle", type=float, default=60.0, help="seconds of checks before measuring")
    parser.add_argument("--viewport", type=int, default=360, help="width in px (height 740)")
    args = parser.parse_args()
    viewport = {"width": args.viewport, "height": 740}
    data_dir = Path(tempfile.mkdtemp(prefix="console-weight-"))
    with demo(data_dir) as (base, password, accounts):
        time.sleep(args.settle)
        roles: dict[str, str] = {}
        for username, role in accounts:
            roles.setdefault(role, username)  # one account per role: the first OPD's head and admin
        print(f"pdn-ops demo at {base}, {args.settle:.0f} s after start, {args.viewport} px")
        print("| home of | HTML (inline SVG) | CSS | JS | images | first render, empty cache | "
              "first render, cached (median of 2) |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
            try:
                for role in ("engineer", "supervisor", "opd_head", "opd_admin"):
                    if role not in roles:
                        continue
                    cold, warm = measure(browser, base, roles[role], password, viewport)
                    print(f"| {roles[role]} | {_kib(cold['html'])} ({_kib(cold['svg'])}) | {_kib(cold['css'])} | "
                          f"{_kib(cold['js'])} | {_kib(cold['img'])} | {_ms(cold['fcp'])} | "
                          f"{_ms(statistics.median(warm) if warm else None)} |")
            finally:
                browser.close()


if __name__ == "__main__":
    main()
