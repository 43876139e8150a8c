"""What each home page weighs (HTML, CSS, JavaScript, images) and its time to first render, in real Chromium.

The example inventory on SQLite (tests/complaints/world.py: two OPDs, their heads and admins, an engineer, a
supervisor), a complaint in the queue, served by uvicorn in a thread on loopback; each role logs in and loads its
home three times (the first cold, then from the browser's cache as a user would come back). Sizes are the bytes
on the wire (uncompressed: no gzip middleware), from the Performance API.

    .venv/bin/python -m bench.console_weight
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.browser_fixtures import ARGS, CHROMIUM
from tests.complaints.world import PASSWORD, build_world, file_complaint
from tests.support import serve_in_thread

ROLES = ("engineer", "supervisor", "head-dinkes", "admin-dinkes")
MEASURE = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const kinds = {html: nav.encodedBodySize, css: 0, js: 0, img: 0, other: 0};
  for (const r of performance.getEntriesByType('resource')) {
    const k = r.initiatorType === 'link' ? 'css' : r.initiatorType === 'script' ? 'js'
            : r.initiatorType === 'img' ? 'img' : 'other';
    kinds[k] += r.encodedBodySize;
  }
  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
  return {...kinds, fcp: fcp ? fcp.startTime : null, dom: nav.domContentLoadedEventEnd};
}"""


def main() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="console-weight-"))
    world = build_world(f"sqlite:///{data_dir / 'app.sqlite3'}", data_dir)
    file_complaint(world.client("admin-dinkes"), f"vm:{world.vm['web-dinkes']}")
    print("| home of | HTML | CSS | JS | images | first render (cold) | first render (warm, median of 2) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    with serve_in_thread(world.app) as base, sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        for username in ROLES:
            context = browser.new_context(viewport={"width": 360, "height": 740})
            page = context.new_page()
            page.goto(f"{base}/login")
            page.fill("#username", username)
            page.fill("#password", PASSWORD)
            page.locator("main form button[type=submit]").click()
            page.wait_for_load_state()
            runs = []
            for _ in range(3):
                page.goto(f"{base}/")
                page.wait_for_load_state("load")
                runs.append(page.evaluate(MEASURE))
            first = runs[0]
            paints = [r["fcp"] for r in runs[1:] if r["fcp"] is not None]
            warm = f"{statistics.median(paints):.0f} ms" if paints else "–"
            cold = f"{first['fcp']:.0f} ms" if first["fcp"] is not None else "–"
            print(f"| {username} | {first['html'] / 1024:.1f} KiB | {first['css'] / 1024:.1f} KiB | "
                  f"{first['js'] / 1024:.1f} KiB | {first['img'] / 1024:.1f} KiB | {cold} | {warm} |")
            context.close()
        browser.close()


if __name__ == "__main__":
    main()
