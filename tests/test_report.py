"""The run report: a self-contained page whose figures are the run's, opened in headless Chromium."""

from __future__ import annotations

import functools
import json
import re
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.parquet as pq
import pytest

from pipelines.config import IngestSettings, default_topics
from pipelines.contracts import contract, load_contracts, output_schema
from pipelines.generate import generate
from pipelines.ingest.job import run_ingest
from pipelines.kafka import produce_messages
from pipelines.landing import resolve_and_land
from pipelines.malformed import malformed_messages
from pipelines.ops.report import bar_chart, column_chart, fmt_change, fmt_num, fmt_seconds, write_report
from pipelines.pii import HMAC_KEY_ENV
from pipelines.staging import latest_records
from pipelines.store import RunStore

KEY = "report-test-key-0123456789"  # the module's store is built once, outside the per-test key
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
    "divisions": "Review and warnings by division",
    "flags": "Flags",
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


def _send(bootstrap: str, topic: str, lines: list[bytes], extra: list[tuple[bytes, bytes]]) -> None:
    produce_messages(
        bootstrap, topic, [(json.loads(line)["record_id"].encode(), line) for line in lines] + extra
    )


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report-sample")
    generate(units=120, seed=23, out_dir=out)
    return out


@pytest.fixture(scope="module")
def store(broker, sample: Path, tmp_path_factory: pytest.TempPathFactory) -> RunStore:
    """Two ingest runs through the real broker (the second with malformed messages), then a register."""
    store = RunStore(tmp_path_factory.mktemp("report-store"))
    topics = default_topics("report.")
    settings = IngestSettings(bootstrap=broker.bootstrap, out=store.root, topics=topics)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(HMAC_KEY_ENV, KEY)
        lines = {feed: (sample / f"{feed}.jsonl").read_bytes().splitlines() for feed in load_contracts()}
        for feed, feed_lines in lines.items():
            _send(broker.bootstrap, topics[feed], feed_lines[: len(feed_lines) // 2], [])
        assert run_ingest(settings).committed
        for feed, feed_lines in lines.items():
            bad = [(key, value) for key, value, _ in malformed_messages(contract(feed), tag="report")]
            _send(broker.bootstrap, topics[feed], feed_lines[len(feed_lines) // 2 :], bad)
        assert run_ingest(settings).committed
        assert resolve_and_land(store) is not None
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

            # timings of both parts
            timings = page.locator("section#timings").inner_text()
            meta = json.loads((register_dir / "_meta.json").read_text(encoding="utf-8"))
            for stage in [*manifest["timings_s"], *meta["timings_s"]]:
                assert stage in timings
        finally:
            browser.close()
    assert requests and all(urlparse(url).hostname == "127.0.0.1" for url in requests), requests
