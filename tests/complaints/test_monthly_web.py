"""The monthly report's uptime section covers the OPD the report is about, in the page, the PDF and for OPD users."""

from __future__ import annotations

from typing import Any


def test_uptime_follows_the_chosen_opd(world) -> None:
    asked: list[int | None] = []

    def recording_uptime(session: Any, start: Any, end: Any, opd_id: int | None) -> list[tuple[str, float]]:
        asked.append(opd_id)
        return [("VM probe (pdn1/100)", 0.5)]

    parts = world.ctx.complaints
    original = parts.asset_uptime
    parts.asset_uptime = recording_uptime
    try:
        engineer = world.client("engineer")
        assert engineer.get("/reports/monthly?month=2026-10&opd=dinkes").status_code == 200
        assert engineer.get("/reports/monthly.pdf?month=2026-10&opd=dinkes").status_code == 200
        assert engineer.get("/reports/monthly?month=2026-10").status_code == 200
        admin = world.client("admin-disdik")
        page = admin.get("/reports/monthly?month=2026-10")
        assert page.status_code == 200 and "50 %" in page.text  # fractions in the reader's locale
    finally:
        parts.asset_uptime = original
    dinkes, disdik = world.opd["dinkes"], world.opd["disdik"]
    assert asked == [dinkes, dinkes, None, disdik], "staff get the OPD they chose; OPD users always their own"
