"""The console in a real browser (Debian Chromium), as every role (head, admin, engineer, supervisor), at 1280 px
and on a 360 px phone (the menu collapsed), in Indonesian and in English: every area of the role's menu is reached
by clicking, no page scrolls sideways, and axe-core (vendored under tests/vendor) finds no critical or serious
accessibility violation on any of them. Then the two pages that move by themselves: a run's page reaches
"succeeded" and a complaint's page reaches the OPD's confirmation step, both without a reload.

One server and one browser for the module; the combinations are contexts, not servers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pdn_ops import accounts
from pdn_ops.core.db.engine import transaction
from pdn_ops.core.db.tables import AuditRow, utcnow
from pdn_ops.core.i18n import translate
from pdn_ops.runs import model as rem
from pdn_ops.runs import service as svc
from pdn_ops.runs.closure import complaint_link
from pdn_ops.runs.model import Outcome, StepStatus
from pdn_ops.runs.tables import RemediationRunRow
from pdn_ops.runs.worker import Clients, DbJournal, Worker, WorkerConfig
from pdn_ops.web.menu import menu_for
from remediation import registry
from remediation.executors.proxmox import ProxmoxExecutor
from tests.browser_fixtures import VIEWPORTS, menu_link
from tests.complaints.world import PASSWORD, World, file_complaint
from tests.support import serve_in_thread

ROLES = {"engineer": "engineer", "supervisor": "supervisor", "head-dinkes": "opd_head", "admin-dinkes": "opd_admin"}
LANGS = {"id": "id-ID", "en": "en-GB"}
AXE = Path(__file__).resolve().parents[1] / "vendor" / "axe-core" / "axe.min.js"
# axe's verdicts hang on the layout (the phone's cards and collapsed menu, the desktop's tables), not on the words:
# it runs on every page in two of the four combinations, one per layout and language.
AXE_IN = {("phone", "id"), ("desktop", "en")}
BLOCKING = ("critical", "serious")
WORKER = "console-walk"


@pytest.fixture(scope="module")
def server(world: World) -> Iterator[str]:
    file_complaint(world.client("admin-dinkes"), f"vm:{world.vm['web-dinkes']}")
    with serve_in_thread(world.app) as base:
        yield base


def _page(browser: Any, viewport: str, lang: str, *, axe: bool = False) -> tuple[Any, Any]:
    context = browser.new_context(viewport=VIEWPORTS[viewport], locale=LANGS[lang])
    if axe:  # an init script runs outside the page's CSP (script-src 'self'), on every page the context opens
        context.add_init_script(path=str(AXE))
    page = context.new_page()
    page.set_default_timeout(10_000)
    return context, page


def _login(page: Any, server: str, username: str, lang: str) -> None:
    page.goto(f"{server}/login?lang={lang}")
    page.get_by_label(translate("auth.username", lang)).fill(username)
    page.get_by_label(translate("auth.password", lang)).fill(PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_load_state()


def _fits(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"{page.url} scrolls sideways: {width}px"


def _violations(page: Any) -> list[str]:
    """axe-core's critical and serious findings on the page as it stands, one line per rule."""
    passed, found = page.evaluate("""async (blocking) => {
        const result = await axe.run(document, {resultTypes: ['violations']});
        return [result.passes.length, result.violations.filter(v => blocking.includes(v.impact)).map(
            v => `${v.impact} ${v.id}: ${v.help} @ ${v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | ')}`)];
    }""", list(BLOCKING))
    assert passed > 10, f"{page.url}: axe checked almost nothing ({passed} rules passed)"
    return [f"{page.url}: {line}" for line in found]


def _other(value: str, choices: dict[str, Any]) -> str:
    return next(c for c in choices if c != value)


def _every_way(page: Any, server: str, href: str, viewport: str, lang: str) -> tuple[str, list[str]]:
    """The page just opened at (viewport, lang) checked in all four combinations for two page loads: resized to the
    other width, then opened again in the other language at both widths. Returns the viewport it ends at (the
    next menu click happens there, so clicks alternate between the phone's collapsed menu and the desktop's) and
    axe's findings in the two combinations of ``AXE_IN``."""
    violations: list[str] = []
    other_viewport, other_lang = _other(viewport, VIEWPORTS), _other(lang, LANGS)
    for step, (v, lang_now) in enumerate([(viewport, lang), (other_viewport, lang), (other_viewport, other_lang),
                                           (viewport, other_lang)]):
        if step == 2:
            page.goto(f"{server}{href}?lang={lang_now}")
            assert page.locator("html").get_attribute("lang") == lang_now
        page.set_viewport_size(VIEWPORTS[v])
        toggle_shown = page.locator("#menu-toggle").is_visible()
        assert toggle_shown == (v == "phone"), f"{href}: the menu collapses on a phone only"
        _fits(page)
        if (v, lang_now) in AXE_IN:
            violations += _violations(page)
    page.set_viewport_size(VIEWPORTS[other_viewport])
    return other_viewport, violations


@pytest.mark.parametrize("username", list(ROLES))
def test_every_area_is_reachable_from_the_menu_fits_and_passes_axe(browser: Any, server: str,
                                                                   username: str) -> None:
    viewport, lang = "phone", "id"
    context, page = _page(browser, viewport, lang, axe=True)
    violations: list[str] = []
    try:
        _login(page, server, username, lang)
        page.goto(f"{server}/")
        assert not page.locator("#menu").is_visible(), "a collapsed menu on a phone"
        viewport, found = _every_way(page, server, "/", viewport, lang)
        violations += found
        for entry in menu_for(ROLES[username], "/", demo=False)[1:]:
            lang = page.locator("html").get_attribute("lang")
            menu_link(page, translate(entry.label, lang)).click()
            page.wait_for_url(f"{server}{entry.href}")
            assert page.locator('#menu a[aria-current="page"]').get_attribute("href") == entry.href
            viewport, found = _every_way(page, server, entry.href, viewport, lang)
            violations += found
    finally:
        context.close()
    assert not violations, "\n".join(violations)


def test_the_pages_one_click_past_the_menu_fit_and_pass_axe(browser: Any, server: str, world: World) -> None:
    """A complaint's page for each role (staff with their actions, the OPD returned one with its reason and
    photos), its edit form with keep-or-remove, the report, a VM's page with its charts, a user's page."""
    admin = world.client("admin-dinkes")
    asset = f"vm:{world.vm['web-dinkes']}"
    returned = file_complaint(admin, asset).headers["location"]
    assert world.client("engineer").post(f"{returned}/actions/return",
                                         data={"reason": "Sebutkan jam kejadian"}).status_code == 303
    verified = file_complaint(admin, asset).headers["location"]
    assert world.client("engineer").post(f"{verified}/actions/verify", data={}).status_code == 303
    with world.ctx.sessions() as session:
        engineer_id = next(i for i, name in accounts.staff_members(session) if name == "engineer")
    pages = {"engineer": [verified, f"{verified}/report", f"/fleet/vm/{world.vm['web-dinkes']}", "/account"],
             "supervisor": [verified, f"/users/{engineer_id}"],
             "admin-dinkes": [returned, f"{returned}/edit"],
             "head-dinkes": [verified]}
    violations: list[str] = []
    for username, hrefs in pages.items():
        viewport, lang = "phone", "id"
        context, page = _page(browser, viewport, lang, axe=True)
        try:
            _login(page, server, username, lang)
            for href in hrefs:
                page.goto(f"{server}{href}")
                viewport, found = _every_way(page, server, href, viewport, lang)
                lang = page.locator("html").get_attribute("lang")
                violations += found
        finally:
            context.close()
    assert not violations, "\n".join(violations)


def _queued_run(world: World, complaint_id: int) -> int:
    """A restart_vm run for the complaint, requested by the engineer, approved by the supervisor, claimed."""
    ctx = world.ctx
    assert ctx.inventory is not None
    with transaction(ctx.sessions) as session:
        run = svc.request_run(session, ctx.inventory, playbook="restart_vm", target="pdn1/101", params={},
                              requester=svc.Requester("engineer", opd="dinkes"), idempotency_key=uuid.uuid4().hex,
                              policy=rem.Policy(), complaint_id=complaint_id)
        svc.approve(session, run.id, engineer="supervisor")
        run_id = run.id
    worker = Worker(ctx.engine, ctx.sessions, ctx.inventory, Clients(proxmox=_no_proxmox),
                    WorkerConfig(worker_id=WORKER))
    try:
        assert worker.claim() == run_id
    finally:
        worker.close()
    return run_id


def _no_proxmox(_cluster: str) -> ProxmoxExecutor:
    raise AssertionError("the walk never executes a step against Proxmox")


def _finish(world: World, run_id: int) -> None:
    """What the worker journals and writes while the run executes and when its runner returns."""
    journal = DbJournal(world.ctx.sessions, run_id)
    for position, step in enumerate(registry.playbook("restart_vm").steps({})):
        journal.intent(position, step, f"pve: {step.name}")
        journal.result(position, Outcome(StepStatus.SUCCEEDED, detail="VM 101 is running"), {})
    with transaction(world.ctx.sessions) as session:
        row = session.get(RemediationRunRow, run_id)
        assert row is not None
        row.state = row.outcome = "succeeded"
        row.summary = "restart VM: succeeded"
        row.finished_at = utcnow()
        session.add(AuditRow(actor=WORKER, action="remediation.succeeded", subject=f"remediation_run:{run_id}",
                             detail=row.summary))


def test_a_run_and_its_complaint_move_on_their_pages_without_a_reload(browser: Any, server: str,
                                                                      world: World) -> None:
    """Watched at once on a phone in Indonesian and at 1280 px in English: the engineer's run page and the OPD
    admin's complaint page."""
    url = file_complaint(world.client("admin-dinkes"), f"vm:{world.vm['web-dinkes']}").headers["location"]
    complaint_id = int(url.rsplit("/", 1)[1])
    assert world.client("engineer").post(f"{url}/actions/verify", data={}).status_code == 303
    run_id = _queued_run(world, complaint_id)
    watchers: list[tuple[str, str, Any, Any]] = []  # (username, lang, context, page)
    try:
        for viewport, lang in sorted(AXE_IN):
            for username, path in (("engineer", f"/remediation/runs/{run_id}"), ("admin-dinkes", url)):
                context, page = _page(browser, viewport, lang, axe=True)
                watchers.append((username, lang, context, page))
                _login(page, server, username, lang)
                page.goto(f"{server}{path}")
                page.evaluate("window.__notReloaded = true")
        runs = [(lang, p) for who, lang, _, p in watchers if who == "engineer"]
        opds = [(lang, p) for who, lang, _, p in watchers if who != "engineer"]
        assert all(p.locator(".run-state").get_attribute("data-state") == "running" for _, p in runs)
        assert all(p.locator("#state").get_attribute("data-state") == "verified" for _, p in opds)
        _finish(world, run_id)
        for lang, page in runs:
            page.wait_for_selector(".run-state[data-state=succeeded]")
            assert page.locator(".run-state").inner_text() == translate("remediation.state.succeeded", lang)
        # The health checks confirmed the fix: the closure's link to the complaints service marks it fixed.
        with transaction(world.ctx.sessions) as session:
            complaint_link(world.ctx.complaints.config)(complaint_id, {"summary": "confirmed"}, session)
        for lang, page in opds:
            page.wait_for_selector("#state[data-state=fixed]")
            assert page.locator("#state").inner_text() == translate("complaints.state.fixed", lang)
        violations: list[str] = []
        for _, _, _, page in watchers:
            assert page.evaluate("window.__notReloaded"), f"{page.url} was reloaded"
            _fits(page)
            violations += _violations(page)
        assert not violations, "\n".join(violations)
    finally:
        for _, _, context, _ in watchers:
            context.close()
