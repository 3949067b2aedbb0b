"""Charts for the pages people read (unit profiles, township packs): inline SVG strings made here.

The pages open offline, from a file share or an e-mail attachment, so a chart is markup in the page: no
script, no chart library, no font or image fetched from anywhere. Labels are Chinese, so the text asks for a
CJK font by name first (Debian's ``fonts-noto-cjk`` provides "Noto Sans CJK SC"). Every text is escaped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from html import escape as _escape

from markupsafe import Markup

__all__ = ["FONT_FAMILY", "bar_chart", "fmt_value", "month_range", "monthly_chart"]

FONT_FAMILY = "'Noto Sans CJK SC', 'Noto Sans SC', sans-serif"
BAR, LINE = "bar", "line"
COLOUR = "#0969da"
GAP_COLOUR = "#d0d7de"
INK, MUTED = "#1f2328", "#656d76"
MONTH_LABEL_PX = 52  # room a month label (2026-10, 11 px) needs on the axis


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def escape(text: str) -> str:
    """Text for SVG markup: escaped, and without control characters (no XML parser accepts them)."""
    return _escape(_CONTROL.sub("", text))


def fmt_value(value: float | None) -> str:
    """1234567.8 → 1,234,568; 0.25 → 0.25; None → –."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if value and abs(value) < 10 and not float(value).is_integer():
        return f"{value:,.2f}"
    return f"{value:,.0f}"


def month_range(first: str, last: str) -> list[str]:
    """Every month YYYY-MM from ``first`` to ``last``, both included: a month without figures is a gap,
    not a month left out (which would draw two distant months side by side)."""
    year, month = int(first[:4]), int(first[5:7])
    end = (int(last[:4]), int(last[5:7]))
    months = []
    while (year, month) <= end:
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def _nice_step(value: float) -> float:
    """The smallest 1, 2, 5 × 10^k at or above ``value``: axis ticks at round numbers."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def _ticks(lowest: float, highest: float, whole: bool = False) -> list[float]:
    """About four round steps covering ``lowest`` (at most 0) to ``highest`` (at least 0); ``whole``: the
    figures are counts, so steps of at least 1 (no 0.5 parcels)."""
    step = _nice_step((highest - lowest) / 4) if highest > lowest else 1.0
    step = max(step, 1.0) if whole else step
    first, last = math.floor(lowest / step), max(math.ceil(highest / step), math.floor(lowest / step) + 1)
    return [step * i for i in range(first, last + 1)]


def _svg(width: int, height: int, title: str, body: Sequence[str]) -> Markup:
    """An inline SVG: no xmlns (HTML needs none), so the page holds no URL at all."""
    head = (
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(title)}" font-family="{FONT_FAMILY}" font-size="12" fill="{INK}">'
        f"<title>{escape(title)}</title>"
    )
    return Markup(head + "".join(body) + "</svg>")


def monthly_chart(
    values: Mapping[str, float | None],
    title: str,
    unit: str,
    kind: str = BAR,
    months: Sequence[str] | None = None,
    width: int = 640,
) -> Markup:
    """Figures by month: months (YYYY-MM) along x, values up y, as columns (``bar``) or a line (``line``).
    ``months`` is the axis (default: every month from the first to the last in ``values``); a month with no
    figure is a gap (a short grey mark on the axis, and a break in the line), never drawn as zero."""
    axis = list(months) if months is not None else (month_range(min(values), max(values)) if values else [])
    known = [float(v) for m in axis if (v := values.get(m)) is not None]
    height, left, right, top, bottom = 230, 72, 12, 26, 46
    plot_w, plot_h = width - left - right, height - top - bottom
    ticks = _ticks(min([0.0, *known]), max([0.0, *known]), all(v.is_integer() for v in known))
    span = (ticks[-1] - ticks[0]) or 1.0

    def y_of(value: float) -> float:
        return top + plot_h - plot_h * (value - ticks[0]) / span

    body = [f'<text x="{left}" y="16" font-weight="600">{escape(title)}（{escape(unit)}）</text>']
    for tick in ticks:
        y = y_of(tick)
        body += [
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GAP_COLOUR}"/>',
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{MUTED}" font-size="11">'
            f"{escape(fmt_value(tick))}</text>",
        ]
    if not axis:
        body.append(
            f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" text-anchor="middle">无数据</text>'
        )
        return _svg(width, height, title, body)
    slot = plot_w / len(axis)
    every = max(1, math.ceil(len(axis) * MONTH_LABEL_PX / plot_w))  # labels never overlap
    base = y_of(0.0)
    segment: list[str] = []
    segments: list[list[str]] = []
    for i, month in enumerate(axis):
        centre = left + slot * (i + 0.5)
        value = values.get(month)
        if (len(axis) - 1 - i) % every == 0:  # counted back from the latest month, which is always named
            body.append(
                f'<text x="{centre:.1f}" y="{top + plot_h + 16}" text-anchor="middle" fill="{MUTED}" '
                f'font-size="11">{escape(month)}</text>'
            )
        if value is None:
            body.append(
                f'<rect class="gap" x="{centre - 3:.1f}" y="{base - 2:.1f}" width="6" height="2" '
                f'fill="{GAP_COLOUR}"><title>{escape(month)}：无数据</title></rect>'
            )
            if segment:
                segments.append(segment)
            segment = []
            continue
        tip = f"<title>{escape(month)}：{escape(fmt_value(value))} {escape(unit)}</title>"
        y = y_of(float(value))
        if kind == LINE:
            segment.append(f"{centre:.1f},{y:.1f}")
            body.append(
                f'<circle class="point" cx="{centre:.1f}" cy="{y:.1f}" r="3" fill="{COLOUR}">{tip}</circle>'
            )
        else:
            top_y, bar_h = min(y, base), abs(base - y)
            body.append(
                f'<rect class="bar" x="{centre - slot * 0.35:.1f}" y="{top_y:.1f}" width="{slot * 0.7:.1f}" '
                f'height="{bar_h:.1f}" fill="{COLOUR}">{tip}</rect>'
            )
    if segment:
        segments.append(segment)
    body += [
        f'<polyline points="{" ".join(points)}" fill="none" stroke="{COLOUR}" stroke-width="2"/>'
        for points in segments
        if len(points) > 1
    ]
    body.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle" fill="{MUTED}">月份</text>'
    )
    return _svg(width, height, title, body)


def bar_chart(items: Sequence[tuple[str, float]], title: str, unit: str = "户", width: int = 640) -> Markup:
    """Counts by category as horizontal bars, largest first as given: long Chinese labels stay readable."""
    row, label_w, value_w, top = 22, 200, 80, 24
    span = width - label_w - value_w
    highest = max((value for _, value in items), default=0) or 1
    body = [f'<text x="4" y="16" font-weight="600">{escape(title)}</text>']
    if not items:
        body.append(f'<text x="{label_w}" y="{top + 15}">无数据</text>')
    for i, (name, value) in enumerate(items):
        y = top + i * row
        bar = span * value / highest
        body += [
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end">{escape(name)}</text>',
            f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{bar:.1f}" height="{row - 6}" '
            f'fill="{COLOUR}">'
            f"<title>{escape(name)}：{escape(fmt_value(value))} {escape(unit)}</title></rect>",
            f'<text x="{label_w + bar + 5:.1f}" y="{y + 15}">{escape(fmt_value(value))}</text>',
        ]
    return _svg(width, top + 8 + row * max(len(items), 1), title, body)
