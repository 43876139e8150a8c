"""OPD status pages: built from the health snapshot and the hourly rollups, kept rendered in memory.

A status page is the same for every reader of a language, so the rendered page is kept for ``TTL`` seconds: a
hit is a dictionary lookup on the event loop (no thread, no database), which is what lets one worker answer
hundreds of requests a second (bench/status_page.py). A miss builds it in a worker thread.

What a page shows is chosen by the OPD: the sites it opted in, named by their name (the address only if the OPD
says so); never a VM, an IP address, an internal note or another OPD's asset.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from pdn_ops.accounts import Principal
from pdn_ops.complaints import ComplaintRow
from pdn_ops.core.db.tables import AuditRow, OpdRow, SiteRow, utcnow
from pdn_ops.core.errors import Conflict, NotFound
from pdn_ops.health import HealthTargetRow, outage_history, uptime_history
from pdn_ops.public.service import new_share_token
from pdn_ops.public.tables import StatusPageRow

DAYS = 90
TTL = 30.0
MAX_INCIDENTS = 30  # newest first, ongoing ones on top


@dataclass(frozen=True, slots=True)
class SiteStatus:
    label: str
    state: str  # up | degraded | down | unknown
    days: tuple[float | None, ...]
    ratio: float | None


@dataclass(frozen=True, slots=True)
class Incident:
    """A complaint about a site (``category`` is the complaint's) or an outage the health checks saw
    (``kind`` "outage", ``category`` the state: down or degraded)."""

    site: str
    category: str
    started: datetime | None
    ended: datetime | None
    note: str = ""  # what the OPD was told when it was fixed, shown only if the OPD chose so
    kind: str = "complaint"  # complaint | outage


@dataclass(frozen=True, slots=True)
class StatusView:
    opd_name: str
    sites: list[SiteStatus]
    incidents: list[Incident]
    built_at: datetime
    first_day: datetime


def page_row(session: Session, opd_id: int) -> StatusPageRow | None:
    return session.get(StatusPageRow, opd_id)


def page_of(session: Session, opd_id: int) -> StatusPageRow:
    row = session.get(StatusPageRow, opd_id)
    if row is None:
        row = StatusPageRow(opd_id=opd_id, enabled=False, public=False, share_token=new_share_token(),
                            show_addresses=False, show_notes=False, site_ids=[], updated_by="")
        session.add(row)
        session.flush()
    return row


def opd_code(session: Session, opd_id: int) -> str:
    return session.scalar(select(OpdRow.code).where(OpdRow.id == opd_id)) or ""


def opd_sites(session: Session, opd_id: int) -> list[tuple[int, str, str]]:
    return [(i, name or url, url) for i, name, url in session.execute(
        select(SiteRow.id, SiteRow.name, SiteRow.url).where(SiteRow.opd_id == opd_id, SiteRow.retired_at.is_(None))
        .order_by(SiteRow.name, SiteRow.id))]


def save_page(session: Session, principal: Principal, *, enabled: bool, public: bool, show_addresses: bool,
              show_notes: bool, site_ids: list[int], new_link: bool, version: int | None) -> StatusPageRow:
    assert principal.opd_id is not None
    row = page_of(session, principal.opd_id)
    if version is not None and version != row.version:
        raise Conflict("the status page changed since it was read")
    own = {i for i, _, _ in opd_sites(session, principal.opd_id)}
    if not set(site_ids) <= own:
        raise NotFound("not a site of this OPD")
    row.enabled, row.public, row.show_addresses, row.show_notes = enabled, public, show_addresses, show_notes
    row.site_ids = sorted(set(site_ids))
    if new_link:
        row.share_token = new_share_token()  # the old link stops working at once
    row.updated_at, row.updated_by, row.version = utcnow(), principal.username, row.version + 1
    session.flush()
    return row


def build_view(session: Session, page: StatusPageRow, states: dict[int, str], now: datetime,
               tz: ZoneInfo) -> StatusView:
    opd = session.get(OpdRow, page.opd_id)
    chosen = [s for s in opd_sites(session, page.opd_id) if s[0] in set(page.site_ids)]
    ids = [s[0] for s in chosen]
    targets: dict[int | None, int] = {site_id: target_id for site_id, target_id in session.execute(
        select(HealthTargetRow.site_id, HealthTargetRow.id).where(
            HealthTargetRow.kind == "site", HealthTargetRow.site_id.in_(ids)))} if ids else {}
    history = uptime_history(session, [t for t in targets.values() if t is not None], now, tz, span_days=DAYS)
    sites = []
    for site_id, name, url in chosen:
        found = history.get(targets.get(site_id, -1))
        sites.append(SiteStatus(label=url if page.show_addresses else name, state=states.get(site_id, "unknown"),
                                days=found.days if found else (None,) * DAYS,
                                ratio=found.month_ratio if found else None))
    labels: dict[int | None, str] = {site_id: (url if page.show_addresses else name) for site_id, name, url in chosen}
    found_incidents = session.execute(
        select(ComplaintRow.id, ComplaintRow.site_id, ComplaintRow.category, ComplaintRow.submitted_at,
               ComplaintRow.closed_at)
        .where(ComplaintRow.site_id.in_(ids), ComplaintRow.submitted_at >= now - timedelta(days=DAYS),
               ComplaintRow.state != "merged")
        .order_by(ComplaintRow.submitted_at.desc()).limit(20)).all() if ids else []
    notes = fix_notes(session, [row[0] for row in found_incidents]) if page.show_notes else {}
    incidents = [Incident(labels[site_id], category, started, ended, notes.get(cid, ""))
                 for cid, site_id, category, started, ended in found_incidents]
    # What the health checks saw, whether or not anyone complained: the site's outages (down or degraded spans
    # from its state changes), never their internal cause or detail.
    site_of = {target_id: site_id for site_id, target_id in targets.items()}
    for target_id, spans in outage_history(session, list(site_of), now - timedelta(days=DAYS)).items():
        incidents += [Incident(labels[site_of[target_id]], o.state, o.started, o.ended, kind="outage")
                      for o in spans]
    incidents.sort(key=lambda i: (i.ended is None, i.started or now), reverse=True)
    incidents = incidents[:MAX_INCIDENTS]
    first = datetime.combine((now.astimezone(tz) - timedelta(days=DAYS - 1)).date(), datetime.min.time(), tz)
    return StatusView(opd.name if opd else "", sites, incidents, now, first)


def fix_notes(session: Session, complaint_ids: list[int]) -> dict[int, str]:
    """The reason given with the last "fixed" step of each complaint: the text the OPD received (step 5)."""
    if not complaint_ids:
        return {}
    subjects = {f"complaint:{cid}": cid for cid in complaint_ids}
    found: dict[int, str] = {}
    for subject, detail in session.execute(select(AuditRow.subject, AuditRow.detail).where(
            AuditRow.action == "complaint.fix", AuditRow.subject.in_(subjects)).order_by(AuditRow.id)):
        if detail:
            found[subjects[subject]] = detail
    return found


class StatusPages:
    """Rendered pages by (OPD, language), and which OPD a public code or a share link opens, each for ``TTL`` s."""

    def __init__(self, ttl: float = TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._routes: dict[tuple[str, str], tuple[float, int | None]] = {}
        self._bodies: dict[tuple[int, str], tuple[float, bytes]] = {}

    def opd_for(self, kind: str, key: str) -> tuple[bool, int | None]:
        """(known, opd_id): known False means look it up; opd_id None means no page there (404)."""
        hit = self._routes.get((kind, key))
        if hit is None or hit[0] < self._clock():
            return False, None
        return True, hit[1]

    def remember_route(self, kind: str, key: str, opd_id: int | None) -> None:
        with self._lock:
            if len(self._routes) > 10_000:  # random share tokens must not grow this without end
                self._routes.clear()
            self._routes[(kind, key)] = (self._clock() + self._ttl, opd_id)

    def body(self, opd_id: int, lang: str) -> bytes | None:
        hit = self._bodies.get((opd_id, lang))
        return hit[1] if hit is not None and hit[0] >= self._clock() else None

    def remember_body(self, opd_id: int, lang: str, body: bytes) -> None:
        with self._lock:
            self._bodies[(opd_id, lang)] = (self._clock() + self._ttl, body)

    def forget(self, opd_id: int) -> None:
        """After the OPD changes its page: this process shows the change at once, others within ``TTL``."""
        with self._lock:
            self._routes.clear()  # a code or link that opened nothing may open this page now
            self._bodies = {k: v for k, v in self._bodies.items() if k[0] != opd_id}


def resolve(session: Session, kind: str, key: str) -> int | None:
    """The OPD whose enabled page ``key`` opens: a public page by OPD code, any enabled page by its share link."""
    if kind == "code":
        row = session.execute(select(StatusPageRow.opd_id, StatusPageRow.enabled, StatusPageRow.public)
                              .join(OpdRow, OpdRow.id == StatusPageRow.opd_id)
                              .where(OpdRow.code == key, OpdRow.retired_at.is_(None))).first()
        return row[0] if row is not None and row[1] and row[2] else None
    found = session.execute(select(StatusPageRow.opd_id, StatusPageRow.enabled)
                            .where(StatusPageRow.share_token == key)).first()
    return found[0] if found is not None and found[1] else None
