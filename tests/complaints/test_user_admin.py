"""The supervisor's users screen and API on SQLite and PostgreSQL: create, filter, contacts, role, deactivate,
reset password; sessions and tokens end at every such change; the last supervisor stays."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from pdn_ops.accounts import admin as user_admin
from pdn_ops.accounts import service as accounts
from pdn_ops.accounts.model import Role
from pdn_ops.accounts.tables import ApiTokenRow, UserRow, WebSessionRow
from pdn_ops.core.db.engine import transaction
from pdn_ops.core.db.tables import AuditRow
from pdn_ops.core.errors import PermissionDenied
from tests.complaints.world import PASSWORD, World, csrf_of, jpeg, login, principal_named


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _make(world: World, role: Role = Role.ENGINEER, opd: str | None = None, prefix: str = "u") -> tuple[int, str]:
    name = _name(prefix)
    with transaction(world.ctx.sessions) as session:
        row = accounts.create_user(session, username=name, password=PASSWORD, role=role, opd_code=opd)
        return row.id, name


def _token(world: World, username: str) -> str:
    with transaction(world.ctx.sessions) as session:
        token, _ = accounts.create_token(session, principal_named(session, username), "script")
        return token


def _post(client, path: str, **data: str):
    return client.post(path, data={**data, "csrf_token": csrf_of(client, "/account")})


def _audit(world: World, user_id: int) -> list[AuditRow]:
    with world.ctx.sessions() as session:
        return list(session.scalars(select(AuditRow).where(AuditRow.subject == f"user:{user_id}")
                                    .order_by(AuditRow.id)))


def _logged_out(world: World, client, token: str) -> bool:
    page = client.get("/account")
    api = world.client().get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    return page.status_code == 303 and page.headers["location"].startswith("/login") and api.status_code == 401


def test_a_supervisor_creates_staff_and_opd_heads_but_not_opd_admins(world: World) -> None:
    sup = world.client("supervisor")
    name = _name("kadis")
    response = _post(sup, "/users", username=name, display_name="Kepala Dinas", role="opd_head", opd="dinkes",
                     password="initial-pass-1", phone="+62 812-3456-7890", email="Kadis@Dinkes.example.go.id")
    assert response.status_code == 303, response.text
    page = sup.get(response.headers["location"])
    assert "Akun dibuat" in page.text and "+6281234567890" in page.text and "kadis@dinkes.example.go.id" in page.text
    created = world.client()
    login(created, name, "initial-pass-1")
    assert created.get("/api/v1/me").json() == {"username": name, "role": "opd_head", "opd_id": world.opd["dinkes"]}
    refused = _post(sup, "/users", username=_name("adm"), role="opd_admin", opd="dinkes", password="initial-pass-1")
    assert refused.status_code == 400 and "ditunjuk oleh kepala OPD" in refused.text
    with world.ctx.sessions() as session:
        user = session.scalar(select(UserRow).where(UserRow.username == name))
        assert user is not None
        entries = [a.action for a in _audit(world, user.id)]
    assert entries[:2] == ["user.create", "user.contact"] and all(a.startswith("user.") for a in entries)


def test_a_refused_form_names_each_field_and_keeps_what_was_typed(world: World) -> None:
    sup = world.client("supervisor")
    response = _post(sup, "/users", username="bad name!", display_name="Budi", role="opd_head", opd="",
                     password="short", phone="0812345", email="budi@", language="id")
    assert response.status_code == 400
    text = response.text
    for message in ("Nama pengguna 1-64 huruf", "Pilih OPD kepala OPD ini", "Kata sandi minimal 10 karakter",
                    "format internasional E.164", "Alamat surel tidak valid"):
        assert message in text, message
    assert 'value="bad name!"' in text and 'value="Budi"' in text and 'value="0812345"' in text
    assert 'value="budi@"' in text
    assert '<option value="opd_head" selected>' in text
    taken = _post(sup, "/users", username="engineer", role="engineer", password="long-enough-1")
    assert taken.status_code == 400 and "sudah dipakai" in taken.text
    staff_with_opd = _post(sup, "/users", username=_name("e"), role="engineer", opd="dinkes",
                           password="long-enough-1")
    assert staff_with_opd.status_code == 400 and "tidak terikat pada OPD" in staff_with_opd.text


def test_the_list_filters_by_role_and_opd(world: World) -> None:
    _, head = _make(world, Role.OPD_HEAD, "disdik", prefix="head")
    _, eng = _make(world, Role.ENGINEER, prefix="eng")
    sup = world.client("supervisor")
    heads = sup.get("/users", params={"role": "opd_head", "opd": "disdik"}).text
    assert head in heads and "head-disdik" in heads and "head-dinkes" not in heads and eng not in heads
    api = sup.get("/api/v1/users", params={"role": "engineer"}).json()
    assert {u["username"] for u in api} >= {"engineer", eng} and {u["role"] for u in api} == {"engineer"}
    dinkes = sup.get("/api/v1/users", params={"opd": "dinkes"}).json()
    assert {u["opd_id"] for u in dinkes} == {world.opd["dinkes"]}
    assert sup.get("/api/v1/users", params={"opd": "no-such-opd"}).json() == []


def test_a_role_change_ends_sessions_and_tokens_and_is_audited(world: World) -> None:
    user_id, name = _make(world, Role.ENGINEER, prefix="eng")
    victim = world.client(name)
    token = _token(world, name)
    sup = world.client("supervisor")
    assert _post(sup, f"/users/{user_id}/role", role="supervisor").status_code == 303
    assert _logged_out(world, victim, token)
    again = world.client(name)
    assert again.get("/api/v1/me").json()["role"] == "supervisor"
    (entry,) = [a for a in _audit(world, user_id) if a.action == "user.role"]
    assert entry.actor == "supervisor" and "engineer -> supervisor" in entry.detail
    assert "1 API token(s) revoked" in entry.detail
    refused = _post(sup, f"/users/{user_id}/role", role="opd_head")
    assert refused.status_code == 400 and "antara OPD dan Diskominfo" in refused.text


def test_an_opd_admin_may_become_head_of_the_same_opd_but_nobody_becomes_an_admin_here(world: World) -> None:
    admin_id, _ = _make(world, Role.OPD_ADMIN, "dinkes", prefix="adm")
    head_id, _ = _make(world, Role.OPD_HEAD, "dinkes", prefix="head")
    sup = world.client("supervisor")
    assert _post(sup, f"/users/{admin_id}/role", role="opd_head").status_code == 303
    refused = sup.patch(f"/api/v1/users/{head_id}", json={"role": "opd_admin"})
    assert refused.status_code == 422 and refused.json()["detail"]["errors"] == {"role": "users.error.role_admin"}
    with world.ctx.sessions() as session:
        promoted = session.get(UserRow, admin_id)
        assert promoted is not None and promoted.role == "opd_head" and promoted.opd_id == world.opd["dinkes"]


def test_deactivation_ends_everything_and_reactivation_restores_the_login(world: World) -> None:
    user_id, name = _make(world, Role.ENGINEER, prefix="eng")
    victim = world.client(name)
    token = _token(world, name)
    sup = world.client("supervisor")
    assert _post(sup, f"/users/{user_id}/deactivate").status_code == 303
    assert _logged_out(world, victim, token)
    with world.ctx.sessions() as session:
        assert session.scalar(select(WebSessionRow.id).where(WebSessionRow.user_id == user_id,
                                                             WebSessionRow.revoked_at.is_(None))) is None
        assert session.scalar(select(ApiTokenRow.id).where(ApiTokenRow.user_id == user_id,
                                                           ApiTokenRow.revoked_at.is_(None))) is None
    blocked = world.client()
    token_form = csrf_of(blocked, "/login")
    assert blocked.post("/login", data={"username": name, "password": PASSWORD,
                                        "csrf_token": token_form}).status_code == 401
    assert "nonaktif" in sup.get("/users", params={"status": "inactive"}).text
    assert _post(sup, f"/users/{user_id}/reactivate").status_code == 303
    world.client(name)  # logs in again with the same password
    actions = [a.action for a in _audit(world, user_id)]
    assert "user.deactivate" in actions and "user.reactivate" in actions


def test_a_password_reset_ends_sessions_and_tokens_and_the_new_password_works(world: World) -> None:
    user_id, name = _make(world, Role.OPD_HEAD, "disdik", prefix="head")
    victim = world.client(name)
    token = _token(world, name)
    sup = world.client("supervisor")
    weak = _post(sup, f"/users/{user_id}/password", password="short")
    assert weak.status_code == 400 and "minimal 10 karakter" in weak.text
    assert not _logged_out(world, victim, token), "a refused reset changes nothing"
    assert sup.post(f"/api/v1/users/{user_id}/password", json={"password": "brand-new-pass-1"}).status_code == 204
    assert _logged_out(world, victim, token)
    fresh = world.client()
    login(fresh, name, "brand-new-pass-1")
    (entry,) = [a for a in _audit(world, user_id) if a.action == "user.password_reset"]
    assert "brand-new-pass-1" not in entry.detail and entry.actor == "supervisor"


def test_contacts_are_validated_and_changes_audited_with_old_and_new(world: World) -> None:
    user_id, _ = _make(world, Role.ENGINEER, prefix="eng")
    sup = world.client("supervisor")
    bad = sup.patch(f"/api/v1/users/{user_id}", json={"phone": "+62 21 3456789", "email": "x@y"})
    assert bad.status_code == 422
    assert bad.json()["detail"]["errors"] == {"phone": "users.error.phone", "email": "users.error.email"}
    good = sup.patch(f"/api/v1/users/{user_id}", json={"phone": "+62 811 000 111", "display_name": "Insinyur"})
    assert good.status_code == 200 and good.json()["phone"] == "+62811000111"
    assert good.json()["display_name"] == "Insinyur"
    page = _post(sup, f"/users/{user_id}/contact", display_name="Insinyur", phone="+62811000111",
                 email="not-an-address", language="en")
    assert page.status_code == 400 and 'value="not-an-address"' in page.text
    (entry,) = [a for a in _audit(world, user_id) if a.action == "user.contact" and "phone" in a.detail]
    assert "phone: - -> +62811000111" in entry.detail


def test_the_last_supervisor_can_neither_deactivate_nor_demote_themselves(world: World) -> None:
    with transaction(world.ctx.sessions) as session:
        others = [u for u in session.scalars(select(UserRow).where(UserRow.role == "supervisor",
                                                                   UserRow.active.is_(True)))
                  if u.username != "supervisor"]
        for extra in others:  # earlier tests promoted some; leave "supervisor" as the only one
            extra.active = False
        me = principal_named(session, "supervisor")
    sup = world.client("supervisor")
    refused = _post(sup, f"/users/{me.user_id}/deactivate")
    assert refused.status_code == 409 and "supervisor aktif terakhir" in refused.text
    demoted = sup.patch(f"/api/v1/users/{me.user_id}", json={"role": "engineer"})
    assert demoted.status_code == 409 and demoted.json()["detail"]["errors"] == {
        "role": "users.error.last_supervisor"}
    assert sup.get("/api/v1/me").json()["role"] == "supervisor", "still in, session intact"
    second_id, second = _make(world, Role.SUPERVISOR, prefix="sup")
    # With a second supervisor, the first may step down; the session ends with the change.
    response = _post(sup, f"/users/{me.user_id}/role", role="engineer")
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert sup.get("/account").status_code == 303
    other = world.client(second)
    assert other.patch(f"/api/v1/users/{second_id}", json={"active": False}).status_code == 409
    assert other.patch(f"/api/v1/users/{me.user_id}", json={"role": "supervisor"}).status_code == 200


def test_only_supervisors_reach_the_users_screen(world: World) -> None:
    for name in ("engineer", "head-dinkes", "admin-dinkes"):
        client = world.client(name)
        assert client.get("/users").status_code == 404
        assert client.get("/api/v1/users").status_code == 404
    with transaction(world.ctx.sessions) as session, pytest.raises(PermissionDenied):
        user_admin.list_users(session, principal_named(session, "engineer"))
    nav = world.client("engineer").get("/complaints").text
    assert 'href="/users"' not in nav and 'href="/settings/complaints"' not in nav
    # (the supervisor's navigation is checked in the last test, whose supervisor may have stepped down)


def test_supervisors_see_both_screens_in_the_navigation(world: World) -> None:
    _, name = _make(world, Role.SUPERVISOR, prefix="sup")
    nav = world.client(name).get("/complaints").text
    assert 'href="/users"' in nav and 'href="/settings/complaints"' in nav


def test_engineers_with_contacts_get_sla_at_risk_alerts_from_the_scheduler_once_per_level(world: World) -> None:
    from datetime import timedelta

    from pdn_ops.complaints import service as complaints
    from pdn_ops.complaints.jobs import complaint_jobs
    from pdn_ops.core.db.tables import utcnow
    from pdn_ops.notify.tables import NotifyOutboxRow

    with_contacts, _ = _make(world, Role.ENGINEER, prefix="oncall")
    without, _ = _make(world, Role.ENGINEER, prefix="quiet")
    gone, _ = _make(world, Role.ENGINEER, prefix="gone")
    sup = world.client("supervisor")
    assert sup.patch(f"/api/v1/users/{with_contacts}", json={
        "phone": "+6281299990000", "email": "oncall@diskominfo.example.go.id", "language": "en"}).status_code == 200
    assert sup.patch(f"/api/v1/users/{gone}", json={"phone": "+6281299990001", "active": False}).status_code == 200
    config = world.ctx.complaints.config
    with transaction(world.ctx.sessions) as session:
        # Five of seven calendar days gone: past 50 %, not yet 80 %.
        row = complaints.submit(session, principal_named(session, "admin-dinkes"), complaints.Draft(
            asset=f"vm:{world.vm['web-dinkes']}", category="slow", description="Situs sangat lambat sejak kemarin"),
            [("layar.jpg", jpeg())], config=config,
            now=utcnow() - timedelta(days=5))
        complaint_id = row.id
    (job,) = [j for j in complaint_jobs(config, world.ctx.settings.public_url) if j.name == "complaints:sla-at-risk"]
    for _ in range(3):  # every run of the job: nothing new after the first
        with transaction(world.ctx.sessions) as session:
            job.record(session, job.collect())
    with world.ctx.sessions() as session:
        sent = list(session.scalars(select(NotifyOutboxRow).where(
            NotifyOutboxRow.idempotency_key.startswith(f"complaint:{complaint_id}:sla_at_risk:"))))
    # (Engineers given contacts by earlier tests in this module get theirs too.)
    assert sorted((m.channel, m.address, m.params["percent"], m.language) for m in sent
                  if m.user_id == with_contacts) == [
        ("email", "oncall@diskominfo.example.go.id", "50", "en"), ("whatsapp", "+6281299990000", "50", "en")]
    assert not {without, gone} & {m.user_id for m in sent}, "no contact, or deactivated: no alert"
    assert len(sent) == len({(m.channel, m.address) for m in sent}), "one message per address and level"
