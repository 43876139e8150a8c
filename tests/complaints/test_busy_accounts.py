"""Accounts on a busy morning: argon2 outside transactions behind a bounded gate (503 + Retry-After beyond it, in
the reader's language), logins that race a password change check again, a password change revokes API tokens,
and every page carries a Content-Security-Policy without inline script."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
from sqlalchemy import select

import pdn_ops
from pdn_ops.accounts import service as accounts
from pdn_ops.accounts.model import Role
from pdn_ops.accounts.tables import UserRow
from pdn_ops.core.db.engine import transaction
from pdn_ops.core.gates import Gate
from tests.complaints.world import csrf_of, login


def test_a_login_beyond_the_password_gate_answers_503_with_retry_after_in_the_readers_language(world) -> None:
    parts = world.ctx.accounts
    saved = parts.password_gate
    parts.password_gate = Gate("password checks", limit=1, queue=0, wait_seconds=0, retry_after=4)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with parts.password_gate.slot():
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        held.wait(5)
        client = world.client()
        answer = client.post("/login", data={"username": "engineer", "password": "demo-password-1",
                                             "csrf_token": csrf_of(client, "/login")})
        assert answer.status_code == 503 and answer.headers["retry-after"] == "4"
        assert "Server sedang sibuk" in answer.text
        english = client.post("/login?lang=en", data={"username": "engineer", "password": "demo-password-1",
                                                      "csrf_token": csrf_of(client, "/login")})
        assert english.status_code == 503 and "The server is busy" in english.text
    finally:
        release.set()
        holder.join(5)
        parts.password_gate = saved
    login(world.client(), "engineer")  # the gate free again: logins work


def test_a_login_that_raced_a_password_change_is_checked_again(world) -> None:
    with transaction(world.ctx.sessions) as session:
        accounts.create_user(session, username="racer", password="old-password-1", role=Role.ENGINEER)
    with transaction(world.ctx.sessions) as session:
        candidate = accounts.login_candidate(session, username="racer", client="test")
    verdict = accounts.check_password(candidate, "old-password-1")
    assert verdict.ok
    with transaction(world.ctx.sessions) as session:  # meanwhile, the password changed
        principal = accounts.principal_of(session.scalars(select(UserRow).where(UserRow.username == "racer")).one())
        accounts.change_password(session, principal, current="old-password-1", new="new-password-2")
    with pytest.raises(accounts.CredentialsChanged), transaction(world.ctx.sessions) as session:
        accounts.start_session(session, candidate, verdict)
    client = world.client()
    refused = client.post("/login", data={"username": "racer", "password": "old-password-1",
                                          "csrf_token": csrf_of(client, "/login")})
    assert refused.status_code == 401
    login(client, "racer", "new-password-2")


def test_changing_ones_password_revokes_ones_api_tokens(world) -> None:
    with transaction(world.ctx.sessions) as session:
        accounts.create_user(session, username="scripter", password="first-password-1", role=Role.ENGINEER)
    laptop = world.client()
    login(laptop, "scripter", "first-password-1")
    page = laptop.post("/account/tokens", data={"name": "cron"})
    token = re.search(r"(pdn_[A-Za-z0-9_-]{20,})", page.text)
    assert token is not None
    bearer = {"Authorization": f"Bearer {token.group(1)}"}
    script = world.client()
    assert script.get("/api/v1/me", headers=bearer).status_code == 200
    assert "mencabut semua token API" in laptop.get("/account").text, "the page says so before the change"
    assert laptop.post("/account/password", data={"current": "first-password-1", "new": "second-password-2"}
                       ).status_code == 303
    assert script.get("/api/v1/me", headers=bearer).status_code == 401


def test_every_page_carries_a_csp_and_no_template_has_inline_script(world) -> None:
    admin = world.client("admin-dinkes")
    for path in ("/complaints", "/complaints/new", "/account", "/login", "/no-such-page"):
        csp = admin.get(path).headers.get("content-security-policy", "")
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp, path
    package = Path(pdn_ops.__file__).parent
    for template in package.rglob("templates/**/*.html"):
        if template.parent.name == "templates" and template.parent.parent.name == "notify":
            continue  # e-mail bodies, not pages
        text = template.read_text(encoding="utf-8")
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), f"inline script in {template}"
        assert not re.search(r"\son[a-z]+=", text), f"inline event handler in {template}"
