"""The complaint JSON API under /api/v1: the same services and the same tenancy rules as the pages.

Scripts authenticate with ``Authorization: Bearer pdn_...`` (tokens from the account page) and need no CSRF
token; a browser session calling the API must send ``X-CSRF-Token`` on state-changing requests.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Header, HTTPException, Query, Request, Response, UploadFile
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json
from sqlalchemy.orm import Session

from pdn_ops.accounts import (
    CurrentUser,
    OpdAdmin,
    confirmed_principal_in,
    guarded_principal_in,
    require_staff,
)
from pdn_ops.complaints import queries as complaint_queries
from pdn_ops.complaints import service as complaints
from pdn_ops.complaints import timeline_text as timeline
from pdn_ops.complaints.model import Action
from pdn_ops.complaints.parts import Config, Parts
from pdn_ops.complaints.routes import read_uploads, scoped_complaint
from pdn_ops.complaints.sla import SlaPolicy
from pdn_ops.complaints.tables import ComplaintRow
from pdn_ops.core.db.engine import read_only
from pdn_ops.core.db.tables import MAX_ID, utcnow
from pdn_ops.core.errors import ComplaintInvalid, PhotoRefused
from pdn_ops.web.deps import Ctx, DbSession, Language, unit_of_work

router = APIRouter(prefix="/api/v1", tags=["complaints"])


class Me(BaseModel):
    username: str
    role: str
    opd_id: int | None


class AssetOut(BaseModel):
    ref: str
    kind: str
    id: int
    label: str
    health: str


class ComplaintOut(BaseModel):
    id: int
    opd_id: int
    asset: str
    category: str
    state: str
    version: int
    created_at: datetime
    submitted_at: datetime | None
    fixed_at: datetime | None
    closed_at: datetime | None
    auto_closed: bool
    merged_into: int | None
    sla_status: str
    sla_due_at: datetime | None
    sla_remaining_seconds: float | None


class ComplaintDetail(ComplaintOut):
    description: str
    photos: list[int]


class ComplaintPage(BaseModel):
    items: list[ComplaintOut]
    next_cursor: str | None


class ActionIn(BaseModel):
    # An unknown field is refused (422 naming it), not silently ignored: a typo must not look like success.
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=2000)
    merge_into: int | None = Field(default=None, ge=1, le=MAX_ID)


class TimelineEntry(BaseModel):
    """One timeline entry; remediation fields are null (or empty) when they do not apply or the caller is an OPD
    user (who sees that work happened and its outcome, not internal details: see pdn_ops.complaints.timeline)."""

    at: datetime
    actor: str
    action: str
    detail: str
    text: str = Field(description="the entry as a sentence in the caller's language")
    run_id: int | None = None
    run_url: str | None = None
    playbook: str | None = None
    automatic: bool = False
    step: int | None = None
    step_name: str | None = None
    state: str | None = Field(default=None, description="a step's result: succeeded, failed, unknown, skipped")
    intent: str | None = None
    upid: str | None = None
    output: str | None = Field(default=None, description="the tail of the step's output, capped")
    reconciled: bool = False
    approval: int | None = None
    approvals_needed: int | None = None
    plan: list[str] = []
    params: dict[str, Any] = {}


def _out(row: ComplaintRow, now: datetime, policy: SlaPolicy) -> ComplaintOut:
    return ComplaintOut(**_item(row, now, policy))


def _detail(session: Session, row: ComplaintRow, policy: SlaPolicy) -> ComplaintDetail:
    base = _out(row, utcnow(), policy)
    return ComplaintDetail(**base.model_dump(), description=row.description,
                           photos=[a.id for a in complaint_queries.attachments(session, row)])


@router.get("/me")
def me(user: CurrentUser) -> Me:
    return Me(username=user.username, role=str(user.role), opd_id=user.opd_id)


@router.get("/assets")
def list_assets(parts: Parts, user: CurrentUser, session: DbSession) -> list[AssetOut]:
    found = complaints.assets(session, user)
    health = parts.asset_states(session, [a.ref for a in found]) if found else {}
    return [AssetOut(ref=a.ref, kind=a.kind, id=a.id, label=a.label, health=health.get(a.ref, "unknown"))
            for a in found]


# The two hot lists run in one thread-pool hop (authentication and the query together: each hop costs more than
# the lookup) and serialise plain dicts in one call. The response models stay for the OpenAPI description.
@router.get("/complaints", response_model=ComplaintPage, responses={401: {}, 404: {}})
def list_complaints(request: Request, ctx: Ctx, config: Config, state: str | None = None,
                    opd_id: int | None = None, cursor: str | None = None,
                    limit: Annotated[int, Query(ge=1, le=complaint_queries.MAX_PAGE)] = complaint_queries.PAGE,
                    ) -> Response:
    with read_only(ctx.sessions) as session:
        user, guard = guarded_principal_in(request, session)
        page = complaint_queries.listing(session, user, state=state, opd_id=opd_id, cursor=cursor, limit=limit,
                                         light=True, token_guard=guard)
        if guard is not None and not page.rows:
            confirmed_principal_in(request, session)  # empty, or the token revoked since it was cached: 401
    return _page_response(page, config.policy)


@router.get("/complaints/queue", response_model=ComplaintPage, responses={401: {}, 404: {}})
def engineer_queue(request: Request, ctx: Ctx, config: Config, cursor: str | None = None,
                   limit: Annotated[int, Query(ge=1, le=complaint_queries.MAX_PAGE)] = complaint_queries.PAGE,
                   ) -> Response:
    with read_only(ctx.sessions) as session:
        user, guard = guarded_principal_in(request, session)
        page = complaint_queries.queue(session, require_staff(user), cursor=cursor, limit=limit, light=True,
                                       token_guard=guard)
        if guard is not None and not page.rows:
            confirmed_principal_in(request, session)
    return _page_response(page, config.policy)


def _item(row: Any, now: datetime, policy: SlaPolicy) -> dict[str, Any]:
    """One list entry, the fields of ``ComplaintOut`` (a test holds the two to the same JSON)."""
    view = complaints.sla_view(row, now, policy)
    return {"id": row.id, "opd_id": row.opd_id,
            "asset": f"vm:{row.vm_id}" if row.vm_id is not None else f"site:{row.site_id}",
            "category": row.category, "state": row.state, "version": row.version, "created_at": row.created_at,
            "submitted_at": row.submitted_at, "fixed_at": row.fixed_at, "closed_at": row.closed_at,
            "auto_closed": row.auto_closed, "merged_into": row.merged_into_id, "sla_status": str(view.status),
            "sla_due_at": view.due_at, "sla_remaining_seconds": view.remaining}


def _light_item(row: Any, now: datetime, policy: SlaPolicy) -> dict[str, Any]:
    """``_item`` of a plain row of ``LIST_COLUMNS``, unpacked by position (a named attribute of a row costs more
    than the rest of the entry)."""
    (id_, opd_id, vm_id, site_id, category, state, version, created_at, submitted_at, fixed_at, closed_at,
     auto_closed, merged_into_id, *_) = row
    view = complaints.sla_view(row, now, policy)
    return {"id": id_, "opd_id": opd_id, "asset": f"vm:{vm_id}" if vm_id is not None else f"site:{site_id}",
            "category": category, "state": state, "version": version, "created_at": created_at,
            "submitted_at": submitted_at, "fixed_at": fixed_at, "closed_at": closed_at, "auto_closed": auto_closed,
            "merged_into": merged_into_id, "sla_status": view.status.value, "sla_due_at": view.due_at,
            "sla_remaining_seconds": view.remaining}


assert [c.key for c in complaint_queries.LIST_COLUMNS[:13]] == [
    "id", "opd_id", "vm_id", "site_id", "category", "state", "version", "created_at", "submitted_at", "fixed_at",
    "closed_at", "auto_closed", "merged_into_id"], "_light_item unpacks these by position"


def _page_response(page: complaint_queries.Page, policy: SlaPolicy) -> Response:
    now = utcnow()
    body = {"items": [_light_item(r, now, policy) for r in page.rows], "next_cursor": page.next_cursor}
    return Response(to_json(body), media_type="application/json")


@router.post("/complaints", status_code=201)
def file_complaint(ctx: Ctx, user: OpdAdmin, config: Config, parts: Parts, asset: Annotated[str, Form(max_length=40)],
                   category: Annotated[str, Form(max_length=40)], description: Annotated[str, Form(max_length=20000)],
                   photo: Annotated[list[UploadFile], File()], response: Response,
                   idempotency_key: Annotated[str | None, Header(max_length=64)] = None) -> ComplaintDetail:
    """With an ``Idempotency-Key`` header (8-64 of A-Z a-z 0-9 _ -), a retry answers 200 with the complaint the
    first request filed instead of filing a second one."""
    draft = complaints.Draft(asset=asset, category=category, description=description)
    key = complaints.clean_idempotency_key(idempotency_key)
    try:
        with read_only(ctx.sessions) as session:
            earlier = complaints.already_filed(session, user, key)
            if earlier is not None:
                response.status_code = 200
                return _detail(session, earlier, config.policy)
        with parts.photo_gate.slot():  # outside the transaction, as the page does
            uploads = complaints.prepare_uploads(read_uploads(photo))
        with unit_of_work(ctx) as session:
            earlier = complaints.already_filed(session, user, key)
            if earlier is not None:
                response.status_code = 200
                return _detail(session, earlier, config.policy)
            row = complaints.submit(session, user, draft, uploads, config=config, idempotency_key=key)
            return _detail(session, row, config.policy)
    except ComplaintInvalid as exc:
        raise HTTPException(status_code=422, detail={"errors": exc.errors}) from None
    except PhotoRefused as exc:
        raise HTTPException(status_code=422, detail={"errors": {"photo": exc.reason}, "file": exc.name}) from None


@router.get("/complaints/{complaint_id}")
def get_complaint(row: Annotated[ComplaintRow, Depends(scoped_complaint)], session: DbSession,
                  config: Config) -> ComplaintDetail:
    return _detail(session, row, config.policy)


@router.get("/complaints/{complaint_id}/timeline")
def complaint_timeline(row: Annotated[ComplaintRow, Depends(scoped_complaint)], user: CurrentUser,
                       session: DbSession, lang: Language, parts: Parts) -> list[TimelineEntry]:
    entries = complaint_queries.timeline(session, user, row, runs=parts.linked_runs)
    return [TimelineEntry(at=e.at, actor=e.actor, action=e.action, detail=e.detail, text=line.text, run_id=e.run_id,
                          run_url=line.run_url, playbook=e.playbook, automatic=e.automatic, step=e.step,
                          step_name=e.step_name, state=e.state, intent=e.intent, upid=e.upid, output=e.output,
                          reconciled=e.reconciled, approval=e.approval, approvals_needed=e.approvals_needed,
                          plan=list(e.plan), params=dict(e.params))
            for line in timeline.lines(entries, lang) for e in (line.entry,)]


@router.post("/complaints/{complaint_id}/actions/{action}")
def complaint_action(ctx: Ctx, user: CurrentUser, row: Annotated[ComplaintRow, Depends(scoped_complaint)],
                     action: Action, body: ActionIn, config: Config) -> ComplaintDetail:
    with unit_of_work(ctx) as session:
        updated = complaints.act(session, user, row.id, action, reason=body.reason, merge_into=body.merge_into,
                                 config=config)
        return _detail(session, updated, config.policy)
