"""Dates, durations and numbers in the reader's locale (Babel), WIB everywhere."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from pdn_ops.core.i18n.formatting import Formatter

WIB = ZoneInfo("Asia/Jakarta")
MOMENT = datetime(2026, 12, 14, 0, 42, tzinfo=UTC)


def test_indonesian_dates_name_the_day_month_and_wib() -> None:
    fmt = Formatter("id", WIB)
    assert fmt.datetime(MOMENT) == "Senin, 14 Des 2026 07.42 WIB"
    assert fmt.date(MOMENT) == "14 Desember 2026"
    assert fmt.month(2026, 12) == "Desember 2026"


def test_english_dates_keep_day_month_order_and_wib() -> None:
    fmt = Formatter("en", WIB)
    assert fmt.datetime(MOMENT) == "Monday, 14 Dec 2026 07:42 WIB"
    assert fmt.month(2026, 12) == "December 2026"


def test_numbers_use_the_locales_decimal_separator() -> None:
    assert Formatter("id", WIB).number(1234.56, 1) == "1.234,6"
    assert Formatter("en", WIB).number(1234.56, 1) == "1,234.6"
    assert Formatter("id", WIB).percent(0.995) == "99,5 %"


def test_relative_times_say_how_long_in_words() -> None:
    fmt = Formatter("id", WIB)
    now = MOMENT - timedelta(days=6, hours=23, minutes=5)
    assert fmt.relative(MOMENT, now) == "6 hari 23 jam lagi"
    assert fmt.relative(now, MOMENT) == "6 hari 23 jam lalu"
    assert Formatter("en", WIB).relative(MOMENT, now) == "in 6 days 23 hours"
    assert fmt.duration(42) == "42 detik"
