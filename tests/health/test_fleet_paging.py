"""/fleet pages by OPD without building the whole fleet first: a page reads only its OPDs' VMs, sites and health
rows, and the pages put together are the whole view, with the whole fleet's counts on each, on both engines."""

from __future__ import annotations

from sqlalchemy import event

from pdn_ops.health import queries
from tests.health_world import record_world


def test_the_pages_together_are_the_whole_fleet_and_each_keeps_its_counts(session) -> None:
    record_world(session)
    whole = queries.fleet(session)
    assert len(whole.opds) >= 3 and sum(whole.counts.values()) > 0
    assert any(o.incidents for o in whole.opds), "the world has a failing target"
    pages: list[queries.OpdFleet] = []
    offset = 0
    while True:
        page, more = queries.fleet_page(session, offset=offset, limit=2)
        assert len(page.opds) <= 2
        assert page.counts == whole.counts and page.open_incidents == whole.open_incidents
        assert page.infrastructure == whole.infrastructure and page.alerts == whole.alerts
        pages.extend(page.opds)
        if more is None:
            break
        offset = more
    assert [o.code for o in pages] == [o.code for o in whole.opds]
    assert pages == list(whole.opds)  # every VM, site, state and incident as the whole view has it
    assert queries.fleet_page(session, offset=len(whole.opds), limit=2)[0].opds == ()


def test_a_page_reads_only_its_own_opds_assets(session) -> None:
    record_world(session)
    whole = queries.fleet(session)
    first = whole.opds[0]
    statements: list[str] = []

    def seen(_conn, _cursor, statement, _params, _context, _many) -> None:
        statements.append(statement)

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", seen)
    try:
        page, _ = queries.fleet_page(session, offset=0, limit=1)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert [o.code for o in page.opds] == [first.code]
    # The VMs and sites whose views are built are fetched for the page's OPD only (the counts read bare columns).
    built = [s for s in statements if ("FROM vms" in s and "vms.name" in s) or ("FROM sites" in s and "sites.name" in s)]
    assert built and all(" IN " in s for s in built), built
