"""The complaint procedure's settings a supervisor may change, pure: the value, its checks and its differences.

The environment (``PDN_OPS_SLA_DAYS`` and friends) gives the defaults; once a supervisor saves, the stored value
wins. What a change means for complaints already filed (see ``services.procedure_settings``):

- ``sla_days`` and ``sla_working_days`` are the terms a complaint was filed under: they apply to complaints whose
  clock starts after the change, never to running ones (a shorter SLA must not breach yesterday's complaint).
- ``holidays`` are facts of the calendar: a holiday added later extends the due date of every running
  working-day complaint, recomputed when the change is saved.
- ``autoclose_days`` applies to every fixed complaint still waiting for the OPD's answer.

Form checking returns every problem at once, as ``{field: FieldError}`` whose key names a catalogue message.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta

from pdn_ops.complaints.sla import SlaPolicy
from pdn_ops.core.errors import FieldError, SettingsInvalid

MAX_SLA_DAYS = 90
MIN_AUTOCLOSE_DAYS = 0.5
MAX_AUTOCLOSE_DAYS = 60.0
MAX_HOLIDAYS = 400
FIRST_YEAR, LAST_YEAR = 2000, 2200
FIELDS = ("sla_days", "sla_working_days", "holidays", "autoclose_days")


@dataclass(frozen=True, slots=True)
class ProcedureSettings:
    sla_days: int = 7
    sla_working_days: bool = False
    holidays: frozenset[date] = field(default_factory=frozenset)
    autoclose_days: float = 3.0

    def policy(self, timezone: str) -> SlaPolicy:
        return SlaPolicy(days=self.sla_days, working_days=self.sla_working_days, holidays=self.holidays,
                         timezone=timezone)

    def autoclose_after(self) -> timedelta:
        return timedelta(days=self.autoclose_days)

    def holiday_list(self) -> list[str]:
        return [d.isoformat() for d in sorted(self.holidays)]



def split_holidays(text: str) -> list[str]:
    """A form's holiday box: one date per line, or separated by commas, semicolons or spaces."""
    for sep in (",", ";", "\r", "\t"):
        text = text.replace(sep, "\n")
    return [part for line in text.split("\n") for part in line.split(" ") if part.strip()]


def _holidays(raw: object) -> tuple[frozenset[date], FieldError | None]:
    if isinstance(raw, str):
        entries: Iterable[object] = split_holidays(raw)
    elif isinstance(raw, list | tuple | set | frozenset):
        entries = raw
    else:
        return frozenset(), FieldError("settings.error.holidays_list")
    days: set[date] = set()
    for entry in entries:
        text = entry.strip() if isinstance(entry, str) else str(entry)
        try:
            day = date.fromisoformat(text)
            if len(text) != 10 or not FIRST_YEAR <= day.year <= LAST_YEAR:
                raise ValueError(text)
        except ValueError:
            # Name the first bad entry: the user fixes it and the rest of the box stays as typed.
            return frozenset(), FieldError("settings.error.holiday", {"value": text[:40]})
        days.add(day)
    if len(days) > MAX_HOLIDAYS:
        return frozenset(), FieldError("settings.error.holidays_many", {"max": MAX_HOLIDAYS})
    return frozenset(days), None


def _integer(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip()
    return int(text) if text.isdigit() else None


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    else:
        try:
            number = float(str(value).strip().replace(",", "."))
        except ValueError:
            return None
    return number if number == number and number not in (float("inf"), float("-inf")) else None


def _flag(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "on", "yes", "working"):
        return True
    if text in ("0", "false", "off", "no", "calendar", ""):
        return False
    return None


def check(*, sla_days: object, sla_working_days: object, holidays: object,
          autoclose_days: object) -> ProcedureSettings:
    """Build settings from raw values (form strings or JSON values); raise SettingsInvalid naming every bad field.

    ``holidays`` is a list of ISO dates or one string of them (see ``split_holidays``).
    """
    errors: dict[str, FieldError] = {}
    days = _integer(sla_days)
    if days is None or not 1 <= days <= MAX_SLA_DAYS:
        errors["sla_days"] = FieldError("settings.error.sla_days", {"max": MAX_SLA_DAYS})
    working = _flag(sla_working_days)
    if working is None:
        errors["sla_working_days"] = FieldError("settings.error.mode")
    parsed, problem = _holidays(holidays)
    if problem is not None:
        errors["holidays"] = problem
    autoclose = _number(autoclose_days)
    if autoclose is None or not MIN_AUTOCLOSE_DAYS <= autoclose <= MAX_AUTOCLOSE_DAYS:
        errors["autoclose_days"] = FieldError("settings.error.autoclose_days",
                                              {"min": MIN_AUTOCLOSE_DAYS, "max": int(MAX_AUTOCLOSE_DAYS)})
    if errors:
        raise SettingsInvalid(errors)
    assert days is not None and working is not None and autoclose is not None
    return ProcedureSettings(sla_days=days, sla_working_days=working, holidays=parsed, autoclose_days=autoclose)


def changes(old: ProcedureSettings, new: ProcedureSettings) -> list[str]:
    """What a save changes, one line per field, for the audit log: ``sla_days: 7 -> 10``."""
    lines = []
    if old.sla_days != new.sla_days:
        lines.append(f"sla_days: {old.sla_days} -> {new.sla_days}")
    if old.sla_working_days != new.sla_working_days:
        mode = {True: "working", False: "calendar"}
        lines.append(f"sla_mode: {mode[old.sla_working_days]} -> {mode[new.sla_working_days]}")
    added, removed = sorted(new.holidays - old.holidays), sorted(old.holidays - new.holidays)
    if added:
        lines.append("holidays added: " + ", ".join(d.isoformat() for d in added))
    if removed:
        lines.append("holidays removed: " + ", ".join(d.isoformat() for d in removed))
    if old.autoclose_days != new.autoclose_days:
        lines.append(f"autoclose_days: {old.autoclose_days:g} -> {new.autoclose_days:g}")
    return lines
