"""Complaint pages: the OPD's list and intake form, the engineers' queue, the complaint page, photos, report,
the OPD's inbox.

What other features show here (an asset's live state, the runs linked to a complaint, the playbooks that fit its
VM, more actions for staff) comes through the seams of ``ComplaintsParts`` (``pdn_ops.complaints.parts``).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pdn_ops import accounts, health
from pdn_ops.accounts import CurrentUser, OpdAdmin, OpdUser, Staff, current_principal
from pdn_ops.complaints import pdf
from pdn_ops.complaints import queries as complaint_queries
from pdn_ops.complaints import reports as complaint_reports
from pdn_ops.complaints import service as complaints
from pdn_ops.complaints import timeline_text as timeline
from pdn_ops.complaints.model import Action, Category, State, available_actions
from pdn_ops.complaints.parts import ComplaintsParts, Config, Parts, PlaybookChoice
from pdn_ops.complaints.tables import ComplaintRow
from pdn_ops.core import fleet, photos
from pdn_ops.core.db.engine import read_only
from pdn_ops.core.db.tables import MAX_ID, utcnow
from pdn_ops.core.errors import ComplaintInvalid, NotFound, PhotoRefused
from pdn_ops.core.parts import CoreParts
from pdn_ops.health import TargetDetail, when_formatter
from pdn_ops.web.deps import Ctx, DbSession, get_language, unit_of_work
from pdn_ops.web.templating import flash_redirect, render, translators

router = APIRouter(include_in_schema=False)


def scoped_complaint(complaint_id: int, user: Annotated[accounts.Principal, Depends(current_principal)],
                     session: DbSession) -> ComplaintRow:
    """Resolved before the body is parsed, so another OPD's complaint is a 404 whatever the request carries."""
    return complaints.get(session, user, complaint_id)


Scoped = Annotated[ComplaintRow, Depends(scoped_complaint)]


def asset_health(parts: ComplaintsParts, session: Session, refs: list[str]) -> Mapping[str, str]:
    return parts.asset_states(session, refs) if refs else {}


def read_uploads(files: list[UploadFile]) -> list[tuple[str, bytes]]:
    uploads = []
    for upload in files:
        # Reads one byte past the limit: enough to refuse an oversized file without holding all of it.
        data = upload.file.read(photos.MAX_BYTES + 1)
        if not data and not upload.filename:
            continue  # an empty file input
        uploads.append((upload.filename or "", data))
    return uploads


def _list_context(session: Session, rows: list[ComplaintRow]) -> dict[str, Any]:
    return {"opd_names": fleet.opd_names(session, {r.opd_id for r in rows}),
            "labels": {r.id: complaints.asset_label(session, r) for r in rows},
            "owners": accounts.usernames(session, {r.assignee_id for r in rows if r.assignee_id is not None})}


@router.get("/complaints", response_class=HTMLResponse)
def listing(request: Request, user: CurrentUser, session: DbSession, config: Config, state: str = "",
            cursor: str = "", opd: str = "") -> HTMLResponse:
    opd_row = fleet.opd_by_code(session, opd) if opd and user.is_staff else None
    page = complaint_queries.listing(session, user, state=state or None, cursor=cursor or None,
                                     opd_id=opd_row.id if opd_row else None)
    now = utcnow()
    return render(request, "complaints/list.html", page=page, state=state, opd=opd, states=list(State),
                  sla={r.id: complaints.sla_view(r, now, config.policy) for r in page.rows},
                  opds=fleet.opds(session) if user.is_staff else [],
                  **_list_context(session, page.rows))


@router.get("/complaints/queue", response_class=HTMLResponse)
def queue(request: Request, user: Staff, session: DbSession, config: Config, cursor: str = "",
          mine: bool = False) -> HTMLResponse:
    page = complaint_queries.queue(session, user, cursor=cursor or None, assignee_id=user.user_id if mine else None)
    now = utcnow()
    return render(request, "complaints/queue.html", page=page, mine=mine,
                  sla={r.id: complaints.sla_view(r, now, config.policy) for r in page.rows},
                  **_list_context(session, page.rows))


def _form(request: Request, parts: ComplaintsParts, session: Session, user: accounts.Principal, *,
          draft: complaints.Draft, errors: Mapping[str, str], photo_error: PhotoRefused | None,
          row: ComplaintRow | None, status_code: int = 200, idempotency_key: str | None = None,
          removing: Collection[int] = ()) -> HTMLResponse:
    found = complaints.assets(session, user)
    health = asset_health(parts, session, [a.ref for a in found])
    attached: list[Any] = []
    reason: str | None = None
    if row is not None:  # a returned complaint: why it came back, and the photos it already has
        attached = complaint_queries.attachments(session, row)
        returns = [e for e in complaint_queries.timeline(session, user, row, runs=parts.linked_runs)
                   if e.action == "complaint.return"]
        reason = returns[-1].detail if returns else None
    # A fresh key per form shown; a form shown again after a refusal keeps its key (nothing was filed with it).
    return render(request, "complaints/form.html", status_code=status_code, assets=found, health=health,
                  categories=list(Category), draft=draft, errors=errors, photo_error=photo_error, row=row,
                  max_photos=photos.MAX_PHOTOS, idempotency_key=idempotency_key or uuid.uuid4().hex,
                  attached=attached, return_reason=reason, max_photo_bytes=photos.MAX_BYTES,
                  removing=set(removing))


@router.get("/complaints/new", response_class=HTMLResponse)
def new(request: Request, parts: Parts, user: OpdAdmin, session: DbSession, asset: str = "") -> HTMLResponse:
    return _form(request, parts, session, user, draft=complaints.Draft(asset=asset), errors={}, photo_error=None,
                 row=None)


def _already_filed(row: ComplaintRow) -> Response:
    # The answer to a retry or a double click: the complaint filed the first time, named on its own page.
    return RedirectResponse(f"/complaints/{row.id}?ok=already_filed", status_code=303)


def _save(request: Request, ctx: CoreParts, parts: ComplaintsParts, user: accounts.Principal,
          draft: complaints.Draft, files: list[UploadFile], complaint_id: int | None,
          idempotency_key: str | None = None, remove_photos: Collection[int] = ()) -> Response:
    config = parts.config
    if idempotency_key is not None:
        with read_only(ctx.sessions) as session:  # before the photos' work: a retry costs one lookup
            earlier = complaints.already_filed(session, user, idempotency_key)
        if earlier is not None:
            return _already_filed(earlier)
    try:
        # Decoding and re-encoding happen before the transaction: SQLite's write lock is never held meanwhile.
        with parts.photo_gate.slot():
            uploads = complaints.prepare_uploads(read_uploads(files))
        with unit_of_work(ctx) as session:
            if complaint_id is None:
                earlier = complaints.already_filed(session, user, idempotency_key)
                if earlier is not None:
                    return _already_filed(earlier)
                row = complaints.submit(session, user, draft, uploads, config=config,
                                        idempotency_key=idempotency_key)
            else:
                row = complaints.resubmit(session, user, complaint_id, draft, uploads, config=config,
                                          remove_photos=remove_photos)
            target = row.id
            done = "submitted" if complaint_id is None else "resubmitted"
    except IntegrityError:
        # Two requests with one key raced (PostgreSQL lets both look before either inserts): the first one won.
        with read_only(ctx.sessions) as session:
            earlier = complaints.already_filed(session, user, idempotency_key)
        if earlier is None:
            raise
        return _already_filed(earlier)
    except (ComplaintInvalid, PhotoRefused) as exc:
        # Refused: say why, keep everything typed (files must be chosen again: browsers cannot refill them).
        errors = exc.errors if isinstance(exc, ComplaintInvalid) else {}
        photo_error = exc if isinstance(exc, PhotoRefused) else None
        with ctx.sessions() as session:
            row_now = complaints.get(session, user, complaint_id) if complaint_id else None
            return _form(request, parts, session, user, draft=draft, errors=errors, photo_error=photo_error,
                         row=row_now, status_code=400, idempotency_key=idempotency_key, removing=remove_photos)
    return flash_redirect(f"/complaints/{target}", done)


@router.post("/complaints")
def submit(request: Request, ctx: Ctx, user: OpdAdmin, parts: Parts,
           asset: Annotated[str, Form(max_length=40)] = "", category: Annotated[str, Form(max_length=40)] = "",
           description: Annotated[str, Form(max_length=20000)] = "",
           idempotency_key: Annotated[str, Form(max_length=64)] = "",
           photo: Annotated[list[UploadFile] | None, File()] = None) -> Response:
    draft = complaints.Draft(asset=asset, category=category, description=description)
    return _save(request, ctx, parts, user, draft, photo or [], None,
                 idempotency_key=complaints.clean_idempotency_key(idempotency_key))


@router.get("/complaints/{complaint_id}", response_class=HTMLResponse)
def detail(request: Request, ctx: Ctx, parts: Parts, user: CurrentUser, row: Scoped,
           session: DbSession) -> HTMLResponse:
    ref = f"vm:{row.vm_id}" if row.vm_id is not None else f"site:{row.site_id}"
    fleet_url = f"/fleet/vm/{row.vm_id}" if row.vm_id is not None else f"/fleet/site/{row.site_id}"
    playbooks: Sequence[PlaybookChoice] = []
    links: list[Mapping[str, str]] = []
    # Playbooks are offered once the complaint is verified: before that nobody has confirmed there is a problem.
    if user.is_staff and row.state in (State.VERIFIED, State.IN_PROGRESS):
        playbooks = parts.playbooks(session, row)
        links = [link for extra in parts.extra_actions for link in extra(session, row, user)]
    names = accounts.usernames(session, {row.created_by} | ({row.assignee_id} if row.assignee_id else set()))
    asset_detail = _asset_detail(session, user, row)
    # Whether the VM has a recent backup decides the safe path (restore, or not before a fresh backup).
    vm_view = next((v for v in asset_detail.targets if v.kind == "vm"), None) if asset_detail else None
    return render(request, "complaints/detail.html", row=row, label=complaints.asset_label(session, row),
                  health=asset_health(parts, session, [ref]).get(ref), fleet_url=fleet_url,
                  asset_detail=asset_detail, when=when_formatter(ctx),
                  backup=health.backup_line(vm_view.values, utcnow()) if vm_view is not None else None,
                  actions=available_actions(State(row.state), user.role),
                  versions=complaint_queries.versions(session, row),
                  photos=complaint_queries.attachments(session, row), notes=complaint_queries.notes(
                      session, user, row), playbooks=playbooks, links=links, author=names.get(row.created_by, "-"),
                  owner=names.get(row.assignee_id) if row.assignee_id else None,
                  staff=accounts.staff_members(session) if user.role == accounts.Role.SUPERVISOR else [],
                  opd_name=fleet.opd_names(session, {row.opd_id}).get(row.opd_id, "-"),
                  **_live_context(request, parts, session, user, row))


LIVE_STATES = frozenset({State.SUBMITTED, State.VERIFIED, State.IN_PROGRESS, State.FIXED})


def _live_context(request: Request, parts: ComplaintsParts, session: Session, user: accounts.Principal,
                  row: ComplaintRow) -> dict[str, Any]:
    entries = complaint_queries.timeline(session, user, row, runs=parts.linked_runs)
    returns = [e for e in entries if e.action == "complaint.return"]
    return {"timeline": timeline.lines(entries, get_language(request)),
            "sla": complaints.sla_view(row, utcnow(), parts.config.policy),
            "return_reason": returns[-1].detail if returns and row.state == State.RETURNED else None,
            "live": row.state in LIVE_STATES}


@router.get("/complaints/{complaint_id}/live", response_class=HTMLResponse)
def detail_live(request: Request, parts: Parts, user: CurrentUser, row: Scoped, session: DbSession) -> HTMLResponse:
    """The state, SLA and timeline of a complaint, polled by htmx while it may still move (runs, the closure)."""
    return render(request, "complaints/_live.html", row=row, **_live_context(request, parts, session, user, row))


def _asset_detail(session: Session, user: accounts.Principal, row: ComplaintRow) -> TargetDetail | None:
    """Step 4's diagnosis data for engineers: the asset's Proxmox and guest state, recent checks and events.

    OPD users see the asset's health word only; the checks name hosts and internal causes.
    """
    if not user.is_staff:
        return None
    try:
        if row.vm_id is not None:
            return health.vm_detail(session, row.vm_id)
        if row.site_id is not None:
            return health.site_detail(session, row.site_id)
    except NotFound:
        return None  # retired from the inventory since the complaint was filed
    return None


@router.get("/complaints/{complaint_id}/edit", response_class=HTMLResponse)
def edit(request: Request, parts: Parts, user: OpdAdmin, row: Scoped, session: DbSession) -> HTMLResponse:
    ref = f"vm:{row.vm_id}" if row.vm_id is not None else f"site:{row.site_id}"
    draft = complaints.Draft(asset=ref, category=row.category, description=row.description)
    return _form(request, parts, session, user, draft=draft, errors={}, photo_error=None, row=row)


@router.post("/complaints/{complaint_id}/edit")
def resubmit(request: Request, ctx: Ctx, user: OpdAdmin, row: Scoped, parts: Parts,
             asset: Annotated[str, Form(max_length=40)] = "", category: Annotated[str, Form(max_length=40)] = "",
             description: Annotated[str, Form(max_length=20000)] = "",
             photo: Annotated[list[UploadFile] | None, File()] = None,
             remove_photo: Annotated[list[str] | None, Form()] = None) -> Response:
    draft = complaints.Draft(asset=asset, category=category, description=description)
    # Only ids that are short digit strings: anything else names no photo of this complaint anyway.
    remove = {int(v) for v in (remove_photo or [])[:photos.MAX_PHOTOS * 4] if v.isdigit() and len(v) <= 10}
    return _save(request, ctx, parts, user, draft, photo or [], row.id, remove_photos=remove)


@router.post("/complaints/{complaint_id}/actions/{action}")
def act(ctx: Ctx, user: CurrentUser, row: Scoped, config: Config, action: Action,
        reason: Annotated[str, Form(max_length=2000)] = "", merge_into: Annotated[str, Form(max_length=20)] = "",
        ) -> Response:
    target = int(merge_into) if merge_into.strip().isdigit() and len(merge_into.strip()) <= 10 else None
    target = target if target is not None and target <= MAX_ID else None
    with unit_of_work(ctx) as session:
        complaints.act(session, user, row.id, action, reason=reason, merge_into=target, config=config)
    return flash_redirect(f"/complaints/{row.id}", str(action))


@router.post("/complaints/{complaint_id}/assign")
def assign(ctx: Ctx, user: Staff, row: Scoped, assignee: Annotated[str, Form(max_length=20)] = "") -> Response:
    """``assignee``: "me", a user id (the supervisor), or empty to leave it unassigned."""
    chosen = user.user_id if assignee == "me" else (int(assignee) if assignee.isdigit() else None)
    with unit_of_work(ctx) as session:
        complaints.assign(session, user, row.id, assignee_id=chosen)
    return flash_redirect(f"/complaints/{row.id}", "assigned")


@router.post("/complaints/{complaint_id}/priority")
def prioritize(ctx: Ctx, user: Staff, row: Scoped, priority: Annotated[str, Form(max_length=8)] = "") -> Response:
    with unit_of_work(ctx) as session:
        complaints.set_priority(session, user, row.id, priority)
    return flash_redirect(f"/complaints/{row.id}", "prioritized")


@router.post("/complaints/{complaint_id}/notes")
def add_note(ctx: Ctx, user: Staff, row: Scoped, body: Annotated[str, Form(max_length=5000)] = "") -> Response:
    try:
        with unit_of_work(ctx) as session:
            complaints.add_note(session, user, row.id, body)
    except ComplaintInvalid:
        pass  # an empty note is simply not added; the page shows the notes as they are
    return RedirectResponse(f"/complaints/{row.id}#notes", status_code=303)


def _photo_response(ctx: CoreParts, user: accounts.Principal, complaint_id: int, attachment_id: int,
                    thumb: bool) -> Response:
    with unit_of_work(ctx) as session:
        found = complaint_queries.attachment(session, user, complaint_id, attachment_id, record=not thumb)
    name = found.thumb_name if thumb else found.stored_name
    media = "image/jpeg" if thumb else found.media_type
    ext = name.rsplit(".", 1)[-1]
    return FileResponse(
        photos.path_of(ctx.settings.data_dir, name), media_type=media,
        headers={
            "X-Content-Type-Options": "nosniff",
            # Our own generated name, never the uploader's: nothing to inject into the header.
            "Content-Disposition": f'inline; filename="complaint-{complaint_id}-photo-{attachment_id}.{ext}"',
            "Content-Security-Policy": "default-src 'none'; img-src 'self'; sandbox",
            "Cache-Control": "private, max-age=300",
        })


@router.get("/complaints/{complaint_id}/photos/{attachment_id}")
def photo(ctx: Ctx, user: CurrentUser, row: Scoped, attachment_id: int) -> Response:
    return _photo_response(ctx, user, row.id, attachment_id, thumb=False)


@router.get("/complaints/{complaint_id}/photos/{attachment_id}/thumb")
def photo_thumb(ctx: Ctx, user: CurrentUser, row: Scoped, attachment_id: int) -> Response:
    return _photo_response(ctx, user, row.id, attachment_id, thumb=True)


def office_of(ctx: Ctx) -> complaint_reports.Office:
    return complaint_reports.office_from(ctx.settings)


@router.get("/complaints/{complaint_id}/report", response_class=HTMLResponse)
def resolution_report(request: Request, ctx: Ctx, user: CurrentUser, row: Scoped, session: DbSession,
                      parts: Parts) -> HTMLResponse:
    config = parts.config
    report = complaint_reports.resolution(session, user, row.id, runs=parts.linked_runs, policy=config.policy,
                                          office=office_of(ctx), tz=config.policy.tz)
    return render(request, "complaints/report.html", report=report, row=report.row, label=report.label,
                  verdict=report.sla,
                  sla=complaints.sla_view(row, utcnow(), config.policy),
                  timeline=timeline.lines(report.timeline, get_language(request)),
                  versions=report.versions, photos=report.photos, notes=report.notes, opd_name=report.opd_name,
                  printed_at=datetime.now(config.policy.tz))


@router.get("/complaints/{complaint_id}/report.pdf")
def resolution_report_pdf(request: Request, ctx: Ctx, user: CurrentUser, row: Scoped, session: DbSession,
                          parts: Parts, with_photos: Annotated[bool, Query(alias="photos")] = True) -> Response:
    """The same report as a PDF download; ``photos=0`` leaves out the thumbnails."""
    config = parts.config
    report = complaint_reports.resolution(session, user, row.id, runs=parts.linked_runs, policy=config.policy,
                                          office=office_of(ctx), tz=config.policy.tz)
    lang = get_language(request)
    t, tk = translators(lang)
    with parts.pdf_gate.slot():
        body = pdf.resolution_pdf(report, timeline.lines(report.timeline, lang), t=t, tk=tk, tz=config.policy.tz,
                                  printed_at=datetime.now(config.policy.tz), data_dir=ctx.settings.data_dir,
                                  with_photos=with_photos, lang=lang)
    return Response(body, media_type="application/pdf",
                    headers=pdf.attachment_headers(f"complaint-{row.id}-report.pdf"))


@router.get("/inbox", response_class=HTMLResponse)
def inbox(request: Request, ctx: Ctx, user: OpdUser) -> HTMLResponse:
    with unit_of_work(ctx) as session:
        items = complaint_queries.inbox(session, user)
        complaint_queries.mark_read(session, user)
    return render(request, "inbox.html", items=items)
