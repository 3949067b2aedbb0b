"""The run report: one self-contained HTML page per register run, for the engineers operating the DAGs.

Everything on the page is computed from committed state (the ingest manifests, the register run's tables
and ``_meta.json``) and drawn here: inline CSS, charts as inline SVG made in Python, no scripts, fonts or
images from anywhere, so the page opens offline, from a file share or as an e-mail attachment. Only
aggregates are shown (counts by feed, reason, method, division, flag), never a record, a name or a token,
so no personal data can reach the page. It is rebuildable at any time: ``write_report(store, run)``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from html import escape
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from pipelines.contracts import CHINA, load_contracts, output_schema
from pipelines.mappings import feeds_with, mapping
from pipelines.marts.quality import USCC_SHARE_TARGET
from pipelines.resources import REPORT_TEMPLATE
from pipelines.staging import latest_records
from pipelines.standardise.divisions import division_label
from pipelines.standardise.vocabularies import labels, unknown_values
from pipelines.store import STATE_DIR, RunStore, utc_now, write_atomically

__all__ = ["build_context", "render_report", "write_report"]

TEMPLATE = "report.html.j2"
TREND_RUNS = 60  # runs drawn in the trend chart; the table shows the last TREND_TABLE_RUNS
TREND_TABLE_RUNS = 15
TOP_TOWNSHIPS = 15
PALETTE = ("#0969da", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#1b7c83", "#57606a")
CLUSTER_BINS = ((1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 10), (11, 20), (21, 50), (51, None))
PROBABILITY_EDGES = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0)
FLAG_LABELS = {flag: f"{label} {flag}" for flag, label in labels("flags").items()}  # 一户多证 multi_licence
SEVERITIES = ("high", "medium", "low")
UNROUTED = "未分派 (no division)"
REGISTER_TREND_RUNS = 30  # register runs in the timings trend (chart and table)
MODE_UNRECORDED = "mode not recorded"  # register runs from before runs were incremental
MODE_COLOURS = {"incremental": PALETTE[0], "rebuild": PALETTE[3], MODE_UNRECORDED: PALETTE[7]}
UNDER_TARGET = f"< {100 * USCC_SHARE_TARGET:g} %"  # the national register's ceiling on units without a USCC
OVER_TARGET = f"≥ {100 * USCC_SHARE_TARGET:g} %"
REVIEW_SHARE_TARGET = 0.02  # issue 10: at most 2 % of records in review (at the accuracy targets)
WITHIN_REVIEW_TARGET = f"≤ {100 * REVIEW_SHARE_TARGET:g} %"
OVER_REVIEW_TARGET = f"> {100 * REVIEW_SHARE_TARGET:g} %"
REVIEW_REASONS = labels("review_reasons")  # uncertain_link → 疑似同一单位，待确认
# Register runs since a review item's run (the run that raised or last changed it): label, lowest, highest.
REVIEW_AGE_BINS = (("0 (this run)", 0, 0), ("1", 1, 1), ("2–3", 2, 3), ("4–7", 4, 7), ("≥ 8", 8, None))
# Roles read through a reviewed vocabulary (schemas/vocabularies/): vocabulary, label, role; the columns are
# the fields every feed's mapping gives that role.
VOCABULARY_ROLES = (
    ("industry", "industry 行业代码", "industry_code"),
    ("registration", "registration status 登记状态", "status"),
    ("taxpayer", "taxpayer status 纳税人状态", "taxpayer_status"),
    ("entity_type", "entity type 企业类型", "entity_type"),
    ("customer_class", "customer class 用电类别", "customer_class"),
)


def vocabulary_columns() -> list[tuple[str, str, str, str]]:
    """(vocabulary, label, feed, column) of every feed field read through a vocabulary."""
    return [
        (vocabulary, label, feed, mapping(feed).roles[role])
        for vocabulary, label, role in VOCABULARY_ROLES
        for feed in feeds_with(role)
    ]


TOP_UNKNOWN = 5  # unknown values named per vocabulary, most records first
SHOWN_VALUE_CHARS = 30  # a longer source value is cut: the page lists codes, not free text


# -- formatting for people ---------------------------------------------------------------------------------


def fmt_num(value: float | None, digits: int = 0) -> str:
    """1234567 → 1,234,567; None → –."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}"


def fmt_pct(part: float, whole: float, digits: int = 1) -> str:
    return f"{100 * part / whole:.{digits}f} %" if whole else "–"


def fmt_change(now: float, before: float | None) -> str:
    """Relative change against an earlier figure: +12.5 %, −3.0 %, new."""
    if before is None:
        return "–"
    if before == 0:
        return "new" if now else "±0"
    change = 100 * (now - before) / before
    return f"{'+' if change >= 0 else '−'}{abs(change):.1f} %"


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def fmt_time(iso: str | None) -> str:
    """An ISO timestamp as Beijing time, with UTC alongside for people reading logs."""
    if not iso:
        return "–"
    moment = datetime.fromisoformat(iso)
    local = moment.astimezone(CHINA)
    return f"{local:%Y-%m-%d %H:%M:%S} 北京时间 ({moment.astimezone(UTC):%H:%M} UTC)"


def feed_label(feed: str) -> str:
    """``tax 税务``: the feed name and the Chinese part of its contract title."""
    contracts = load_contracts()
    department = contracts[feed].department if feed in contracts else feed
    return f"{feed} {department}" if department != feed else feed


# -- inline SVG charts -------------------------------------------------------------------------------------


def _nice_step(value: float) -> float:
    """The smallest 1, 2, 5 × 10^k at or above ``value``, so axis ticks are round numbers."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def _axis_ticks(highest: float) -> list[float]:
    """Round tick values from 0 to at least ``highest``: about four steps of 1, 2 or 5 × 10^k."""
    step = max(1.0, _nice_step(highest / 4)) if highest >= 4 else _nice_step(max(highest, 1) / 4)
    return [step * i for i in range(max(1, math.ceil(highest / step)) + 1)]


def _svg(width: int, height: int, label: str, body: Iterable[str]) -> Markup:
    """An inline SVG (no xmlns needed in HTML, so the page holds no URL at all)."""
    head = (
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(label)}"><title>{escape(label)}</title>'
    )
    return Markup(head + "".join(body) + "</svg>")


def bar_chart(
    items: Sequence[tuple[str, float]], label: str, fmt: Callable[[float], str] = fmt_num, width: int = 720
) -> Markup:
    """Horizontal bars, one per item: labels stay readable however long (Chinese names, reasons)."""
    row, label_w, value_w = 22, 230, 90
    span = width - label_w - value_w
    top = max((value for _, value in items), default=0) or 1
    body = []
    for i, (name, value) in enumerate(items):
        y = 4 + i * row
        bar = span * value / top
        tip = f"{name}: {fmt(value)}"
        body += [
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end">{escape(name)}</text>',
            f'<rect x="{label_w}" y="{y + 3}" width="{bar:.1f}" height="{row - 6}" '
            f'fill="{PALETTE[0]}"><title>{escape(tip)}</title></rect>',
            f'<text x="{label_w + bar + 5:.1f}" y="{y + 15}">{escape(fmt(value))}</text>',
        ]
    return _svg(width, 8 + row * len(items), label, body)


def column_chart(
    items: Sequence[tuple[str, float]],
    label: str,
    x_title: str,
    y_title: str,
    width: int = 720,
    fmt: Callable[[float], str] = fmt_num,
    colours: Sequence[str] | None = None,
    legend: dict[str, str] | None = None,
) -> Markup:
    """Vertical columns over ordered bins or runs, with a round-numbered y axis. ``colours`` (one per column)
    and a ``legend`` (name → colour) set columns apart; with many columns, every few get an x label and the
    values move into the tooltips, so labels never overlap."""
    height, left, bottom, top_pad = 240, 60, 50 + (18 if legend else 0), 16
    plot_w, plot_h = width - left - 10, height - bottom - top_pad
    ticks = _axis_ticks(max((value for _, value in items), default=0))
    top = ticks[-1]
    body = _y_axis(left, top_pad, plot_w, plot_h, ticks, y_title)
    slot = plot_w / max(len(items), 1)
    every = max(1, math.ceil(len(items) / 15))
    for i, (name, value) in enumerate(items):
        x = left + i * slot
        bar = plot_h * value / top
        tip = f"{name}: {fmt(value)}"
        colour = colours[i] if colours else PALETTE[0]
        body.append(
            f'<rect x="{x + slot * 0.1:.1f}" y="{top_pad + plot_h - bar:.1f}" width="{slot * 0.8:.1f}" '
            f'height="{bar:.1f}" fill="{colour}"><title>{escape(tip)}</title></rect>'
        )
        if i % every == 0 or i == len(items) - 1:
            body.append(
                f'<text x="{x + slot / 2:.1f}" y="{top_pad + plot_h + 16}" text-anchor="middle" '
                f'class="tick">{escape(name)}</text>'
            )
        if value and slot >= 40:
            body.append(
                f'<text x="{x + slot / 2:.1f}" y="{top_pad + plot_h - bar - 4:.1f}" text-anchor="middle" '
                f'class="tick">{escape(fmt(value))}</text>'
            )
    body.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{top_pad + plot_h + 42}" text-anchor="middle">'
        f"{escape(x_title)}</text>"
    )
    if legend:
        body += _legend(legend, left, plot_w, height - 4)
    return _svg(width, height, label, body)


def _legend(colours: dict[str, str], left: int, plot_w: float, baseline: float) -> list[str]:
    """A key below a chart, five entries to a row: a short coloured bar and the name."""
    body = []
    for n, (name, colour) in enumerate(colours.items()):
        x = left + (n % 5) * (plot_w / 5)
        y = baseline + (n // 5) * 16
        body += [
            f'<rect x="{x:.1f}" y="{y - 9}" width="12" height="4" fill="{colour}"/>',
            f'<text x="{x + 16:.1f}" y="{y - 4}" class="tick">{escape(name)}</text>',
        ]
    return body


def _y_axis(
    left: int, top_pad: int, plot_w: float, plot_h: float, ticks: list[float], title: str
) -> list[str]:
    body = []
    digits = 0 if all(float(t).is_integer() for t in ticks) else 1
    for value in ticks:
        y = top_pad + plot_h - plot_h * value / ticks[-1]
        body += [
            f'<line x1="{left}" x2="{left + plot_w:.1f}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>',
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">'
            f"{escape(fmt_num(value, digits))}</text>",
        ]
    body.append(
        f'<text x="12" y="{top_pad + plot_h / 2:.1f}" transform="rotate(-90 12 {top_pad + plot_h / 2:.1f})" '
        f'text-anchor="middle">{escape(title)}</text>'
    )
    return body


def line_chart(
    x_labels: Sequence[str],
    series: dict[str, Sequence[float | None]],
    label: str,
    width: int = 720,
    y_title: str = "staged records",
    fmt: Callable[[float], str] = fmt_num,
) -> Markup:
    """One line per series over the runs, with a legend; a single run shows as dots. A run without a figure
    (None) has no dot, and the line breaks there rather than make up a value."""
    height, left, bottom, top_pad = 260, 60, 60, 16
    plot_w, plot_h = width - left - 10, height - bottom - top_pad
    ticks = _axis_ticks(max((v for values in series.values() for v in values if v is not None), default=0))
    top = ticks[-1]
    body = _y_axis(left, top_pad, plot_w, plot_h, ticks, y_title)
    step = plot_w / max(len(x_labels) - 1, 1)
    every = max(1, math.ceil(len(x_labels) / 12))
    for i, name in enumerate(x_labels):
        if i % every == 0 or i == len(x_labels) - 1:
            body.append(
                f'<text x="{left + i * step:.1f}" y="{top_pad + plot_h + 16}" text-anchor="middle" '
                f'class="tick">{escape(name)}</text>'
            )
    colours = {name: PALETTE[n % len(PALETTE)] for n, name in enumerate(series)}
    for name, values in series.items():
        colour = colours[name]
        points = [
            None if v is None else (left + i * step, top_pad + plot_h - plot_h * v / top)
            for i, v in enumerate(values)
        ]
        for stretch in _stretches(points):
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in stretch)
            body.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for point, run, value in zip(points, x_labels, values, strict=True):
            if point is None or value is None:
                continue
            tip = f"{name} {run}: {fmt(value)}"
            circle = f'<circle cx="{point[0]:.1f}" cy="{point[1]:.1f}" r="3" fill="{colour}">'
            body.append(f"{circle}<title>{escape(tip)}</title></circle>")
    body += _legend(colours, left, plot_w, height - 28)
    return _svg(width, height, label, body)


def _stretches(points: Sequence[tuple[float, float] | None]) -> list[list[tuple[float, float]]]:
    """The runs of two or more consecutive points, between the gaps (None)."""
    stretches: list[list[tuple[float, float]]] = [[]]
    for point in points:
        if point is None:
            stretches.append([])
        else:
            stretches[-1].append(point)
    return [stretch for stretch in stretches if len(stretch) > 1]


def _target_chart(
    shares: Sequence[tuple[str, float | None]],
    label: str,
    y_title: str,
    over: Callable[[float], bool],
    names: tuple[str, str],
) -> Markup:
    """Shares per run as columns in per cent, those beyond a target coloured apart (``names``: the legend
    of the columns within and beyond it). A run without the figure shows an empty column."""
    within, beyond = names
    return column_chart(
        [(name, 100 * (share or 0)) for name, share in shares],
        label,
        "register run",
        y_title,
        width=320,
        fmt=lambda v: f"{v:.2f} %",
        colours=[PALETTE[1] if share is not None and over(share) else PALETTE[2] for _, share in shares],
        legend={within: PALETTE[2], beyond: PALETTE[1]},
    )


# -- the figures -------------------------------------------------------------------------------------------


@dataclass
class Grid:
    """A table for the page: headers and rows of already formatted cells; ``numeric`` columns align right."""

    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    numeric: frozenset[int] = frozenset()
    css: str = ""


def _numeric_from(first: int, headers: list[str]) -> frozenset[int]:
    return frozenset(range(first, len(headers)))


def _manifests_up_to(store: RunStore, ingest_run: str | None) -> list[dict[str, Any]]:
    manifests = store.manifests()
    if ingest_run is None:
        return manifests
    ids = [m["run_id"] for m in manifests]
    return manifests[: ids.index(ingest_run) + 1] if ingest_run in ids else manifests


def _feeds_section(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    """This run's records per feed against the run before and the mean of all earlier runs; the trend."""
    current = manifests[-1] if manifests else None
    feeds = list(load_contracts())
    headers = ["feed", "planned", "staged", "quarantined", "quarantined share", "vs previous run", "vs mean"]
    grid = Grid(headers, numeric=_numeric_from(1, headers), css="this-run")
    for feed in feeds:
        stats = current["feeds"].get(feed) if current else None
        if stats is None:
            grid.rows.append([feed_label(feed), "–", "0", "–", "–", "–", "–"])
            continue
        earlier = [m["feeds"][feed]["staged"] for m in manifests[:-1] if feed in m["feeds"]]
        previous = earlier[-1] if earlier else None
        mean = sum(earlier) / len(earlier) if earlier else None
        grid.rows.append(
            [
                feed_label(feed),
                fmt_num(stats["planned"]),
                fmt_num(stats["staged"]),
                fmt_num(stats["quarantined"]),
                fmt_pct(stats["quarantined"], stats["planned"]),
                fmt_change(stats["staged"], previous),
                fmt_change(stats["staged"], mean),
            ]
        )
    shown = manifests[-TREND_RUNS:]
    labels = [f"#{m['sequence']}" for m in shown]
    series = {feed: [m["feeds"].get(feed, {}).get("staged", 0) for m in shown] for feed in feeds}
    trend = Grid(["run", "committed", *feeds, "total"], numeric=_numeric_from(2, ["", "", *feeds, ""]))
    for m in reversed(manifests[-TREND_TABLE_RUNS:]):
        staged = [m["feeds"].get(feed, {}).get("staged", 0) for feed in feeds]
        trend.rows.append(
            [m["run_id"], fmt_time(m.get("committed_at"))[:16], *map(fmt_num, staged), fmt_num(sum(staged))]
        )
    return {
        "run": current,
        "grid": grid,
        "trend_chart": line_chart(labels, series, "Staged records per feed over the committed runs"),
        "trend": trend,
        "runs": len(manifests),
    }


def _quarantine_section(store: RunStore, manifest: dict[str, Any] | None) -> dict[str, Any]:
    """Quarantined messages of the run by reason and feed (read from the quarantine files, their ``feed``
    and ``reason`` columns only: the raw payloads stay where they are)."""
    feeds = list((manifest or {}).get("feeds", {}))
    headers = ["reason", "messages", "share", *feeds]
    grid = Grid(headers, numeric=_numeric_from(1, headers), css="quarantine")
    if manifest is None:
        return {"total": 0, "grid": grid, "chart": None}
    by_reason: Counter[str] = Counter(manifest["quarantine"]["by_reason"])
    cells: Counter[tuple[str, str]] = Counter()
    for name in manifest["quarantine"]["files"]:
        table = pq.read_table(store.root / name, columns=["feed", "reason"])
        cells.update(zip(table["feed"].to_pylist(), table["reason"].to_pylist(), strict=True))
    total = sum(by_reason.values())
    for reason, count in by_reason.most_common():
        per_feed = [fmt_num(cells[feed, reason]) if cells[feed, reason] else "" for feed in feeds]
        grid.rows.append([reason, fmt_num(count), fmt_pct(count, total), *per_feed])
    if total:
        per_feed = [fmt_num(manifest["feeds"][feed]["quarantined"]) for feed in feeds]
        grid.rows.append(["total", fmt_num(total), "100.0 %", *per_feed])
    chart = bar_chart(by_reason.most_common(), "Quarantined messages by reason") if total else None
    return {"total": total, "grid": grid, "chart": chart}


def _quality_section(store: RunStore, manifest: dict[str, Any] | None) -> dict[str, Any]:
    """Failed expectations of the run and a link to its data-quality report (relative: the run report lives
    in ``reports/``, the quality report under ``runs/<run>/dq/``)."""
    quality = (manifest or {}).get("quality") or {}
    report = quality.get("report")
    summary = Grid(
        ["feed", "rows", "previous rows", "evaluated", "blocking failures", "warnings", "result"],
        numeric=frozenset({1, 2, 3, 4, 5}),
        css="quality-summary",
    )
    results_path = store.root / report if report else None
    results_path = results_path.with_name("results.json") if results_path else None
    if results_path and results_path.is_file():
        for feed in json.loads(results_path.read_text(encoding="utf-8"))["feeds"]:
            verdict = "blocked" if feed["blocking_failures"] else "warned" if feed["warnings"] else "passed"
            summary.rows.append(
                [
                    feed_label(feed["feed"]),
                    fmt_num(feed["rows"]),
                    fmt_num(feed["previous_rows"]),
                    fmt_num(feed["evaluated"]),
                    fmt_num(feed["blocking_failures"]),
                    fmt_num(feed["warnings"]),
                    verdict,
                ]
            )
    failures = Grid(
        ["feed", "expectation", "column", "severity", "unexpected", "unexpected %", "why"],
        numeric=frozenset({4, 5}),
        css="failures",
    )
    for failure in quality.get("failures", []):
        failures.rows.append(
            [
                feed_label(failure["feed"]),
                failure["expectation_type"],
                failure.get("column") or "",
                failure["severity"],
                fmt_num(failure.get("unexpected_count")),
                fmt_num(failure.get("unexpected_percent"), 1),
                failure.get("why") or "",
            ]
        )
    return {
        "link": f"../{report}" if report else None,
        "summary": summary,
        "failures": failures,
        "blocking": sum(f["severity"] == "block" for f in quality.get("failures", [])),
    }


def _offset_ranges(offsets: list[dict[str, Any]]) -> str:
    return ", ".join(f"{o['topic']}[{o['partition']}] {o['start']}–{o['end']}" for o in offsets)


def _block_failures(failures: list[dict[str, Any]]) -> str:
    """The failed block expectations of a batch, with their counts."""
    return "; ".join(
        f"{f['expectation_type']}({f.get('column') or 'table'}): {fmt_num(f.get('unexpected_count'))} "
        f"({fmt_num(f.get('unexpected_percent'), 1)} %)"
        for f in failures
        if f.get("severity") == "block"
    )


def _batches_section(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    """Batches data quality held back in this ingest run, and the operators' decisions the runs so far
    applied (accepted: landed as is; set aside: quarantined), newest first: who, why, when, which offsets."""
    current = manifests[-1] if manifests else {}
    blocked = Grid(
        ["feed", "offsets", "messages", "failed block expectations", "data-quality report"],
        numeric=frozenset({2}),
        css="blocked",
    )
    for feed, batch in sorted((current.get("blocked") or {}).items()):
        blocked.rows.append(
            [
                feed_label(feed),
                _offset_ranges(batch["offsets"]),
                fmt_num(batch["planned"]),
                _block_failures(batch["failures"]),
                batch.get("report") or "–",
            ]
        )
    headers = ["applied in", "feed", "decision", "by", "decided at", "reason", "blocked in", "offsets"]
    headers += ["failed block expectations"]
    decisions = Grid(headers, css="decisions")
    for manifest in reversed(manifests):
        for feed, d in sorted((manifest.get("decisions") or {}).items()):
            decisions.rows.append(
                [
                    d.get("applied_in") or manifest["run_id"],
                    feed_label(feed),
                    {"accept": "accepted", "set_aside": "set aside"}.get(d["action"], d["action"]),
                    d["by"],
                    fmt_time(d["decided_at"]),
                    d["reason"],
                    d["blocked_in"],
                    _offset_ranges(d["offsets"]),
                    _block_failures(d.get("failures") or []),
                ]
            )
    return {"blocked": blocked, "decisions": decisions}


def _bins(values: list[float], count: int = 12) -> list[tuple[str, float]]:
    """Equal-width bins with whole-number edges over the values (for match weights, which are log2 odds)."""
    low, high = math.floor(min(values)), math.ceil(max(values))
    width = max(1, math.ceil((high - low) / count))
    counts = Counter(min(int((v - low) // width), count - 1) for v in values)
    last = max(counts)
    return [(f"{low + i * width}–{low + (i + 1) * width}", counts[i]) for i in range(last + 1)]


def _weights_chart(links: list[dict[str, Any]]) -> tuple[Markup, str]:
    """Histogram of the summed match weights of model links, else of the match probabilities."""
    sums = [sum(json.loads(link["field_weights"]).values()) for link in links if link["field_weights"]]
    if sums:
        caption = f"{fmt_num(len(sums))} model links; sum of the per-comparison match weights (log2 odds)"
        return column_chart(
            _bins(sums), "Match weights of model links", "summed match weight", "links"
        ), caption
    probabilities = [link["match_probability"] for link in links if link["match_probability"] is not None]
    edges = PROBABILITY_EDGES
    counts = Counter(next(i for i in range(len(edges) - 1) if p <= edges[i + 1]) for p in probabilities)
    items = [(f"≤{edges[i + 1]}", counts[i]) for i in range(len(edges) - 1)]
    caption = f"no model links; match probability of all {fmt_num(len(probabilities))} links"
    return column_chart(items, "Match probability of links", "match probability", "links"), caption


def _records_by_ingest_run(store: RunStore, manifests: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Distinct records per feed staged up to each of the given ingest runs (oldest first): the records a
    register run built on that ingest run holds. One pass over the staged files; a record counts from the
    run that first staged it, whatever versions came after."""
    feeds = list(load_contracts())
    files = [
        (str(store.root / name), feed, position)
        for position, manifest in enumerate(manifests)
        for feed, stats in manifest["feeds"].items()
        for name in stats.get("files", [])
    ]
    first_staged: Counter[tuple[int, str]] = Counter()
    if files:
        paths, file_feeds, positions = zip(*files, strict=True)
        query = """
            WITH staged AS (
                SELECT f.feed, s.record_id, min(f.position) AS position
                FROM read_parquet($paths, filename = true, union_by_name = true) s
                JOIN files f ON f.path = s.filename
                GROUP BY f.feed, s.record_id
            )
            SELECT position, feed, count(*) FROM staged GROUP BY ALL
        """
        con = duckdb.connect()
        con.register("files", pa.table({"path": paths, "feed": file_feeds, "position": positions}))
        rows = con.execute(query, {"paths": list(paths)}).fetchall()
        first_staged.update({(position, feed): n for position, feed, n in rows})
    counts, running = {}, dict.fromkeys(feeds, 0)
    for position, manifest in enumerate(manifests):
        running = {feed: running[feed] + first_staged[position, feed] for feed in feeds}
        counts[manifest["run_id"]] = running
    return counts


def _linkage_section(run_dir: Path, records: dict[str, int]) -> dict[str, Any]:
    """How the run's records were linked (``records``: the run's records per feed): match weights, unit
    sizes, the share of each feed's records in a unit, and by which method."""
    columns = ["feed", "record_id", "unit_id", "match_probability", "matched_by", "field_weights"]
    links = [
        row for row in pq.read_table(run_dir / "links.parquet", columns=columns).to_pylist() if row["unit_id"]
    ]
    weights, weights_caption = _weights_chart(links)
    per_unit = Counter(link["unit_id"] for link in links)
    sizes = Counter(per_unit.values())
    cluster_items = [
        (
            str(lo) if lo == hi else f"{lo}–{hi}" if hi else f"≥{lo}",
            sum(n for s, n in sizes.items() if lo <= s <= (hi or s)),
        )
        for lo, hi in CLUSTER_BINS
    ]
    clusters = column_chart(cluster_items, "Records per unit", "records per unit", "units")
    linked = Counter(feed for feed, _ in {(link["feed"], link["record_id"]) for link in links})
    share = Grid(["feed", "records", "linked", "share linked"], numeric=frozenset({1, 2, 3}), css="linked")
    for feed, total in records.items():
        share.rows.append(
            [feed_label(feed), fmt_num(total), fmt_num(linked[feed]), fmt_pct(linked[feed], total)]
        )
    share_chart = bar_chart(
        [(feed, 100 * linked[feed] / total if total else 0) for feed, total in records.items()],
        "Share of records linked per feed",
        fmt=lambda v: f"{v:.1f} %",
    )
    methods = Counter(link["matched_by"] for link in links)
    by_feed = Counter((link["feed"], link["matched_by"]) for link in links)
    names = [method for method, _ in methods.most_common()]
    method_grid = Grid(["method", *records, "total"], numeric=_numeric_from(1, ["", *records, ""]))
    for method in names:
        method_grid.rows.append(
            [
                method,
                *(fmt_num(by_feed[f, method]) if by_feed[f, method] else "" for f in records),
                fmt_num(methods[method]),
            ]
        )
    return {
        "links": len(links),
        "units": len(per_unit),
        "weights": weights,
        "weights_caption": weights_caption,
        "clusters": clusters,
        "largest_unit": max(per_unit.values(), default=0),
        "share": share,
        "share_chart": share_chart,
        "methods": method_grid,
        "methods_chart": bar_chart(methods.most_common(), "Links by method"),
        "linked": {feed: linked[feed] for feed in records},
    }


def _divisions_section(run_dir: Path) -> dict[str, Any]:
    """Review items and warnings per division (and per township), for routing work to the townships."""
    review = pq.read_table(
        run_dir / "review.parquet", columns=["division_code", "township", "reason"]
    ).to_pylist()
    warnings_path = run_dir / "warnings.parquet"
    warnings = (
        pq.read_table(warnings_path, columns=["division_code", "township", "rule", "severity"]).to_pylist()
        if warnings_path.is_file()
        else None
    )
    review_reasons = sorted({item["reason"] for item in review})
    review_at = Counter((item["division_code"], item["reason"]) for item in review)
    warn_at = Counter((w["division_code"], w["severity"]) for w in warnings or [])
    codes = sorted(
        {item["division_code"] or "" for item in review} | {w["division_code"] or "" for w in warnings or []}
    )
    warn_headers = [*SEVERITIES, "warnings"] if warnings is not None else []
    headers = ["division", *review_reasons, "review items", *warn_headers]
    grid = Grid(headers, numeric=_numeric_from(1, headers), css="divisions")
    blank_zero = lambda n: fmt_num(n) if n else ""  # noqa: E731 - sparse tables read better without zeros
    for code in codes:
        key = code or None
        row = [division_label(key, UNROUTED), *(blank_zero(review_at[key, r]) for r in review_reasons)]
        row.append(fmt_num(sum(review_at[key, r] for r in review_reasons)))
        if warnings is not None:
            row += [blank_zero(warn_at[key, s]) for s in SEVERITIES]
            row.append(fmt_num(sum(warn_at[key, s] for s in SEVERITIES)))
        grid.rows.append(row)
    townships: Counter[tuple[str, str]] = Counter()
    for item in [*review, *(warnings or [])]:
        townships[
            (division_label(item["division_code"], UNROUTED), item["township"] or "未分派 (no township)")
        ] += 1
    top_townships = Grid(["division", "township", "review items + warnings"], numeric=frozenset({2}))
    for (division, township), count in townships.most_common(TOP_TOWNSHIPS):
        top_townships.rows.append([division, township, fmt_num(count)])
    rules = None
    if warnings is not None:
        by_rule = Counter(w["rule"] for w in warnings)
        rules = Grid(["rule", "warnings"], numeric=frozenset({1}))
        rules.rows = [[rule, fmt_num(count)] for rule, count in by_rule.most_common()]
    return {
        "review": len(review),
        "warnings": None if warnings is None else len(warnings),
        "grid": grid,
        "townships": top_townships,
        "rules": rules,
    }


def _flags_section(run_dir: Path) -> dict[str, Any]:
    """Units carrying each boolean flag of the register (the flag columns come from the register contract)."""
    flags = [f.name for f in output_schema("register") if f.type == "bool"]
    table = pq.read_table(run_dir / "register.parquet", columns=flags)
    units = table.num_rows
    counts = [(flag, sum(1 for v in table[flag].to_pylist() if v)) for flag in flags]
    grid = Grid(["flag", "units", "share of units"], numeric=frozenset({1, 2}), css="flags")
    for flag, count in counts:
        grid.rows.append([FLAG_LABELS.get(flag, flag), fmt_num(count), fmt_pct(count, units)])
    chart = bar_chart([(FLAG_LABELS.get(f, f), c) for f, c in counts], "Units per register flag")
    return {"units": units, "grid": grid, "chart": chart}


def _run_records(
    store: RunStore, run_dir: Path, columns: dict[str, list[str]]
) -> tuple[dict[str, pa.Table], str]:
    """The named columns of the records a register run was built from, and where they were read: the run's
    resolution state, or the staged records (the latest version of each) where that state was pruned."""
    folder = run_dir / STATE_DIR / "records"
    if all((folder / f"{feed}.parquet").is_file() for feed in columns):
        tables = {
            feed: pq.read_table(folder / f"{feed}.parquet", columns=names) for feed, names in columns.items()
        }
        return tables, "the run's resolution state"
    tables = {feed: latest_records(store, feed).select(names) for feed, names in columns.items()}
    return tables, "the staged records (this run's state was pruned)"


def _shown_value(value: str) -> str:
    return value if len(value) <= SHOWN_VALUE_CHARS else value[: SHOWN_VALUE_CHARS - 1] + "…"


def _vocabularies_section(store: RunStore, run_dir: Path) -> dict[str, Any]:
    """Per vocabulary, the source values it cannot read in the run's records, and how many records carry
    them: what to add to the reviewed files next. Such values come out as unknown, never as a guess."""
    columns: dict[str, list[str]] = {}
    for _, _, feed, column in vocabulary_columns():
        columns.setdefault(feed, []).append(column)
    records, source = _run_records(store, run_dir, columns)
    headers = ["vocabulary", "column", "records with a value", "unknown values", "their records", "share"]
    headers.append("most frequent unknown values")
    grid = Grid(headers, numeric=frozenset({2, 3, 4, 5}), css="vocabularies")
    unknown_records = 0
    for vocabulary, label, feed, column in vocabulary_columns():
        values = records[feed][column]
        unknown = unknown_values(vocabulary, values)
        stated = len(values) - values.null_count
        count = sum(unknown.values())
        unknown_records += count
        top = list(unknown.items())[:TOP_UNKNOWN]
        grid.rows.append(
            [
                label,
                f"{feed}.{column}",
                fmt_num(stated),
                fmt_num(len(unknown)),
                fmt_num(count),
                fmt_pct(count, stated),
                "; ".join(f"{_shown_value(value)} ({fmt_num(n)})" for value, n in top),
            ]
        )
    return {"grid": grid, "unknown_records": unknown_records, "source": source}


def _verdicts_section(meta: dict[str, Any]) -> dict[str, Any]:
    """Township verdicts in force, and a table of those that could not apply, with why (a record or unit
    the register does not know, a date in the future): the township is asked again, or the record awaited."""
    verdicts = meta.get("verdicts") or {}  # register runs from before kept only a count, in stats
    grid = Grid(
        ["verdict", "decision", "about", "decided by", "decided at", "why not applied"], css="unapplied"
    )
    for row in verdicts.get("unapplied") or []:
        grid.rows.append(
            [
                row.get(k) or "–"
                for k in ("verdict_id", "decision", "about", "decided_by", "decided_at", "reason")
            ]
        )
    return {"in_force": verdicts.get("in_force"), "unapplied": len(grid.rows), "grid": grid}


def _total_seconds(timings: dict[str, float] | None) -> float | None:
    return sum(timings.values()) if timings else None


def _mode(meta: dict[str, Any]) -> str:
    """``incremental``, ``rebuild (model version changed)``; – for runs from before runs had modes."""
    mode = meta.get("mode")
    reason = meta.get("rebuild_reason")
    if mode is None:
        return "–"
    return f"{mode} ({reason})" if mode == "rebuild" and reason else mode


def _part_of(part: int | None, whole: int | None) -> str:
    """``12 of 80``: how much of the register a run had to redo."""
    return f"{fmt_num(part)} of {fmt_num(whole)}" if part is not None and whole is not None else fmt_num(part)


def _mib(value: float | None) -> str:
    return "–" if value is None else f"{fmt_num(value)} MiB"


def _run_label(run: str) -> str:
    """``reg-000012`` → ``#12``: a register run on a chart's axis."""
    return f"#{int(run.split('-')[1])}"


def _register_metas(store: RunStore, register_run: str) -> list[tuple[str, dict[str, Any]]]:
    """The ``_meta.json`` of every register run up to this one, oldest first."""
    runs = [run for run in store.register_runs() if run <= register_run]
    return [(run, store.register_meta(store.register_run_dir(run))) for run in runs]


def _register_trend(metas: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Total seconds per register run, rebuilds coloured apart: a rebuild resolves every record again, so it
    is expected to be slow, while a slow incremental run is the one to look into."""
    shown = metas[-REGISTER_TREND_RUNS:]
    modes = [meta.get("mode") or MODE_UNRECORDED for _, meta in shown]
    totals = [_total_seconds(meta.get("timings_s")) for _, meta in shown]
    legend = {mode: MODE_COLOURS.get(mode, PALETTE[7]) for mode in (*MODE_COLOURS, *modes) if mode in modes}
    chart = column_chart(
        [(_run_label(run), total or 0) for (run, _), total in zip(shown, totals, strict=True)],
        "Register time per run",
        "register run",
        "seconds",
        fmt=fmt_seconds,
        colours=[legend[mode] for mode in modes],
        legend=legend,
    )
    headers = ["run", "mode", "records changed", "units touched", "total time", "peak MiB"]
    grid = Grid(headers, numeric=_numeric_from(2, headers), css="register-runs")
    for (run, meta), total in reversed(list(zip(shown, totals, strict=True))):
        stats = meta.get("stats") or {}
        grid.rows.append(
            [
                run,
                _mode(meta),
                fmt_num(stats.get("records_changed")),
                fmt_num(stats.get("units_touched")),
                fmt_seconds(total),
                fmt_num(meta.get("peak_rss_mib")),
            ]
        )
    return {"chart": chart, "grid": grid, "shown": len(shown), "runs": len(metas)}


def _timings_section(
    manifest: dict[str, Any] | None, meta: dict[str, Any], metas: list[tuple[str, dict[str, Any]]]
) -> dict[str, Any]:
    """What the register run had to redo and what it cost (stage seconds, peak memory), then the same over
    the register runs so far: an incremental run should touch, and take, a small part of a rebuild."""
    stats = meta.get("stats") or {}
    register_s = _total_seconds(meta.get("timings_s"))
    work = [
        ("mode", _mode(meta)),
        ("records read", fmt_num(stats.get("records_in"))),
        ("records changed", fmt_num(stats.get("records_changed"))),
        ("entities standardised again", _part_of(stats.get("entities_rescored"), stats.get("entities"))),
        ("entities reclustered", _part_of(stats.get("entities_reclustered"), stats.get("entities"))),
        ("units touched", _part_of(stats.get("units_touched"), stats.get("units"))),
        ("register rows recomputed", fmt_num(stats.get("rows_recomputed"))),
        ("register time", fmt_seconds(register_s)),
        ("peak memory", _mib(meta.get("peak_rss_mib"))),
    ]
    stages = [("ingest", k, v) for k, v in ((manifest or {}).get("timings_s") or {}).items()]
    stages += [("register", k, v) for k, v in (meta.get("timings_s") or {}).items()]
    totals: dict[str, float] = {}  # per part that recorded timings
    for part, _, seconds in stages:
        totals[part] = totals.get(part, 0) + seconds
    grid = Grid(["part", "stage", "time", "share of part"], numeric=frozenset({2, 3}), css="timings")
    for part, stage, seconds in stages:
        grid.rows.append([part, stage, fmt_seconds(seconds), fmt_pct(seconds, totals[part])])
    for part, total in totals.items():
        grid.rows.append([part, "total", fmt_seconds(total), ""])
    chart = bar_chart([(f"{p} · {s}", v) for p, s, v in stages], "Time per stage", fmt=fmt_seconds)
    return {"work": work, "grid": grid, "chart": chart if stages else None, "trend": _register_trend(metas)}


def _days(value: float | None) -> str:
    return "–" if value is None else f"{fmt_num(value, 0 if float(value).is_integer() else 1)} d"


def _share_pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f} %"


def _without_uscc(share: float | None) -> str | Markup:
    """The share of units without a USCC, marked when it reaches the national register's ceiling."""
    text = _share_pct(share, 2)
    if share is None or share < USCC_SHARE_TARGET:
        return text
    return Markup('<span class="alert">{}</span>').format(text)


def _coverage_cell(share: float | None) -> str | Markup:
    """A share linked as a figure with a small CSS bar behind it."""
    if share is None:
        return "–"
    width = max(0.0, min(100.0, 100 * share))
    return Markup('<span class="meter"><span style="width:{:.1f}%"></span></span>{}').format(
        width, _share_pct(share)
    )


def _register_quality_section(metas: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The register's own quality figures (``meta["quality"]``, from ``pipelines.marts.quality``) over the
    register runs so far: whether it keeps getting more complete (USCC, coverage) and cleaner (duplicates,
    review backlog, id churn). Runs from before the figures were kept show as missing."""
    shown = metas[-REGISTER_TREND_RUNS:]
    figures = [
        (run, meta.get("quality") if isinstance(meta.get("quality"), dict) else None) for run, meta in shown
    ]
    recorded = [(_run_label(run), quality) for run, quality in figures if quality]
    headers = [
        "run",
        "units",
        "no USCC",
        "share no USCC",
        "duplicate pairs",
        "in review",
        "review age median",
        "review age max",
        "registration lag",
        "merged",
        "split",
        "retired",
        "id churn",
    ]
    grid = Grid(headers, numeric=_numeric_from(1, headers), css="register-quality")
    feeds = list(load_contracts())
    coverage = Grid(["run", *feeds], numeric=_numeric_from(1, ["", *feeds]), css="register-coverage")
    for run, quality in reversed(figures):
        if quality is None:
            grid.rows.append([run, *["–"] * (len(headers) - 1)])
            coverage.rows.append([run, *["–"] * len(feeds)])
            continue
        churn = quality.get("id_churn") or {}
        grid.rows.append(
            [
                run,
                fmt_num(quality.get("units")),
                fmt_num(quality.get("units_without_uscc")),
                _without_uscc(quality.get("units_without_uscc_share")),
                fmt_num(quality.get("duplicate_candidates")),
                fmt_num(quality.get("review_open")),
                _days(quality.get("review_age_median_days")),
                _days(quality.get("review_age_max_days")),
                _days(quality.get("registration_lag_median_days")),
                fmt_num(churn.get("merged")),
                fmt_num(churn.get("split")),
                fmt_num(churn.get("retired")),
                _share_pct(churn.get("share"), 2),
            ]
        )
        shares = quality.get("coverage") or {}
        coverage.rows.append([run, *(_coverage_cell(shares.get(feed)) for feed in feeds)])
    charts = []
    if recorded:
        charts = [  # (caption, chart)
            (
                f"Without a USCC (target {UNDER_TARGET})",
                _target_chart(
                    [(name, q.get("units_without_uscc_share")) for name, q in recorded],
                    "Units without a USCC per run (%)",
                    "% of units",
                    lambda share: share >= USCC_SHARE_TARGET,
                    (UNDER_TARGET, OVER_TARGET),
                ),
            ),
            *(
                (
                    title,
                    column_chart(
                        [(name, q.get(figure) or 0) for name, q in recorded],
                        f"{title} per run",
                        "register run",
                        unit,
                        width=320,
                    ),
                )
                for title, figure, unit in (
                    ("Duplicate candidate pairs", "duplicate_candidates", "pairs"),
                    ("Open review items", "review_open", "items"),
                )
            ),
        ]
    missing = sum(1 for _, quality in figures if quality is None)
    scope = f"The last {len(shown)} of {len(metas)}" if len(shown) < len(metas) else f"All {len(metas)}"
    scope += " register run(s) up to this one, newest first."
    if missing:
        scope += f" {missing} run(s) from before these figures were kept show –."
    return {
        "grid": grid,
        "coverage": coverage,
        "charts": charts,
        "scope": scope,
        "target": f"{100 * USCC_SHARE_TARGET:g} %",
    }


# -- accuracy ----------------------------------------------------------------------------------------------


def _value_counts(values: pa.ChunkedArray) -> Counter[Any]:
    return Counter({row["values"]: row["counts"] for row in pc.value_counts(values).to_pylist()})


def _china_day(iso: str | None) -> date | None:
    return datetime.fromisoformat(iso).astimezone(CHINA).date() if iso else None


def _verdict_counts(meta: dict[str, Any]) -> dict[str, int | None]:
    """What a register run did with the township verdicts: those in force (the latest per item, dated up to
    the run), those it applied, those in force it could not apply (naming a record or unit the register does
    not know) and those set aside as dated in the future (never in force). None where the run kept no
    figure (the split needs ``stats["unknown_verdicts"]``, kept since verdicts were applied)."""
    verdicts = meta.get("verdicts") or {}
    in_force = verdicts.get("in_force")
    unknown = (meta.get("stats") or {}).get("unknown_verdicts")
    if in_force is None or unknown is None:
        return {"in_force": in_force, "applied": None, "not_applied": unknown, "set_aside": None}
    unapplied = len(verdicts.get("unapplied") or [])
    return {
        "in_force": in_force,
        "applied": in_force - unknown,
        "not_applied": unknown,
        "set_aside": unapplied - unknown,
    }


def _labelled(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The model's precision and recall on the pairs the verdicts label (``meta["accuracy"]["labelled"]``),
    or None when the run has none: kept before runs measured them, or no verdict labels a pair yet."""
    labelled = (meta.get("accuracy") or {}).get("labelled")
    return labelled if isinstance(labelled, dict) and labelled.get("pairs") else None


def _percent(share: float | None) -> float | None:
    return None if share is None else 100 * share


def _ratio(value: float | None) -> str:
    """Precision, recall and F1 as the benchmarks print them: 0.987."""
    return fmt_num(value, 3)


def _review_ages(
    by_run: Counter[str | None], metas: list[tuple[str, dict[str, Any]]]
) -> tuple[Grid, tuple[int, int | None] | None]:
    """Open review items by the register runs since the run that raised them, or last changed them (the
    review table keeps only that one): an age is a floor, as a changed item starts again. The days are
    those between the two runs' China dates. Also the oldest (runs, days), None without items."""
    position = {run: n for n, (run, _) in enumerate(metas)}
    day = {run: _china_day(meta.get("created_at")) for run, meta in metas}
    this_run, today = metas[-1][0], day[metas[-1][0]]
    counted: list[tuple[int | None, int | None, int]] = []  # runs ago, days ago, items
    for run, items in by_run.items():
        if run not in position:
            counted.append((None, None, items))
            continue
        raised = day[run]
        days = (today - raised).days if today and raised else None
        counted.append((position[this_run] - position[run], days, items))
    total = sum(items for _, _, items in counted)
    headers = ["register runs since raised (at least)", "items", "share of items", "days since (at least)"]
    grid = Grid(headers, numeric=_numeric_from(1, headers), css="review-ages")
    for name, low, high in REVIEW_AGE_BINS:
        inside = [(d, n) for r, d, n in counted if r is not None and low <= r and (high is None or r <= high)]
        grid.rows.append([name, *_age_cells(inside, total)])
    unknown = [(d, n) for r, d, n in counted if r is None]
    if unknown:
        grid.rows.append(["run not known", *_age_cells(unknown, total)])
    known = [(r, d) for r, d, _ in counted if r is not None]
    oldest = max(known, key=lambda rd: (rd[0], rd[1] or 0)) if known else None
    return grid, oldest


def _age_cells(items: list[tuple[int | None, int]], total: int) -> list[str]:
    """Items, their share, and the range of their days, for one age bin."""
    count = sum(n for _, n in items)
    days = sorted({d for d, _ in items if d is not None})
    span = "–" if not days else _days(days[0]) if days[0] == days[-1] else f"{days[0]}–{_days(days[-1])}"
    return [fmt_num(count), fmt_pct(count, total), span]


def _accuracy_trend(
    metas: list[tuple[str, dict[str, Any]]], records_by_run: dict[str, dict[str, int]]
) -> dict[str, Any]:
    """The accuracy figures over the register runs so far, from what each kept (its ``_meta.json``) and the
    records staged up to its ingest run: share of records in a unit and in review, the verdicts, and the
    labelled precision and recall."""
    shown = metas[-REGISTER_TREND_RUNS:]
    headers = ["run", "records", "in a unit", "share in a unit", "review items", "share in review"]
    headers += ["verdicts in force", "applied", "labelled pairs", "precision", "recall", "F1"]
    grid = Grid(headers, numeric=_numeric_from(1, headers), css="accuracy-runs")
    points = []  # (label, share in a unit, share in review, labelled)
    for run, meta in shown:
        staged = records_by_run.get((meta.get("inputs") or {}).get("ingest_run"))
        records = sum(staged.values()) if staged else None
        counts = meta.get("counts") or {}
        linked, review = counts.get("links"), counts.get("review")
        in_unit = linked / records if records and linked is not None else None
        in_review = review / records if records and review is not None else None
        verdicts, labelled = _verdict_counts(meta), _labelled(meta) or {}
        points.append((_run_label(run), in_unit, in_review, labelled))
        grid.rows.append(
            [
                run,
                fmt_num(records),
                fmt_num(linked),
                _share_pct(in_unit),
                fmt_num(review),
                _share_pct(in_review, 2),
                fmt_num(verdicts["in_force"]),
                fmt_num(verdicts["applied"]),
                fmt_num(labelled.get("pairs")),
                _ratio(labelled.get("precision")),
                _ratio(labelled.get("recall")),
                _ratio(labelled.get("f1")),
            ]
        )
    grid.rows.reverse()  # newest first, as the other tables of runs
    shares = line_chart(
        [name for name, *_ in points],
        {
            "in a unit": [_percent(in_unit) for _, in_unit, _, _ in points],
            "precision (labelled)": [_percent(lab.get("precision")) for *_, lab in points],
            "recall (labelled)": [_percent(lab.get("recall")) for *_, lab in points],
        },
        "Records in a unit, labelled precision and recall per register run (%)",
        y_title="%",
        fmt=lambda v: f"{v:.1f} %",
    )
    review = _target_chart(
        [(name, in_review) for name, _, in_review, _ in points],
        "Records in review per run (%)",
        "% of records",
        lambda share: share > REVIEW_SHARE_TARGET,
        (WITHIN_REVIEW_TARGET, OVER_REVIEW_TARGET),
    )
    scope = f"The last {len(shown)} of {len(metas)}" if len(shown) < len(metas) else f"All {len(metas)}"
    return {"grid": grid, "shares_chart": shares, "review_chart": review, "scope": scope}


def _accuracy_section(
    run_dir: Path,
    records: dict[str, int],
    linked: dict[str, int],
    metas: list[tuple[str, dict[str, Any]]],
    records_by_run: dict[str, dict[str, int]],
) -> dict[str, Any]:
    """How far the register can be trusted, in one place: per feed the share of the run's records in a unit
    (``records``, ``linked``: as the linkage section counts them) and in review, the review queue by reason
    and age, what the township verdicts did, the model on the pairs they label, and all of it over the
    register runs so far (``metas``: up to this run, oldest first)."""
    review = pq.read_table(run_dir / "review.parquet", columns=["feed", "reason", "run_id"])
    meta = metas[-1][1]
    all_records, all_linked, items = sum(records.values()), sum(linked.values()), review.num_rows
    in_review = _value_counts(review["feed"])
    headers = ["feed", "records", "in a unit", "share in a unit", "review items", "share in review"]
    feeds = Grid(headers, numeric=_numeric_from(1, headers), css="accuracy-feeds")
    for feed, total in records.items():
        feeds.rows.append(
            [
                feed_label(feed),
                fmt_num(total),
                fmt_num(linked[feed]),
                fmt_pct(linked[feed], total),
                fmt_num(in_review[feed]),
                fmt_pct(in_review[feed], total, 2),
            ]
        )
    feeds.rows.append(
        [
            "all feeds",
            fmt_num(all_records),
            fmt_num(all_linked),
            fmt_pct(all_linked, all_records),
            fmt_num(items),
            fmt_pct(items, all_records, 2),
        ]
    )
    reasons = Grid(
        ["reason", "items", "share of items", "share of records"],
        numeric=frozenset({1, 2, 3}),
        css="review-reasons",
    )
    for reason, count in _value_counts(review["reason"]).most_common():
        label = REVIEW_REASONS.get(reason)
        reasons.rows.append(
            [
                f"{reason} {label}" if label else str(reason),
                fmt_num(count),
                fmt_pct(count, items),
                fmt_pct(count, all_records, 2),
            ]
        )
    ages, oldest = _review_ages(_value_counts(review["run_id"]), metas)
    verdicts = _verdict_counts(meta)
    labelled = _labelled(meta)
    model = None
    if labelled:
        model = [
            ("labelled pairs", fmt_num(labelled.get("pairs"))),
            ("of them one unit", fmt_num(labelled.get("matches"))),
            ("precision", _ratio(labelled.get("precision"))),
            ("recall", _ratio(labelled.get("recall"))),
            ("F1", _ratio(labelled.get("f1"))),
            ("link threshold", fmt_num(labelled.get("threshold"), 2)),
        ]
    summary = [
        ("records", fmt_num(all_records)),
        ("in a unit", f"{fmt_num(all_linked)} ({fmt_pct(all_linked, all_records)})"),
        ("review items", f"{fmt_num(items)} ({fmt_pct(items, all_records, 2)} of records)"),
        (
            "oldest review item",
            "–" if oldest is None else f"at least {fmt_num(oldest[0])} run(s), {_days(oldest[1])}",
        ),
        ("verdicts in force", fmt_num(verdicts["in_force"])),
        ("verdicts applied", fmt_num(verdicts["applied"])),
        ("in force, not applied", fmt_num(verdicts["not_applied"])),
        ("set aside (dated in the future)", fmt_num(verdicts["set_aside"])),
        ("labelled precision", "–" if labelled is None else _ratio(labelled.get("precision"))),
        ("labelled recall", "–" if labelled is None else _ratio(labelled.get("recall"))),
    ]
    over = all_records and items / all_records > REVIEW_SHARE_TARGET
    return {
        "summary": summary,
        "feeds": feeds,
        "reasons": reasons,
        "ages": ages,
        "model": model,
        "review_over_target": bool(over),
        "review_target": WITHIN_REVIEW_TARGET,
        "trend": _accuracy_trend(metas, records_by_run),
    }


def build_context(store: RunStore, register_run: str) -> dict[str, Any]:
    """Every figure of the page for one register run, formatted, ready for the template."""
    run_dir = store.register_run_dir(register_run)
    if not (run_dir / "_meta.json").is_file():
        raise FileNotFoundError(f"no published register run {register_run} in {store.root}")
    meta = json.loads((run_dir / "_meta.json").read_text(encoding="utf-8"))
    ingest_run = (meta.get("inputs") or {}).get("ingest_run")
    manifests = _manifests_up_to(store, ingest_run)
    manifest = manifests[-1] if manifests else None
    counts = meta.get("counts") or {}
    stats = meta.get("stats") or {}  # older register runs kept predicted pairs and refused joins at the top
    records_by_run = _records_by_ingest_run(store, manifests)
    records = records_by_run[manifest["run_id"]] if manifest else dict.fromkeys(load_contracts(), 0)
    linkage = _linkage_section(run_dir, records)
    divisions = _divisions_section(run_dir)
    metas = _register_metas(store, register_run)
    overview = [
        ("register run", register_run),
        ("ingest run", ingest_run or "–"),
        ("model version", meta.get("model_version") or "–"),
        ("register built", fmt_time(meta.get("created_at"))),
        ("ingest committed", fmt_time((manifest or {}).get("committed_at"))),
        ("units", fmt_num(counts.get("register"))),
        ("links", fmt_num(counts.get("links"))),
        ("review items", fmt_num(divisions["review"])),
        (
            "warnings",
            "no warnings table" if divisions["warnings"] is None else fmt_num(divisions["warnings"]),
        ),
        ("predicted pairs", fmt_num(stats.get("predicted_pairs", meta.get("predicted_pairs")))),
        ("refused joins", fmt_num(stats.get("refused_joins", meta.get("refused_joins")))),
    ]
    return {
        "register_run": register_run,
        "generated_at": fmt_time(utc_now()),
        "overview": overview,
        "feeds": _feeds_section(manifests),
        "quarantine": _quarantine_section(store, manifest),
        "quality": _quality_section(store, manifest),
        "batches": _batches_section(manifests),
        "linkage": linkage,
        "accuracy": _accuracy_section(run_dir, records, linkage["linked"], metas, records_by_run),
        "divisions": divisions,
        "flags": _flags_section(run_dir),
        "vocabularies": _vocabularies_section(store, run_dir),
        "verdicts": _verdicts_section(meta),
        "register_quality": _register_quality_section(metas),
        "timings": _timings_section(manifest, meta, metas),
    }


def render_report(context: dict[str, Any]) -> str:
    environment = Environment(
        loader=FileSystemLoader(REPORT_TEMPLATE.parent),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment.get_template(TEMPLATE).render(**context)


def write_report(store: RunStore, register_run: str | None = None) -> Path:
    """Write ``reports/<register_run>.html`` (default: the published latest register run), atomically."""
    if register_run is None:
        latest = store.register_latest()
        if latest is None:
            raise FileNotFoundError(f"no published register in {store.root}")
        register_run = latest.name
    html = render_report(build_context(store, register_run))
    store.reports_dir.mkdir(parents=True, exist_ok=True)
    path = store.reports_dir / f"{register_run}.html"
    write_atomically(path, html)
    return path
