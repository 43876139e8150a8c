"""The two hot JSON lists (OPD list, engineers' queue): same rules and the same JSON as the response models.

They take a faster path than the other routes (authentication and query in one session, hand-built JSON), so
these tests hold that path to the rules every other route follows.
"""

from __future__ import annotations

from sqlalchemy import text

from pdn_ops.complaints.api import ComplaintOut, ComplaintPage
from pdn_ops.core.db.engine import read_only, transaction
from tests.complaints.world import file_complaint


def _file_some(world, count: int) -> None:
    admin = world.client("admin-dinkes")
    for n in range(count):
        response = file_complaint(admin, f"vm:{world.vm['web-dinkes']}", description=f"Layanan mati ke-{n} hari ini")
        assert response.status_code == 303, response.text


def test_the_lists_json_matches_the_documented_models_and_pages_by_cursor(world) -> None:
    _file_some(world, 3)
    engineer = world.client("engineer")
    seen: list[int] = []
    cursor = None
    while True:
        url = "/api/v1/complaints?limit=2" + (f"&cursor={cursor}" if cursor else "")
        response = engineer.get(url)
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        page = ComplaintPage.model_validate_json(response.content)
        # Hand-built JSON equals what the documented model would have produced for the same values.
        assert response.json() == page.model_dump(mode="json")
        assert all(isinstance(item, ComplaintOut) for item in page.items)
        seen += [item.id for item in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) >= 3
    first = response.json()["items"][-1] if response.json()["items"] else engineer.get(url).json()["items"][-1]
    assert first["created_at"].endswith("Z") and first["asset"].startswith(("vm:", "site:"))
    queue = engineer.get("/api/v1/complaints/queue?limit=1").json()
    assert queue["items"] and queue["items"][0]["sla_status"] in {"ok", "at_risk_50", "at_risk_80", "breached"}
    after = engineer.get(f"/api/v1/complaints/queue?limit=1&cursor={queue['next_cursor']}").json()
    assert after["items"][0]["id"] != queue["items"][0]["id"]


def test_the_lists_keep_tenancy_roles_and_refuse_bad_input(world) -> None:
    _file_some(world, 1)
    other = world.client("admin-disdik")
    dinkes = world.opd["dinkes"]
    # An OPD user's scope comes from the session: asking for another OPD's id changes nothing.
    items = other.get(f"/api/v1/complaints?opd_id={dinkes}").json()["items"]
    assert all(item["opd_id"] == world.opd["disdik"] for item in items)
    assert other.get("/api/v1/complaints/queue").status_code == 404, "the queue is staff-only"
    assert world.client().get("/api/v1/complaints").status_code == 401
    engineer = world.client("engineer")
    assert engineer.get("/api/v1/complaints?cursor=abc").status_code == 404
    assert engineer.get("/api/v1/complaints?state=nonsense").status_code == 404
    assert engineer.get("/api/v1/complaints/queue?cursor=2026-01-01T00:00:00~5").status_code == 404, "naive time"
    assert engineer.get("/api/v1/complaints?limit=0").status_code == 422
    staff_view = engineer.get(f"/api/v1/complaints?opd_id={dinkes}").json()["items"]
    assert staff_view and all(item["opd_id"] == dinkes for item in staff_view)


def test_a_read_only_session_leaves_pooled_connections_transactional(world) -> None:
    """PostgreSQL reads run in autocommit; the connection must come back to the pool as it left."""
    engine = world.ctx.engine
    with read_only(world.ctx.sessions) as session:
        assert session.execute(text("SELECT 1")).scalar() == 1
    with transaction(world.ctx.sessions) as session:
        session.execute(text("CREATE TABLE read_only_probe (n integer)"))
    try:
        for _ in range(engine.pool.size() + 1 if hasattr(engine.pool, "size") else 2):
            try:
                with transaction(world.ctx.sessions) as session:
                    session.execute(text("INSERT INTO read_only_probe VALUES (1)"))
                    raise RuntimeError("roll back")
            except RuntimeError:
                pass
        with world.ctx.sessions() as session:
            assert session.execute(text("SELECT count(*) FROM read_only_probe")).scalar() == 0, "the rollbacks rolled back"
    finally:
        with transaction(world.ctx.sessions) as session:
            session.execute(text("DROP TABLE read_only_probe"))


def test_a_list_entry_from_a_plain_row_is_the_detail_route_s_entry(world) -> None:
    from pydantic_core import to_json

    from pdn_ops.complaints import queries as complaint_queries
    from pdn_ops.complaints.api import _item, _light_item
    from pdn_ops.complaints.tables import ComplaintRow
    from pdn_ops.core.db.tables import utcnow

    _file_some(world, 2)
    policy = world.ctx.complaints.config.policy
    now = utcnow()
    with read_only(world.ctx.sessions) as session:
        rows = session.connection().execute(
            complaint_queries._listing_statement(False, False, False, True), {"limit": 50}).all()
        assert rows
        for row in rows:
            orm = session.get(ComplaintRow, row.id)
            assert to_json(_light_item(row, now, policy)) == to_json(_item(orm, now, policy))
