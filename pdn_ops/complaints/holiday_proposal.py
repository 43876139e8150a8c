"""Holidays the supervisor does not have to type: a proposal from the ``holidays`` package (Indonesia: public
holidays and cuti bersama, named in Indonesian) that the supervisor confirms on the settings page.

Only the stored, audited list counts for the SLA (``procedure_store``): the proposal fills the form, it saves
nothing, so a newer package (a moved estimate of Idul Fitri, say) never moves a due date by itself.
"""

from __future__ import annotations

from datetime import date

PROPOSAL_YEARS = 2  # this year and the next


def proposal(year: int, language: str = "id") -> list[tuple[date, str]]:
    """The working days of ``year`` that are public holidays or cuti bersama, with their names, in date order."""
    import holidays  # imported when asked: the calendars take a moment to load

    calendar = holidays.country_holidays("ID", years=year, language="id" if language == "id" else "en_US",
                                         categories=("public", "government"))
    return sorted((day, name) for day, name in calendar.items() if day.weekday() < 5)
