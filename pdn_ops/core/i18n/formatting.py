"""Dates, times, durations and numbers in the reader's locale, through Babel (CLDR), never by hand.

One ``Formatter`` per request: ``Formatter("id", ZoneInfo("Asia/Jakarta"))`` writes
``Senin, 14 Des 2026 07.42 WIB``, ``99,5``, ``6 hari 23 jam``; in English ``Mon, 14 Dec 2026 07:42 WIB``,
``99.5``, ``6 days 23 hours``. Every time is shown in the service's zone with its abbreviation (WIB), so a page,
a PDF and an export never mix zones.
"""

from __future__ import annotations

import datetime as dt
from datetime import timedelta
from decimal import Decimal
from typing import Final
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal, format_percent
from babel.units import format_unit

from pdn_ops.core.i18n import translate

LOCALES: Final = {"id": "id_ID", "en": "en_GB"}  # en_GB: day-month order, as Indonesian readers expect
DASH: Final = "–"


class Formatter:
    """The reader's way of writing dates and numbers; templates get one as ``fmt``."""

    __slots__ = ("lang", "locale", "tz")

    def __init__(self, lang: str, tz: ZoneInfo) -> None:
        self.lang = lang if lang in LOCALES else "id"
        self.locale = Locale.parse(LOCALES[self.lang])
        self.tz = tz

    def _zone(self, value: dt.datetime) -> str:
        return value.astimezone(self.tz).tzname() or ""

    def datetime(self, value: dt.datetime | None, *, seconds: bool = False, weekday: bool = True) -> str:
        """``Senin, 14 Des 2026 07.42 WIB``: the one way a moment is written on every page."""
        if value is None:
            return DASH
        pattern = ("EEEE, " if weekday else "") + "d MMM y " + self.locale.time_formats["short"].pattern
        if seconds:
            pattern = ("EEEE, " if weekday else "") + "d MMM y " + self.locale.time_formats["medium"].pattern
        local = value.astimezone(self.tz)
        return f"{format_datetime(local, pattern, tzinfo=self.tz, locale=self.locale)} {self._zone(value)}"

    def short(self, value: dt.datetime | None) -> str:
        """Without the weekday, for tables and timelines."""
        return self.datetime(value, weekday=False)

    def date(self, value: dt.date | dt.datetime | None, *, length: str = "long") -> str:
        """``14 Desember 2026`` (long, letters and reports) or ``14 Des 2026`` (medium)."""
        if value is None:
            return DASH
        if isinstance(value, dt.datetime):
            value = value.astimezone(self.tz).date()
        return format_date(value, length, locale=self.locale)

    def month(self, year: int, month: int) -> str:
        """``Desember 2026``, never ``2026-12``."""
        return format_date(dt.date(year, month, 1), "LLLL y", locale=self.locale)

    def number(self, value: float | int | Decimal | None, digits: int = 0) -> str:
        """``1.234,5`` in Indonesian; ``digits`` is the most fraction digits shown."""
        if value is None:
            return DASH
        fmt = "#,##0" + ("." + "#" * digits if digits > 0 else "")
        return format_decimal(value, fmt, locale=self.locale)

    def percent(self, fraction: float | None, digits: int = 1) -> str:
        """``99,5 %`` from 0.995."""
        if fraction is None:
            return DASH
        fmt = "#,##0" + ("." + "#" * digits if digits > 0 else "") + " %"
        return format_percent(fraction, fmt, locale=self.locale)

    def duration(self, seconds: float | timedelta | None) -> str:
        """``6 hari 23 jam``, ``42 menit``, ``12 detik``: the two largest units, in words."""
        if seconds is None:
            return DASH
        total = int(abs(seconds.total_seconds() if isinstance(seconds, timedelta) else seconds))
        parts: list[tuple[int, str]] = []
        for size, unit in ((86400, "duration-day"), (3600, "duration-hour"), (60, "duration-minute"),
                           (1, "duration-second")):
            amount, total = divmod(total, size)
            if amount or (not parts and unit == "duration-second"):
                parts.append((amount, unit))
            if len(parts) == 2:
                break
        if parts and len(parts) == 2 and parts[1][0] == 0:
            parts.pop()
        return " ".join(format_unit(amount, unit, length="long", locale=self.locale) for amount, unit in parts)

    def relative(self, target: dt.datetime | None, now: dt.datetime) -> str:
        """``6 hari 23 jam lagi`` or ``2 jam lalu``; pages put the absolute time beside it."""
        if target is None:
            return DASH
        delta = (target - now).total_seconds()
        key = "time.in" if delta >= 0 else "time.ago"
        return translate(key, self.lang, span=self.duration(delta))
