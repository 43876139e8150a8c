"""The IKM report as files: a PDF on the office's letterhead (fpdf2, as the other reports) and an XLSX (openpyxl).

Both carry the same figures as the page, from the same ``PeriodReport``; the text comes from the catalogue.
"""

from __future__ import annotations

import io
from datetime import datetime

from openpyxl import Workbook
from openpyxl.styles import Font

from pdn_ops.complaints import Document, Office, letterhead, safe_cell, signatures
from pdn_ops.survey.model import Ikm
from pdn_ops.survey.service import PeriodReport
from pdn_ops.web.templating import translators

MUTU_KEY = "survey.mutu."


def _element_rows(ikm: Ikm | None, t: object) -> list[list[object]]:
    if ikm is None:
        return []
    assert callable(t)
    return [[f"U{i + 1}", t(f"survey.element.{e.element}.short"), e.total, str(e.nrr_shown),
             f"{float(e.weighted):.4f}", str(e.converted), f"{e.mutu} ({t(MUTU_KEY + e.mutu)})"]
            for i, e in enumerate(ikm.elements)]


def _headline(report: PeriodReport, t: object) -> list[tuple[str, str]]:
    assert callable(t)
    ikm = report.ikm
    return [(t("survey.report.period"), report.period.code),
            (t("survey.report.respondents"), str(ikm.respondents if ikm else 0)),
            (t("survey.report.invited"), str(report.invited)),
            (t("survey.report.weighted_nrr"), f"{float(ikm.weighted_nrr):.4f}" if ikm else "-"),
            (t("survey.report.ikm"), str(ikm.value) if ikm else "-"),
            (t("survey.report.mutu"), f"{ikm.mutu} ({t(MUTU_KEY + ikm.mutu)})" if ikm else "-")]


def _feedback(report: PeriodReport, t: object) -> list[tuple[str, str]]:
    assert callable(t)
    f = report.feedback

    def hours(value: float | None) -> str:
        return f"{value:.1f}" if value is not None else "-"

    return [(t("survey.report.feedback.received"), str(f.received)),
            (t("survey.report.feedback.answered"), str(f.answered)),
            (t("survey.report.feedback.open"), str(f.open)),
            (t("survey.report.feedback.median_hours"), hours(f.median_hours)),
            (t("survey.report.feedback.max_hours"), hours(f.max_hours))]


def header(t: object) -> list[str]:
    assert callable(t)
    return [t("survey.report.col.code"), t("survey.report.col.element"), t("survey.report.col.total"),
            t("survey.report.col.nrr"), t("survey.report.col.weighted"), t("survey.report.col.converted"),
            t("survey.report.col.mutu")]


def report_pdf(report: PeriodReport, office: Office, *, lang: str, printed_at: datetime) -> bytes:
    t, _ = translators(lang)
    doc = Document(t("survey.report.title"), t("reports.pdf.page"))
    letterhead(doc, office, t=t)
    doc.heading(t("survey.report.pdf_title", period=report.period.code), 13)
    doc.paragraph(t("survey.report.basis"), 9)
    doc.facts(_headline(report, t))
    doc.heading(t("survey.report.per_element"))
    doc.rows(header(t), _element_rows(report.ikm, t), widths=(8, 40, 12, 12, 14, 14, 24), size=8)
    doc.heading(t("survey.report.trend"))
    doc.rows([t("survey.report.period"), t("survey.report.respondents"), t("survey.report.ikm"),
              t("survey.report.mutu")],
             [[p.code, ikm.respondents if ikm else 0, str(ikm.value) if ikm else "-", str(ikm.mutu) if ikm else "-"]
              for p, ikm in report.trend], widths=(1, 1, 1, 1), size=9)
    doc.heading(t("survey.report.feedback"))
    doc.facts(_feedback(report, t))
    if report.suggestions:
        doc.heading(t("survey.report.suggestions"))
        doc.rows([t("survey.report.col.day"), t("survey.report.col.suggestion"), t("survey.report.col.follow_up")],
                 [[s.answered_on.isoformat(), s.text, s.follow_up or "-"] for s in report.suggestions],
                 widths=(12, 44, 44), size=8)
    doc.paragraph(t("survey.report.printed", at=printed_at.strftime("%Y-%m-%d %H:%M")), 8)
    signatures(doc, office, "", t=t)
    return doc.output_bytes()


def report_xlsx(report: PeriodReport, *, lang: str) -> bytes:
    t, _ = translators(lang)
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "IKM"
    sheet.append([t("survey.report.pdf_title", period=report.period.code)])
    sheet["A1"].font = Font(bold=True)
    for label, value in _headline(report, t):
        sheet.append([label, value])
    sheet.append([])
    sheet.append(header(t))
    for row in _element_rows(report.ikm, t):
        # Numbers as numbers, so the office can check the arithmetic in the spreadsheet itself.
        sheet.append([row[0], row[1], row[2], float(str(row[3])), float(str(row[4])), float(str(row[5])), row[6]])
    trend = book.create_sheet(t("survey.report.trend")[:31])
    trend.append([t("survey.report.period"), t("survey.report.respondents"), t("survey.report.ikm"),
                  t("survey.report.mutu")])
    for period, ikm in report.trend:
        trend.append([period.code, ikm.respondents if ikm else 0, float(ikm.value) if ikm else None,
                      str(ikm.mutu) if ikm else None])
    service = book.create_sheet(t("survey.report.feedback")[:31])
    for label, value in _feedback(report, t):
        service.append([label, value])
    if report.suggestions:
        notes = book.create_sheet(t("survey.report.suggestions")[:31])
        notes.append([t("survey.report.col.day"), t("survey.report.col.suggestion"),
                      t("survey.report.col.follow_up")])
        for s in report.suggestions:
            notes.append([s.answered_on.isoformat(), safe_cell(s.text), safe_cell(s.follow_up)])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()

