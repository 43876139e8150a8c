"""Holidays the supervisor does not have to type: proposed from the holidays package, confirmed by saving."""

from __future__ import annotations

from datetime import date

from pdn_ops.complaints.holiday_proposal import proposal
from tests.complaints.world import World, csrf_of


def test_the_proposal_holds_indonesian_public_holidays_and_cuti_bersama_on_working_days() -> None:
    days = dict(proposal(2027))
    assert days[date(2027, 1, 1)] == "Tahun Baru Masehi"
    assert any(name.startswith("Cuti Bersama") for name in days.values())
    assert all(day.weekday() < 5 for day in days)


def test_a_proposal_fills_the_form_and_only_saving_makes_it_count(world: World) -> None:
    supervisor = world.client("supervisor")
    year = int(supervisor.get("/settings/complaints").text.split('<option value="')[1][:4])
    page = supervisor.get("/settings/complaints", params={"propose": str(year)}).text
    # New Year's Day only when it falls on a working day (2028's is a Saturday): the first day proposed.
    first = min(day for day, _ in proposal(year)).isoformat()
    assert 'id="holiday-proposal"' in page and first in page.split('id="s-holidays"')[1].split("</textarea>")[0]
    api = supervisor.get("/api/v1/settings/complaints").json()
    assert first not in api["holidays"], "a proposal saves nothing"
    holidays = page.split('name="holidays"')[1].split(">", 1)[1].split("</textarea>")[0]
    revision = page.split('name="revision" value="')[1].split('"')[0]
    saved = supervisor.post("/settings/complaints", data={
        "csrf_token": csrf_of(supervisor, "/settings/complaints"), "revision": revision, "sla_days": "7",
        "sla_mode": "working", "holidays": holidays, "autoclose_days": "3"})
    assert saved.status_code in (200, 303), saved.text[:500]
    assert first in supervisor.get("/api/v1/settings/complaints").json()["holidays"]
    engineer_page = world.client("engineer").get("/settings/complaints", params={"propose": str(year)}).text
    assert 'id="holiday-proposal"' not in engineer_page, "the supervisor confirms, nobody else"
