"""The engineers' fleet view: every OPD's VMs and sites with live state, causes and open incidents.

The detail pages ``/fleet/vm/{id}`` and ``/fleet/site/{id}`` are reused by the complaint pages. Staff only;
OPD pages call ``pdn_ops.health.queries.fleet(session, opd_id=...)`` themselves.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from pdn_ops.accounts import Staff
from pdn_ops.core.db.tables import utcnow
from pdn_ops.core.errors import NotFound
from pdn_ops.health import history, safety
from pdn_ops.health import queries as health_queries
from pdn_ops.health.queries import TargetDetail, TargetView
from pdn_ops.web import charts
from pdn_ops.web.deps import Ctx, DbSession
from pdn_ops.web.paging import PageRequest, Paging, next_link, next_url
from pdn_ops.web.templating import render

router = APIRouter()


def when_formatter(ctx: Ctx) -> Any:
    """Times as the pages show them, in the service's time zone."""
    tz = ctx.settings.tz

    def when(value: datetime | None) -> str:
        return value.astimezone(tz).strftime("%d-%m-%Y %H:%M %Z") if value else "–"

    return when


@router.get("/fleet", response_class=HTMLResponse, include_in_schema=False)
def fleet_page(request: Request, ctx: Ctx, session: DbSession, _staff: Staff, paging: Paging) -> HTMLResponse:
    view, more_from = _fleet_page(session, paging)
    return render(request, "fleet.html", view=view, when=when_formatter(ctx),
                  next_page=next_url(request, more_from))


def _fleet_page(session: Any, paging: PageRequest) -> tuple[Any, int | None]:
    """``limit`` OPDs from position ``cursor`` (OPDs are listed by name), built alone; the counts stay the whole
    fleet's."""
    return health_queries.fleet_page(session, offset=paging.after or 0, limit=paging.limit)


def history_of(session: Any, detail: TargetDetail, tz: Any) -> dict[str, Any]:
    """The pictures of one VM or site: uptime bars (24 h, 30 days) and, for a site, its response times; for a VM,
    its CPU, memory and disk use over a week."""
    now = utcnow()
    keys = [(v.kind, v.ref) for v in detail.targets if v.kind in ("vm", "site")]
    ids = history.target_ids(session, keys)
    main = ids.get(keys[0]) if keys else None
    bars = history.uptime(session, [main], now, tz).get(main) if main is not None else None
    response = history.response_times(session, main, now) if main is not None and detail.kind == "site" else []
    used = history.resources(session, main, now) if main is not None and detail.kind == "vm" else None
    return {"uptime": bars, "response": response, "resources": used if used is not None and used.seen else None}


def _detail_page(request: Request, ctx: Ctx, detail: TargetDetail, session: Any = None) -> HTMLResponse:
    pictures = history_of(session, detail, ctx.settings.tz) if session is not None else {
        "uptime": None, "response": [], "resources": None}
    vm = next((v for v in detail.targets if v.kind == "vm"), None)
    backup = safety.backup_line(vm.values, utcnow()) if vm is not None else None
    return render(request, "fleet_target.html", detail=detail, when=when_formatter(ctx), charts=charts,
                  backup=backup, **pictures)


@router.get("/fleet/backups", response_class=HTMLResponse, include_in_schema=False)
def backups_page(request: Request, ctx: Ctx, session: DbSession, _staff: Staff) -> HTMLResponse:
    """Backups per OPD and per VM: coverage, the newest good backup and its age, failures, locks."""
    now = utcnow()
    return render(request, "fleet_backups.html", opds=safety.backups(session, now), now=now,
                  when=when_formatter(ctx))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@router.get("/api/v1/fleet/backups", tags=["fleet"])
def backups_api(session: DbSession, _staff: Staff) -> dict[str, Any]:
    """Backups per OPD (coverage: VMs with a recent good backup of those watched) and per VM: state (ok, failed,
    too_old, unprotected; null when its cluster's backups are not watched), newest good backup, its age and the
    threshold in force, jobs, the newest failure, and a lock no running task holds."""
    now = utcnow()
    return {"opds": [
        {"id": o.id, "code": o.code, "name": o.name, "covered": o.covered, "watched": o.watched,
         "vms": [{"id": vm.vm_id, "name": vm.name, "cluster": vm.cluster, "vmid": vm.vmid, "lock": vm.lock,
                  "lock_stale": vm.lock_stale,
                  "backup": None if vm.backup is None else {
                      "state": vm.backup.state, "last_ok_at": _iso(vm.backup.last_ok_at), "age_h": vm.backup.age_h,
                      "max_age_h": vm.backup.max_age_h, "size": vm.backup.size, "storage": vm.backup.storage,
                      "jobs": list(vm.backup.jobs), "failed_at": _iso(vm.backup.failed_at)}}
                 for vm in o.vms]}
        for o in safety.backups(session, now)]}


@router.get("/fleet/storage", response_class=HTMLResponse, include_in_schema=False)
def storage_page(request: Request, ctx: Ctx, session: DbSession, _staff: Staff) -> HTMLResponse:
    """Storages with their use and days-until-full forecast, nodes with their pressure and the VMs on them."""
    storages, nodes = safety.storages(session)
    return render(request, "fleet_storage.html", storages=storages, nodes=nodes)


@router.get("/fleet/vm/{vm_id}", response_class=HTMLResponse, include_in_schema=False)
def vm_page(vm_id: int, request: Request, ctx: Ctx, session: DbSession, _staff: Staff) -> HTMLResponse:
    try:
        detail = health_queries.vm_detail(session, vm_id)
    except NotFound:
        raise HTTPException(status_code=404, detail="Not Found") from None
    return _detail_page(request, ctx, detail, session)


@router.get("/fleet/site/{site_id}", response_class=HTMLResponse, include_in_schema=False)
def site_page(site_id: int, request: Request, ctx: Ctx, session: DbSession, _staff: Staff) -> HTMLResponse:
    try:
        detail = health_queries.site_detail(session, site_id)
    except NotFound:
        raise HTTPException(status_code=404, detail="Not Found") from None
    return _detail_page(request, ctx, detail, session)


def _target(view: TargetView | None) -> dict[str, Any] | None:
    if view is None:
        return None
    data = asdict(view)
    data["degraded"] = list(view.degraded)
    for key in ("since", "last_check_at"):
        data[key] = data[key].isoformat() if data[key] else None
    return data


@router.get("/api/v1/fleet", tags=["fleet"])
def fleet_api(request: Request, response: Response, session: DbSession, _staff: Staff,
              paging: Paging) -> dict[str, Any]:
    """Every OPD with its VMs and sites, their state and cause; incidents are the targets that are not UP.
    ``limit`` OPDs at a time (by name); the next page is in the ``Link`` header (``cursor``)."""
    view, more_from = _fleet_page(session, paging)
    next_link(request, response, more_from)
    return {
        "counts": view.counts,
        "opds": [
            {
                "id": opd.id,
                "code": opd.code,
                "name": opd.name,
                "vms": [{"id": vm.id, "name": vm.name, "cluster": vm.cluster, "vmid": vm.vmid,
                         "health": _target(vm.health), "guest": _target(vm.guest)} for vm in opd.vms],
                "sites": [{"id": s.id, "url": s.url, "name": s.name, "vm_id": s.vm_id, "health": _target(s.health)}
                          for s in opd.sites],
            }
            for opd in view.opds
        ],
        "incidents": [{"kind": i.kind, "label": i.label, "href": i.href, "root": i.is_root,
                       "health": _target(i.health)} for i in view.incidents],
    }
