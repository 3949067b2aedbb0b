"""The run report: a self-contained page whose figures are the run's, opened in headless Chromium."""

from __future__ import annotations

import datetime
import functools
import html as htmllib
import itertools
import json
import re
import shutil
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines.contracts import load_contracts, output_schema
from pipelines.landing import resolve_and_land
from pipelines.marts.quality import USCC_SHARE_TARGET, register_quality
from pipelines.ops.report import (
    bar_chart,
    build_context,
    column_chart,
    fmt_change,
    fmt_num,
    fmt_seconds,
    line_chart,
    render_report,
    write_report,
)
from pipelines.staging import latest_records
from pipelines.store import RunStore
from tests.shared_stores import SharedRegister, copy_store

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SECTIONS = {
    "overview": "Overview",
    "feeds": "Records per feed",
    "quarantine": "Quarantine",
    "quality": "Expectation results",
    "linkage": "Linkage",
    "accuracy": "Accuracy",
    "divisions": "Review and warnings by division",
    "flags": "Flags",
    "vocabularies": "Vocabularies",
    "register-quality": "Register quality",
    "timings": "Timings",
}


def test_figures_are_formatted_for_people_and_charts_scale_to_the_largest_value():
    assert (fmt_num(1234567), fmt_num(None), fmt_num(5.8123, 1)) == ("1,234,567", "–", "5.8")
    assert (fmt_change(110, 100), fmt_change(90, 100), fmt_change(5, 0), fmt_change(5, None)) == (
        "+10.0 %",
        "−10.0 %",
        "new",
        "–",
    )
    assert (fmt_seconds(0.004), fmt_seconds(2.5), fmt_seconds(125)) == ("4 ms", "2.50 s", "2 min 05 s")
    bars = bar_chart([("a", 10), ("b", 5)], "t")
    widths = [float(w) for w in re.findall(r'<rect [^>]*width="([\d.]+)"', bars)]
    assert widths[0] == 2 * widths[1] > 0
    columns = column_chart([("1", 44), ("2", 0)], "t", "x", "y")
    ticks = [int(v) for v in re.findall(r'class="tick">(\d+)</text>', columns)]
    assert max(ticks) >= 44 and 0 in ticks


def test_columns_can_be_coloured_apart_and_many_columns_keep_their_labels_apart():
    colours = ["#aaaaaa" if i % 7 else "#bbbbbb" for i in range(30)]
    items = [(f"#{i}", 2.5 + i) for i in range(30)]
    chart = column_chart(
        items, "t", "run", "seconds", fmt=fmt_seconds, colours=colours, legend={"marked": "#bbbbbb"}
    )
    columns = re.findall(r'<rect [^>]*fill="(#\w+)"><title>(.*?)</title>', chart)
    assert columns == [
        (colour, f"{name}: {fmt_seconds(value)}")
        for colour, (name, value) in zip(colours, items, strict=True)
    ]
    assert ">marked</text>" in chart  # the legend
    x_labels = re.findall(r'class="tick">(#\d+)</text>', chart)
    assert x_labels[0] == "#0" and x_labels[-1] == "#29" and len(x_labels) <= 16
    assert " s</text>" not in chart  # values only in the tooltips: too narrow to print them on the columns


@given(st.lists(st.one_of(st.none(), st.floats(0, 100)), min_size=1, max_size=40))
def test_a_line_leaves_out_runs_without_a_figure_and_breaks_there(values):
    chart = line_chart([f"#{i}" for i in range(len(values))], {"s": values}, "t", fmt=lambda v: f"{v:.1f} %")
    tips = re.findall(r"<circle [^>]*><title>(.*?)</title>", chart)
    assert tips == [f"s #{i}: {v:.1f} %" for i, v in enumerate(values) if v is not None]
    lengths = [
        len(list(run)) for present, run in itertools.groupby(values, lambda v: v is not None) if present
    ]
    polylines = [len(p.split()) for p in re.findall(r'<polyline points="([^"]*)"', chart)]
    assert polylines == [n for n in lengths if n > 1]


@pytest.fixture(scope="module")
def sample(shared_register: SharedRegister) -> Path:
    return shared_register.sample


@pytest.fixture(scope="module")
def store(shared_register: SharedRegister, tmp_path_factory: pytest.TempPathFactory) -> RunStore:
    """Two ingest runs through the real broker (the second with malformed messages), a register after each
    (the first a rebuild, the second incremental: a copy of the session's shared register), then a rebuild
    when asked: three register runs."""
    store = copy_store(shared_register.store, tmp_path_factory.mktemp("report") / "store")
    assert resolve_and_land(store, rebuild=True, key=shared_register.key) is not None
    assert store.register_runs() == ["reg-000001", "reg-000002", "reg-000003"]
    return store


@pytest.fixture(scope="module")
def report(store: RunStore) -> Path:
    return write_report(store)


@pytest.fixture(scope="module")
def served(store: RunStore, report: Path) -> Iterator[str]:
    """The store root over HTTP on 127.0.0.1, so the page's relative link to the quality report resolves."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(store.root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{store.relative(report)}"
    finally:
        server.shutdown()
        server.server_close()


def _register_dir(store: RunStore) -> Path:
    latest = store.register_latest()
    assert latest is not None
    return latest


def _personal_values(sample: Path) -> set[str]:
    """Clear values of personal fields in the generated feeds (ID numbers, persons' names and phones)."""
    values = set()
    for feed, feed_contract in load_contracts().items():
        for line in (sample / f"{feed}.jsonl").read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            values |= {str(record[f.name]) for f in feed_contract.personal_fields if record.get(f.name)}
    return values


@pytest.mark.integration  # the store is ingested through the real broker
def test_the_report_lands_in_reports_named_for_the_latest_register_run(store, report):
    assert report == store.reports_dir / f"{_register_dir(store).name}.html"
    assert [p.name for p in store.reports_dir.iterdir()] == [report.name]  # no temp file left behind
    assert write_report(store, _register_dir(store).name) == report
    with pytest.raises(FileNotFoundError):
        write_report(store, "reg-999999")


@pytest.mark.integration  # the store is ingested through the real broker
def test_the_page_is_self_contained_and_holds_no_personal_data(report, sample):
    html = report.read_text(encoding="utf-8")
    assert '<meta charset="utf-8">' in html
    for outside in ("http://", "https://", "<script", "<link", "<img", "<iframe", "url(", "@import", "src="):
        assert outside not in html.lower(), outside
    assert html.count("<svg") >= 6
    assert "t1_" not in html  # not even tokens: only aggregates are shown
    personal = _personal_values(sample)
    assert len(personal) > 100
    assert not [value for value in personal if value in html]
    assert not re.search(r"\d{17}[\dXx]|(?<!\d)1[3-9]\d{9}(?!\d)", html)  # no ID or mobile number shapes


@pytest.mark.integration  # the store is ingested through the real broker
def test_a_register_run_without_warnings_table_says_so(store, tmp_path):
    copy = RunStore(tmp_path / "store")
    shutil.copytree(store.root, copy.root, symlinks=True)
    run = _register_dir(store).name
    (copy.register_run_dir(run) / "warnings.parquet").unlink()
    html = write_report(copy, run).read_text(encoding="utf-8")
    assert "no warnings table" in html
    assert all(f'<section id="{section}">' in html for section in SECTIONS)


def _cells(page, selector: str) -> list[list[str]]:
    """Rows of a table on the page, as the visible text of their cells."""
    return page.eval_on_selector_all(
        f"{selector} tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.innerText.trim()))"
    )


def _row(rows: list[list[str]], first: str) -> list[str]:
    found = [row for row in rows if row[0].split()[0] == first]
    assert len(found) == 1, (first, rows)
    return found[0]


@pytest.mark.integration  # the store is ingested through the real broker
def test_the_report_shows_the_runs_figures_in_headless_chromium(store, served, sample):
    from playwright.sync_api import sync_playwright

    manifests = store.manifests()
    manifest = manifests[-1]
    register_dir = _register_dir(store)
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("request", lambda request: requests.append(request.url))
            response = page.goto(served)
            assert response is not None and response.ok
            assert page.evaluate("document.characterSet") == "UTF-8"

            for section, heading in SECTIONS.items():
                assert page.locator(f"section#{section}").is_visible()
                assert heading in page.locator(f"section#{section} h2").inner_text()
            assert "概览" in page.locator("section#overview h2").inner_text()  # Chinese decoded as such
            overview = page.locator("section#overview").inner_text()
            assert register_dir.name in overview and manifest["run_id"] in overview

            # records per feed: this run's staged counts, and the trend over both runs
            this_run = _cells(page, "section#feeds table.this-run")
            trend = _cells(page, "section#feeds table:not(.this-run)")
            assert [row[0] for row in trend] == [m["run_id"] for m in reversed(manifests)]
            headers = page.eval_on_selector_all(
                "section#feeds table:not(.this-run) th", "cells => cells.map(c => c.innerText.trim())"
            )
            for feed, stats in manifest["feeds"].items():
                assert _row(this_run, feed)[2] == f"{stats['staged']:,}"
                for m, row in zip(reversed(manifests), trend, strict=True):
                    assert row[headers.index(feed)] == f"{m['feeds'][feed]['staged']:,}"
            assert page.locator("section#feeds svg polyline").count() == len(load_contracts())

            # quarantine: by reason and per feed, as the manifest counted them
            quarantine = _cells(page, "section#quarantine table")
            by_reason = manifest["quarantine"]["by_reason"]
            assert sum(by_reason.values()) > 0
            for reason, count in by_reason.items():
                assert _row(quarantine, reason)[1] == f"{count:,}"
            totals = _row(quarantine, "total")
            assert totals[1] == f"{sum(by_reason.values()):,}"
            assert totals[3:] == [f"{s['quarantined']:,}" for s in manifest["feeds"].values()]
            assert page.locator("section#quarantine svg rect").count() == len(by_reason)

            # expectations: the failed ones of the run, and the quality report behind the link
            failures = manifest["quality"]["failures"]
            shown = _cells(page, "section#quality table.failures")
            assert sorted((row[1], row[2]) for row in shown) == sorted(
                (f["expectation_type"], f["column"] or "") for f in failures
            )
            summary = _cells(page, "section#quality table.quality-summary")
            assert [row[0].split()[0] for row in summary] == list(manifest["feeds"])
            link = page.locator("section#quality a.ge-report")
            assert link.get_attribute("href") == f"../{manifest['quality']['report']}"
            with page.expect_navigation() as navigation:
                link.click()
            assert navigation.value is not None and navigation.value.status == 200
            assert manifest["run_id"] in page.content()
            page.go_back()

            # linkage: charts drawn, share linked per feed as the links and the staged records say
            charts = page.locator("section#linkage svg.chart")
            assert charts.count() == 4  # match weights, cluster sizes, share linked, methods
            assert all(charts.nth(i).locator("rect").count() > 0 for i in range(4))
            assert charts.first.is_visible()
            links = pq.read_table(register_dir / "links.parquet", columns=["feed", "record_id"]).to_pylist()
            share = _cells(page, "section#linkage table.linked")
            for feed in load_contracts():
                linked = len({link["record_id"] for link in links if link["feed"] == feed})
                row = _row(share, feed)
                assert row[1:3] == [f"{latest_records(store, feed).num_rows:,}", f"{linked:,}"]

            # accuracy: the same records in a unit, and in review, per feed; the trend charts drawn
            in_review = Counter(
                pq.read_table(register_dir / "review.parquet", columns=["feed"])["feed"].to_pylist()
            )
            accuracy = _cells(page, "section#accuracy table.accuracy-feeds")
            for feed in load_contracts():
                assert _row(accuracy, feed)[1:3] == _row(share, feed)[1:3]
                assert _row(accuracy, feed)[4] == f"{in_review[feed]:,}"
            assert _row(accuracy, "all")[4] == f"{sum(in_review.values()):,}"
            trend_charts = page.locator("section#accuracy svg.chart")
            assert trend_charts.count() == 2 and trend_charts.first.is_visible()
            assert "准确性" in page.locator("section#accuracy h2").inner_text()

            # review and warnings, flags
            review = pq.read_table(register_dir / "review.parquet").num_rows
            warnings = pq.read_table(register_dir / "warnings.parquet").num_rows
            summary = page.locator("section#divisions p").first.inner_text()
            assert f"{review:,} review item(s)" in summary and f"{warnings:,} warning(s)" in summary
            divisions = _cells(page, "section#divisions table.divisions")
            assert sum(int(row[-1].replace(",", "")) for row in divisions) == warnings
            register = pq.read_table(register_dir / "register.parquet")
            flags = _cells(page, "section#flags table.flags")
            flag_names = [f.name for f in output_schema("register") if f.type == "bool"]
            assert len(flags) == len(flag_names)
            for flag, row in zip(flag_names, flags, strict=True):
                assert flag in row[0]
                assert row[1] == f"{sum(1 for v in register[flag].to_pylist() if v):,}"

            # timings of both parts: what the run redid, seconds per stage, every register run so far
            timings = page.locator("section#timings").inner_text()
            meta = json.loads((register_dir / "_meta.json").read_text(encoding="utf-8"))
            for stage in [*manifest["timings_s"], *meta["timings_s"]]:
                assert stage in timings
            labels = page.eval_on_selector_all(
                "section#timings dl dt", "cells => cells.map(c => c.innerText)"
            )
            values = page.eval_on_selector_all(
                "section#timings dl dd", "cells => cells.map(c => c.innerText)"
            )
            work = dict(zip(labels, values, strict=True))
            stats = meta["stats"]
            assert work["mode"] == "rebuild (asked to)"
            assert work["units touched"] == f"{stats['units_touched']:,} of {stats['units']:,}"
            assert work["peak memory"] == f"{meta['peak_rss_mib']:,} MiB"
            stages = {(row[0], row[1]): row[2] for row in _cells(page, "section#timings table.timings")}
            for stage, seconds in meta["timings_s"].items():
                assert stages["register", stage] == fmt_seconds(seconds)
            runs = _cells(page, "section#timings table.register-runs")
            assert [row[:2] for row in runs] == [
                ["reg-000003", "rebuild (asked to)"],
                ["reg-000002", "incremental"],
                ["reg-000001", "rebuild (first register)"],
            ]
            columns = page.eval_on_selector_all(
                'section#timings svg[aria-label="Register time per run"] rect',
                "rects => rects.filter(r => r.querySelector('title'))"
                ".map(r => [r.textContent, r.getAttribute('fill')])",
            )
            metas = [store.register_meta(store.register_run_dir(run)) for run in store.register_runs()]
            assert [tip for tip, _ in columns] == [
                f"#{n}: {fmt_seconds(sum(m['timings_s'].values()))}" for n, m in enumerate(metas, 1)
            ]
            rebuild, incremental, rebuild_again = (fill for _, fill in columns)
            assert rebuild == rebuild_again != incremental
        finally:
            browser.close()
    assert requests and all(urlparse(url).hostname == "127.0.0.1" for url in requests), requests


def _section(page: str, section: str) -> str:
    return page.split(f'<section id="{section}">')[1].split("</section>")[0]


def _listed(page: str, section: str) -> dict[str, str]:
    """The labelled figures of a section (its ``<dl>``), as text."""
    pairs = re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", _section(page, section))
    return {htmllib.unescape(label): htmllib.unescape(value) for label, value in pairs}


def _table(page: str, css: str) -> list[list[str]]:
    """The body rows of the table with this class, as the text of their cells."""
    body = page.split(f'<table class="{css}">')[1].split("<tbody>")[1].split("</tbody>")[0]
    return [
        [htmllib.unescape(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", body)
    ]


@pytest.mark.integration  # the store is ingested through the real broker
def test_the_timings_of_an_incremental_run_show_what_it_redid_and_the_runs_before_it(store):
    meta = store.register_meta(store.register_run_dir("reg-000002"))
    stats = meta["stats"]
    page = render_report(build_context(store, "reg-000002"))
    work = _listed(page, "timings")
    assert work["mode"] == "incremental"
    assert work["records read"] == fmt_num(stats["records_in"])
    assert work["records changed"] == fmt_num(stats["records_changed"])
    assert work["entities standardised again"] == f"{stats['entities_rescored']:,} of {stats['entities']:,}"
    assert work["entities reclustered"] == f"{stats['entities_reclustered']:,} of {stats['entities']:,}"
    assert work["units touched"] == f"{stats['units_touched']:,} of {stats['units']:,}"
    assert work["register rows recomputed"] == fmt_num(stats["rows_recomputed"])
    assert work["register time"] == fmt_seconds(sum(meta["timings_s"].values()))
    stages = [row[1:3] for row in _table(page, "timings") if row[0] == "register" and row[1] != "total"]
    assert stages == [[stage, fmt_seconds(seconds)] for stage, seconds in meta["timings_s"].items()]
    # the runs so far: this one and the one before, not the rebuild that came after
    first = store.register_meta(store.register_run_dir("reg-000001"))
    assert _table(page, "register-runs") == [
        [
            run,
            mode,
            fmt_num(m["stats"]["records_changed"]),
            fmt_num(m["stats"]["units_touched"]),
            fmt_seconds(sum(m["timings_s"].values())),
            fmt_num(m["peak_rss_mib"]),
        ]
        for run, mode, m in [
            ("reg-000002", "incremental", meta),
            ("reg-000001", "rebuild (first register)", first),
        ]
    ]


@pytest.mark.integration  # the store is ingested through the real broker
def test_register_runs_from_before_modes_and_stats_still_render(store, tmp_path):
    """Runs written before register runs were incremental lack mode, stats and peak memory (and kept
    predicted pairs and refused joins at the top); the earliest kept no timings either."""
    copy = RunStore(tmp_path / "store")
    shutil.copytree(store.root, copy.root, symlinks=True)
    for run in ("reg-000001", "reg-000003"):
        path = copy.register_run_dir(run) / "_meta.json"
        meta = json.loads(path.read_text(encoding="utf-8"))
        for new in ("mode", "rebuild_reason", "peak_rss_mib"):
            del meta[new]
        stats = meta.pop("stats")
        meta |= {"predicted_pairs": stats["predicted_pairs"], "refused_joins": stats["refused_joins"]}
        if run == "reg-000001":
            del meta["timings_s"]
        path.write_text(json.dumps(meta), encoding="utf-8")
    page = write_report(copy, "reg-000003").read_text(encoding="utf-8")
    assert all(f'<section id="{section}">' in page for section in SECTIONS)
    work = _listed(page, "timings")
    for figure in ("mode", "records changed", "entities reclustered", "units touched", "peak memory"):
        assert work[figure] == "–", figure
    assert work["register time"] == fmt_seconds(sum(meta["timings_s"].values()))  # meta: reg-000003's
    assert _listed(page, "overview")["predicted pairs"] == fmt_num(meta["predicted_pairs"])
    runs = {row[0]: row for row in _table(page, "register-runs")}
    assert list(runs) == ["reg-000003", "reg-000002", "reg-000001"]
    assert runs["reg-000001"][1:] == ["–"] * 5
    assert runs["reg-000002"][1] == "incremental"
    assert "mode not recorded" in _section(page, "timings")  # in the trend chart's legend


def _quality_of(store: RunStore, run: str) -> dict:
    """The register quality figures of a run, from its own files (as the pass stores them in its meta)."""
    run_dir = store.register_run_dir(run)
    tables = {
        name: pq.read_table(run_dir / f"{name}.parquet")
        for name in ("register", "links", "review", "lineage", "warnings")
    }
    records = {path.stem: pq.read_table(path) for path in (run_dir / "state" / "records").glob("*.parquet")}
    created_at = store.register_meta(run_dir)["created_at"]
    today = datetime.datetime.fromisoformat(created_at).date()
    return register_quality(tables, records, run, created_at, today)


def _with_quality(store: RunStore, tmp_path: Path, runs: dict[str, dict | None]) -> RunStore:
    """A copy of the store whose register runs carry these quality figures (None: the run has none)."""
    copy = RunStore(tmp_path / "store")
    shutil.copytree(store.root, copy.root, symlinks=True)
    for run, quality in runs.items():
        path = copy.register_run_dir(run) / "_meta.json"
        meta = json.loads(path.read_text(encoding="utf-8"))
        meta.pop("quality", None)
        if quality is not None:
            meta["quality"] = quality
        path.write_text(json.dumps(meta), encoding="utf-8")
    return copy


@pytest.mark.integration  # the store is ingested through the real broker
def test_the_register_quality_of_each_run_shows_across_runs_and_older_runs_show_as_missing(store, tmp_path):
    figures = {run: _quality_of(store, run) for run in ("reg-000002", "reg-000003")}
    copy = _with_quality(store, tmp_path, {"reg-000001": None, **figures})
    page = write_report(copy, "reg-000003").read_text(encoding="utf-8")
    assert all(f'<section id="{section}">' in page for section in SECTIONS)
    section = _section(page, "register-quality")
    assert "1 run(s) from before these figures were kept" in section

    rows = {row[0]: row for row in _table(page, "register-quality")}
    assert list(rows) == ["reg-000003", "reg-000002", "reg-000001"]
    assert rows["reg-000001"][1:] == ["–"] * 14
    for run, quality in figures.items():
        row = rows[run]
        churn = quality["id_churn"]
        assert row[1:3] == [fmt_num(quality["units"]), fmt_num(quality["units_without_uscc"])]
        assert f"{100 * quality['units_without_uscc_share']:.2f} %" in row[3]
        assert ('class="alert"' in row[3]) == (quality["units_without_uscc_share"] >= USCC_SHARE_TARGET)
        assert row[4:6] == [fmt_num(quality["duplicate_candidates"]), fmt_num(quality["review_open"])]
        assert row[9:12] == [fmt_num(churn["merged"]), fmt_num(churn["split"]), fmt_num(churn["retired"])]
        contacts = quality["contacts"]
        assert row[13:15] == [
            f"{100 * contacts['with_candidate_share']:.1f} %",
            f"{100 * contacts['confirmed_share']:.1f} %",
        ]

    coverage = {row[0]: row for row in _table(page, "register-coverage")}
    assert coverage["reg-000001"][1:] == ["–"] * len(load_contracts())
    for run, quality in figures.items():
        for feed, cell in zip(load_contracts(), coverage[run][1:], strict=True):
            assert cell.endswith(f"{100 * quality['coverage'][feed]:.1f} %")
            assert f'style="width:{100 * quality["coverage"][feed]:.1f}%"' in cell

    # the charts (share without USCC, duplicate pairs, review items): a column per run with figures
    tips = re.findall(r"<rect [^>]*><title>(.*?)</title></rect>", section)
    runs = [(f"#{int(run.split('-')[1])}", quality) for run, quality in sorted(figures.items())]
    assert tips == [
        *(f"{n}: {100 * q['units_without_uscc_share']:.2f} %" for n, q in runs),
        *(f"{n}: {fmt_num(q['duplicate_candidates'])}" for n, q in runs),
        *(f"{n}: {fmt_num(q['review_open'])}" for n, q in runs),
    ]


@pytest.mark.integration  # the store is ingested through the real broker
def test_register_runs_without_quality_figures_still_render(store, tmp_path):
    copy = _with_quality(store, tmp_path, dict.fromkeys(store.register_runs()))
    page = write_report(copy, "reg-000003").read_text(encoding="utf-8")
    section = _section(page, "register-quality")
    assert "no register run recorded quality figures yet" in section and "<svg" not in section
    assert [row[1:] for row in _table(page, "register-quality")] == [["–"] * 14] * 3
    assert all(f'<section id="{section}">' in page for section in SECTIONS)


PLANTED = {  # (feed, column) → values planted in the run's records, none of them in a vocabulary
    ("registration", "industry_code"): ["Z9999", "Z9999", "Z9999", "9899"],
    ("registration", "status"): ["营业中", "营业中"],
    ("registration", "entity_type"): ["某种新类型"],
    ("tax", "taxpayer_status"): ["走逃", "走逃", "走逃", "走逃"],
    ("utility", "customer_class"): ["趸售", "趸售", "趸售", "趸售", "趸售", "其他", "其他"],
}


def _vocabulary_rows(page: str) -> dict[str, list[str]]:
    return {row[1]: row for row in _table(page, "vocabularies")}


@pytest.mark.integration  # the store is ingested through the real broker
def test_the_vocabularies_section_counts_values_no_vocabulary_knows_in_the_runs_records(store, tmp_path):
    copy = RunStore(tmp_path / "store")
    shutil.copytree(store.root, copy.root, symlinks=True)
    run = _register_dir(store).name
    before = _vocabulary_rows(render_report(build_context(copy, run)))
    assert list(before) == [
        "registration.industry_code", "registration.status", "tax.taxpayer_status", "registration.entity_type",
        "utility.customer_class",
    ]  # fmt: skip
    folder = copy.register_run_dir(run) / "state" / "records"
    for feed in {feed for feed, _ in PLANTED}:
        table = pq.read_table(folder / f"{feed}.parquet")
        for (of_feed, column), values in PLANTED.items():
            if of_feed == feed:
                kept = table[column].to_pylist()[len(values) :]
                table = table.set_column(
                    table.schema.get_field_index(column), column, pa.array(values + kept)
                )
        pq.write_table(table, folder / f"{feed}.parquet")
    page = render_report(build_context(copy, run))
    section = _section(page, "vocabularies")
    assert "resolution state" in section
    after = _vocabulary_rows(page)
    for (feed, column), values in PLANTED.items():
        row, earlier = after[f"{feed}.{column}"], before[f"{feed}.{column}"]
        planted = {value: values.count(value) for value in values}
        assert int(row[3].replace(",", "")) >= len(planted)
        assert int(row[4].replace(",", "")) >= len(values)
        for value, count in planted.items():
            assert f"{value} ({count})" in row[6], (value, row)
        assert all(value not in earlier[6] for value in planted)
    # a run whose state was pruned reads the staged records, where nothing was planted
    shutil.rmtree(folder.parent)
    pruned = render_report(build_context(copy, run))
    assert "state was pruned" in _section(pruned, "vocabularies")
    assert not any(
        value in _section(pruned, "vocabularies") for values in PLANTED.values() for value in values
    )


# -- the accuracy section ----------------------------------------------------------------------------------


def _with_metas(store: RunStore, tmp_path: Path, change: Callable[[str, dict], None]) -> RunStore:
    """A copy of the store whose register runs' ``_meta.json`` ``change(run, meta)`` edited in place."""
    copy = RunStore(tmp_path / "store")
    shutil.copytree(store.root, copy.root, symlinks=True)
    for run in copy.register_runs():
        path = copy.register_run_dir(run) / "_meta.json"
        meta = json.loads(path.read_text(encoding="utf-8"))
        change(run, meta)
        path.write_text(json.dumps(meta), encoding="utf-8")
    return copy


def _staged_ids(store: RunStore, manifests: list[dict]) -> dict[str, set[str]]:
    """Record ids per feed in the staged files of these ingest runs, read file by file."""
    ids: dict[str, set[str]] = {feed: set() for feed in load_contracts()}
    for manifest in manifests:
        for feed, stats in manifest["feeds"].items():
            for name in stats.get("files", []):
                ids[feed] |= set(
                    pq.read_table(store.root / name, columns=["record_id"])["record_id"].to_pylist()
                )
    return ids


def _in_a_unit(run_dir: Path) -> Counter:
    """Records per feed linked to a unit in a register run's links table."""
    links = pq.read_table(run_dir / "links.parquet", columns=["feed", "record_id", "unit_id"]).to_pylist()
    return Counter(
        feed for feed, _ in {(link["feed"], link["record_id"]) for link in links if link["unit_id"]}
    )


@pytest.mark.integration  # the store is ingested through the real broker
def test_the_accuracy_section_shows_each_feeds_records_in_a_unit_and_in_review(store):
    manifests, reviewed = store.manifests(), 0
    for run in store.register_runs():  # each as its own report, against the records of its ingest run
        run_dir = store.register_run_dir(run)
        page = render_report(build_context(store, run))
        ingest_run = store.register_meta(run_dir)["inputs"]["ingest_run"]
        staged = _staged_ids(store, [m for m in manifests if m["run_id"] <= ingest_run])
        records = {feed: len(ids) for feed, ids in staged.items()}
        linked = _in_a_unit(run_dir)
        review = pq.read_table(run_dir / "review.parquet", columns=["feed", "reason"])
        in_review, reasons = Counter(review["feed"].to_pylist()), Counter(review["reason"].to_pylist())
        assert all(records.values()) and linked["nucleic_contact"] > 0  # the test records are there too
        assert any(linked[feed] < total for feed, total in records.items())
        reviewed += review.num_rows

        rows = {row[0].split()[0]: row[1:] for row in _table(page, "accuracy-feeds")}
        assert list(rows) == [*load_contracts(), "all"]
        for feed, total in records.items():
            assert rows[feed] == [
                f"{total:,}",
                f"{linked[feed]:,}",
                f"{100 * linked[feed] / total:.1f} %",
                f"{in_review[feed]:,}",
                f"{100 * in_review[feed] / total:.2f} %",
            ], (run, feed)
        everything, in_unit = sum(records.values()), sum(linked.values())
        assert rows["all"] == [
            f"{everything:,}",
            f"{in_unit:,}",
            f"{100 * in_unit / everything:.1f} %",
            f"{review.num_rows:,}",
            f"{100 * review.num_rows / everything:.2f} %",
        ]
        if not reasons:
            assert "no review items" in _section(page, "accuracy")
        by_reason = {row[0].split()[0]: row[1:] for row in _table(page, "review-reasons")} if reasons else {}
        assert by_reason == {
            reason: [f"{n:,}", f"{100 * n / review.num_rows:.1f} %", f"{100 * n / everything:.2f} %"]
            for reason, n in reasons.items()
        }
        summary = _listed(page, "accuracy")
        assert summary["in a unit"] == f"{in_unit:,} ({100 * in_unit / everything:.1f} %)"
        share = f"{100 * review.num_rows / everything:.2f} % of records"
        assert summary["review items"] == f"{review.num_rows:,} ({share})"
    assert reviewed > 0

    # over the register runs: records staged up to each run's ingest run, its links and review tables
    page = render_report(build_context(store, "reg-000003"))
    trend = {row[0]: row[1:6] for row in _table(page, "accuracy-runs")}
    assert list(trend) == ["reg-000003", "reg-000002", "reg-000001"]
    for run, row in trend.items():
        ingest_run = store.register_meta(store.register_run_dir(run))["inputs"]["ingest_run"]
        upto = [m for m in manifests if m["run_id"] <= ingest_run]
        staged = sum(len(ids) for ids in _staged_ids(store, upto).values())
        in_unit = sum(_in_a_unit(store.register_run_dir(run)).values())
        items = pq.read_metadata(store.register_run_dir(run) / "review.parquet").num_rows
        assert row == [
            f"{staged:,}",
            f"{in_unit:,}",
            f"{100 * in_unit / staged:.1f} %",
            f"{items:,}",
            f"{100 * items / staged:.2f} %",
        ], run
    assert trend["reg-000001"][0] != trend["reg-000003"][0]  # the first register saw half the records


@pytest.mark.integration  # the store is ingested through the real broker
def test_review_items_are_aged_in_register_runs_and_days_since_the_run_that_last_changed_them(
    store, tmp_path
):
    last = datetime.datetime.fromisoformat(store.register_meta(_register_dir(store))["created_at"])
    days_before = {"reg-000001": 10, "reg-000002": 3, "reg-000003": 0}

    def backdate(run: str, meta: dict) -> None:
        meta["created_at"] = (last - datetime.timedelta(days=days_before[run])).isoformat()

    copy = _with_metas(store, tmp_path, backdate)
    planted = ["reg-000001", "reg-000001", "reg-000002", "reg-000003", "reg-000003", None, "reg-000001"]
    items = [
        {"review_id": f"i{n}", "feed": "tax", "record_id": f"r{n}", "reason": "uncertain_link", "run_id": run}
        for n, run in enumerate(planted)
    ]
    path = copy.register_run_dir("reg-000003") / "review.parquet"
    pq.write_table(pa.Table.from_pylist(items, schema=output_schema("review")), path)
    page = render_report(build_context(copy, "reg-000003"))
    ages = {row[0]: row[1:] for row in _table(page, "review-ages")}
    n = len(planted)
    assert ages == {
        "0 (this run)": ["2", f"{100 * 2 / n:.1f} %", "0 d"],
        "1": ["1", f"{100 / n:.1f} %", "3 d"],
        "2–3": ["3", f"{100 * 3 / n:.1f} %", "10 d"],
        "4–7": ["0", "0.0 %", "–"],
        "≥ 8": ["0", "0.0 %", "–"],
        "run not known": ["1", f"{100 / n:.1f} %", "–"],
    }
    assert _listed(page, "accuracy")["oldest review item"] == "at least 2 run(s), 10 d"
    assert "at least this old" in _section(page, "accuracy")


LABELLED = {  # register run → the labelled figures its meta carries (pipelines.resolve.labels)
    "reg-000002": {"pairs": 40, "matches": 25, "precision": 0.9, "recall": 0.72, "f1": 0.8, "threshold": 0.9},
    "reg-000003": {
        "pairs": 64,
        "matches": 37,
        "precision": 0.974,
        "recall": 1.0,
        "f1": 0.98684,
        "threshold": 0.9,
    },
}


@pytest.mark.integration  # the store is ingested through the real broker
def test_labelled_precision_and_recall_show_for_the_run_and_across_runs(store, tmp_path):
    def label(run: str, meta: dict) -> None:
        meta.pop("accuracy", None)
        if run in LABELLED:
            meta["accuracy"] = {"labelled": LABELLED[run]}

    page = write_report(_with_metas(store, tmp_path, label), "reg-000003").read_text(encoding="utf-8")
    figures = LABELLED["reg-000003"]
    listed = _listed(page, "accuracy")
    assert {k: listed[k] for k in ("labelled pairs", "of them one unit", "precision", "recall", "F1")} == {
        "labelled pairs": f"{figures['pairs']:,}",
        "of them one unit": f"{figures['matches']:,}",
        "precision": f"{figures['precision']:.3f}",
        "recall": f"{figures['recall']:.3f}",
        "F1": f"{figures['f1']:.3f}",
    }
    assert (listed["labelled precision"], listed["labelled recall"]) == ("0.974", "1.000")
    assert "no labelled pairs yet" not in _section(page, "accuracy")
    trend = {row[0]: row[-4:] for row in _table(page, "accuracy-runs")}
    for run, row in trend.items():
        f = LABELLED.get(run)
        expected = (
            [f"{f['pairs']:,}", *(f"{f[k]:.3f}" for k in ("precision", "recall", "f1"))] if f else ["–"] * 4
        )
        assert row == expected, run
    tips = re.findall(r"<circle [^>]*><title>(precision.*?|recall.*?)</title>", _section(page, "accuracy"))
    assert tips == [
        *(f"precision (labelled) #{run[-1]}: {100 * f['precision']:.1f} %" for run, f in LABELLED.items()),
        *(f"recall (labelled) #{run[-1]}: {100 * f['recall']:.1f} %" for run, f in LABELLED.items()),
    ]


@pytest.mark.integration  # the store is ingested through the real broker
def test_runs_without_labelled_pairs_say_so(store, tmp_path):
    def unlabelled(run: str, meta: dict) -> None:
        meta.pop("accuracy", None)  # kept before runs measured them, or none labelled yet
        if run == "reg-000003":
            meta["accuracy"] = {"labelled": {**LABELLED[run], "pairs": 0, "precision": None, "recall": None}}

    page = write_report(_with_metas(store, tmp_path, unlabelled), "reg-000003").read_text(encoding="utf-8")
    section = _section(page, "accuracy")
    assert "no labelled pairs yet" in section
    listed = _listed(page, "accuracy")
    assert "labelled pairs" not in listed
    assert (listed["labelled precision"], listed["labelled recall"]) == ("–", "–")
    assert [row[-4:] for row in _table(page, "accuracy-runs")] == [["–"] * 4] * 3
    assert "<circle" in section and "precision (labelled) #" not in section  # only the share in a unit


@pytest.mark.integration  # the store is ingested through the real broker
def test_the_verdicts_a_run_received_applied_and_could_not_apply(store, tmp_path):
    unapplied = [
        {"verdict_id": "v-2", "decision": "same_unit", "about": "r-x", "decided_by": "t", "decided_at": "x",
         "reason": "record not in the register"},
        {"verdict_id": "v-9", "decision": "new_unit", "about": "r-y", "decided_by": "t", "decided_at": "x",
         "reason": "decided_at in the future (t.csv)"},
    ]  # fmt: skip

    def verdicts(run: str, meta: dict) -> None:
        meta["verdicts"] = {"in_force": 7, "unapplied": unapplied}
        meta["stats"]["unknown_verdicts"] = 1  # v-2: in force, not applied; v-9 was set aside

    page = write_report(_with_metas(store, tmp_path, verdicts), "reg-000003").read_text(encoding="utf-8")
    listed = _listed(page, "accuracy")
    assert [listed[k] for k in ("verdicts in force", "verdicts applied", "in force, not applied")] == [
        "7",
        "6",
        "1",
    ]
    assert listed["set aside (dated in the future)"] == "1"
    assert [row[6:8] for row in _table(page, "accuracy-runs")] == [["7", "6"]] * 3  # every run
    assert [row[0] for row in _table(page, "unapplied")] == ["v-2", "v-9"]  # named in the verdicts section
