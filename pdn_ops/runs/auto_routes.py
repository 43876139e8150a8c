"""Automatic remediation for staff: the global off switch, the rules, the maintenance windows (one page and /api/v1).

Thin routes over ``services.remediation_auto``. Every change is audited there. Rules are retired, never deleted;
windows are ended or cancelled early, never deleted. A form with problems comes back as the page, with the
problems in the reader's language and the values as typed; only ``/api/v1`` answers JSON.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from pdn_ops.accounts import Staff
from pdn_ops.core.db.tables import utcnow
from pdn_ops.core.errors import Conflict, NotFound, PolicyRefused, RuleInvalid, WindowInvalid
from pdn_ops.core.i18n import translate
from pdn_ops.core.parts import CoreParts
from pdn_ops.runs import auto
from pdn_ops.runs import service as svc
from pdn_ops.runs.messages import message
from pdn_ops.runs.model import VM_STATUSES, Policy, symptom_of
from pdn_ops.runs.parts import runs_of
from pdn_ops.web.deps import Ctx, DbSession, Language, get_language, unit_of_work
from pdn_ops.web.templating import render
from remediation import registry

router = APIRouter()
PAGE = "/remediation/automation"
DONE = frozenset({"switch", "rule_created", "rule_enabled", "rule_disabled", "rule_retired", "window_created",
                  "window_ended"})
_PARAM = re.compile(r"([a-z_][a-z0-9_]{0,62})=(\S{1,256})")


def _policy(ctx: CoreParts) -> Policy:
    return runs_of(ctx).policy


def parse_params(text: str) -> dict[str, object] | None:
    """``memory_mib=4096 reboot=true`` -> a dict of strings (the playbooks validate them); None when malformed."""
    params: dict[str, object] = {}
    for token in text.split():
        found = _PARAM.fullmatch(token)
        if found is None or len(params) >= 8:
            return None
        params[found.group(1)] = found.group(2)
    return params


def rule_json(view: auto.RuleView) -> dict[str, Any]:
    return {"id": view.id, "target": view.target, "playbook": view.playbook,
            "symptom": symptom_of(view.playbook), "min_failed_checks": view.min_failed_checks,
            "vm_status": view.vm_status, "params": view.params, "enabled": view.enabled,
            "needs_approval": view.needs_approval, "retired": view.retired, "created_by": view.created_by,
            "created_at": view.created_at.isoformat()}


def window_json(view: auto.WindowView) -> dict[str, Any]:
    return {"id": view.id, "target": view.target, "starts_at": view.starts_at.isoformat(),
            "ends_at": view.ends_at.isoformat(), "reason": view.reason, "created_by": view.created_by,
            "status": view.status}


def _page(request: Request, ctx: CoreParts, *, rule_form: dict[str, str] | None = None,
          rule_errors: dict[str, str] | None = None, window_form: dict[str, str] | None = None,
          window_errors: dict[str, str] | None = None, error: str | None = None,
          status_code: int = 200) -> HTMLResponse:
    tz = ctx.settings.tz
    with ctx.sessions() as session:
        rules = auto.list_rules(session, policy=_policy(ctx))
        windows = auto.list_windows(session)
        enabled = svc.auto_enabled(session)
    done = request.query_params.get("done", "")

    def when(value: datetime) -> str:
        return value.astimezone(tz).strftime("%d-%m-%Y %H:%M")

    return render(request, "remediation_automation.html", status_code=status_code, auto=enabled, rules=rules,
                  windows=windows, when=when, zone=str(tz), symptom_of=symptom_of,
                  targets=[vm.key for vm in ctx.inventory.vms] if ctx.inventory else [],
                  playbooks=sorted(registry.PLAYBOOKS), vm_statuses=VM_STATUSES,
                  rule_form=rule_form or {"min_failed_checks": "3", "vm_status": "stopped"},
                  rule_errors=rule_errors or {}, window_form=window_form or {},
                  window_errors=window_errors or {}, error=error, done=done if done in DONE else "")


def _translated(errors: dict[str, str], lang: str) -> dict[str, str]:
    return {field: translate(key, lang) for field, key in errors.items()}


def _local(value: str, ctx: CoreParts) -> datetime | None:
    """A ``datetime-local`` value (``2026-12-01T22:00``) in the service's time zone; None when it is not one."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=ctx.settings.tz)


# --- page ---------------------------------------------------------------------------------------------------------

@router.get(PAGE, response_class=HTMLResponse, include_in_schema=False)
def automation_page(request: Request, ctx: Ctx, _staff: Staff) -> HTMLResponse:
    return _page(request, ctx)


@router.post(f"{PAGE}/switch", include_in_schema=False)
def switch_page(ctx: Ctx, staff: Staff, enabled: Annotated[str, Form(max_length=5)] = "") -> Response:
    with unit_of_work(ctx) as session:
        svc.set_auto_enabled(session, enabled == "on", changed_by=staff.username)
    return RedirectResponse(f"{PAGE}?done=switch", status_code=303)


@router.post("/remediation/rules", include_in_schema=False)
def create_rule_page(request: Request, ctx: Ctx, staff: Staff,
                     target: Annotated[str, Form(max_length=200)] = "",
                     playbook: Annotated[str, Form(max_length=63)] = "",
                     min_failed_checks: Annotated[str, Form(max_length=10)] = "",
                     vm_status: Annotated[str, Form(max_length=32)] = "",
                     params: Annotated[str, Form(max_length=2000)] = "") -> Response:
    lang = get_language(request)
    form = {"target": target, "playbook": playbook, "min_failed_checks": min_failed_checks,
            "vm_status": vm_status, "params": params}
    parsed = parse_params(params)
    if parsed is None:
        return _page(request, ctx, rule_form=form, status_code=422,
                     rule_errors=_translated({"params": "remediation.auto.error.params_format"}, lang))
    if ctx.inventory is None:
        raise HTTPException(status_code=503, detail="the inventory is not loaded yet")
    try:
        with unit_of_work(ctx) as session:
            auto.create_rule(session, ctx.inventory, target=target, playbook=playbook,
                             min_failed_checks=min_failed_checks, vm_status=vm_status or None, params=parsed,
                             created_by=staff.username, policy=_policy(ctx))
    except RuleInvalid as exc:
        return _page(request, ctx, rule_form=form, rule_errors=_translated(exc.errors, lang), status_code=422)
    except (PolicyRefused, NotFound) as exc:
        return _page(request, ctx, rule_form=form, rule_errors={"params": message(exc, lang)}, status_code=422)
    return RedirectResponse(f"{PAGE}?done=rule_created#rules", status_code=303)


@router.post("/remediation/rules/{rule_id}/{change}", include_in_schema=False)
def change_rule_page(request: Request, ctx: Ctx, staff: Staff, rule_id: int, change: str) -> Response:
    if change not in ("enable", "disable", "retire"):
        raise HTTPException(status_code=404, detail="Not Found")
    try:
        with unit_of_work(ctx) as session:
            if change == "retire":
                auto.retire_rule(session, rule_id, actor=staff.username)
            else:
                auto.set_rule_enabled(session, rule_id, change == "enable", actor=staff.username,
                                      policy=_policy(ctx))
    except NotFound:
        raise HTTPException(status_code=404, detail="Not Found") from None
    except Conflict as exc:  # deleted meanwhile (by another engineer)
        return _page(request, ctx, error=message(exc, get_language(request)), status_code=409)
    done = {"enable": "rule_enabled", "disable": "rule_disabled", "retire": "rule_retired"}[change]
    return RedirectResponse(f"{PAGE}?done={done}#rules", status_code=303)


@router.post("/remediation/windows", include_in_schema=False)
def create_window_page(request: Request, ctx: Ctx, staff: Staff,
                       target: Annotated[str, Form(max_length=200)] = "",
                       starts_at: Annotated[str, Form(max_length=40)] = "",
                       ends_at: Annotated[str, Form(max_length=40)] = "",
                       reason: Annotated[str, Form(max_length=2000)] = "") -> Response:
    form = {"target": target, "starts_at": starts_at, "ends_at": ends_at, "reason": reason}
    try:
        with unit_of_work(ctx) as session:
            auto.create_window(session, ctx.inventory, starts_at=_local(starts_at, ctx), ends_at=_local(ends_at, ctx),
                               target=target or None, reason=reason, created_by=staff.username)
    except WindowInvalid as exc:
        return _page(request, ctx, window_form=form, window_errors=_translated(exc.errors, get_language(request)),
                     status_code=422)
    return RedirectResponse(f"{PAGE}?done=window_created#windows", status_code=303)


@router.post("/remediation/windows/{window_id}/end", include_in_schema=False)
def end_window_page(request: Request, ctx: Ctx, staff: Staff, window_id: int) -> Response:
    try:
        with unit_of_work(ctx) as session:
            auto.end_window(session, window_id, actor=staff.username)
    except NotFound:
        raise HTTPException(status_code=404, detail="Not Found") from None
    except Conflict as exc:
        return _page(request, ctx, error=message(exc, get_language(request)), status_code=409)
    return RedirectResponse(f"{PAGE}?done=window_ended#windows", status_code=303)


# --- JSON API -----------------------------------------------------------------------------------------------------

class SwitchRequest(BaseModel):
    # An unknown field is refused (422 naming it), not silently ignored: a typo must not look like success.
    model_config = ConfigDict(extra="forbid")

    enabled: bool


class RuleRequest(BaseModel):
    # An unknown field is refused (422 naming it), not silently ignored: a typo must not look like success.
    model_config = ConfigDict(extra="forbid")

    target: str = Field(max_length=200, description="cluster/vmid")
    playbook: str = Field(max_length=63)
    min_failed_checks: int = Field(default=3, description="checks in a row that show the playbook's symptom")
    vm_status: str | None = Field(default="stopped", max_length=32, description="stopped, running or null (any)")
    params: dict[str, Any] = {}


class RuleChange(BaseModel):
    # An unknown field is refused (422 naming it), not silently ignored: a typo must not look like success.
    model_config = ConfigDict(extra="forbid")

    enabled: bool


class WindowRequest(BaseModel):
    # An unknown field is refused (422 naming it), not silently ignored: a typo must not look like success.
    model_config = ConfigDict(extra="forbid")

    starts_at: datetime
    ends_at: datetime
    target: str | None = None
    reason: str = Field(default="", max_length=500)


def _refused(errors: dict[str, str], lang: str) -> HTTPException:
    """422 with every problem: ``{"detail": {"message": ..., "errors": {field: message}}}``."""
    translated = _translated(errors, lang)
    return HTTPException(status_code=422, detail={"message": next(iter(translated.values())), "errors": translated})


def _problem(exc: Exception, lang: str) -> HTTPException:
    status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, Conflict) else 422
    return HTTPException(status_code=status, detail={"message": message(exc, lang)})


@router.get("/api/v1/remediation/auto", tags=["remediation"])
def switch_state_api(session: DbSession, _staff: Staff) -> dict[str, bool]:
    return {"enabled": svc.auto_enabled(session)}


@router.put("/api/v1/remediation/auto", tags=["remediation"])
def switch_api(body: SwitchRequest, session: DbSession, staff: Staff) -> dict[str, bool]:
    """The global off switch for automatic remediation (audited)."""
    svc.set_auto_enabled(session, body.enabled, changed_by=staff.username)
    return {"enabled": svc.auto_enabled(session)}


@router.get("/api/v1/remediation/rules", tags=["remediation"])
def rules_api(ctx: Ctx, session: DbSession, _staff: Staff) -> list[dict[str, Any]]:
    """Automatic rules (retired ones are not listed); ``needs_approval``: its runs wait for an engineer."""
    return [rule_json(r) for r in auto.list_rules(session, policy=_policy(ctx))]


@router.post("/api/v1/remediation/rules", tags=["remediation"], status_code=201)
def create_rule_api(body: RuleRequest, ctx: Ctx, session: DbSession, staff: Staff, lang: Language) -> dict[str, Any]:
    """Opt a VM in: its playbook runs when the playbook's symptom has been seen ``min_failed_checks`` checks in a
    row (and the VM is in ``vm_status``). Refused with every problem at once (422)."""
    if ctx.inventory is None:
        raise HTTPException(status_code=503, detail="the inventory is not loaded yet")
    try:
        view = auto.create_rule(session, ctx.inventory, target=body.target, playbook=body.playbook,
                                min_failed_checks=body.min_failed_checks, vm_status=body.vm_status,
                                params=body.params, created_by=staff.username, policy=_policy(ctx))
    except RuleInvalid as exc:
        raise _refused(exc.errors, lang) from None
    except (PolicyRefused, NotFound) as exc:
        raise HTTPException(status_code=422, detail={"message": message(exc, lang),
                                                     "errors": {"params": message(exc, lang)}}) from None
    return rule_json(view)


@router.get("/api/v1/remediation/rules/{rule_id}", tags=["remediation"])
def rule_api(rule_id: int, ctx: Ctx, session: DbSession, _staff: Staff, lang: Language) -> dict[str, Any]:
    try:
        return rule_json(auto.get_rule(session, rule_id, policy=_policy(ctx)))
    except NotFound as exc:
        raise _problem(exc, lang) from None


@router.patch("/api/v1/remediation/rules/{rule_id}", tags=["remediation"])
def change_rule_api(rule_id: int, body: RuleChange, ctx: Ctx, session: DbSession, staff: Staff,
                    lang: Language) -> dict[str, Any]:
    """Enable or disable a rule (audited); a deleted (retired) rule is a 409."""
    try:
        return rule_json(auto.set_rule_enabled(session, rule_id, body.enabled, actor=staff.username,
                                               policy=_policy(ctx)))
    except (NotFound, Conflict) as exc:
        raise _problem(exc, lang) from None


@router.delete("/api/v1/remediation/rules/{rule_id}", tags=["remediation"], status_code=204)
def retire_rule_api(rule_id: int, session: DbSession, staff: Staff, lang: Language) -> Response:
    """Delete = retire: the rule stops and leaves the list; the row and its history stay (audited). Deleting it
    again changes nothing; ``GET`` still shows it, with ``retired``."""
    try:
        auto.retire_rule(session, rule_id, actor=staff.username)
    except NotFound as exc:
        raise _problem(exc, lang) from None
    return Response(status_code=204)


@router.get("/api/v1/remediation/windows", tags=["remediation"])
def windows_api(session: DbSession, _staff: Staff) -> list[dict[str, Any]]:
    """Upcoming and active maintenance windows, and those that ended in the last week."""
    return [window_json(w) for w in auto.list_windows(session)]


@router.post("/api/v1/remediation/windows", tags=["remediation"], status_code=201)
def window_api(body: WindowRequest, ctx: Ctx, session: DbSession, staff: Staff, lang: Language) -> dict[str, Any]:
    """Declare a maintenance window (times with a zone); no automatic run starts on its target, or anywhere
    without a target, while it lasts."""
    try:
        view = auto.create_window(session, ctx.inventory, starts_at=body.starts_at, ends_at=body.ends_at,
                                  target=body.target, reason=body.reason, created_by=staff.username, now=utcnow())
    except WindowInvalid as exc:
        raise _refused(exc.errors, lang) from None
    return window_json(view)


@router.delete("/api/v1/remediation/windows/{window_id}", tags=["remediation"])
def end_window_api(window_id: int, session: DbSession, staff: Staff, lang: Language) -> dict[str, Any]:
    """End an active window now, or cancel one that has not begun (409 when it is already over)."""
    try:
        return window_json(auto.end_window(session, window_id, actor=staff.username))
    except (NotFound, Conflict) as exc:
        raise _problem(exc, lang) from None
