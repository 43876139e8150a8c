"""Every route of the app, with every role, against a table of expected access.

A route without an entry fails the test: whoever adds a route adds its line here (and, when it has a new path
parameter, a value in PARAMS). "Denied" means: 404 for a logged-in user (another OPD's object and a staff page
look exactly like a missing page); for an anonymous visitor a redirect to the login page, 401 or 403.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from pdn_ops.accounts import service as accounts
from pdn_ops.alerts.tables import DutyOverrideRow, DutyShiftRow
from pdn_ops.complaints.tables import AttachmentRow, ComplaintRow
from pdn_ops.core.db.engine import transaction
from pdn_ops.core.db.tables import utcnow
from pdn_ops.public.tables import StandardVersionRow, StatusPageRow
from pdn_ops.runs.tables import AutoRuleRow, MaintenanceWindowRow, RemediationRunRow
from pdn_ops.survey.tables import SurveyInvitationRow, SurveyResponseRow
from tests.complaints.world import file_complaint, principal_named

ANON = "anonymous"
HEAD, ADMIN, OTHER, ENGINEER, SUPERVISOR = "head-dinkes", "admin-dinkes", "admin-disdik", "engineer", "supervisor"
ROLES = (ANON, HEAD, ADMIN, OTHER, ENGINEER, SUPERVISOR)
PUBLIC = frozenset(ROLES)
USERS = frozenset(ROLES) - {ANON}
STAFF = frozenset({ENGINEER, SUPERVISOR})
OPD_USERS = frozenset({HEAD, ADMIN, OTHER})
OPD_ADMINS = frozenset({ADMIN, OTHER})
# Who may reach a complaint of Dinas Kesehatan (OTHER is the admin of another OPD).
DINKES = frozenset({HEAD, ADMIN, ENGINEER, SUPERVISOR})

# The login form itself: anybody may post; the answer depends on the credentials and the form token, never 404.
CREDENTIALS = frozenset({"<credentials>"})
# A public form (no login): any role's post is answered (400 for an empty form, 303, 429), never 404 or 5xx; an
# anonymous post without the form's token is refused (403).
PUBLIC_FORM = frozenset({"<public form>"})
# Provider webhooks: no session matters, only the provider's verify token or body signature, which no role has.
SIGNED = frozenset({"<signature>"})

ACCESS: dict[str, frozenset[str]] = {
    "GET /": PUBLIC,
    "GET /healthz": PUBLIC,
    "GET /home/panels": PUBLIC,
    "GET /readyz": PUBLIC,
    "GET /api/docs": PUBLIC,
    "GET /docs/oauth2-redirect": PUBLIC,
    "GET /api/v1/openapi.json": PUBLIC,
    "GET /login": PUBLIC,
    "POST /login": CREDENTIALS,
    "POST /logout": USERS,
    "GET /account": USERS,
    "POST /account/password": USERS,
    "POST /account/tokens": USERS,
    "POST /account/tokens/{token_id}/revoke": frozenset({ADMIN}),
    "GET /opd/admins": frozenset({HEAD}),
    "POST /opd/admins": frozenset({HEAD}),
    "POST /opd/admins/{user_id}/revoke": frozenset({HEAD}),
    "GET /inbox": OPD_USERS,
    "GET /complaints": USERS,
    "GET /complaints/queue": STAFF,
    "GET /complaints/new": OPD_ADMINS,
    "POST /complaints": OPD_ADMINS,
    "GET /complaints/{complaint_id}": DINKES,
    "GET /complaints/{complaint_id}/live": DINKES,
    "POST /complaints/{complaint_id}/assign": STAFF,
    "POST /complaints/{complaint_id}/priority": STAFF,
    "GET /complaints/{complaint_id}/edit": frozenset({ADMIN}),
    "POST /complaints/{complaint_id}/edit": frozenset({ADMIN}),
    "POST /complaints/{complaint_id}/actions/{action}": DINKES,
    "POST /complaints/{complaint_id}/notes": STAFF,
    "GET /complaints/{complaint_id}/photos/{attachment_id}": DINKES,
    "GET /complaints/{complaint_id}/photos/{attachment_id}/thumb": DINKES,
    "GET /complaints/{complaint_id}/report": DINKES,
    "GET /complaints/{complaint_id}/report.pdf": DINKES,
    "GET /reports/monthly": USERS,
    "GET /reports/monthly.xlsx": USERS,
    "GET /reports/monthly.csv": USERS,
    "GET /reports/monthly.pdf": USERS,
    "GET /api/v1/me": USERS,
    "GET /api/v1/assets": USERS,
    "GET /api/v1/complaints": USERS,
    "GET /api/v1/complaints/queue": STAFF,
    "POST /api/v1/complaints": OPD_ADMINS,
    "GET /api/v1/complaints/{complaint_id}": DINKES,
    "GET /api/v1/complaints/{complaint_id}/timeline": DINKES,
    "POST /api/v1/complaints/{complaint_id}/actions/{action}": DINKES,
    # Fleet pages show every OPD: staff only. /metrics is for Prometheus (bearer token or loopback), no portal user.
    "GET /fleet": STAFF,
    "GET /fleet/vm/{vm_id}": STAFF,
    "GET /fleet/backups": STAFF,
    "GET /fleet/storage": STAFF,
    "GET /fleet/site/{site_id}": STAFF,
    "GET /api/v1/fleet": STAFF,
    "GET /api/v1/fleet/backups": STAFF,
    "GET /metrics": frozenset(),
    "GET /webhooks/whatsapp": SIGNED,
    "POST /webhooks/whatsapp": SIGNED,
    "POST /webhooks/alertmanager": SIGNED,  # a bearer token only Alertmanager has
    # Remediation: staff only (OPD users get 404, as for pages that do not exist).
    "GET /remediation": STAFF,
    "POST /remediation/dry-run": STAFF,
    "POST /remediation/runs": STAFF,
    "GET /remediation/runs/{run_id}/live": STAFF,
    "GET /remediation/runs/{run_id}": STAFF,
    "POST /remediation/runs/{run_id}/approve": STAFF,
    "POST /api/v1/remediation/dry-run": STAFF,
    "POST /api/v1/remediation/runs": STAFF,
    "GET /api/v1/remediation/runs": STAFF,
    "GET /api/v1/remediation/runs/{run_id}": STAFF,
    "POST /api/v1/remediation/runs/{run_id}/approve": STAFF,
    "POST /api/v1/remediation/runs/{run_id}/cancel": STAFF,
    "POST /api/v1/remediation/windows": STAFF,
    "PUT /api/v1/remediation/auto": STAFF,
    # The restore_snapshot chooser: the VM's snapshots with the suggested one marked (read off the request path).
    "GET /remediation/snapshots/{cluster}/{vmid}": STAFF,
    "GET /api/v1/remediation/snapshots/{cluster}/{vmid}": STAFF,
    # Automatic remediation: the global switch, rules (retired, never deleted), maintenance windows.
    "GET /remediation/automation": STAFF,
    "POST /remediation/automation/switch": STAFF,
    "GET /duty": STAFF,
    "POST /duty/shifts": frozenset({SUPERVISOR}),
    "POST /duty/shifts/{shift_id}/delete": frozenset({SUPERVISOR}),
    "POST /duty/overrides": frozenset({SUPERVISOR}),
    "POST /duty/overrides/{override_id}/delete": frozenset({SUPERVISOR}),
    "POST /remediation/rules": STAFF,
    "POST /remediation/rules/{rule_id}/{change}": STAFF,
    "POST /remediation/windows": STAFF,
    "POST /remediation/windows/{window_id}/end": STAFF,
    "GET /api/v1/remediation/auto": STAFF,
    "GET /api/v1/remediation/rules": STAFF,
    "POST /api/v1/remediation/rules": STAFF,
    "GET /api/v1/remediation/rules/{rule_id}": STAFF,
    "PATCH /api/v1/remediation/rules/{rule_id}": STAFF,
    "DELETE /api/v1/remediation/rules/{rule_id}": STAFF,
    "GET /api/v1/remediation/windows": STAFF,
    "DELETE /api/v1/remediation/windows/{window_id}": STAFF,
    # The supervisor's screens: engineers read the procedure's settings; only a supervisor changes them.
    "GET /settings/complaints": STAFF,
    "POST /settings/complaints": frozenset({SUPERVISOR}),
    "GET /api/v1/settings/complaints": STAFF,
    "PUT /api/v1/settings/complaints": frozenset({SUPERVISOR}),
    # Users (every OPD's people and their contacts): supervisors only.
    "GET /users": frozenset({SUPERVISOR}),
    "POST /users": frozenset({SUPERVISOR}),
    "GET /users/{user_id}": frozenset({SUPERVISOR}),
    "POST /users/{user_id}/contact": frozenset({SUPERVISOR}),
    "POST /users/{user_id}/role": frozenset({SUPERVISOR}),
    "POST /users/{user_id}/deactivate": frozenset({SUPERVISOR}),
    "POST /users/{user_id}/reactivate": frozenset({SUPERVISOR}),
    "POST /users/{user_id}/password": frozenset({SUPERVISOR}),
    "GET /api/v1/users": frozenset({SUPERVISOR}),
    "POST /api/v1/users": frozenset({SUPERVISOR}),
    "GET /api/v1/users/{user_id}": frozenset({SUPERVISOR}),
    "PATCH /api/v1/users/{user_id}": frozenset({SUPERVISOR}),
    "POST /api/v1/users/{user_id}/password": frozenset({SUPERVISOR}),
    # The satisfaction survey: the invited OPD people answer or skip; staff read the IKM report (aggregates);
    # only a supervisor records the follow-up of a suggestion.
    "GET /survey": OPD_USERS,
    "GET /survey/{complaint_id}": frozenset({HEAD, ADMIN}),
    "POST /survey/{complaint_id}": frozenset({HEAD, ADMIN}),
    "POST /survey/{complaint_id}/skip": frozenset({HEAD, ADMIN}),
    "GET /survey-report": STAFF,
    "GET /survey-report.pdf": STAFF,
    "GET /survey-report.xlsx": STAFF,
    "POST /survey-report/suggestions/{response_id}": frozenset({SUPERVISOR}),
    # The published standard is public; only a supervisor publishes a new version.
    "GET /standard": PUBLIC,
    "GET /standard/versions/{number}": PUBLIC,
    "GET /standard/edit": frozenset({SUPERVISOR}),
    "POST /standard": frozenset({SUPERVISOR}),
    # Complaints about the service: anyone may send one (with the form's token); only a supervisor answers.
    "GET /service-complaint": PUBLIC,
    "POST /service-complaint": PUBLIC_FORM,
    "GET /service-complaints": frozenset({SUPERVISOR}),
    "POST /service-complaints/{feedback_id}/answer": frozenset({SUPERVISOR}),
    # Status pages: open to anyone when the OPD made its page public (dinkes's is, in this walk) or through its
    # share link; each OPD's users set their own page.
    "GET /status/{opd_code}": PUBLIC,
    "GET /status-link/{token}": PUBLIC,
    "GET /status-settings": OPD_USERS,
    "POST /status-settings": OPD_USERS,
}
# Mounted only by `pdn-ops demo` beside a running lab (pdn_ops.app.lab_demo.mount), never by create_app:
# walked by test_demo_lab_panel_exists_only_beside_a_demo_lab_and_answers_as_the_table_says on an app of its own.
DEMO_ACCESS: dict[str, frozenset[str]] = {
    "GET /lab": STAFF,
    "POST /lab/vms/{vmid}/{action}": STAFF,
}


def _all_routes(app) -> list:
    # FastAPI >= 0.16x keeps included routers as branches; iter_route_contexts flattens them with their prefixes.
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: app.routes is already flat
        return list(app.routes)
    return list(iter_route_contexts(app.routes))


def _routes(app) -> list[tuple[str, str]]:
    found = []
    for route in _all_routes(app):
        for method in sorted(getattr(route, "methods", None) or ()):
            if method == "HEAD":
                continue
            found.append((method, route.path))
    # Logging out ends the role's session: do it last.
    return sorted(found, key=lambda mp: (mp == ("POST", "/logout"), mp))


def test_every_route_has_an_access_entry(world) -> None:
    missing = [f"{m} {p}" for m, p in _routes(world.app) if f"{m} {p}" not in ACCESS]
    assert not missing, f"add these routes to ACCESS in {__file__}: {missing}"


def test_every_route_answers_every_role_as_the_table_says(world) -> None:
    clients = {role: world.client(None if role == ANON else role) for role in ROLES}
    response = file_complaint(clients[ADMIN], f"vm:{world.vm['web-dinkes']}")
    assert response.status_code == 303
    with transaction(world.ctx.sessions) as session:
        complaint_id = session.scalar(select(ComplaintRow.id).where(ComplaintRow.opd_id == world.opd["dinkes"])
                                      .order_by(ComplaintRow.id.desc()))
        photo_id = session.scalar(select(AttachmentRow.id).where(AttachmentRow.complaint_id == complaint_id))
        head = principal_named(session, HEAD)
        spare = accounts.assign_admin(session, head, username="spare-admin", display_name="", password="x" * 12)
        admin = principal_named(session, ADMIN)
        _, token = accounts.create_token(session, admin, "route-table")
        # Path parameters name objects of Dinas Kesehatan, so OTHER (admin of Dinas Pendidikan) must get 404.
        # vm_id / site_id are here for the fleet pages (/fleet/vm/{vm_id}, /fleet/site/{site_id}).
        run = RemediationRunRow(playbook="restart_vm", target="pdn1/101", opd_code="dinkes", risk="medium",
                                requested_by="engineer", idempotency_key="route-table", state="awaiting_approval",
                                approvals_needed=1)
        session.add(run)
        rule = AutoRuleRow(target="pdn1/101", playbook="restart_vm", created_by="engineer")
        window = MaintenanceWindowRow(starts_at=utcnow(), ends_at=utcnow() + timedelta(hours=1), target=None,
                                      created_by="engineer")
        session.add_all([rule, window])
        # The complaint's OPD people are invited to its survey (as at Selesai); one response has a suggestion.
        session.add_all([SurveyInvitationRow(complaint_id=complaint_id, user_id=p.user_id) for p in (head, admin)])
        response = SurveyResponseRow(answered_on=utcnow().date(), suggestion="route table",
                                     **{f"u{i}": 4 for i in range(1, 10)})
        session.add(response)
        session.add(StandardVersionRow(parts={"time": "7 hari"}, created_by="supervisor"))
        session.add(StatusPageRow(opd_id=world.opd["dinkes"], enabled=True, public=True, share_token="route-table",
                                  show_addresses=False, site_ids=[world.site["Portal Dinkes"]], updated_by="x"))
        shift = DutyShiftRow(user_id=spare.id, weekday=0, start_minute=0, end_minute=60, created_by="x")
        override = DutyOverrideRow(user_id=spare.id, kind="on", starts_at=utcnow(),
                                   ends_at=utcnow() + timedelta(days=1), created_by="x")
        session.add_all([shift, override])
        session.flush()
        params = {"complaint_id": complaint_id, "shift_id": shift.id, "override_id": override.id, "attachment_id": photo_id, "action": "start", "token_id": token.id,
                  "user_id": spare.id, "vm_id": world.vm["web-dinkes"], "site_id": world.site["Portal Dinkes"],
                  "run_id": run.id, "cluster": "pdn1", "vmid": 101, "rule_id": rule.id, "change": "disable",
                  "window_id": window.id, "response_id": response.id,
                  "number": 1, "feedback_id": 1,
                  "opd_code": "dinkes", "token": "route-table"}
    wrong, checked = _walk(world.app, clients, params, ACCESS)
    assert len(checked) >= len(ACCESS) - 1, "the walk must reach the routes of included routers"
    assert not wrong, wrong


def _walk(app, clients, params, table) -> tuple[list[str], list[str]]:
    """Every route of ``app`` in ``table``, with every role: the answers that contradict the table, and the URLs."""
    wrong: list[str] = []
    checked: list[str] = []
    for method, path in _routes(app):
        allowed = table.get(f"{method} {path}")
        if allowed is None:
            continue
        try:
            url = path.format(**params)
        except KeyError as exc:
            raise AssertionError(f"{method} {path}: add a value for {exc} to params in {__file__}") from None
        checked.append(url)
        for role in ROLES:
            response = clients[role].request(method, url)
            if allowed is SIGNED:
                if response.status_code not in (400, 401, 403, 404):  # 401: a bearer token nobody here has
                    wrong.append(f"{method} {url} as {role}: {response.status_code}")
                continue
            if allowed is PUBLIC_FORM:
                if response.status_code not in (303, 400, 403, 429):
                    wrong.append(f"{method} {url} as {role}: {response.status_code}")
                continue
            if allowed is CREDENTIALS:
                if response.status_code not in (303, 401, 403):
                    wrong.append(f"{method} {url} as {role}: {response.status_code}")
                continue
            if role == ANON:
                denied = response.status_code in (401, 403) or (
                    response.status_code == 303 and response.headers["location"].startswith("/login"))
            else:
                denied = response.status_code in (401, 404)
            if denied == (role in allowed) or response.status_code >= 500:
                wrong.append(f"{method} {url} as {role}: {response.status_code}")
    return wrong, checked


def test_demo_lab_panel_exists_only_beside_a_demo_lab_and_answers_as_the_table_says(world, tmp_path) -> None:
    """The panel is not in the app create_app builds (demo mode or not); `pdn-ops demo` mounts it beside its lab.
    Walked here on an app of its own, with a lab of one VM (no guest needed for a snapshot or a stop)."""
    from pdn_ops.app import lab_demo
    from tests.complaints.world import build_world
    from tests.support import missing

    assert not [r for r in _routes(world.app) if r[1].startswith("/lab")], "no lab panel without the demo's lab"
    if world.ctx.engine.dialect.name != "sqlite":
        return  # the panel keeps nothing in the database: one walk (on SQLite) is enough
    try:
        from pdn_ops.lab.lab import Lab
    except ImportError:
        missing("fakepve", "install pdn-ops with the lab extra: pip install -e '.[lab]'")
    demo = build_world(f"sqlite:///{tmp_path / 'demo.sqlite3'}", tmp_path)
    lab = Lab.start(tmp_path / "lab", vms=1, sites=0, guests=0, time_scale=0.0)
    before = set(_routes(demo.app))
    panel = lab_demo.mount(demo.app, lab)
    try:
        added = {f"{m} {p}" for m, p in set(_routes(demo.app)) - before}
        assert added == set(DEMO_ACCESS)
        clients = {role: demo.client(None if role == ANON else role) for role in ROLES}
        wrong, checked = _walk(demo.app, clients, {"vmid": 101, "action": "take_snapshot"}, DEMO_ACCESS)
        assert len(checked) == len(DEMO_ACCESS) and not wrong, wrong
        assert clients[ENGINEER].post("/lab/vms/101/no_such_action").status_code == 404
        assert clients[ENGINEER].post("/lab/vms/999/stop_vm").status_code == 404
        assert clients[ENGINEER].post("/lab/vms/101/crash_service").status_code == 404, "VM 101 has no guest"
    finally:
        panel.close()
        lab.stop()
        demo.ctx.engine.dispose()
