"""Exports people open: a CSV that Excel in Indonesian splits (BOM, ';', translated headers and values, decimal
commas) and an XLSX beside it with real dates and numbers (read back with openpyxl)."""

from __future__ import annotations

import csv
import io

from openpyxl import load_workbook

from tests.complaints.world import World, file_complaint


def _one_fixed(world: World) -> None:
    url = file_complaint(world.client("admin-dinkes"), f"vm:{world.vm['web-dinkes']}",
                         description="=HYPERLINK(\"x\") situs mati").headers["location"]
    engineer = world.client("engineer")
    for action in ("verify", "start", "fix"):
        assert engineer.post(f"{url}/actions/{action}").status_code == 303


def test_the_csv_is_indonesian_with_a_bom_and_semicolons_and_the_xlsx_has_real_dates(world: World) -> None:
    _one_fixed(world)
    supervisor = world.client("supervisor")
    body = supervisor.get("/reports/monthly.csv").content.decode("utf-8")
    assert body.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(body.lstrip("\ufeff")), delimiter=";"))
    assert rows[0][:6] == ["Nomor", "OPD", "Aset", "Kategori", "Status", "Prioritas"]
    row = rows[-1]
    assert row[4] == "Menunggu konfirmasi OPD" and row[3] == "Situs tidak dapat diakses"
    assert row[-1].startswith("'="), "a formula is text"
    assert "," in row[10] or row[10] == "0,0", "hours with a decimal comma"
    english = supervisor.get("/reports/monthly.csv", params={"lang": "en"}).content.decode("utf-8")
    assert english.lstrip("\ufeff").startswith("Number;OPD;Asset;Category;State;Priority")
    book = load_workbook(io.BytesIO(supervisor.get("/reports/monthly.xlsx").content))
    sheet = book.active
    assert sheet is not None
    values = list(sheet.iter_rows(values_only=True))
    assert values[0][0] == "Nomor" and sheet.freeze_panes == "A2"
    last = values[-1]
    assert hasattr(last[6], "year") and isinstance(last[10], int | float), "a date and a number, not text"
    assert last[4] == "Menunggu konfirmasi OPD"


def test_an_opd_export_holds_its_own_complaints_only(world: World) -> None:
    body = world.client("admin-disdik").get("/reports/monthly.xlsx").content
    values = list(load_workbook(io.BytesIO(body)).active.iter_rows(values_only=True))
    assert all(row[1] != "Dinas Kesehatan" for row in values[1:])
