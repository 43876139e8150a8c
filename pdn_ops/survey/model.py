"""The community satisfaction survey (SKM) and its index (IKM), as PermenPAN-RB No. 14 Tahun 2017 computes them.

Standard library only. A response scores the nine elements (unsur) 1-4 each. Per period:

- NRR of an element (nilai rata-rata) = the sum of its scores / the number of responses;
- the weighted NRR (NRR tertimbang) = NRR x 1/9 (every element weighs the same; the regulation writes the weight
  as 0.111, i.e. 1/9 rounded -- we keep the exact ninth so nine 4s make exactly 100.00, not 99.90);
- IKM (unit) = sum of the weighted NRRs x 25, i.e. the mean NRR on the 25-100 scale;
- mutu from the converted value: A (Sangat Baik) 88.31-100.00, B (Baik) 76.61-88.30, C (Kurang Baik) 65.00-76.60,
  D (Tidak Baik) 25.00-64.99.

Arithmetic is exact (``Fraction``); the converted value is rounded half-up to two decimals, the precision of the
regulation's table, *before* it is classified, so the category never disagrees with the figure printed beside it.
An element's own category uses the same table on its NRR x 25.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Final

from pdn_ops.core.errors import SurveyInvalid

# The nine elements in the regulation's order; the catalogue holds their questions (survey.element.<code>).
ELEMENTS: Final = ("requirements", "procedure", "time", "cost", "product", "competence", "conduct",
                   "complaints", "facilities")
SCORES: Final = (1, 2, 3, 4)
WEIGHT: Final = Fraction(1, len(ELEMENTS))
CONVERSION: Final = 25
TWO_PLACES: Final = Decimal("0.01")


class Mutu(StrEnum):
    A = "A"  # Sangat Baik
    B = "B"  # Baik
    C = "C"  # Kurang Baik
    D = "D"  # Tidak Baik


# Lower bound of each category on the converted (25-100) scale, best first.
MUTU_FLOORS: Final = ((Decimal("88.31"), Mutu.A), (Decimal("76.61"), Mutu.B), (Decimal("65.00"), Mutu.C),
                      (Decimal("25.00"), Mutu.D))


def to_two_places(value: Fraction) -> Decimal:
    """Half-up to two decimals, exactly (no binary floating point on the way)."""
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(TWO_PLACES, rounding=ROUND_HALF_UP)


def mutu_of(converted: Decimal) -> Mutu:
    """The category of a converted value (already rounded to two decimals), 25.00-100.00."""
    if not Decimal("25.00") <= converted <= Decimal("100.00"):
        raise SurveyInvalid(f"an IKM value is between 25.00 and 100.00, not {converted}")
    for floor, mutu in MUTU_FLOORS:
        if converted >= floor:
            return mutu
    raise AssertionError("unreachable: 25.00 is the lowest floor")


def validate_scores(scores: Sequence[int]) -> tuple[int, ...]:
    if len(scores) != len(ELEMENTS):
        raise SurveyInvalid(f"a response scores all {len(ELEMENTS)} elements, not {len(scores)}")
    for score in scores:
        if type(score) is not int or score not in SCORES:
            raise SurveyInvalid(f"every score is 1, 2, 3 or 4, not {score!r}")
    return tuple(scores)


@dataclass(frozen=True, slots=True)
class ElementScore:
    element: str
    total: int
    nrr: Fraction  # exact; nrr_shown rounds it for the table
    weighted: Fraction

    @property
    def nrr_shown(self) -> Decimal:
        return to_two_places(self.nrr)

    @property
    def converted(self) -> Decimal:
        return to_two_places(self.nrr * CONVERSION)

    @property
    def mutu(self) -> Mutu:
        return mutu_of(self.converted)


@dataclass(frozen=True, slots=True)
class Ikm:
    respondents: int
    elements: tuple[ElementScore, ...]
    weighted_nrr: Fraction  # the sum of the weighted NRRs (1-4)

    @property
    def value(self) -> Decimal:
        """IKM on the 25-100 scale, two decimals."""
        return to_two_places(self.weighted_nrr * CONVERSION)

    @property
    def mutu(self) -> Mutu:
        return mutu_of(self.value)


def compute(responses: Iterable[Sequence[int]]) -> Ikm | None:
    """The index of a period's responses (each nine scores in ``ELEMENTS`` order); None without any response."""
    totals = [0] * len(ELEMENTS)
    count = 0
    for response in responses:
        for i, score in enumerate(validate_scores(response)):
            totals[i] += score
        count += 1
    if count == 0:
        return None
    elements = tuple(ElementScore(code, total, Fraction(total, count), Fraction(total, count) * WEIGHT)
                     for code, total in zip(ELEMENTS, totals, strict=True))
    return Ikm(respondents=count, elements=elements, weighted_nrr=sum((e.weighted for e in elements), Fraction(0)))


# --- periods: the supervisor reports per quarter (Q), semester (S) or year ----------------------------------------

class PeriodKind(StrEnum):
    QUARTER = "quarter"
    SEMESTER = "semester"
    YEAR = "year"


MONTHS_OF: Final = {PeriodKind.QUARTER: 3, PeriodKind.SEMESTER: 6, PeriodKind.YEAR: 12}


@dataclass(frozen=True, slots=True, order=True)
class Period:
    """A reporting period; ``code`` is how a URL names it: ``2026-Q4``, ``2026-S2``, ``2026``."""

    year: int
    kind: PeriodKind
    number: int  # 1-4 for quarters, 1-2 for semesters, 1 for a year

    @property
    def code(self) -> str:
        if self.kind is PeriodKind.YEAR:
            return str(self.year)
        return f"{self.year}-{'Q' if self.kind is PeriodKind.QUARTER else 'S'}{self.number}"

    @property
    def start(self) -> date:
        return date(self.year, 1 + (self.number - 1) * MONTHS_OF[self.kind], 1)

    @property
    def end(self) -> date:
        """The first day after the period (exclusive)."""
        month = 1 + self.number * MONTHS_OF[self.kind]
        return date(self.year + 1, 1, 1) if month > 12 else date(self.year, month, 1)

    def previous(self, count: int) -> list[Period]:
        """This period and the ``count - 1`` before it, oldest first (the trend)."""
        per_year = 12 // MONTHS_OF[self.kind]
        index = self.year * per_year + self.number - 1
        return [Period(i // per_year, self.kind, i % per_year + 1) for i in range(index - count + 1, index + 1)]


def parse_period(code: str) -> Period:
    year_text, _, rest = code.strip().upper().partition("-")
    if not (year_text.isdigit() and len(year_text) == 4) or not 2000 <= int(year_text) <= 2999:
        raise SurveyInvalid(f"a period is 2026, 2026-S1 or 2026-Q3, not {code!r}")
    year = int(year_text)
    if not rest:
        return Period(year, PeriodKind.YEAR, 1)
    kind = {"Q": PeriodKind.QUARTER, "S": PeriodKind.SEMESTER}.get(rest[:1])
    if kind is None or not rest[1:].isdigit() or not 1 <= int(rest[1:]) <= 12 // MONTHS_OF[kind]:
        raise SurveyInvalid(f"a period is 2026, 2026-S1 or 2026-Q3, not {code!r}")
    return Period(year, kind, int(rest[1:]))


def period_of(day: date, kind: PeriodKind) -> Period:
    return Period(day.year, kind, (day.month - 1) // MONTHS_OF[kind] + 1)
