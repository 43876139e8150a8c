"""Accounts over HTTP on both engines: one answer for bad logins, throttling, session ids, CSRF, API tokens."""

from __future__ import annotations

import hashlib
import re

from click.testing import CliRunner
from sqlalchemy import select

from pdn_ops.accounts import service as accounts
from pdn_ops.accounts.model import Role
from pdn_ops.accounts.tables import ApiTokenRow, UserRow, WebSessionRow
from pdn_ops.app.cli import main
from pdn_ops.core.db.engine import transaction
from tests.complaints.world import PASSWORD, csrf_of, file_complaint, login


def _try_login(client, username: str, password: str):
    token = csrf_of(client, "/login")
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token})


def test_unknown_user_and_wrong_password_get_the_same_answer(world) -> None:
    client = world.client()
    unknown = _try_login(client, "nobody-here", "whatever-password")
    wrong = _try_login(client, "engineer", "whatever-password")
    assert unknown.status_code == wrong.status_code == 401
    strip = re.compile(r'name="username"[^>]*>')
    assert strip.sub("", unknown.text) == strip.sub("", wrong.text)
    assert "Nama pengguna atau kata sandi salah" in wrong.text
    assert "pdn_session" not in wrong.headers.get("set-cookie", "")


def test_failed_logins_are_throttled_even_for_the_right_password(world) -> None:
    with transaction(world.ctx.sessions) as session:
        accounts.create_user(session, username="throttled", password="right-password-1", role=Role.ENGINEER)
    client = world.client()
    for _ in range(accounts.MAX_FAILURES_PER_USER):
        assert _try_login(client, "throttled", "wrong-password").status_code == 401
    blocked = _try_login(client, "throttled", "right-password-1")
    assert blocked.status_code == 429 and "Terlalu banyak" in blocked.text


def test_session_cookie_is_a_fresh_random_id_httponly_lax_and_dies_at_logout(world) -> None:
    client = world.client()
    response = _try_login(client, "supervisor", PASSWORD)
    cookie = response.headers["set-cookie"]
    assert "pdn_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    assert "Secure" not in cookie, "plain HTTP on loopback; behind HTTPS the flag is set"
    first = client.cookies.get("pdn_session")
    _try_login(client, "supervisor", PASSWORD)
    second = client.cookies.get("pdn_session")
    assert first != second, "a new id at every login"
    thief = world.client()
    thief.cookies.set("pdn_session", first)
    assert thief.get("/account").status_code == 303, "the id replaced at login no longer works"
    thief.cookies.set("pdn_session", second)
    assert thief.get("/account").status_code == 200
    with transaction(world.ctx.sessions) as session:
        stored = session.scalar(select(WebSessionRow.key_hash).order_by(WebSessionRow.id.desc()))
    assert stored == hashlib.sha256(second.encode()).hexdigest(), "only the hash of the id is stored"
    client.post("/logout", data={"csrf_token": csrf_of(client)})
    assert thief.get("/account").status_code == 303


def test_https_sets_the_secure_flag(world) -> None:
    client = world.client()
    client.base_url = client.base_url.copy_with(scheme="https")
    response = _try_login(client, "supervisor", PASSWORD)
    assert "Secure" in response.headers["set-cookie"]


def test_state_changing_requests_need_the_csrf_token(world) -> None:
    client = world.client("engineer")
    token = client.headers.pop("X-CSRF-Token")
    assert client.post("/account/tokens", data={"name": "x"}).status_code == 403
    assert client.post("/account/tokens", data={"name": "x", "csrf_token": "forged"}).status_code == 403
    assert client.post("/account/tokens", data={"name": "x", "csrf_token": token}).status_code == 200
    anonymous = world.client()
    assert anonymous.post("/login", data={"username": "engineer", "password": PASSWORD}).status_code == 403


def test_password_change_ends_every_session(world) -> None:
    with transaction(world.ctx.sessions) as session:
        accounts.create_user(session, username="changer", password="first-password-1", role=Role.ENGINEER)
    laptop, phone = world.client(), world.client()
    login(laptop, "changer", "first-password-1")
    login(phone, "changer", "first-password-1")
    weak = laptop.post("/account/password", data={"current": "first-password-1", "new": "short"})
    assert weak.status_code == 400 and "minimal 10" in weak.text
    assert laptop.post("/account/password", data={"current": "first-password-1", "new": "second-password-2"}
                       ).status_code == 303
    assert phone.get("/account").status_code == 303
    login(phone, "changer", "second-password-2")


def test_api_tokens_work_without_csrf_are_stored_hashed_and_can_be_revoked(world) -> None:
    client = world.client("admin-dinkes")
    page = client.post("/account/tokens", data={"name": "script"})
    found = re.search(r'<code id="new-token">([^<]+)</code>', page.text)
    assert found is not None
    token = found.group(1)
    with transaction(world.ctx.sessions) as session:
        rows = session.scalars(select(ApiTokenRow)).all()
    assert all(token not in (r.token_hash, r.prefix) for r in rows)
    script = world.client()
    headers = {"Authorization": f"Bearer {token}"}
    assert script.get("/api/v1/me", headers=headers).json()["role"] == "opd_admin"
    from tests.complaints.world import jpeg
    created = script.post("/api/v1/complaints", headers=headers, files=[("photo", ("a.jpg", jpeg(), "image/jpeg"))],
                          data={"asset": f"vm:{world.vm['web-dinkes']}", "category": "slow",
                                "description": "Aplikasi lambat sekali sejak kemarin"})
    assert created.status_code == 201, created.text
    assert created.json()["state"] == "submitted"
    token_id = next(r.id for r in rows if token.startswith(r.prefix))
    client.post(f"/account/tokens/{token_id}/revoke")
    assert script.get("/api/v1/me", headers=headers).status_code == 401


def test_the_head_assigns_and_revokes_an_admin_in_the_ui(world) -> None:
    head = world.client("head-dinkes")
    refused = head.post("/opd/admins", data={"username": "bad name!", "password": "long-enough-1", "note": "x"})
    assert refused.status_code == 400 and "bad name!" in refused.text, "what was typed is kept"
    assert head.post("/opd/admins", data={"username": "operator-dinkes", "display_name": "Operator",
                                          "password": "long-enough-1", "note": "SK 12/2026"}).status_code == 303
    operator = world.client()
    login(operator, "operator-dinkes", "long-enough-1")
    assert file_complaint(operator, f"site:{world.site['Portal Dinkes']}").status_code == 303
    page = head.get("/opd/admins")
    assert "SK 12/2026" in page.text
    with transaction(world.ctx.sessions) as session:
        user_id = session.scalar(select(UserRow.id).where(UserRow.username == "operator-dinkes"))
    other_head = world.client("head-disdik")
    assert other_head.post(f"/opd/admins/{user_id}/revoke").status_code == 404, "not their OPD's admin"
    assert head.post(f"/opd/admins/{user_id}/revoke", data={"note": "mutasi"}).status_code == 303
    assert operator.get("/complaints").status_code == 303, "the revoked admin's session ended"


def test_user_add_creates_the_first_supervisor_from_the_cli(world) -> None:
    url = world.ctx.engine.url.render_as_string(hide_password=False)
    runner = CliRunner()
    result = runner.invoke(main, ["user", "add", "root", "--database-url", url],
                           env={"PDN_OPS_NEW_USER_PASSWORD": "root-password-1"})
    assert result.exit_code == 0, result.output
    assert "created root (supervisor)" in result.output
    again = runner.invoke(main, ["user", "add", "head2", "--role", "opd_head", "--database-url", url],
                          env={"PDN_OPS_NEW_USER_PASSWORD": "root-password-1"})
    assert again.exit_code != 0 and "needs an OPD" in again.output
    client = world.client()
    login(client, "root", "root-password-1")
    assert client.get("/complaints/queue").status_code == 200


def test_reassigning_an_admin_with_a_new_password_ends_their_old_sessions_and_tokens(world) -> None:
    head = world.client("head-dinkes")
    form = {"username": "reassigned-dinkes", "display_name": "Operator", "password": "first-password-1", "note": "a"}
    assert head.post("/opd/admins", data=form).status_code == 303
    old = world.client()
    login(old, "reassigned-dinkes", "first-password-1")
    made = old.post("/account/tokens", data={"name": "script"})
    found = re.search(r'<code id="new-token">([^<]+)</code>', made.text)
    assert found is not None
    bearer = {"Authorization": f"Bearer {found.group(1)}"}
    assert world.client().get("/api/v1/me", headers=bearer).status_code == 200
    assert head.post("/opd/admins", data={**form, "password": "second-password-2", "note": "b"}).status_code == 303
    assert old.get("/complaints").status_code == 303, "the session made with the old password ended"
    assert world.client().get("/api/v1/me", headers=bearer).status_code == 401, "and so did its token"
    fresh = world.client()
    login(fresh, "reassigned-dinkes", "second-password-2")
    assert fresh.get("/complaints").status_code == 200


def test_a_cached_api_token_costs_the_lists_no_lookup_and_its_revocation_counts_at_once(world) -> None:
    from sqlalchemy import event

    with transaction(world.ctx.sessions) as session:
        user = session.scalars(select(UserRow).where(UserRow.username == "engineer")).one()
        token, row = accounts.create_token(session, accounts.principal_of(user), "dashboard")
        token_id = row.id
    assert file_complaint(world.client("admin-dinkes"), f"vm:{world.vm['web-dinkes']}").status_code in (200, 303)
    bearer = {"Authorization": f"Bearer {token}"}
    script = world.client()
    first = script.get("/api/v1/complaints?limit=20", headers=bearer)
    assert first.status_code == 200 and first.json()["items"], "a first request looks the token up in full"
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    engine = world.ctx.engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        again = script.get("/api/v1/complaints?limit=20", headers=bearer)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert again.status_code == 200
    assert [i["id"] for i in again.json()["items"]] == [i["id"] for i in first.json()["items"]]
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(reads) == 1 and "api_tokens" in reads[0], "one query: the page, guarded by the token's validity"
    assert script.get("/api/v1/complaints/queue", headers=bearer).status_code == 200
    # Revoked elsewhere (another worker process, the database directly): refused at the very next request.
    with transaction(world.ctx.sessions) as session:
        accounts.revoke_token(session, accounts.principal_of(user), token_id)
    assert script.get("/api/v1/complaints?limit=20", headers=bearer).status_code == 401
    assert script.get("/api/v1/complaints/queue", headers=bearer).status_code == 401
    assert script.get("/api/v1/me", headers=bearer).status_code == 401
