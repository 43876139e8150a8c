"""An OPD's status page: opt-in, public or by share link, names only unless the OPD chooses, 90 daily bars."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from pdn_ops.complaints import Action, ComplaintRow, act
from pdn_ops.complaints.tables import WorkNoteRow
from pdn_ops.core.db.engine import transaction
from pdn_ops.core.db.tables import SiteRow, utcnow
from pdn_ops.health.history import Outage, fold_outages
from pdn_ops.health.tables import HealthEventRow, HealthTargetRow
from tests.complaints.world import file_complaint, principal_named


def _save(client, site: list[int], **fields: str) -> None:
    page = client.get("/status-settings").text
    version = re.search(r'name="version" value="(\d+)"', page)
    assert version
    data: dict[str, str | list[str]] = {"version": version.group(1), **fields}
    data["site"] = [str(s) for s in site]
    assert client.post("/status-settings", data=data).status_code == 303


def test_a_status_page_shows_only_what_the_opd_chose(world) -> None:
    admin, anonymous = world.client("admin-dinkes"), world.client()
    site = world.site["Portal Dinkes"]
    assert anonymous.get("/status/dinkes").status_code == 404, "off until the OPD turns it on"
    _save(admin, [site], enabled="1", public="1")
    page = anonymous.get("/status/dinkes")
    assert page.status_code == 200 and "public" in page.headers["cache-control"]
    text = page.text
    assert "Portal Dinkes" in text and "Tidak diketahui" in text
    assert text.count("<rect") == 90, "one bar a day for 90 days"
    for secret in ("127.0.10.1", "web-dinkes", "pdn1", "http://127.0.10.1/"):
        assert secret not in text, f"{secret} leaked on the public page"
    assert "Service status" in anonymous.get("/status/dinkes?lang=en").text

    _save(admin, [site], enabled="1", public="1", show_addresses="1")
    assert "http://127.0.10.1/" in anonymous.get("/status/dinkes").text, "the OPD chose to show addresses"

    _save(admin, [site], enabled="1")  # not public: only the share link opens it
    assert anonymous.get("/status/dinkes").status_code == 404
    link = re.search(r'href="(/status-link/[^"]+)"', admin.get("/status-settings").text)
    assert link and anonymous.get(link.group(1)).status_code == 200
    assert "private" in anonymous.get(link.group(1)).headers["cache-control"]
    _save(admin, [site], enabled="1", new_link="1")
    assert anonymous.get(link.group(1)).status_code == 404, "a new link retires the old one"

    other = [s for s in world.site.values() if s != site]
    assert other, "the example inventory has a site of another OPD"
    refused = admin.post("/status-settings", data={"site": [str(other[0])]})
    assert refused.status_code == 404, "another OPD's site cannot be put on this page"
    assert anonymous.get("/status/disdik").status_code == 404
    assert anonymous.get("/status-link/" + "x" * 65).status_code in (404, 422)


def test_resolution_notes_are_shown_only_when_the_opd_chooses(world) -> None:
    admin, anonymous = world.client("admin-dinkes"), world.client()
    site = world.site["Portal Dinkes"]
    assert file_complaint(admin, f"site:{site}").status_code == 303
    note = "Sertifikat TLS diperpanjang; situs kembali normal"
    with transaction(world.ctx.sessions) as session:
        cid = session.scalar(select(ComplaintRow.id).order_by(ComplaintRow.id.desc()))
        assert cid is not None
        engineer = principal_named(session, "engineer")
        for step, reason in ((Action.VERIFY, ""), (Action.START, ""), (Action.FIX, note)):
            act(session, engineer, cid, step, reason=reason, config=world.ctx.complaints.config)
        session.add(WorkNoteRow(complaint_id=cid, author_id=engineer.user_id, body="internal: password ada di vault"))
    _save(admin, [site], enabled="1", public="1")
    text = anonymous.get("/status/dinkes").text
    assert "sedang ditangani" in text and note not in text, "notes are off by default"
    _save(admin, [site], enabled="1", public="1", show_notes="1")
    text = anonymous.get("/status/dinkes").text
    assert note in text and "vault" not in text, "the OPD's note, never the work notes"
    assert anonymous.get("/status-link/" + "x" * 65).status_code in (404, 422)


def test_outages_seen_by_the_health_checks_are_on_the_page_without_their_detail(world) -> None:
    admin, anonymous = world.client("admin-dinkes"), world.client()
    site = world.site["Portal Dinkes"]
    now = utcnow()
    secret = "connect ECONNREFUSED 127.0.10.1:80 (nginx.service inactive)"
    with transaction(world.ctx.sessions) as session:
        row = session.scalar(select(SiteRow).where(SiteRow.id == site))
        assert row is not None
        target = session.scalar(select(HealthTargetRow).where(HealthTargetRow.kind == "site",
                                                              HealthTargetRow.ref == row.url))
        if target is None:
            target = HealthTargetRow(kind="site", ref=row.url, site_id=site, opd_id=row.opd_id)
            session.add(target)
        target.state, target.since, target.detail = "degraded", now - timedelta(minutes=30), secret
        session.flush()
        # Down for an hour two days ago (nobody complained), degraded since half an hour ago.
        for at, old, new in ((now - timedelta(days=2), "up", "down"), (now - timedelta(days=2, minutes=-60), "down", "up"),
                             (now - timedelta(minutes=30), "up", "degraded")):
            session.add(HealthEventRow(target_id=target.id, at=at, old_state=old, new_state=new, reason="http",
                                       detail=secret))
    _save(admin, [site], enabled="1", public="1")
    text = anonymous.get("/status/dinkes").text
    assert "tidak dapat diakses (terdeteksi pemantauan)" in text
    assert "lambat atau terganggu sebagian (terdeteksi pemantauan)" in text
    ongoing = text.index("lambat atau terganggu sebagian")
    assert ongoing < text.index("tidak dapat diakses (terdeteksi"), "the ongoing outage comes first"
    for leaked in ("ECONNREFUSED", "127.0.10.1", "nginx.service"):
        assert leaked not in text
    assert "unreachable (seen by monitoring)" in anonymous.get("/status/dinkes?lang=en").text


def test_outages_fold_from_state_changes() -> None:
    t0 = utcnow() - timedelta(days=3)
    at = [t0 + timedelta(hours=h) for h in range(6)]
    spans = fold_outages(7, [(at[0], "degraded"), (at[1], "down"), (at[2], "unknown"), (at[3], "up"),
                             (at[4], "down")])
    assert spans == [Outage(7, "down", at[0], at[3]), Outage(7, "down", at[4], None)]
    assert fold_outages(7, [(at[0], "unknown"), (at[1], "up")]) == []
    # Down since before the window, no change inside it: one outage from the window's start, still going.
    assert fold_outages(7, [], "down", at[5]) == [Outage(7, "down", at[5], None)]
    assert fold_outages(7, [], "up", at[5]) == []
