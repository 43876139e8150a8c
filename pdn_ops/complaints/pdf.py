"""PDF files of the resolution report and the monthly report, drawn with fpdf2 (pure Python).

Why fpdf2: pure Python on top of Pillow (already a dependency), no system libraries (WeasyPrint needs Pango and
takes ~1 s a page; ReportLab is heavier for the same tables), maintained, and fast enough (see README). The one
system file it uses is a Unicode TrueType font: DejaVu Sans (Debian package ``fonts-dejavu-core``). Without it the
built-in Helvetica is used and characters outside Latin-1 become "?" (names and descriptions may hold any
script), which the log says once per process.

All text comes from the catalogue in the reader's language; the values are the same ones the HTML pages show.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from pdn_ops.complaints.reports import MonthlyReport, Office, ResolutionReport
from pdn_ops.complaints.timeline_text import Line
from pdn_ops.core import photos
from pdn_ops.core.i18n.formatting import Formatter

log = logging.getLogger(__name__)

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"),
             Path("/usr/share/fonts/TTF"))
FONT = "DejaVuSans.ttf"
FONT_BOLD = "DejaVuSans-Bold.ttf"
THUMB_WIDTH_MM = 45.0

Translate = Callable[..., str]


def _font_dir() -> Path | None:
    for folder in FONT_DIRS:
        if (folder / FONT).is_file() and (folder / FONT_BOLD).is_file():
            return folder
    return None


_warned = False


class _Document(FPDF):
    def __init__(self, title: str, page_label: str, orientation: str = "portrait") -> None:
        super().__init__(orientation=orientation, unit="mm", format="A4")
        self.page_label = page_label
        self.set_title(title)
        self.set_creator("pdn-ops")
        self.set_auto_page_break(auto=True, margin=15)
        folder = _font_dir()
        if folder is not None:
            self.add_font("Body", "", str(folder / FONT))
            self.add_font("Body", "B", str(folder / FONT_BOLD))
            self.body_font = "Body"
            self.has_unicode = True
        else:
            global _warned
            if not _warned:
                log.warning("no DejaVu Sans font found in %s: PDF reports use Helvetica (Latin-1 only); "
                            "install fonts-dejavu-core", ", ".join(map(str, FONT_DIRS)))
                _warned = True
            self.body_font = "helvetica"
            self.has_unicode = False
        self.set_margins(15, 15, 15)
        self.add_page()

    def text_of(self, value: object) -> str:
        text = "" if value is None else str(value)
        return text if self.has_unicode else text.encode("latin-1", "replace").decode("latin-1")

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(self.body_font, "", 8)
        self.cell(0, 6, self.text_of(self.page_label.format(n=self.page_no())), align="C")

    # --- building blocks ---------------------------------------------------------------------------------------

    def heading(self, text: str, size: float = 12) -> None:
        self.ln(2)
        self.set_font(self.body_font, "B", size)
        self.multi_cell(0, size * 0.5, self.text_of(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_font(self.body_font, "", 10)
        self.ln(1)

    def paragraph(self, text: str, size: float = 10) -> None:
        self.set_font(self.body_font, "", size)
        self.multi_cell(0, 5, self.text_of(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def facts(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.set_font(self.body_font, "", 10)
        with self.table(col_widths=(1, 2), first_row_as_headings=False, line_height=5.5,
                        borders_layout="HORIZONTAL_LINES") as table:
            for label, value in pairs:
                row = table.row()
                row.cell(self.text_of(label))
                row.cell(self.text_of(value))

    def rows(self, header: Sequence[str], body: Sequence[Sequence[object]], widths: Sequence[float],
             size: float = 8) -> None:
        """A long table, one line per row, the header repeated on every page.

        Drawn cell by cell and cut to the column (with an ellipsis) rather than with fpdf2's ``table()``, which
        wraps every cell twice: that took about 6 ms a row, this well under 1 ms (see bench/report_pdf.py).
        """
        line = size * 0.55
        scale = (self.w - self.l_margin - self.r_margin) / sum(widths)
        widths = [w * scale for w in widths]  # relative widths, spread over the page

        def draw_header() -> None:
            self.set_font(self.body_font, "B", size)
            for title, width in zip(header, widths, strict=True):
                self.cell(width, line + 1, self._fit(title, width), border="B")
            self.ln(line + 1)
            self.set_font(self.body_font, "", size)

        draw_header()
        for values in body:
            if self.get_y() + line > self.page_break_trigger:
                self.add_page()
                draw_header()
            x, baseline = self.l_margin, self.get_y() + line * 0.75
            for value, width in zip(values, widths, strict=True):
                text = self._fit(value, width)
                if text:
                    self.text(x + self.c_margin, baseline, text)
                x += width
            self.ln(line)

    def _width(self, text: str) -> float:
        # The font's own width table: get_string_width() would parse and copy styles on every call.
        font = self.current_font
        assert font is not None  # set_font ran before any row
        return float(font.get_text_width(text, self.font_size_pt, None)[1]) / self.k

    def _fit(self, value: object, width: float) -> str:
        text = self.text_of(value)
        room = width - 2 * self.c_margin
        if self._width(text) <= room:
            return text
        ellipsis = "…" if self.has_unicode else "..."
        while text and self._width(text + ellipsis) > room:
            text = text[: max(1, len(text) * 3 // 4)] if len(text) > 8 else text[:-1]
        return text + ellipsis

    def bullets(self, items: Sequence[str]) -> None:
        self.set_font(self.body_font, "", 10)
        for item in items:
            self.multi_cell(0, 5, self.text_of(f"- {item}"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def output_bytes(self) -> bytes:
        return bytes(self.output())


# The document the reports draw on, for other features' PDF files (the survey's IKM report): same fonts, footer.
Document = _Document


def _when(value: datetime | None, tz: ZoneInfo) -> str:
    return value.astimezone(tz).strftime("%Y-%m-%d %H:%M") if value is not None else "-"


def letterhead(doc: _Document, office: Office, *, t: Translate) -> None:
    """The office's letterhead: logo, government, office, address, a double rule (as the printable page)."""
    top = doc.get_y()
    x = doc.l_margin
    if office.logo is not None and office.logo.is_file():
        doc.image(str(office.logo), x=x, y=top, w=20, h=20)
        x += 24
    doc.set_xy(x, top)
    width = doc.w - doc.r_margin - x
    if office.government:
        doc.set_font(doc.body_font, "B", 11)
        doc.multi_cell(width, 5, doc.text_of(office.government), new_x=XPos.LEFT, new_y=YPos.NEXT)
    doc.set_font(doc.body_font, "B", 14)
    doc.multi_cell(width, 6.5, doc.text_of(office.name or t("app.name")), new_x=XPos.LEFT, new_y=YPos.NEXT)
    if office.address:
        doc.set_font(doc.body_font, "", 9)
        doc.multi_cell(width, 4.5, doc.text_of(office.address), new_x=XPos.LEFT, new_y=YPos.NEXT)
    y = max(doc.get_y(), top + (22 if office.logo is not None else 0)) + 1
    doc.line(doc.l_margin, y, doc.w - doc.r_margin, y)
    doc.line(doc.l_margin, y + 0.8, doc.w - doc.r_margin, y + 0.8)
    doc.set_xy(doc.l_margin, y + 3)


def signatures(doc: _Document, office: Office, engineer: str, *, t: Translate) -> None:
    """Two columns: the engineer in charge and the approving official (name and NIP), room to sign above."""
    if doc.get_y() + 45 > doc.page_break_trigger:
        doc.add_page()
    doc.ln(6)
    half = (doc.w - doc.l_margin - doc.r_margin) / 2
    top = doc.get_y()
    blank = "........................"
    for column, (role, name, nip) in enumerate((
            (t("report.sign.engineer"), engineer or blank, None),
            (office.signatory_title or t("report.sign.official"), office.signatory_name or blank,
             f"{t('report.sign.nip')} {office.signatory_nip or blank}"))):
        x = doc.l_margin + column * half
        doc.set_xy(x, top)
        doc.set_font(doc.body_font, "", 10)
        doc.cell(half, 5, doc.text_of(role))
        doc.set_xy(x, top + 25)
        doc.set_font(doc.body_font, "B", 10)
        doc.cell(half, 5, doc.text_of(name))
        if nip:
            doc.set_xy(x, top + 30)
            doc.set_font(doc.body_font, "", 10)
            doc.cell(half, 5, doc.text_of(nip))
    doc.set_xy(doc.l_margin, top + 38)


def work_lines(report: ResolutionReport, fmt: Formatter, *, t: Translate, tk: Translate) -> list[tuple[str, list[str]]]:
    """What was done, as (heading, lines) per run: the same words the printable page shows."""
    blocks = []
    for w in report.work:
        head = t("report.work.run", id=w.run_id, playbook=tk("remediation.playbook", w.playbook))
        outcome = f"{t('report.work.outcome')}: {tk('remediation.state', w.state)}"
        if w.closure:
            outcome += f" · {tk('remediation.closure', w.closure)}"
        outcome += f" · {fmt.short(w.started_at)} – {fmt.short(w.finished_at)}"
        lines = [outcome, t("report.work.by", requester=w.requested_by, approvers=", ".join(w.approvers) or "–")]
        if w.summary is not None:
            lines.append(f"{t('remediation.summary')}: {t(w.summary.key, **w.summary.params)}")
        lines += [f"{s.position + 1}. {tk('remediation.step_name', s.name)} · {tk('remediation.step_state', s.state)}"
                  for s in w.steps]
        lines += [t("report.work.evidence", target=e.target, passed=e.passed, total=e.total, at=fmt.short(e.last_at))
                  for e in w.evidence]
        blocks.append((head, lines))
    return blocks


def resolution_pdf(report: ResolutionReport, lines: Sequence[Line], *, t: Translate, tk: Translate, tz: ZoneInfo,
                   printed_at: datetime, data_dir: Path, with_photos: bool, lang: str = "id") -> bytes:
    """``lines``: the report's timeline worded in the reader's language (``pdn_ops.complaints.timeline_text.lines``)."""
    row = report.row
    fmt = Formatter(lang, tz)
    title = t("complaints.report.title", id=row.id)
    doc = _Document(title, t("reports.pdf.page"))
    letterhead(doc, report.office, t=t)
    doc.set_font(doc.body_font, "", 10)
    doc.cell(0, 5, doc.text_of(f"{t('report.number')}: {report.number}"))
    doc.set_x(doc.l_margin)
    doc.cell(0, 5, doc.text_of(fmt.date(printed_at)), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    doc.heading(title, 15)
    state = tk("complaints.state", row.state) + (f" ({t('complaints.auto_closed')})" if row.auto_closed else "")
    doc.facts([
        (t("reports.pdf.complaint"), f"#{row.id}"),
        ("OPD", report.opd_name),
        (t("complaints.field.asset"), report.label),
        (t("complaints.field.category"), tk("complaints.category", row.category)),
        (t("complaints.field.state"), state),
        (t("complaints.report.submitted"), fmt.datetime(row.submitted_at)),
        (t("complaints.report.fixed"), fmt.datetime(row.fixed_at)),
        (t("complaints.report.closed"), fmt.datetime(row.closed_at)),
        ("SLA", tk("complaints.report.sla", report.sla)),
    ])
    doc.heading(t("complaints.report.reported"))
    doc.paragraph(row.description)
    doc.paragraph(t("complaints.report.photo_count", n=len(report.photos)))
    if with_photos and report.photos:
        _thumbnails(doc, report, data_dir)
    doc.heading(t("complaints.report.done"))
    for head, block in work_lines(report, fmt, t=t, tk=tk):
        doc.heading(head, 11)
        doc.bullets(block)
    if report.notes:
        doc.heading(t("report.work.notes"), 11)
        doc.bullets([f"{fmt.short(note.created_at)} · {name}: {note.body}" for note, name in report.notes])
    if not report.work and not report.notes:
        doc.paragraph(t("report.work.none"))
    doc.heading(t("complaints.report.evidence"))
    doc.bullets([" · ".join(part for part in (
        fmt.short(line.entry.at), line.entry.actor, line.text, line.summary, line.entry.detail) if part)
        for line in lines])
    signatures(doc, report.office, report.engineer, t=t)
    doc.ln(3)
    doc.paragraph(t("complaints.report.printed", at=fmt.datetime(printed_at)), size=8)
    return doc.output_bytes()


def _thumbnails(doc: _Document, report: ResolutionReport, data_dir: Path) -> None:
    """The complaint's photos as thumbnails (the already re-encoded, EXIF-free JPEG thumbnails), in a row."""
    gap = 4.0
    x = doc.l_margin
    top = doc.get_y() + 2
    tallest = 0.0
    for attachment in report.photos:
        path = photos.path_of(data_dir, attachment.thumb_name)
        if not path.is_file():
            continue  # a photo missing on disk must not make the report unavailable; the count above stands
        if x + THUMB_WIDTH_MM > doc.w - doc.r_margin:
            x, top = doc.l_margin, top + tallest + gap
            tallest = 0.0
        ratio = attachment.height / attachment.width if attachment.width else 0.75
        height = THUMB_WIDTH_MM * ratio
        if top + height > doc.h - doc.b_margin:
            doc.add_page()
            x, top, tallest = doc.l_margin, doc.get_y(), 0.0
        doc.image(str(path), x=x, y=top, w=THUMB_WIDTH_MM)
        x += THUMB_WIDTH_MM + gap
        tallest = max(tallest, height)
    doc.set_xy(doc.l_margin, top + tallest + gap)


def monthly_pdf(report: MonthlyReport, *, t: Translate, tk: Translate, tz: ZoneInfo,
                uptime: Sequence[tuple[str, float]] | None, printed_at: datetime, office: Office | None = None,
                lang: str = "id") -> bytes:
    fmt = Formatter(lang, tz)
    scope = report.opd_name or t("reports.pdf.all_opds")
    year, month = (int(x) for x in report.month.split("-"))
    title = f"{t('reports.title')} {fmt.month(year, month)} · {scope}"
    # Landscape: the complaint table has up to nine columns.
    doc = _Document(title, t("reports.pdf.page"), orientation="landscape")
    if office is not None:
        letterhead(doc, office, t=t)
        doc.set_font(doc.body_font, "", 10)
        doc.cell(0, 5, doc.text_of(fmt.date(printed_at)), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    doc.heading(title, 15)
    doc.facts([
        ("OPD", scope),
        (t("reports.received"), str(report.received)),
        (t("reports.resolved"), str(report.resolved)),
        (t("reports.median"), f"{report.median_hours:.1f}" if report.median_hours is not None else "-"),
        (t("reports.p90"), f"{report.p90_hours:.1f}" if report.p90_hours is not None else "-"),
        (t("reports.compliance"), fmt.percent(report.compliance, 0)),
    ])
    doc.heading(t("reports.by_category"))
    doc.bullets([f"{tk('complaints.category', k)}: {n}" for k, n in sorted(report.by_category.items())] or ["-"])
    doc.heading(t("reports.by_state"))
    doc.bullets([f"{tk('complaints.state', k)}: {n}" for k, n in sorted(report.by_state.items())] or ["-"])
    doc.heading(t("reports.uptime"))
    if uptime is None:
        doc.paragraph(t("reports.no_uptime"))
    else:
        doc.bullets([f"{label}: {fraction * 100:.2f} %" for label, fraction in uptime] or ["-"])
    doc.heading(t("reports.complaints"))
    overall = report.opd_name is None
    header = ["#", *(["OPD"] if overall else []), t("complaints.field.asset"), t("complaints.field.category"),
              t("complaints.field.state"), t("complaints.report.submitted"), t("complaints.report.fixed"),
              t("reports.pdf.hours"), "SLA"]
    widths = [12, *([36] if overall else []), 42, 40, 28, 27, 27, 12, 20]
    body = []
    for r in report.rows:
        hours = f"{(r.fixed_at - r.submitted_at).total_seconds() / 3600:.1f}" \
            if r.fixed_at is not None and r.submitted_at is not None else "-"
        sla = tk("complaints.report.sla", report.sla.get(r.id, "none"))
        body.append([r.id, *([report.opd_names.get(r.opd_id, "")] if overall else []), report.labels.get(r.id, ""),
                     tk("complaints.category", r.category), tk("complaints.state", r.state),
                     fmt.short(r.submitted_at), fmt.short(r.fixed_at), hours, sla])
    if body:
        doc.rows(header, body, widths)
    else:
        doc.paragraph("-")
    doc.ln(3)
    doc.paragraph(t("complaints.report.printed", at=fmt.datetime(printed_at)), size=8)
    if office is not None:
        signatures(doc, office, "", t=t)
    return doc.output_bytes()


def attachment_headers(filename: str) -> dict[str, str]:
    """A download with our own generated ASCII name (nothing from the user goes into the header)."""
    return {"Content-Disposition": f'attachment; filename="{filename}"', "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store"}


def safe_part(text: str) -> str:
    """A slug for a file name: lower-case ASCII letters, digits and '-' only."""
    cleaned = "".join(ch if ch.isascii() and ch.isalnum() else "-" for ch in text.lower()).strip("-")
    return cleaned[:40] or "x"
