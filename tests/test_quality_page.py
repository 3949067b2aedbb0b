"""The data-quality page says what a run is: passed, passed with N warnings, or blocked (naming the feeds).
Read in headless Chromium from the file, as people open it: a run with warnings must not look clean, and
the page fetches nothing (Great Expectations' own Data Docs load their CSS and scripts from CDNs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.quality.outcomes import ExpectationOutcome, FeedQuality
from pipelines.quality.report import write_quality_reports

CHROMIUM = "/usr/bin/chromium"  # as in tests/test_report.py
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
GREEN, AMBER, RED = "rgb(26, 127, 55)", "rgb(154, 103, 0)", "rgb(207, 34, 46)"


def _outcome(feed: str, severity: str, success: bool, column: str = "address") -> ExpectationOutcome:
    return ExpectationOutcome(
        feed=feed,
        expectation_type="expect_column_values_to_not_be_null",
        column=column,
        severity=severity,  # type: ignore[arg-type]
        success=success,
        why="addresses route items to townships",
        message=f"{feed}.{column}: {'ok' if success else 'too many nulls'}",
        unexpected_count=0 if success else 7,
        unexpected_percent=0.0 if success else 3.5,
    )


def _feed(feed: str, warnings: int = 0, blocks: int = 0) -> FeedQuality:
    outcomes = [_outcome(feed, "block", True), _outcome(feed, "warn", True, "phone")]
    outcomes += [_outcome(feed, "warn", False, f"warned_{i}") for i in range(warnings)]
    outcomes += [_outcome(feed, "block", False, f"blocked_{i}") for i in range(blocks)]
    return FeedQuality(feed=feed, rows=200, outcomes=outcomes)


RUNS = {
    "clean": ([_feed("tax"), _feed("utility")], "passed", GREEN),
    "three warnings": (
        [_feed("tax", warnings=2), _feed("utility", warnings=1)],
        "passed with 3 warnings",
        AMBER,
    ),
    "one warning": ([_feed("tax"), _feed("utility", warnings=1)], "passed with 1 warning", AMBER),
    "blocked": ([_feed("tax", warnings=2), _feed("utility", blocks=1)], "blocked: utility", RED),
}


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.mark.parametrize("case", list(RUNS), ids=list(RUNS))
def test_the_badge_says_passed_with_warnings_or_blocked_in_headless_chromium(browser, tmp_path, case):
    results, status, colour = RUNS[case]
    _, html_path = write_quality_reports(results, tmp_path / "dq", "run-000007")
    page = browser.new_page()  # type: ignore[attr-defined]
    page.set_default_timeout(5000)  # a local file: anything missing is missing, no need to wait
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    try:
        page.goto(html_path.as_uri())
        badge = page.locator("h1 .badge")
        assert badge.inner_text() == status
        assert badge.evaluate("e => getComputedStyle(e).backgroundColor") == colour
        assert page.title() == f"Data quality run-000007: {status}"
        for quality in results:
            feed_badge = page.locator(f"section#feed-{quality.feed} h2 .badge").inner_text()
            warned = len(quality.warnings)
            assert feed_badge == (
                "blocked"
                if quality.blocking_failures
                else f"passed with {warned} warning{'s' * (warned != 1)}"
                if warned
                else "passed"
            )
    finally:
        page.close()
    assert requests == [html_path.as_uri()]  # nothing fetched from anywhere else
