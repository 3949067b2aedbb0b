"""Data-quality reports of a run: ``results.json`` for machines, ``report.html`` for people, GE's own JSON.

The HTML is one self-contained file (inline CSS, no scripts, no external links) so it opens from the run
store or an e-mail attachment anywhere. Values of personal fields never appear: outcomes and GE results
were scrubbed at validation.

Not GE's own Data Docs: with great-expectations 1.24, ``build_data_docs()`` on a filesystem site writes pages
that load Bootstrap, bootstrap-table, jQuery, Popper, Vega and Font Awesome from six CDNs and a logo from
S3 tagged with the context id (``render/view/templates/page.j2``, ``js_script_imports.j2``): offline they
lose styling and scripts, and opening one calls out. GE's own results are kept as ``ge_<feed>.json``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from pipelines.quality.outcomes import ExpectationOutcome, FeedQuality, json_safe

RESULTS_FILE = "results.json"
REPORT_FILE = "report.html"


def ge_result_file(feed: str) -> str:
    return f"ge_{feed}.json"


def results_document(results: list[FeedQuality], run_id: str) -> dict[str, Any]:
    """The machine-readable results of a run: every outcome of every feed."""
    return json_safe(
        {
            "run_id": run_id,
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "ok": all(q.ok for q in results),
            "blocking_failures": sum(len(q.blocking_failures) for q in results),
            "warnings": sum(len(q.warnings) for q in results),
            "feeds": [q.to_dict() for q in results],
        }
    )


def write_quality_reports(results: list[FeedQuality], out_dir: Path, run_id: str) -> tuple[Path, Path]:
    """Write ``results.json``, ``report.html`` and ``ge_<feed>.json`` to ``out_dir``; return the first two."""
    out_dir.mkdir(parents=True, exist_ok=True)
    document = results_document(results, run_id)
    json_path = out_dir / RESULTS_FILE
    json_path.write_text(json.dumps(document, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    for quality in results:
        if quality.ge_result is not None:
            text = json.dumps(json_safe(quality.ge_result), ensure_ascii=False, indent=1)
            (out_dir / ge_result_file(quality.feed)).write_text(text + "\n", encoding="utf-8")
    html_path = out_dir / REPORT_FILE
    html_path.write_text(render_html(results, run_id, document["generated_at"]), encoding="utf-8")
    return json_path, html_path


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI","PingFang SC","Microsoft YaHei",sans-serif;margin:2em;
color:#1f2328;max-width:1200px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #d0d7de;padding-bottom:.3em}
table{border-collapse:collapse;width:100%;font-size:.9em;margin:.5em 0}
th,td{border:1px solid #d0d7de;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;white-space:nowrap}
tr.block td{background:#ffebe9}tr.warn td{background:#fff8c5}
.badge{display:inline-block;border-radius:1em;padding:0 .6em;font-size:.85em;font-weight:600;color:#fff}
.ok{background:#1a7f37}.blocked{background:#cf222e}.warned{background:#9a6700}
.muted{color:#656d76}code{font-size:.9em;word-break:break-all}
"""


def _status(quality: FeedQuality) -> tuple[str, str]:
    if quality.blocking_failures:
        return "blocked", "blocked"
    if quality.warnings:
        return "warned", _passed_with(len(quality.warnings))
    return "ok", "passed"


def _overall(results: list[FeedQuality]) -> tuple[str, str]:
    """The run's status: blocked (naming the feeds), passed with N warnings, or passed. A run with
    warnings must not look clean: people read the badge, not the tables."""
    blocked = [q.feed for q in results if not q.ok]
    if blocked:
        return "blocked", "blocked: " + ", ".join(blocked)
    warnings = sum(len(q.warnings) for q in results)
    return ("warned", _passed_with(warnings)) if warnings else ("ok", "passed")


def _passed_with(warnings: int) -> str:
    return f"passed with {warnings} warning{'' if warnings == 1 else 's'}"


def _badge(css: str, text: str, id_: str | None = None) -> str:
    attribute = f' id="{id_}"' if id_ else ""
    return f'<span{attribute} class="badge {css}">{escape(text)}</span>'


def _threshold(o: ExpectationOutcome) -> str:
    parts = []
    for key, value in o.kwargs.items():
        if key == "value_set" and isinstance(value, list):
            shown = ", ".join(map(str, value[:8])) + (" …" if len(value) > 8 else "")
            parts.append(f"in {{{shown}}}")
        elif key == "mostly":
            parts.append(f"mostly {value:.0%}" if isinstance(value, int | float) else f"mostly {value}")
        else:
            parts.append(f"{key}={value}")
    return escape("; ".join(parts))


def _unexpected(o: ExpectationOutcome) -> str:
    if o.exception:
        return f"error: {escape(o.exception)}"
    if o.unexpected_count is not None:
        percent = f"{o.unexpected_percent:.1f}%" if o.unexpected_percent is not None else "–"
        return f"{o.unexpected_count} ({percent})"
    if isinstance(o.observed_value, list):
        return f"{len(o.observed_value)} items"
    if o.observed_value is not None:
        text = str(o.observed_value)
        return escape(text if len(text) <= 80 else text[:77] + "…")
    return ""


def _sample(o: ExpectationOutcome) -> str:
    if not o.sample_unexpected:
        return ""
    items = ", ".join(f"{s.get('value')!s} ×{s.get('count')}" for s in o.sample_unexpected)
    return f'<br><span class="muted">e.g. {escape(items)}</span>'


def _note(o: ExpectationOutcome) -> str:
    return f'<br><span class="muted">{escape(o.note)}</span>' if o.note else ""


def _feed_section(quality: FeedQuality) -> str:
    css, label = _status(quality)
    facts = [f"{quality.rows} rows"]
    if quality.previous_rows is not None:
        facts.append(f"previous run {quality.previous_rows} rows")
    if "min_rows" in quality.parameters:
        facts.append(f"volume floor {quality.parameters['min_rows']} rows")
    facts.append(f"validated in {quality.seconds:.2f} s")
    rows = []
    for i, o in enumerate(quality.outcomes, 1):
        row_css = "" if o.success else o.severity
        result = "pass" if o.success else "<strong>FAIL</strong>"
        rows.append(
            f'<tr class="{row_css}"><td class="num">{i}</td><td>{result}</td><td>{escape(o.severity)}</td>'
            f"<td><code>{escape(o.expectation_type)}</code></td><td>{escape(o.column or '(table)')}</td>"
            f'<td class="num">{_unexpected(o)}</td><td>{_threshold(o)}</td>'
            f"<td>{escape(o.why)}{_note(o)}{_sample(o)}</td></tr>"
        )
    return (
        f'<section id="feed-{escape(quality.feed)}"><h2>{escape(quality.feed)} {_badge(css, label)}</h2>'
        f'<p class="muted">{escape(" · ".join(facts))}</p>'
        "<table><thead><tr><th>#</th><th>result</th><th>severity</th><th>expectation</th><th>column</th>"
        "<th>unexpected / observed</th><th>expected</th><th>why</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def render_html(results: list[FeedQuality], run_id: str, generated_at: str) -> str:
    """One self-contained page: a summary of the run, then per feed every expectation and its result."""
    css, status = _overall(results)
    summary = "".join(
        f'<tr><td><a href="#feed-{escape(q.feed)}">{escape(q.feed)}</a></td><td class="num">{q.rows}</td>'
        f'<td class="num">{"" if q.previous_rows is None else q.previous_rows}</td>'
        f'<td class="num">{len(q.blocking_failures)}</td><td class="num">{len(q.warnings)}</td>'
        f"<td>{_badge(*_status(q))}</td></tr>"
        for q in results
    )
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>Data quality {escape(run_id)}: {escape(status)}</title><style>{_CSS}</style></head><body>"
        f"<h1>Data quality of {escape(run_id)} {_badge(css, status, 'status')}</h1>"
        f'<p class="muted">generated {escape(generated_at)} · {len(results)} feed(s) · a failed '
        "<em>block</em> expectation stops the run; a failed <em>warn</em> expectation is only recorded</p>"
        "<table><thead><tr><th>feed</th><th>rows</th><th>previous run</th><th>block failures</th>"
        f"<th>warnings</th><th>status</th></tr></thead><tbody>{summary}</tbody></table>"
        + "".join(_feed_section(q) for q in results)
        + "</body></html>\n"
    )
