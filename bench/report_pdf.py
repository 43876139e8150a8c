"""Benchmark: render time of the PDF reports (fpdf2) for a busy OPD's month and for one resolution report.

    .venv/bin/python bench/report_pdf.py            # 300, 1,000 and 3,000 complaints in the month
    .venv/bin/python bench/report_pdf.py --rows 1000 --repeat 5

Rendering only (the report's values are built in memory, as the service returns them): the database query is the
same one the HTML page and the CSV run. Prints wall and CPU time per render, pages and size.
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from pdn_ops.complaints import pdf  # noqa: E402
from pdn_ops.complaints.model import Category, State  # noqa: E402
from pdn_ops.complaints.reports import MonthlyReport, ResolutionReport  # noqa: E402
from pdn_ops.complaints.tables import AttachmentRow, ComplaintRow, WorkNoteRow  # noqa: E402
from pdn_ops.complaints.timeline import Entry  # noqa: E402
from pdn_ops.complaints.timeline_text import lines  # noqa: E402
from pdn_ops.core import photos  # noqa: E402
from pdn_ops.web.templating import translators  # noqa: E402

TZ = ZoneInfo("Asia/Jakarta")


def busy_month(rows: int) -> MonthlyReport:
    rng = random.Random(5)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    items = []
    for i in range(rows):
        submitted = start + timedelta(minutes=rng.randrange(0, 29 * 24 * 60))
        fixed = submitted + timedelta(hours=rng.uniform(1, 200)) if rng.random() < 0.8 else None
        items.append(ComplaintRow(id=100_000 + i, opd_id=1, vm_id=1, category=rng.choice(list(Category)).value,
                                  state=(State.CLOSED if fixed else State.IN_PROGRESS).value, description="x",
                                  submitted_at=submitted, fixed_at=fixed, sla_breached=rng.random() < 0.1))
    report = MonthlyReport(month="2026-11", opd_name="Dinas Kesehatan", rows=items)
    report.received = rows
    report.resolved = sum(1 for r in items if r.fixed_at)
    report.within_sla = sum(1 for r in items if r.fixed_at and not r.sla_breached)
    report.median_hours, report.p90_hours = 48.0, 160.0
    report.by_category = {c.value: rows // len(Category) for c in Category}
    report.by_state = {"closed": report.resolved, "in_progress": rows - report.resolved}
    report.labels = {r.id: "VM web-dinkes" for r in items}
    report.opd_names = {1: "Dinas Kesehatan"}
    return report


def one_complaint(data_dir: Path) -> ResolutionReport:
    stored = []
    for i in range(5):
        out = io.BytesIO()
        Image.new("RGB", (1600, 1200), (30 * i, 90, 160)).save(out, "JPEG")
        stored.append(photos.store(out.getvalue(), f"p{i}.jpg", data_dir))
    row = ComplaintRow(id=42, opd_id=1, vm_id=1, category="site_down", state="closed", description="Situs mati " * 40,
                       submitted_at=datetime(2026, 11, 2, tzinfo=UTC), fixed_at=datetime(2026, 11, 3, tzinfo=UTC))
    attachments = [AttachmentRow(id=i, thumb_name=s.thumb_name, stored_name=s.stored_name, width=s.width,
                                 height=s.height) for i, s in enumerate(stored)]
    notes = [(WorkNoteRow(body=f"langkah {i}: periksa layanan"), "Insinyur") for i in range(10)]
    timeline = [Entry(datetime(2026, 11, 2, i, tzinfo=UTC), "engineer", "complaint.note") for i in range(20)]
    return ResolutionReport(row=row, label="VM web-dinkes", opd_name="Dinas Kesehatan", timeline=timeline,
                            versions=[], photos=attachments, notes=notes)


def measure(label: str, render, repeat: int) -> None:
    walls, cpus = [], []
    body = b""
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        body = render()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    from pypdf import PdfReader

    pages = len(PdfReader(io.BytesIO(body)).pages)
    print(f"| {label} | {min(walls) * 1000:.0f} ms | {min(cpus) * 1000:.0f} ms | {pages} | {len(body) // 1024} KiB |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="*", default=[300, 1000, 3000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    t, tk = translators("id")
    now = datetime.now(TZ)
    print("| report | wall (best) | CPU (best) | pages | size |\n| --- | --- | --- | --- | --- |")
    for rows in args.rows:
        report = busy_month(rows)
        measure(f"monthly, one OPD, {rows} complaints", lambda r=report: pdf.monthly_pdf(
            r, t=t, tk=tk, tz=TZ, uptime=[("VM web-dinkes", 0.9991)], printed_at=now), args.repeat)
    with tempfile.TemporaryDirectory() as folder:
        single = one_complaint(Path(folder))
        worded = lines(single.timeline, "id")
        measure("resolution, 5 photo thumbnails", lambda: pdf.resolution_pdf(
            single, worded, t=t, tk=tk, tz=TZ, printed_at=now, data_dir=Path(folder), with_photos=True), args.repeat)
        measure("resolution, without photos", lambda: pdf.resolution_pdf(
            single, worded, t=t, tk=tk, tz=TZ, printed_at=now, data_dir=Path(folder), with_photos=False), args.repeat)


if __name__ == "__main__":
    main()
