"""A home per role, and pictures where people would rather look than read (server-drawn SVG)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from pdn_ops.core.db.engine import transaction
from pdn_ops.core.db.tables import SiteRow, utcnow
from pdn_ops.health import HealthCheckRow, HealthTargetRow
from pdn_ops.health.tables import HealthRollupRow
from tests.complaints.world import World


@pytest.fixture(scope="module")
def observed(world: World) -> int:
    """Dinkes's portal observed for 30 days: up, except two down hours yesterday; checks every 15 min today."""
    now = utcnow()
    with transaction(world.ctx.sessions) as session:
        site = session.scalar(select(SiteRow).where(SiteRow.id == world.site["Portal Dinkes"]))
        assert site is not None
        target = HealthTargetRow(kind="site", ref=site.url, opd_id=site.opd_id, site_id=site.id, state="up")
        session.add(target)
        session.flush()
        this_hour = now.replace(minute=0, second=0, microsecond=0)
        for h in range(30 * 24):
            hour = this_hour - timedelta(hours=h)
            session.add(HealthRollupRow(target_id=target.id, hour=hour, checks=4, failures=0,
                                        up_seconds=0.0 if h in (26, 27) else 3600.0))
        for q in range(96):
            session.add(HealthCheckRow(target_id=target.id, at=now - timedelta(minutes=15 * q), ok=q != 5,
                                       duration_s=0.05 + (q % 7) / 100))
        return site.id


def test_an_opd_admin_sees_the_state_and_uptime_of_its_own_assets_only(world: World, observed: int) -> None:
    page = world.client("admin-dinkes").get("/").text
    assert "Kondisi aset Anda" in page and "Portal Dinkes" in page and "SIMPEG" not in page
    assert page.count('class="chart bars"') >= 1
    assert re.search(r"Ketersediaan 30 hari terakhir: 99,7\d? %", page), "two of 720 hours down, decimal comma"
    assert "Menunggu tindakan Anda" in page


def test_engineers_and_the_supervisor_get_their_own_homes(world: World, observed: int) -> None:
    engineer = world.client("engineer").get("/").text
    for text in ("Insiden terbuka menurut akar masalah", "Ditugaskan kepada saya", "Antrean menurut tenggat SLA",
                 "Persetujuan yang menunggu Anda", "Pemulihan yang sedang berjalan"):
        assert text in engineer, text
    assert "Beban per teknisi" not in engineer
    supervisor = world.client("supervisor").get("/").text
    assert "Kepatuhan SLA" in supervisor and "Beban per teknisi" in supervisor
    panels = world.client("engineer").get("/home/panels")
    assert panels.status_code == 200 and 'hx-trigger="every 10s"' in panels.text and "<html" not in panels.text


def test_a_site_page_draws_its_uptime_and_response_times(world: World, observed: int) -> None:
    page = world.client("engineer").get(f"/fleet/site/{observed}").text
    bars = re.findall(r'<svg class="chart bars"[^>]*>.*?</svg>', page, re.S)
    assert len(bars) == 2 and [b.count("<rect") for b in bars] == [24, 30]
    assert "#a4161a" in bars[1] or "#8a5a00" in bars[1], "yesterday's two down hours colour its bar"
    line = re.search(r'<svg class="chart line"[^>]*>.*?</svg>', page, re.S)
    assert line and "<polyline" in line.group(0) and 'fill="#a4161a"' in line.group(0), "a failed check is marked"
    assert "paling lambat 110 md" in page
