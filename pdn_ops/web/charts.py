"""Charts drawn on the server as inline SVG: no JavaScript, no library, no request of their own.

Why SVG from Python rather than a chart library in the browser: the pictures here are bars and one line (uptime
per hour or day, response times, counts per OPD), a few hundred bytes each; they print, work without JavaScript,
under a strict CSP, and in the PDF's sibling page alike. Only numbers and escaped labels reach the markup.
Each chart carries a <title> and a text summary for screen readers (``label``).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

OK, WARN, BAD, NONE = "#1b6e2d", "#8a5a00", "#a4161a", "#c9d1d9"


def _colour(ratio: float | None) -> str:
    if ratio is None:
        return NONE
    if ratio >= 0.999:
        return OK
    return WARN if ratio >= 0.95 else BAD


def uptime_bars(ratios: Sequence[float | None], label: str, titles: Sequence[str] = ()) -> Markup:
    """One bar per period, green / amber / red by its uptime, grey without data (Uptime Kuma's strip)."""
    n = max(1, len(ratios))
    width, gap, height = 6, 2, 28
    total = n * (width + gap)
    bars = []
    for i, ratio in enumerate(ratios):
        tip = escape(titles[i]) if i < len(titles) else ""
        bars.append(f'<rect x="{i * (width + gap)}" y="0" width="{width}" height="{height}" rx="1" '
                    f'fill="{_colour(ratio)}"><title>{tip}</title></rect>')
    svg = (f'<svg class="chart bars" role="img" viewBox="0 0 {total} {height}" preserveAspectRatio="none" '
                  f'width="100%" height="{height}" aria-label="{escape(label)}"><title>{escape(label)}</title>'
                  f'{"".join(bars)}</svg>')
    return Markup(svg)  # noqa: S704  (numbers and escape()d text only)


def line(values: Sequence[float | None], label: str, *, failed: Sequence[bool] = (), unit_max: float | None = None
         ) -> Markup:
    """A line over equally spaced points (gaps where None), failures marked red beneath it."""
    n = max(2, len(values))
    width, height = 300, 80
    top = unit_max or max([v for v in values if v is not None] or [1.0]) or 1.0
    step = width / (n - 1)
    paths: list[list[str]] = []
    current: list[str] = []
    for i, v in enumerate(values):
        if v is None:
            if current:
                paths.append(current)
            current = []
            continue
        current.append(f"{i * step:.1f},{height - 4 - (height - 8) * min(v, top) / top:.1f}")
    if current:
        paths.append(current)
    lines = "".join(f'<polyline fill="none" stroke="#0b5cad" stroke-width="1.5" points="{" ".join(p)}"/>'
                    for p in paths if len(p) > 1)
    dots = "".join(f'<circle cx="{p[0].split(",")[0]}" cy="{p[0].split(",")[1]}" r="1.5" fill="#0b5cad"/>'
                   for p in paths if len(p) == 1)
    marks = "".join(f'<rect x="{i * step - step / 2:.1f}" y="{height - 3}" width="{max(step, 1):.1f}" height="3" '
                    f'fill="{BAD}"/>' for i, bad in enumerate(failed) if bad)
    svg = (f'<svg class="chart line" role="img" viewBox="0 0 {width} {height}" preserveAspectRatio="none" '
                  f'width="100%" height="{height}" aria-label="{escape(label)}"><title>{escape(label)}</title>'
                  f'<line x1="0" y1="{height - 4}" x2="{width}" y2="{height - 4}" stroke="{NONE}"/>'
                  f'{lines}{dots}{marks}</svg>')
    return Markup(svg)  # noqa: S704  (numbers and escape()d text only)


def hbars(items: Sequence[tuple[str, float]], label: str, *, value_text: Sequence[str] = ()) -> Markup:
    """Horizontal bars with their labels (counts per OPD or category, shares of SLA compliance)."""
    top = max([v for _l, v in items] or [1.0]) or 1.0
    row, width, text_w = 22, 320, 130
    rows = []
    for i, (name, value) in enumerate(items):
        shown = escape(value_text[i]) if i < len(value_text) else f"{value:g}"
        w = (width - text_w - 50) * value / top
        rows.append(f'<text x="0" y="{i * row + 15}" font-size="12" fill="#1b1f24">{escape(name[:20])}</text>'
                    f'<rect x="{text_w}" y="{i * row + 4}" width="{w:.1f}" height="14" fill="#0b5cad"/>'
                    f'<text x="{text_w + w + 4:.1f}" y="{i * row + 15}" font-size="12" fill="#1b1f24">{shown}</text>')
    height = max(row, row * len(items))
    svg = (f'<svg class="chart hbars" role="img" viewBox="0 0 {width} {height}" width="100%" '
                  f'aria-label="{escape(label)}"><title>{escape(label)}</title>'
                  f'{"".join(rows)}</svg>')
    return Markup(svg)  # noqa: S704  (numbers and escape()d text only)
