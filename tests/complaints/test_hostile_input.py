"""Hostile input refused at the edge, the same way on both engines: ids beyond the database's integer range,
control characters (NUL first) in any text or parameter, JSON nested too deep or with unknown fields."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from pdn_ops.complaints.tables import ComplaintRow
from pdn_ops.core.db.engine import transaction
from pdn_ops.web.input_guard import json_depth
from tests.complaints.world import csrf_of, file_complaint, jpeg

HUGE = [str(2**63), str(2**63 + 1), str(2**31), "99999999999999999999999", "-" + str(2**63)]


@pytest.mark.parametrize("number", HUGE)
def test_ids_beyond_the_integer_range_are_not_found_in_any_path(world, number: str) -> None:
    admin, engineer = world.client("admin-dinkes"), world.client("engineer")
    for client, path in [(admin, f"/complaints/{number}"), (admin, f"/complaints/{number}/photos/{number}"),
                         (admin, f"/api/v1/complaints/{number}"), (engineer, f"/fleet/vm/{number}"),
                         (engineer, f"/remediation/runs/{number}"), (engineer, f"/api/v1/remediation/runs/{number}")]:
        answer = client.get(path)
        assert answer.status_code == 404, (path, answer.status_code)
    posted = engineer.post(f"/complaints/{number}/actions/verify", data={"csrf_token": csrf_of(engineer)})
    assert posted.status_code == 404


@pytest.mark.parametrize("number", HUGE)
def test_ids_beyond_the_integer_range_are_refused_in_any_query(world, number: str) -> None:
    admin, engineer = world.client("admin-dinkes"), world.client("engineer")
    for client, path in [(admin, f"/complaints?cursor={number}"), (admin, f"/api/v1/complaints?cursor={number}"),
                         (engineer, f"/api/v1/complaints/queue?cursor=2026-01-01T00:00:00Z~{number}"),
                         (engineer, f"/complaints/queue?cursor=2026-01-01T00:00:00Z~{number}")]:
        answer = client.get(path)
        assert answer.status_code in (404, 422), (path, answer.status_code)
    refused = admin.get(f"/api/v1/complaints?cursor={number}")
    if refused.status_code == 422:
        assert {"errors", "message"} <= set(refused.json()) and "cursor" in refused.json()["errors"]


CONTROL = ["\x00", "a\x00b", "\x07bel", "esc\x1b[31m", "\x7f"]


@pytest.mark.parametrize("text", CONTROL, ids=[repr(t) for t in CONTROL])
def test_control_characters_are_refused_in_every_form_field_and_parameter(world, text: str) -> None:
    admin = world.client("admin-dinkes")
    asset = f"vm:{world.vm['web-dinkes']}"
    with transaction(world.ctx.sessions) as session:
        before = session.scalar(select(func.count()).select_from(ComplaintRow))
    filed = file_complaint(admin, asset, description=f"Situs tidak bisa dibuka {text} sejak pagi")
    assert filed.status_code == 422
    assert "tidak sah" in filed.text
    with transaction(world.ctx.sessions) as session:
        assert session.scalar(select(func.count()).select_from(ComplaintRow)) == before, "nothing stored"
    anonymous = world.client()
    login = anonymous.post("/login", data={"username": f"admin{text}", "password": "x" * 12,
                                           "csrf_token": csrf_of(anonymous, "/login")})
    assert login.status_code == 422
    assert admin.get("/complaints", params={"state": text}).status_code == 422
    assert admin.get("/api/v1/complaints", params={"state": text}).json()["errors"] == {"state": "invalid"}


def test_tabs_and_newlines_are_kept_in_a_description(world) -> None:
    admin = world.client("admin-dinkes")
    filed = file_complaint(admin, f"vm:{world.vm['web-dinkes']}", description="Baris satu\r\n\tbaris dua")
    assert filed.status_code == 303


def test_a_nul_in_a_json_text_is_refused_on_both_engines(world) -> None:
    admin = world.client("admin-dinkes")
    filed = file_complaint(admin, f"vm:{world.vm['web-dinkes']}", description="Untuk dikembalikan nanti")
    complaint = filed.headers["location"].rsplit("/", 1)[1]
    engineer = world.client("engineer")
    answer = engineer.post(f"/api/v1/complaints/{complaint}/actions/return", json={"reason": "alasan\x00"})
    assert answer.status_code == 422
    assert {"errors", "message"} <= set(answer.json())
    assert engineer.get(f"/api/v1/complaints/{complaint}").json()["state"] == "submitted"


def test_unknown_json_fields_are_refused_naming_them(world) -> None:
    admin = world.client("admin-dinkes")
    filed = file_complaint(admin, f"vm:{world.vm['web-dinkes']}", description="Untuk diverifikasi nanti")
    complaint = filed.headers["location"].rsplit("/", 1)[1]
    engineer = world.client("engineer")
    answer = engineer.post(f"/api/v1/complaints/{complaint}/actions/verify", json={"reason": "", "reasno": "x"})
    assert answer.status_code == 422
    assert answer.json()["errors"] == {"body.reasno": "extra_forbidden"}
    assert answer.json()["message"]


def test_json_nested_too_deep_is_refused_before_parsing(world) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    answer = world.client().post("/webhooks/whatsapp", content=deep,
                                 headers={"content-type": "application/json", "x-hub-signature-256": "sha256=00"})
    assert answer.status_code == 422
    assert answer.json()["errors"] == {"body": "nested_too_deep"}
    too_big = world.client().post("/webhooks/whatsapp", content=b"[" + b"1," * 600_000 + b"1]",
                                  headers={"content-type": "application/json"})
    assert too_big.status_code == 413


def test_json_depth_skips_brackets_inside_strings() -> None:
    assert json_depth(json.dumps({"a": [1, {"b": "[[[[\\\"{{"}]}).encode()) == 3
    assert json_depth(b"[]") == 1 and json_depth(b'"[["') == 0


def test_photos_are_not_text(world) -> None:
    # A JPEG holds NUL bytes by nature: files are not checked for control characters.
    admin = world.client("admin-dinkes")
    assert b"\x00" in jpeg()
    assert file_complaint(admin, f"vm:{world.vm['web-dinkes']}").status_code == 303
