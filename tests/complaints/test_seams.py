"""The seams other parts of pdn-ops plug into: asset health, remediation actions, listeners, timeline entries."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from pdn_ops.complaints import service as complaints
from pdn_ops.complaints.service import ComplaintEvent
from pdn_ops.core.db.engine import transaction
from tests.complaints.world import World, file_complaint


@pytest.fixture
def seams(world: World) -> Iterator[list[ComplaintEvent]]:
    parts = world.ctx.complaints
    seen: list[ComplaintEvent] = []
    saved = replace(parts)
    parts.asset_states = lambda session, refs: {ref: "down" if ref.startswith("vm:") else "unknown" for ref in refs}
    parts.extra_actions = [lambda session, row, user: [{"label": "Restart nginx", "url": "/remediation/1"}]]
    parts.config.listeners.add(lambda session, event: seen.append(event))
    yield seen
    parts.asset_states, parts.extra_actions = saved.asset_states, saved.extra_actions
    parts.config.listeners._listeners.pop()


def test_the_picker_shows_live_health_and_staff_see_fitting_actions(world: World, seams) -> None:
    admin = world.client("admin-dinkes")
    form = admin.get("/complaints/new").text
    assert "Kondisi: Mati" in form and "Kondisi: Tidak diketahui" in form, "VMs have a state, sites unknown"
    response = file_complaint(admin, f"vm:{world.vm['web-dinkes']}")
    url = response.headers["location"]
    assert [e.action for e in seams] == ["submit"], "listeners hear every state change"
    assert "Restart nginx" not in world.client("engineer").get(url).text, "offered after verification only"
    assert world.client("engineer").post(f"{url}/actions/verify").status_code == 303
    assert "Restart nginx" in world.client("engineer").get(url).text
    assert "Restart nginx" not in admin.get(url).text, "playbooks are for Diskominfo"
    assert admin.get("/api/v1/assets").json()[0]["health"] in ("down", "unknown")
    with transaction(world.ctx.sessions) as session:
        complaints.record(session, int(url.rsplit("/", 1)[1]), actor="remediation",
                          action="remediation.restart_service", detail="nginx.service")
    page = world.client("engineer").get(url)
    assert page.status_code == 200 and "remediation.restart_service" in page.text


def test_concurrent_state_changes_queue_instead_of_failing(world: World) -> None:
    import threading

    from sqlalchemy import func, select

    from pdn_ops.complaints.tables import WorkNoteRow

    url = file_complaint(world.client("admin-dinkes"), f"vm:{world.vm['web-dinkes']}").headers["location"]
    engineers = [world.client("engineer") for _ in range(6)]
    codes: list[int] = []

    def write(client) -> None:
        for i in range(5):
            codes.append(client.post(f"{url}/notes", data={"body": f"catatan {i}"}).status_code)

    threads = [threading.Thread(target=write, args=(c,)) for c in engineers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert codes == [303] * 30
    with transaction(world.ctx.sessions) as session:
        stored = session.scalar(select(func.count()).select_from(WorkNoteRow).where(
            WorkNoteRow.complaint_id == int(url.rsplit("/", 1)[1])))
    assert stored == 30


def test_english_pages_and_the_openapi_description(world: World) -> None:
    admin = world.client("admin-dinkes")
    english = admin.get("/complaints/new?lang=en").text
    assert '<html lang="en">' in english and "New complaint" in english and "Description of the technical" in english
    schema = world.client().get("/api/v1/openapi.json").json()
    for path in ("/api/v1/complaints", "/api/v1/complaints/queue", "/api/v1/complaints/{complaint_id}",
                 "/api/v1/complaints/{complaint_id}/actions/{action}", "/api/v1/assets", "/api/v1/me"):
        assert path in schema["paths"], path
    listed = schema["paths"]["/api/v1/complaints"]["get"]["responses"]["200"]["content"]["application/json"]
    assert listed["schema"]["$ref"].endswith("/ComplaintPage")
    assert "/complaints/{complaint_id}" not in schema["paths"], "HTML pages stay out of the API description"
