"""The offline comparison page of a township's work queue: each review item's record beside its best
candidate's, and the model's evidence as a waterfall of match weights.

One HTML file per workbook in the folder ``compare/`` beside it (``compare/<township>.html``, apart from a
pack's own pages), opened from the workbook's 对比页 links (``#<核查编号>`` jumps to the item). Everything
is in the file: inline CSS and SVG, no script, nothing fetched, so it opens on a township computer without a
network. It shows only what the review table carries: names and addresses as the feeds give them, phones and
legal representatives as tokens (a value that is not a token is not shown).
"""

from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path
from typing import Any

from pipelines.contracts import load_contracts
from pipelines.pii import is_token
from pipelines.standardise.vocabularies import labels

COMPARISONS = labels("comparisons")
WORDS = labels("evidence_words")
REASONS = labels("review_reasons")
PAGE_FOLDER = "compare"
SIDES = (  # field of a compared record, label, personal (shown only as a token)
    ("name", "名称", False),
    ("address", "地址", False),
    ("district_code", "区县代码", False),
    ("township", "乡镇街道", False),
    ("phone", "电话（令牌）", True),
    ("legal_rep", "法定代表人（令牌）", True),
    ("source", "来源部门", False),
    ("record_id", "记录编号", False),
)
SILENT = 0.05  # a comparison with less weight (a value missing on one side) draws no bar
BAR_HEIGHT, LABEL_WIDTH, PLOT_WIDTH, VALUE_WIDTH = 22, 190, 420, 70
STYLE = """
body{font-family:"Microsoft YaHei","PingFang SC","Noto Sans CJK SC",sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin:0 0 .4em}
.item{border:1px solid #ccc;border-radius:6px;padding:1em;margin:1em 0}
.item:target{border-color:#d97706;box-shadow:0 0 0 3px #fde68a}
.why{background:#f8fafc;padding:.5em;border-left:3px solid #64748b}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}
th{background:#f1f5f9}td.same{background:#dcfce7}code{font-size:.85em}
.muted{color:#666;font-size:.9em}
"""


def page_name(stem: str) -> str:
    """The page of the workbook ``<stem>.xlsx``, relative to the workbook's folder."""
    return f"{PAGE_FOLDER}/{stem}.html"


def anchor(row: dict[str, Any]) -> str:
    """The item's anchor on the page: its 核查编号 (unique per register run and record)."""
    return str(row["verdict_id"])


def _shown(value: Any, personal: bool) -> str:
    if value is None or value == "":
        return "—"
    if personal and not is_token(str(value)):
        return "（非令牌，不显示）"
    text = escape(str(value))
    return f"<code>{text}</code>" if personal else text


def _with_source(side: dict[str, Any] | None) -> dict[str, Any]:
    """A compared record with its department's name (the feed contract's) as ``source``."""
    if not side:
        return {}
    contracts = load_contracts()
    feed = side.get("feed")
    return {**side, "source": contracts[feed].department if feed in contracts else feed}


def side_by_side(compared: dict[str, Any], candidate_label: str) -> str:
    """The two records of the item's pair as a table, equal values marked."""
    record, candidate = _with_source(compared.get("record")), _with_source(compared.get("candidate"))
    rows = []
    for field, label, personal in SIDES:
        mine, theirs = record.get(field), candidate.get(field) if candidate else None
        same = ' class="same"' if mine and mine == theirs else ""
        cells = f"<td{same}>{_shown(mine, personal)}</td>"
        if candidate:
            cells += f"<td{same}>{_shown(theirs, personal)}</td>"
        rows.append(f"<tr><th>{escape(label)}</th>{cells}</tr>")
    head = "<th>本记录</th>" + (f"<th>{escape(candidate_label)}</th>" if candidate else "")
    return f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>"


def _label(name: str, weight: float) -> str:
    """A comparison's label; a term-frequency adjustment says whether the agreeing value is rare or common."""
    label = COMPARISONS.get(name, name)
    return label + WORDS["rare" if weight > 0 else "common"] if name.startswith("tf_") else label


def waterfall_steps(weights: dict[str, float], match_weight: float) -> list[tuple[str, float, float]]:
    """(label, start, end) of each bar: the prior, then each comparison that moved the weight (strongest
    first), then the total."""
    prior = match_weight - sum(weights.values())
    steps = [(WORDS["prior"], 0.0, prior)]
    level = prior
    for name, weight in sorted(weights.items(), key=lambda item: (-abs(item[1]), item[0])):
        if abs(weight) >= SILENT:
            steps.append((_label(name, weight), level, level + weight))
        level += weight
    steps.append((WORDS["total"], 0.0, level))
    return steps


def waterfall_svg(weights: dict[str, float], match_weight: float) -> str:
    """Inline SVG: a bar per step, green for evidence for, red against, grey for the prior and the total."""
    steps = waterfall_steps(weights, match_weight)
    ends = [v for _, start, end in steps for v in (start, end)] + [0.0]
    low, high = min(ends), max(ends)
    span = (high - low) or 1.0

    def x(value: float) -> float:
        return LABEL_WIDTH + (value - low) / span * PLOT_WIDTH

    height = BAR_HEIGHT * len(steps) + 4
    width = LABEL_WIDTH + PLOT_WIDTH + VALUE_WIDTH
    parts = [
        f'<svg width="{width}" height="{height}" role="img" aria-label="匹配权重瀑布图">',
        f'<line x1="{x(0):.1f}" y1="0" x2="{x(0):.1f}" y2="{height}" stroke="#333" stroke-dasharray="3,3"/>',
    ]
    for index, (label, start, end) in enumerate(steps):
        y = index * BAR_HEIGHT + 2
        first, last = index == 0, index == len(steps) - 1
        colour = "#94a3b8" if first or last else "#16a34a" if end >= start else "#dc2626"
        left, right = sorted((x(start), x(end)))
        change = end - start
        value = f"{end:+.1f}" if first or last else f"{change:+.1f}"
        parts += [
            f'<text x="{LABEL_WIDTH - 6}" y="{y + 15}" text-anchor="end" font-size="12">'
            f"{escape(label)}</text>",
            f'<rect x="{left:.1f}" y="{y}" width="{max(right - left, 1):.1f}" height="{BAR_HEIGHT - 6}" '
            f'fill="{colour}"/>',
            f'<text x="{LABEL_WIDTH + PLOT_WIDTH + 6}" y="{y + 15}" font-size="12">{value}</text>',
        ]
    probability = 1 / (1 + 2 ** -max(min(match_weight, 60), -60))
    parts.append("</svg>")
    parts.append(
        '<p class="muted">匹配权重（以 2 为底的对数几率）：起点为任意两条记录属于同一单位的先验，'
        f"合计 {match_weight:+.1f}，匹配度 {probability:.4f}</p>"
    )
    return "".join(parts)


def _item(row: dict[str, Any], unit_names: dict[str, str]) -> str:
    compared = json.loads(row["compared"]) if row.get("compared") else {"record": {}}
    candidates = row.get("candidate_unit_ids") or []
    best = candidates[0] if candidates else None
    label = f"候选单位 {best} {unit_names.get(best) or ''}".strip() if best else "候选单位"
    parts = [
        f'<section class="item" id="{escape(anchor(row))}">',
        f"<h2>{escape(str(row.get('priority', '')))} · {escape(REASONS.get(row['reason'], row['reason']))}"
        f" · {escape(row.get('name') or '')}</h2>",
        f'<p class="why">{escape(row.get("why") or "")}</p>',
        f'<p class="muted">当前归属单位：{escape(row.get("current_unit_id") or "—")} '
        f"{escape(unit_names.get(row.get('current_unit_id') or '') or '')}；"  # a unit may have no name
        f"核查编号 {escape(anchor(row))}；重要度 {row.get('importance') or 0:.1f}</p>",
        side_by_side(compared, label),
    ]
    weights = json.loads(row["match_weights"]) if row.get("match_weights") else None
    match_weight = row.get("match_weight")
    if weights and match_weight is not None and math.isfinite(match_weight):
        parts.append(waterfall_svg(weights, match_weight))
    parts.append("</section>")
    return "\n".join(parts)


def write_comparison_page(
    path: Path, title: str, rows: list[dict[str, Any]], unit_names: dict[str, str]
) -> None:
    """The page of one township's queue: ``rows`` are its review items (review-table fields and their
    ``verdict_id``), in queue order."""
    body = "\n".join(_item(row, unit_names) for row in rows) or "<p>本期没有待核查的记录。</p>"
    html = (
        '<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>{escape(title)} 待核查对比</title><style>{STYLE}</style></head><body>"
        f"<h1>{escape(title)} 待核查记录对比</h1>"
        '<p class="muted">每条记录与最可能的候选单位的记录并排显示，绿色格为两边相同；瀑布图为模型各项比较的'
        "匹配权重：绿色支持“同一单位”，红色反对。电话和法定代表人只显示令牌。</p>"
        f"{body}</body></html>\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
