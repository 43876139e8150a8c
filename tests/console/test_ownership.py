"""Nobody-owns-it no more: a complaint has an owner at Diskominfo and a priority from its impact."""

from __future__ import annotations

import pytest

from pdn_ops.complaints.model import Category, Priority, priority_from_impact
from tests.complaints.world import World, file_complaint


@pytest.mark.parametrize(("category", "others", "expected"), [
    (Category.SITE_DOWN, 0, Priority.HIGH), (Category.SLOW, 0, Priority.MEDIUM), (Category.SLOW, 1, Priority.HIGH),
    (Category.MORE_RESOURCES, 0, Priority.LOW), (Category.OTHER, 2, Priority.MEDIUM),
    (Category.SITE_DOWN, 3, Priority.HIGH)])
def test_priority_follows_the_kind_of_failure_and_how_many_report_it(category, others, expected) -> None:
    assert priority_from_impact(category, other_reports=others) is expected


def _file(world: World, category: str = "slow") -> str:
    response = file_complaint(world.client("admin-dinkes"), f"vm:{world.vm['web-dinkes']}", category=category)
    assert response.status_code == 303
    return str(response.headers["location"])


def test_an_engineer_takes_a_complaint_and_finds_it_under_assigned_to_me(world: World) -> None:
    url = _file(world)
    engineer = world.client("engineer")
    taken = engineer.post(f"{url}/assign", data={"assignee": "me"}, follow_redirects=True)
    assert taken.status_code == 200 and 'id="flash"' in taken.text and "Penugasan tersimpan." in taken.text
    assert 'id="flash"' not in engineer.get(url).text, "a confirmation is shown once"
    mine = engineer.get("/complaints/queue", params={"mine": "1"}).text
    assert f'href="{url}"' in mine
    assert f'href="{url}"' not in world.client("supervisor").get("/complaints/queue", params={"mine": "1"}).text


def test_an_engineer_cannot_hand_a_complaint_to_someone_else_but_the_supervisor_can(world: World) -> None:
    url = _file(world)
    from pdn_ops.core.db.engine import transaction
    from tests.complaints.world import principal_named

    with transaction(world.ctx.sessions) as session:
        supervisor_id = principal_named(session, "supervisor").user_id
    assert world.client("engineer").post(f"{url}/assign", data={"assignee": str(supervisor_id)}).status_code == 404
    assert world.client("supervisor").post(f"{url}/assign", data={"assignee": str(supervisor_id)}).status_code == 303
    page = world.client("engineer").get(url).text
    assert 'id="owner">' in page and "Ambil pengaduan ini" not in page
    assert world.client("admin-dinkes").post(f"{url}/assign", data={"assignee": "me"}).status_code == 404


def test_a_second_report_of_the_same_asset_is_more_urgent_and_staff_may_change_it(world: World) -> None:
    first, second = _file(world, "slow"), _file(world, "slow")
    engineer = world.client("engineer")
    assert "prio-high" in engineer.get(second).text.split('id="owner"')[0]
    changed = engineer.post(f"{first}/priority", data={"priority": "low"}, follow_redirects=True)
    assert changed.status_code == 200 and "prio-low" in changed.text
    assert "prioritas diubah menjadi Rendah" in changed.text
    assert engineer.post(f"{first}/priority", data={"priority": "urgent!"}).status_code == 409
