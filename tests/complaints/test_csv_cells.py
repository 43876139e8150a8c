"""CSV cells never start what a spreadsheet would run as a formula, whatever hides in front of it."""

from __future__ import annotations

import pytest

from pdn_ops.complaints.reports import safe_cell


@pytest.mark.parametrize(("typed", "written"), [
    ("=1+2", "'=1+2"), ("+1", "'+1"), ("-1", "'-1"), ("@SUM(A1)", "'@SUM(A1)"), ("\t=1", "'\t=1"),
    ("＝1+2", "'＝1+2"), ("＋1", "'＋1"), ("－1", "'－1"), ("＠SUM(A1)", "'＠SUM(A1)"),
    ("\x00=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"), ("\x00\x01=1", "'=1"), ("\u200b=1", "'=1"),
    ("\ufeff+1", "'+1"), ("Situs mati = parah", "Situs mati = parah"), ("", ""), (None, ""), (42, "42"),
])
def test_formula_starts_are_neutralised_even_behind_control_or_full_width_characters(typed: object,
                                                                                      written: str) -> None:
    assert safe_cell(typed) == written
