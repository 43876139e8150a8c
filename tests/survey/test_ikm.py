"""The IKM computation against worked examples written out by hand (PermenPAN-RB 14/2017)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest

from pdn_ops.core.errors import SurveyInvalid
from pdn_ops.survey.model import (
    ELEMENTS,
    Mutu,
    Period,
    PeriodKind,
    compute,
    mutu_of,
    parse_period,
    period_of,
)


def responses_totalling(count: int, total: int) -> list[list[int]]:
    """``count`` responses whose 9 x count scores add up to ``total`` (every element starts at 1, then filled up)."""
    rows = [[1] * 9 for _ in range(count)]
    left = total - 9 * count
    for row in rows:
        for i in range(9):
            add = min(3, left)
            row[i] += add
            left -= add
    assert left == 0
    return rows


def test_a_full_worked_period_of_four_respondents() -> None:
    # Hand-computed: per-element totals 14 13 11 16 13 15 15 11 14 over 4 respondents;
    # NRR 3.50 3.25 2.75 4.00 3.25 3.75 3.75 2.75 3.50; weighted sum = 30.5 / 9 = 3.3889; x 25 = 84.72 -> B.
    ikm = compute([[4, 4, 3, 4, 3, 4, 4, 3, 4],
                   [3, 3, 3, 4, 3, 3, 4, 3, 3],
                   [4, 3, 2, 4, 3, 4, 4, 3, 4],
                   [3, 3, 3, 4, 4, 4, 3, 2, 3]])
    assert ikm is not None
    assert ikm.respondents == 4
    assert [e.total for e in ikm.elements] == [14, 13, 11, 16, 13, 15, 15, 11, 14]
    assert [str(e.nrr_shown) for e in ikm.elements] == [
        "3.50", "3.25", "2.75", "4.00", "3.25", "3.75", "3.75", "2.75", "3.50"]
    assert [str(e.converted) for e in ikm.elements] == [
        "87.50", "81.25", "68.75", "100.00", "81.25", "93.75", "93.75", "68.75", "87.50"]
    assert "".join(e.mutu for e in ikm.elements) == "BBCABAACB"
    assert ikm.elements[0].weighted == Fraction(7, 18)  # 3.5 / 9
    assert ikm.weighted_nrr == Fraction(61, 18)  # 30.5 / 9
    assert ikm.value == Decimal("84.72")
    assert ikm.mutu is Mutu.B
    assert [e.element for e in ikm.elements] == list(ELEMENTS)


@pytest.mark.parametrize(("count", "total", "value", "mutu"), [
    (1, 36, "100.00", Mutu.A),   # all 4s
    (24, 763, "88.31", Mutu.A),  # 763 x 25 / 216 = 88.3102 -> lowest A
    (19, 604, "88.30", Mutu.B),  # 604 x 25 / 171 = 88.3041 -> highest B
    (19, 524, "76.61", Mutu.B),  # 76.6082 -> lowest B
    (26, 717, "76.60", Mutu.C),  # 76.6026 -> highest C
    (5, 117, "65.00", Mutu.C),   # exactly 65: lowest C
    (38, 889, "64.99", Mutu.D),  # 64.9854 -> highest D
    (1, 9, "25.00", Mutu.D),     # all 1s
])
def test_each_category_boundary_from_the_responses(count: int, total: int, value: str, mutu: Mutu) -> None:
    ikm = compute(responses_totalling(count, total))
    assert ikm is not None and ikm.respondents == count
    assert ikm.value == Decimal(value)
    assert ikm.mutu is mutu


@pytest.mark.parametrize(("value", "mutu"), [
    ("100.00", Mutu.A), ("88.31", Mutu.A), ("88.30", Mutu.B), ("76.61", Mutu.B), ("76.60", Mutu.C),
    ("65.00", Mutu.C), ("64.99", Mutu.D), ("25.00", Mutu.D)])
def test_the_regulation_table(value: str, mutu: Mutu) -> None:
    assert mutu_of(Decimal(value)) is mutu


@pytest.mark.parametrize("value", ["24.99", "100.01"])
def test_values_outside_the_scale_are_refused(value: str) -> None:
    with pytest.raises(SurveyInvalid):
        mutu_of(Decimal(value))


def test_rounding_is_half_up_before_classifying() -> None:
    # 88.305 would be B if classified unrounded, A once printed as 88.31: the printed figure decides.
    assert mutu_of(Decimal("88.305").quantize(Decimal("0.01"), rounding="ROUND_HALF_UP")) is Mutu.A


@pytest.mark.parametrize("bad", [[4] * 8, [4] * 10, [4] * 8 + [5], [4] * 8 + [0], [4] * 8 + [True]])
def test_a_response_is_nine_scores_of_one_to_four(bad: list[int]) -> None:
    with pytest.raises(SurveyInvalid):
        compute([bad])


def test_no_response_no_index() -> None:
    assert compute([]) is None


def test_periods() -> None:
    q4 = parse_period("2026-q4")
    assert (q4.start, q4.end, q4.code) == (date(2026, 10, 1), date(2027, 1, 1), "2026-Q4")
    assert parse_period("2026-S1").end == date(2026, 7, 1)
    assert parse_period("2026") == Period(2026, PeriodKind.YEAR, 1)
    assert [p.code for p in q4.previous(5)] == ["2025-Q4", "2026-Q1", "2026-Q2", "2026-Q3", "2026-Q4"]
    assert period_of(date(2026, 7, 1), PeriodKind.SEMESTER).code == "2026-S2"
    for bad in ("2026-Q5", "2026-S3", "26", "2026-X1", "2026-Q", ""):
        with pytest.raises(SurveyInvalid):
            parse_period(bad)
