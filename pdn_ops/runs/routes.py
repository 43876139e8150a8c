"""Remediation for staff: dry run, request (enqueue only), approve, cancel, windows and the automatic switch.

Thin routes: parse, call one service function, map domain errors to HTTP (refused 422, another active run 409
naming it, unknown 404). Nothing remote runs in a request: the worker executes the runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Form, Header, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from pdn_ops.accounts import Staff
from pdn_ops.core.db.tables import MAX_ID, utcnow
from pdn_ops.core.errors import Conflict, NotFound, PolicyRefused
from pdn_ops.core.inventory import Inventory
from pdn_ops.runs import alerts as remediation_alerts
from pdn_ops.runs import auto as remediation_auto
from pdn_ops.runs import service as svc
from pdn_ops.runs import snapshots
from pdn_ops.runs.messages import message, message_key, run_facts, run_summary, summary_of
from pdn_ops.runs.model import ACTIVE_STATES, Policy
from pdn_ops.runs.model import may_approve as rem_may_approve
from pdn_ops.runs.parts import runs_of
from pdn_ops.runs.tables import RemediationRunRow, RemediationStepRow
from pdn_ops.web.deps import Ctx, DbSession, get_language, unit_of_work
from pdn_ops.web.paging import DEFAULT_LIMIT, PageRequest, Paging, next_link, next_url
from pdn_ops.web.templating import flash_redirect, render
from remediation import registry

router = APIRouter()


class RunRequest(BaseModel):
    # An unknown field is refused (422 naming it), not silently ignored: a typo must not look like success.
    model_config = ConfigDict(extra="forbid")

    playbook: str = Field(max_length=63)
    target: str = Field(max_length=200, description="cluster/vmid")
    params: dict[str, Any] = {}
    complaint_id: int | None = Field(default=None, ge=1, le=MAX_ID)


def _inventory(ctx: Ctx) -> tuple[Inventory, FilePath]:
    if ctx.inventory is None:
        raise HTTPException(status_code=503, detail="the inventory is not loaded yet")
    return ctx.inventory, FilePath(ctx.settings.inventory).parent


def _policy(ctx: Ctx) -> Policy:
    return runs_of(ctx).policy


def _requester(staff: Staff) -> svc.Requester:
    # A linked complaint's OPD and asset are checked by the service against the database (check_complaint).
    return svc.Requester(staff.username, is_staff=staff.is_staff)


def _snapshot_cache(ctx: Ctx) -> snapshots.SnapshotCache:
    """One cache per app: its reads run in background threads, never in a request."""
    cache = runs_of(ctx).snapshots
    if cache is None:
        raise HTTPException(status_code=503, detail="the inventory is not loaded yet")
    return cache


def _known_snapshots(ctx: Ctx) -> Callable[[str], Sequence[str] | None]:
    """The target's snapshot names as the cache last read them; a first read is awaited a few seconds (a rare,
    deliberate request, in a worker thread). None when still unknown: the worker checks again before acting."""
    cache = runs_of(ctx).snapshots

    def names(target: str) -> Sequence[str] | None:
        if cache is None:
            return None
        entry = cache.get(target)
        if entry.fetched_at is None:
            entry = cache.wait(target, 5.0)
        return [s.name for s in entry.snapshots] if entry.fetched_at is not None else None

    return names


Cluster = Annotated[str, Path(max_length=63, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
Vmid = Annotated[int, Path(ge=100, le=999_999_999)]
ComplaintRef = Annotated[int | None, Query(ge=1, le=MAX_ID)]


def _suggest(ctx: Ctx, session: Any, cluster: str, vmid: int, complaint_id: int | None,
             refresh: bool) -> snapshots.Suggestion:
    """The snapshot chooser's data; raises the domain's PolicyRefused or NotFound (each caller answers its way)."""
    inventory, base_dir = _inventory(ctx)
    return snapshots.suggest(session, _snapshot_cache(ctx), inventory, target=f"{cluster}/{vmid}",
                             complaint_id=complaint_id, refresh=refresh, base_dir=base_dir)


def _http(exc: Exception) -> HTTPException:
    if isinstance(exc, svc.ActiveRunConflict):
        return HTTPException(status_code=409, detail={"message": str(exc), "run_id": exc.run_id})
    if isinstance(exc, Conflict):
        return HTTPException(status_code=409, detail=str(exc))
    if isinstance(exc, NotFound):
        return HTTPException(status_code=404, detail=str(exc))
    return HTTPException(status_code=422, detail=str(exc))


def run_view(row: RemediationRunRow, *, steps: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": row.id, "playbook": row.playbook, "target": row.target, "opd": row.opd_code, "params": row.params,
        "risk": row.risk, "state": row.state, "outcome": row.outcome, "summary": row.summary,
        "requested_by": row.requested_by, "trigger": row.trigger, "approvals_needed": row.approvals_needed,
        "approvals": row.approvals, "plan": row.plan, "complaint_id": row.complaint_id, "closure": row.closure,
        "created_at": row.created_at.isoformat(),
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
    }
    if steps:
        data["steps"] = [{"position": s.position, "name": s.name, "kind": s.kind, "side_effect": s.side_effect,
                          "intent": s.intent, "state": s.state, "upid": s.upid, "exit_code": s.exit_code,
                          "detail": s.detail, "stdout": s.stdout, "stderr": s.stderr, "reconciled": s.reconciled}
                         for s in row.steps]
    return data


# --- JSON API ---------------------------------------------------------------------------------------------------

@router.post("/api/v1/remediation/dry-run", tags=["remediation"])
def dry_run_api(body: RunRequest, ctx: Ctx, session: DbSession, staff: Staff) -> dict[str, Any]:
    """Validate a request and show the exact plan (API calls and commands) without running anything."""
    inventory, base_dir = _inventory(ctx)
    try:
        params, plan = svc.dry_run(inventory, playbook=body.playbook, target=body.target, params=body.params,
                                   policy=_policy(ctx), requester=_requester(staff), base_dir=base_dir,
                                   session=session, complaint_id=body.complaint_id,
                                   known_snapshots=_known_snapshots(ctx))
    except (PolicyRefused, NotFound, Conflict) as exc:
        raise _http(exc) from None
    return {"params": params, "plan": plan}


@router.post("/api/v1/remediation/runs", tags=["remediation"], status_code=201)
def request_api(body: RunRequest, ctx: Ctx, session: DbSession, staff: Staff,
                idempotency_key: Annotated[str, Header(min_length=1, max_length=200)]) -> dict[str, Any]:
    """Enqueue a run (``Idempotency-Key`` header required); 409 names the run already active on the target."""
    inventory, base_dir = _inventory(ctx)
    try:
        row = svc.request_run(session, inventory, playbook=body.playbook, target=body.target, params=body.params,
                              requester=_requester(staff), idempotency_key=idempotency_key,
                              policy=_policy(ctx), complaint_id=body.complaint_id, base_dir=base_dir,
                              known_snapshots=_known_snapshots(ctx))
    except (PolicyRefused, NotFound, Conflict) as exc:
        raise _http(exc) from None
    return run_view(row)


@router.get("/api/v1/remediation/runs", tags=["remediation"])
def list_api(request: Request, response: Response, session: DbSession, _staff: Staff, paging: Paging,
             target: Annotated[str | None, Query(max_length=200)] = None) -> list[dict[str, Any]]:
    """The newest runs first, ``limit`` at a time; the next page is in the ``Link`` header (``cursor``)."""
    rows, more = paging.cut(svc.list_runs(session, target=target, limit=paging.limit + 1, before=paging.after))
    next_link(request, response, rows[-1].id if more and rows else None)
    return [run_view(r) for r in rows]


@router.get("/api/v1/remediation/runs/{run_id}", tags=["remediation"])
def get_api(run_id: int, session: DbSession, _staff: Staff) -> dict[str, Any]:
    try:
        return run_view(svc.get_run(session, run_id), steps=True)
    except NotFound as exc:
        raise _http(exc) from None


@router.post("/api/v1/remediation/runs/{run_id}/approve", tags=["remediation"])
def approve_api(run_id: int, ctx: Ctx, session: DbSession, staff: Staff) -> dict[str, Any]:
    try:
        return run_view(svc.approve(session, run_id, engineer=staff.username, policy=_policy(ctx)))
    except (PolicyRefused, NotFound) as exc:
        raise _http(exc) from None


@router.post("/api/v1/remediation/runs/{run_id}/cancel", tags=["remediation"])
def cancel_api(run_id: int, session: DbSession, staff: Staff) -> dict[str, Any]:
    try:
        return run_view(svc.cancel(session, run_id, engineer=staff.username))
    except (PolicyRefused, NotFound) as exc:
        raise _http(exc) from None


@router.get("/api/v1/remediation/snapshots/{cluster}/{vmid}", tags=["remediation"])
def snapshots_api(cluster: Cluster, vmid: Vmid, ctx: Ctx, session: DbSession, _staff: Staff,
                  complaint_id: ComplaintRef = None, refresh: bool = False) -> dict[str, Any]:
    """The VM's snapshots (newest first) with the one to roll back to marked. The list comes from a cache read
    in the background: ``state`` is ``reading`` or ``refreshing`` while a read is under way; ask again."""
    try:
        return snapshots.suggestion_view(_suggest(ctx, session, cluster, vmid, complaint_id, refresh))
    except (PolicyRefused, NotFound) as exc:
        raise _http(exc) from None


# --- pages ------------------------------------------------------------------------------------------------------

def _summaries(session: Any, runs: Sequence[RemediationRunRow], language: str) -> dict[int, str]:
    """Each listed run's summary in the reader's language; the steps' facts of the whole page in one query."""
    steps: dict[int, list[Any]] = {run.id: [] for run in runs}
    if steps:
        for step in session.execute(select(RemediationStepRow.run_id, RemediationStepRow.position,
                                           RemediationStepRow.facts)
                                    .where(RemediationStepRow.run_id.in_(list(steps)))):
            steps[step.run_id].append(step)
    return {run.id: run_summary(playbook=run.playbook, state=run.state, outcome=run.outcome,
                                facts=run_facts(steps[run.id]), stored=run.summary or "", language=language)
            for run in runs}


def _runs_page(request: Request, ctx: Ctx, *, form: dict[str, str] | None = None, error: Exception | None = None,
               status_code: int = 200, paging: PageRequest | None = None) -> HTMLResponse:
    """The runs page; after a refused form, with the reason in the reader's language and the values as typed."""
    targets = [vm.key for vm in ctx.inventory.vms] if ctx.inventory else []
    paging = paging or PageRequest(None, DEFAULT_LIMIT)
    with ctx.sessions() as session:
        runs, more = paging.cut(svc.list_runs(session, limit=paging.limit + 1, before=paging.after))
        auto = svc.auto_enabled(session)
        attention = remediation_auto.attention(session, since=utcnow() - remediation_alerts.LOOKBACK)
        summaries = _summaries(session, runs, get_language(request))
    return render(request, "remediation_runs.html", status_code=status_code, runs=runs, targets=targets,
                  summaries=summaries,
                  playbooks=sorted(registry.PLAYBOOKS), auto=auto, lab_demo=runs_of(ctx).lab_demo,
                  attention=attention, form=form or {},
                  error=message(error, get_language(request)) if error is not None else None,
                  next_page=next_url(request, runs[-1].id if more and runs else None))


@router.get("/remediation", response_class=HTMLResponse, include_in_schema=False)
def runs_page(request: Request, ctx: Ctx, _staff: Staff, paging: Paging, target: str | None = None,
              playbook: str | None = None) -> HTMLResponse:
    # An alert's link names the VM and the playbook that fits it: the request form starts with them chosen.
    form = {key: value for key, value in (("target", target), ("playbook", playbook)) if value}
    return _runs_page(request, ctx, form=form or None, paging=paging)


@router.get("/remediation/snapshots/{cluster}/{vmid}", response_class=HTMLResponse, include_in_schema=False)
def snapshots_page(cluster: Cluster, vmid: Vmid, request: Request, ctx: Ctx, session: DbSession, _staff: Staff,
                   complaint_id: ComplaintRef = None, refresh: bool = False) -> HTMLResponse:
    """Choose the snapshot to roll back to (the restore_snapshot request form); the page reloads itself while
    the list is being read from Proxmox."""
    try:
        suggestion = _suggest(ctx, session, cluster, vmid, complaint_id, refresh)
    except NotFound:
        raise HTTPException(status_code=404, detail="Not Found") from None
    except PolicyRefused as exc:  # the complaint belongs to another OPD than the VM: said in the reader's language
        return render(request, "error.html", status_code=422, message_key=message_key(exc)[0])
    tz = ctx.settings.tz

    def when(value: datetime | None) -> str:
        return value.astimezone(tz).strftime("%d-%m-%Y %H:%M:%S %Z") if value else "–"

    return render(request, "remediation_snapshots.html", suggestion=suggestion, target=f"{cluster}/{vmid}",
                  snapshots=list(reversed(suggestion.listing.snapshots)), when=when)


@router.post("/remediation/dry-run", response_class=HTMLResponse, include_in_schema=False)
def dry_run_page(request: Request, ctx: Ctx, session: DbSession, staff: Staff,
                 playbook: Annotated[str, Form(max_length=63)],
                 target: Annotated[str, Form(max_length=200)],
                 param_name: Annotated[str, Form(max_length=63)] = "",
                 param_value: Annotated[str, Form(max_length=256)] = "",
                 complaint_id: Annotated[int | None, Form(ge=1)] = None) -> HTMLResponse:
    inventory, base_dir = _inventory(ctx)
    params = {param_name: param_value} if param_name else {}
    try:
        clean, plan = svc.dry_run(inventory, playbook=playbook, target=target, params=params, policy=_policy(ctx),
                                  requester=_requester(staff), base_dir=base_dir, session=session,
                                  complaint_id=complaint_id, known_snapshots=_known_snapshots(ctx))
    except (PolicyRefused, NotFound, Conflict) as exc:
        return _runs_page(request, ctx, status_code=_http(exc).status_code, error=exc,
                          form={"playbook": playbook, "target": target, "param_name": param_name,
                                "param_value": param_value, "complaint_id": str(complaint_id or "")})
    return render(request, "remediation_plan.html", error=None, playbook=playbook, target=target, plan=plan,
                  params=clean, key=uuid.uuid4().hex, param_name=param_name, param_value=param_value,
                  complaint_id=complaint_id)


@router.post("/remediation/runs", include_in_schema=False)
def request_page(request: Request, ctx: Ctx, session: DbSession, staff: Staff,
                 playbook: Annotated[str, Form(max_length=63)], target: Annotated[str, Form(max_length=200)],
                 key: Annotated[str, Form(min_length=1, max_length=200)],
                 param_name: Annotated[str, Form(max_length=63)] = "",
                 param_value: Annotated[str, Form(max_length=256)] = "",
                 complaint_id: Annotated[int | None, Form(ge=1)] = None) -> Any:
    inventory, base_dir = _inventory(ctx)
    try:
        row = svc.request_run(session, inventory, playbook=playbook, target=target,
                              params={param_name: param_value} if param_name else {},
                              requester=_requester(staff), idempotency_key=key,
                              policy=_policy(ctx), complaint_id=complaint_id, base_dir=base_dir,
                              known_snapshots=_known_snapshots(ctx))
    except svc.ActiveRunConflict as exc:
        return RedirectResponse(f"/remediation/runs/{exc.run_id}", status_code=303)
    except (PolicyRefused, NotFound, Conflict) as exc:
        return _runs_page(request, ctx, status_code=_http(exc).status_code, error=exc,
                          form={"playbook": playbook, "target": target, "param_name": param_name,
                                "param_value": param_value, "complaint_id": str(complaint_id or "")})
    return RedirectResponse(f"/remediation/runs/{row.id}", status_code=303)


TERMINAL_CLOSURE = frozenset({"confirmed", "ineffective"})


def _run_context(request: Request, ctx: Ctx, session: Any, staff: Staff, run_id: int) -> dict[str, Any]:
    try:
        row = svc.get_run(session, run_id)
    except NotFound:
        raise HTTPException(status_code=404, detail="Not Found") from None
    policy = _policy(ctx)
    approvers = [a.get("by", "") for a in row.approvals]
    waiting = row.state == "awaiting_approval"
    # The page keeps polling while the worker or the closure check may still change it.
    live = row.state in {s.value for s in ACTIVE_STATES} or (row.state == "succeeded" and row.closure == "confirming")
    started = row.started_at
    end = row.finished_at or utcnow()
    return {"run": row, "live": live, "summary": summary_of(row, get_language(request)),
            "steps_done": sum(1 for s in row.steps if s.state != "running"),
            "steps_total": max(len(row.plan), len(row.steps)),
            "current_step": next((s for s in row.steps if s.state == "running"), None),
            "elapsed": (end - started).total_seconds() if started is not None else None,
            "can_approve": waiting and rem_may_approve(staff.username, requested_by=row.requested_by,
                                                       approvers=approvers, policy=policy),
            "i_requested": waiting and staff.username == row.requested_by,
            "named_approvers": sorted(policy.approvers)}


def _run_page(request: Request, ctx: Ctx, session: Any, staff: Staff, run_id: int, *,
              error: Exception | None = None, status_code: int = 200) -> HTMLResponse:
    return render(request, "remediation_run.html", status_code=status_code,
                  error=message(error, get_language(request)) if error is not None else None,
                  **_run_context(request, ctx, session, staff, run_id))


@router.get("/remediation/runs/{run_id}", response_class=HTMLResponse, include_in_schema=False)
def run_page(run_id: int, request: Request, ctx: Ctx, session: DbSession, staff: Staff) -> HTMLResponse:
    return _run_page(request, ctx, session, staff, run_id)


@router.get("/remediation/runs/{run_id}/live", response_class=HTMLResponse, include_in_schema=False)
def run_live(run_id: int, request: Request, ctx: Ctx, session: DbSession, staff: Staff) -> HTMLResponse:
    """The part of the run page that changes, polled by htmx every 2 s until the run and its closure settle."""
    return render(request, "_run_live.html", **_run_context(request, ctx, session, staff, run_id))


@router.post("/remediation/runs/{run_id}/approve", include_in_schema=False)
def approve_page(run_id: int, request: Request, ctx: Ctx, staff: Staff) -> Response:
    try:
        with unit_of_work(ctx) as session:
            svc.approve(session, run_id, engineer=staff.username, policy=_policy(ctx))
    except NotFound:
        raise HTTPException(status_code=404, detail="Not Found") from None
    except PolicyRefused as exc:  # approved already, by this engineer, or no longer waiting: the page says why
        with ctx.sessions() as session:
            return _run_page(request, ctx, session, staff, run_id, error=exc, status_code=409)
    return flash_redirect(f"/remediation/runs/{run_id}", "run_approved")
