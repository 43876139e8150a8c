"""An OPD's status page: opt-in, public or by share link, names only unless the OPD chooses, 90 daily bars."""

from __future__ import annotations

import re

from sqlalchemy import select

from pdn_ops.complaints import Action, ComplaintRow, act
from pdn_ops.complaints.tables import WorkNoteRow
from pdn_ops.core.db.engine import transaction
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
