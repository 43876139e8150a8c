"""The standard's output: the resolution report per complaint, the monthly report per OPD and overall, and the
monthly CSV export. (The pages and the PDF files render these values; see ``pdn_ops.complaints.pdf``.)

Time to resolve runs from the complete submission to the moment the engineer marked the complaint fixed
(calendar hours); SLA compliance is the share of complaints resolved in the month within their SLA.
"""

from __future__ import annotations

import csv
import io
import statistics
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from pdn_ops.accounts import Principal
from pdn_ops.complaints import queries as complaint_queries
from pdn_ops.complaints import service as complaints
from pdn_ops.complaints import timeline as tl
from pdn_ops.complaints.queries import LinkedRuns
from pdn_ops.complaints.sla import SlaPolicy
from pdn_ops.complaints.tables import AttachmentRow, ComplaintRow, ComplaintVersionRow, WorkNoteRow
from pdn_ops.core import fleet
from pdn_ops.core.db.tables import OpdRow, SiteRow, VmRow, utcnow
from pdn_ops.core.errors import NotFound
from pdn_ops.core.i18n import Message

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> str:
    """Spreadsheets run a cell starting with = + - @ TAB CR as a formula; a leading quote makes it text.

    What a spreadsheet reads first is looked at after NFKC folding (the full-width ＝ ＋ － ＠ become = + - @, and
    some spreadsheets fold them too) and after any control or invisible format characters it skips (a NUL, a
    zero-width space, then "="). Such leading characters are dropped; the rest is kept as typed."""
    text = "" if value is None else str(value)
    stripped = text.lstrip("".join(ch for ch in set(text[:64]) if unicodedata.category(ch) in ("Cc", "Cf")
                                   and ch not in "\t\r"))
    first = unicodedata.normalize("NFKC", stripped[:1]) if stripped else ""
    if first.startswith(FORMULA_PREFIXES) or stripped.startswith(FORMULA_PREFIXES):
        return "'" + stripped
    return stripped if stripped != text else text


def month_bounds(month: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """``2026-11`` -> [first instant, first instant of the next month) in the regency's zone."""
    year, _, mon = month.partition("-")
    if not (year.isdigit() and mon.isdigit() and 1 <= int(mon) <= 12 and 2000 <= int(year) <= 2200):
        raise ValueError("month must be YYYY-MM")
    start = date(int(year), int(mon), 1)
    end = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
    return datetime.combine(start, time(), tz), datetime.combine(end, time(), tz)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    # Nearest rank: the smallest value with at least q of the values at or below it.
    rank = max(1, -(-len(ordered) * q // 1))
    return ordered[int(rank) - 1]


@dataclass
class MonthlyReport:
    month: str
    opd_name: str | None
    received: int = 0
    by_category: dict[str, int] = field(default_factory=dict)
    by_state: dict[str, int] = field(default_factory=dict)
    resolved: int = 0
    median_hours: float | None = None
    p90_hours: float | None = None
    within_sla: int = 0
    rows: list[ComplaintRow] = field(default_factory=list)
    labels: dict[int, str] = field(default_factory=dict)
    opd_names: dict[int, str] = field(default_factory=dict)
    sla: dict[int, str] = field(default_factory=dict)  # complaint id -> complaints.sla_verdict at print time
    opd_id: int | None = None  # the OPD reported on; None: all OPDs

    @property
    def compliance(self) -> float | None:
        return self.within_sla / self.resolved if self.resolved else None


def monthly(session: Session, principal: Principal, *, month: str, tz: ZoneInfo,
            opd_id: int | None = None, policy: SlaPolicy | None = None, now: datetime | None = None) -> MonthlyReport:
    start, end = month_bounds(month, tz)
    scope = principal.opd_scope()
    chosen = scope if scope is not None else opd_id
    stmt = select(ComplaintRow).where(or_(and_(ComplaintRow.submitted_at >= start, ComplaintRow.submitted_at < end),
                                          and_(ComplaintRow.fixed_at >= start, ComplaintRow.fixed_at < end)))
    if chosen is not None:
        stmt = stmt.where(ComplaintRow.opd_id == chosen)
    rows = list(session.scalars(stmt.order_by(ComplaintRow.id)))
    opd_name = session.scalar(select(OpdRow.name).where(OpdRow.id == chosen)) if chosen is not None else None
    report = MonthlyReport(month=month, opd_name=opd_name, rows=rows, opd_id=chosen)
    received = [r for r in rows if r.submitted_at is not None and start <= r.submitted_at < end]
    report.received = len(received)
    report.by_category = dict(Counter(r.category for r in received))
    report.by_state = dict(Counter(r.state for r in received))
    hours = [(r.fixed_at - r.submitted_at).total_seconds() / 3600 for r in rows
             if r.fixed_at is not None and r.submitted_at is not None and start <= r.fixed_at < end]
    report.resolved = len(hours)
    report.within_sla = sum(1 for r in rows if r.fixed_at is not None and start <= r.fixed_at < end
                            and not r.sla_breached)
    report.median_hours = statistics.median(hours) if hours else None
    report.p90_hours = percentile(hours, 0.9)
    vm_ids = {r.vm_id for r in rows if r.vm_id is not None}
    site_ids = {r.site_id for r in rows if r.site_id is not None}
    vms = {v.id: v.name for v in session.scalars(select(VmRow).where(VmRow.id.in_(vm_ids)))} if vm_ids else {}
    sites = {s.id: s.url for s in session.scalars(select(SiteRow).where(SiteRow.id.in_(site_ids)))} if site_ids \
        else {}
    moment = now or utcnow()
    report.sla = {r.id: complaints.sla_verdict(r, moment, policy) for r in rows}
    report.labels = {r.id: (f"VM {vms.get(r.vm_id, '?')}" if r.vm_id is not None else sites.get(r.site_id or 0, "?"))
                     for r in rows}
    opd_ids = {r.opd_id for r in rows}
    report.opd_names = {o.id: o.name for o in session.scalars(select(OpdRow).where(OpdRow.id.in_(opd_ids)))} \
        if opd_ids else {}
    return report


CSV_HEADER = ["id", "opd", "asset", "category", "state", "submitted_at", "fixed_at", "closed_at", "auto_closed",
              "hours_to_resolve", "sla", "description"]


def to_csv(report: MonthlyReport, tz: ZoneInfo) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)

    def when(value: datetime | None) -> str:
        return value.astimezone(tz).isoformat(timespec="minutes") if value else ""

    for r in report.rows:
        hours = ""
        if r.fixed_at is not None and r.submitted_at is not None:
            hours = f"{(r.fixed_at - r.submitted_at).total_seconds() / 3600:.1f}"
        writer.writerow([safe_cell(v) for v in (
            r.id, report.opd_names.get(r.opd_id, ""), report.labels.get(r.id, ""), r.category, r.state,
            when(r.submitted_at), when(r.fixed_at), when(r.closed_at), "yes" if r.auto_closed else "no", hours,
            report.sla.get(r.id, "none"), r.description)])
    return out.getvalue()


RESOLVE_BUCKETS = ((1, "lt1h"), (4, "1to4h"), (24, "4to24h"), (72, "1to3d"), (168, "3to7d"), (None, "gt7d"))


def pictures(report: MonthlyReport) -> dict[str, list[tuple[str, int]]]:
    """What the monthly report draws: complaints received per OPD, and how long resolving took (bucket keys)."""
    start_rows = [r for r in report.rows if r.submitted_at is not None]
    per_opd = Counter(report.opd_names.get(r.opd_id, "-") for r in start_rows)
    buckets: Counter[str] = Counter()
    for r in report.rows:
        if r.fixed_at is not None and r.submitted_at is not None:
            hours = (r.fixed_at - r.submitted_at).total_seconds() / 3600
            buckets[next(key for limit, key in RESOLVE_BUCKETS if limit is None or hours < limit)] += 1
    return {"per_opd": sorted(per_opd.items(), key=lambda kv: -kv[1]),
            "resolve": [(key, buckets.get(key, 0)) for _limit, key in RESOLVE_BUCKETS]}


EXPORT_COLUMNS = ("id", "opd", "asset", "category", "state", "priority", "submitted_at", "fixed_at", "closed_at",
                  "auto_closed", "hours_to_resolve", "sla", "description")


def export_table(report: MonthlyReport, tz: ZoneInfo, *, t: Callable[..., str], tk: Callable[..., str]
                 ) -> tuple[list[str], list[list[object]]]:
    """The monthly rows as people read them: headers, states and categories in the reader's language; times as
    local datetimes (naive, in the regency's zone, WIB); hours as numbers. CSV and XLSX render the same table."""
    header = [t(f"export.column.{c}") for c in EXPORT_COLUMNS]
    rows: list[list[object]] = []
    for r in report.rows:
        hours = round((r.fixed_at - r.submitted_at).total_seconds() / 3600, 1) \
            if r.fixed_at is not None and r.submitted_at is not None else None
        rows.append([r.id, report.opd_names.get(r.opd_id, ""), report.labels.get(r.id, ""),
                     tk("complaints.category", r.category), tk("complaints.state", r.state),
                     tk("complaints.priority", r.priority),
                     *(v.astimezone(tz).replace(tzinfo=None, microsecond=0) if v else None
                       for v in (r.submitted_at, r.fixed_at, r.closed_at)),
                     t("export.yes") if r.auto_closed else t("export.no"), hours,
                     tk("complaints.report.sla", report.sla.get(r.id, "none")), r.description])
    return header, rows


def to_people_csv(report: MonthlyReport, tz: ZoneInfo, *, lang: str, t: Callable[..., str],
                  tk: Callable[..., str]) -> str:
    """The CSV a spreadsheet opens as it is: a BOM (UTF-8 recognised), ';' between fields (Excel in Indonesian,
    and in most of Europe, splits on ';' because ',' is its decimal mark), decimal commas in Indonesian."""
    header, rows = export_table(report, tz, t=t, tk=tk)
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, delimiter=";")
    writer.writerow(header)
    for row in rows:
        cells = []
        for value in row:
            if isinstance(value, datetime):
                value = value.strftime("%d/%m/%Y %H:%M")
            elif isinstance(value, float):
                value = f"{value:.1f}".replace(".", ",") if lang == "id" else f"{value:.1f}"
            cells.append(safe_cell(value))
        writer.writerow(cells)
    return out.getvalue()


def to_xlsx(report: MonthlyReport, tz: ZoneInfo, *, t: Callable[..., str], tk: Callable[..., str],
            title: str) -> bytes:
    """The same table as an Excel workbook (openpyxl): real dates and numbers, a frozen, bold header row."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    header, rows = export_table(report, tz, t=t, tk=tk)
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = title[:31]
    sheet.append(header)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in rows:
        sheet.append([safe_cell(v) if isinstance(v, str) else v for v in row])
    for column in ("G", "H", "I"):
        for cell in sheet[column][1:]:
            cell.number_format = "dd/mm/yyyy hh:mm"
        sheet.column_dimensions[column].width = 17
    sheet.freeze_panes = "A2"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# --- the resolution report of one complaint -------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Office:
    """The letterhead and the approving official (settings ``PDN_OPS_OFFICE_*``, ``PDN_OPS_SIGNATORY_*``)."""

    government: str = ""
    name: str = ""
    address: str = ""
    logo: Path | None = None
    signatory_name: str = ""
    signatory_nip: str = ""
    signatory_title: str = ""
    number_pattern: str = "{seq:03d}/PDN/{month}/{year}"


def office_from(settings: Any) -> Office:
    """The office from the service's settings (``pdn_ops.core.settings.Settings``)."""
    return Office(government=settings.office_government, name=settings.office_name, address=settings.office_address,
                  logo=settings.office_logo, signatory_name=settings.signatory_name,
                  signatory_nip=settings.signatory_nip, signatory_title=settings.signatory_title,
                  number_pattern=settings.report_number_pattern)


@dataclass(frozen=True, slots=True)
class CheckEvidence:
    """The health checks of one target after a run: how many passed, of how many, the last one's time."""

    target: str
    passed: int
    total: int
    last_at: datetime | None


@dataclass(frozen=True, slots=True)
class WorkDone:
    """One remediation run of the complaint as the report tells it: what ran, each step, how it ended."""

    run_id: int
    playbook: str
    state: str
    closure: str | None
    requested_by: str
    approvers: tuple[str, ...]
    started_at: datetime | None
    finished_at: datetime | None
    steps: tuple[tl.StepFact, ...]
    evidence: tuple[CheckEvidence, ...]
    summary: Message | None = None  # staff only: it names nodes and tasks




def work_done(facts: list[tl.RunFact], *, staff: bool = True) -> list[WorkDone]:
    done = []
    for fact in facts:
        evidence = []
        for target, checks in sorted((fact.evidence.get("checks_after") or {}).items()):
            times = [datetime.fromisoformat(c["at"]) for c in checks if c.get("at")]
            evidence.append(CheckEvidence(target, sum(1 for c in checks if c.get("ok")), len(checks),
                                          max(times) if times else None))
        done.append(WorkDone(fact.id, fact.playbook, fact.state, fact.closure, fact.requested_by,
                             tuple(fact.approvers), fact.started_at, fact.finished_at, tuple(fact.steps),
                             tuple(evidence), fact.summary if staff else None))
    return done


def report_number(office: Office, row: ComplaintRow, tz: ZoneInfo, now: datetime) -> str:
    """The report's number from the office's pattern, dated by the closure (else the fix, else today)."""
    when = (row.closed_at or row.fixed_at or now).astimezone(tz)
    return office.number_pattern.format(seq=row.id, number=row.id, month=f"{when.month:02d}", year=when.year)


@dataclass
class ResolutionReport:
    row: ComplaintRow
    label: str
    opd_name: str
    timeline: list[tl.Entry]  # already cut to the reader's audience (pdn_ops.complaints.timeline)
    versions: list[ComplaintVersionRow]
    photos: list[AttachmentRow]
    notes: list[tuple[WorkNoteRow, str]]  # empty for OPD users: work notes are Diskominfo's working papers
    sla: str = "none"  # complaints.sla_verdict at print time
    work: list[WorkDone] = field(default_factory=list)
    number: str = ""
    engineer: str = ""  # the engineer in charge, who signs beside the official
    office: Office = field(default_factory=Office)


def _engineer_in_charge(timeline: list[tl.Entry], work: list[WorkDone]) -> str:
    # Who marked the complaint fixed; else who requested the last run; else who verified it.
    for action in ("complaint.fix", "complaint.start", "complaint.verify"):
        actors = [e.actor for e in timeline if e.action == action and e.actor != tl.SYSTEM_ACTOR]
        if actors:
            return actors[-1]
    return work[-1].requested_by if work else ""


def resolution(session: Session, principal: Principal, complaint_id: int, *, runs: LinkedRuns,
               policy: SlaPolicy | None = None, now: datetime | None = None, office: Office | None = None,
               tz: ZoneInfo | None = None) -> ResolutionReport:
    """What was reported, what was done, the evidence; another OPD's complaint raises NotFound."""
    row = complaints.get(session, principal, complaint_id)
    moment = now or utcnow()
    office = office or Office()
    facts = runs(session, row.id)
    work = work_done(facts, staff=principal.is_staff)
    entries = complaint_queries.timeline(session, principal, row, runs=lambda _s, _id: facts)
    return ResolutionReport(sla=complaints.sla_verdict(row, moment, policy),
        row=row, label=complaints.asset_label(session, row),
        opd_name=fleet.opd_names(session, {row.opd_id}).get(row.opd_id, "-"),
        timeline=entries, versions=complaint_queries.versions(session, row),
        photos=complaint_queries.attachments(session, row), notes=complaint_queries.notes(session, principal, row),
        work=work, number=report_number(office, row, tz or ZoneInfo("Asia/Jakarta"), moment),
        engineer=_engineer_in_charge(entries, work), office=office)


def chosen_opd(session: Session, principal: Principal, code: str) -> OpdRow | None:
    """The OPD a monthly report is asked for (``?opd=CODE``), or None for the principal's default.

    Staff choose any OPD (none: overall); an OPD user always gets their own OPD, and naming another OPD, or one
    that does not exist, answers like a missing page.
    """
    if not code:
        return None
    opd = fleet.opd_by_code(session, code)
    if opd is None or not principal.can_see_opd(opd.id):
        raise NotFound("no such OPD")
    return opd
