"""Validate a staged table against its feed's suite with Great Expectations 1.x.

GE is imported on first use (15 s, 270 MB) and its ephemeral context, suites and batch definitions are
built once per process, so a Beam worker or an Airflow task pays for the import once. What comes back is
plain data (``FeedQuality``) with the values of personal fields removed, so nothing downstream can leak them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:
    import pandas as pd

from pipelines.contracts import contract
from pipelines.quality.outcomes import ExpectationOutcome, FeedQuality, json_safe
from pipelines.quality.suites import (
    check_suite,
    expectation_columns,
    load_suite,
    min_rows,
    min_rows_for_shares,
)

# SUMMARY gives counts and a few unexpected values without listing every bad row of a 100k-row batch. It
# leaves out the query that selects the unexpected rows, but GE builds that query unless told not to.
RESULT_FORMAT = {
    "result_format": "SUMMARY",
    "partial_unexpected_count": 10,
    "return_unexpected_index_query": False,
}
SAMPLE_SIZE = 5
# Clock skew allowed before a date or timestamp counts as "in the future".
FUTURE_SLACK = timedelta(days=1)
# Kwargs that say where an expectation looks rather than what it expects.
_LOCATION_KWARGS = frozenset({"batch_id", "column", "column_A", "column_B", "column_list", "column_set"})

_lock = threading.Lock()


class SuiteError(ValueError):
    """A suite file does not fit its feed's contract: a deployment mistake, not bad data."""


class _Engine:
    """One ephemeral GE context with a pandas data source and one suite + batch definition per feed."""

    def __init__(self) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self._gx = gx
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        self._source = self.context.data_sources.add_pandas("staging")
        self._feeds: dict[str, tuple[Any, Any, dict[str, Any]]] = {}

    def feed(self, feed: str) -> tuple[Any, Any, dict[str, Any]]:
        """(GE suite, batch definition, suite JSON) of a feed, built on first use."""
        if feed not in self._feeds:
            problems = check_suite(feed)
            if problems:
                raise SuiteError("\n".join(problems))
            raw = load_suite(feed)
            suite = self.context.suites.add(self._gx.ExpectationSuite(**raw))
            asset = self._source.add_dataframe_asset(feed)
            self._feeds[feed] = (suite, asset.add_batch_definition_whole_dataframe("whole"), raw)
        return self._feeds[feed]


@cache
def _engine() -> _Engine:
    return _Engine()


def preload(feeds: Iterable[str] = ()) -> None:
    """Import GE and build the suites now (e.g. in a DoFn's ``setup``) rather than in the first validation."""
    with _lock:
        engine = _engine()
        for feed in feeds:
            engine.feed(feed)


def suite_parameters(suite: dict[str, Any], previous_rows: int | None, now: datetime) -> dict[str, Any]:
    """Values for the suite's ``$PARAMETER`` placeholders at this run."""
    latest = now.astimezone(UTC) + FUTURE_SLACK
    return {
        "min_rows": min_rows(suite, previous_rows),
        "max_date": latest.date().isoformat(),
        "max_timestamp": latest.isoformat(),
    }


def validate_feed(
    feed: str,
    table: pa.Table | pd.DataFrame,
    previous_rows: int | None,
    *,
    now: datetime | None = None,
) -> FeedQuality:
    """Validate one feed's staged rows; ``previous_rows`` (the last committed run's count) sets the volume
    floor, and ``None`` means no previous run, so the volume check passes."""
    started = time.monotonic()
    frame = _to_pandas(table)
    converting = time.monotonic() - started
    with _lock:
        suite, definition, raw = _engine().feed(feed)  # the first call imports GE: not part of the timing
        started = time.monotonic() - converting
        parameters = suite_parameters(raw, previous_rows, now or datetime.now(UTC))
        batch = definition.get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(suite, result_format=RESULT_FORMAT, expectation_parameters=parameters)
        order = {expectation.id: i for i, expectation in enumerate(suite.expectations)}
    personal = frozenset(f.name for f in contract(feed).personal_fields)
    ge_result = scrub_personal(result.to_json_dict(), personal)
    results = sorted(
        ge_result["results"], key=lambda r: order.get(r["expectation_config"].get("id"), len(order))
    )
    small = len(frame) < min_rows_for_shares(raw)
    return FeedQuality(
        feed=feed,
        rows=len(frame),
        outcomes=[_outcome(feed, r, personal, small_batch=small) for r in results],
        previous_rows=previous_rows,
        parameters=parameters,
        seconds=time.monotonic() - started,
        ge_result=ge_result,
    )


def _to_pandas(table: pa.Table | pd.DataFrame) -> pd.DataFrame:
    import pandas as pd  # here, not at the top: the job imports this package before pandas (4 s) is needed

    if isinstance(table, pd.DataFrame):
        return table
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    if isinstance(table, pa.Table):
        # GE's pandas source rejects Arrow tables. One chunk per column: GE filters the whole frame once
        # per expectation, and taking rows out of many chunks (one per row group read) is slower.
        return table.combine_chunks().to_pandas()
    raise TypeError(f"expected a pyarrow Table or a pandas DataFrame, got {type(table).__name__}")


def _is_value_key(key: str) -> bool:
    """Result keys that carry data values (not counts or row indexes)."""
    return key in {"observed_value", "details"} or (key.endswith(("_list", "_counts")) and "index" not in key)


def scrub_personal(ge_result: dict[str, Any], personal: frozenset[str]) -> dict[str, Any]:
    """GE's result as plain JSON, without values of personal columns (they would be clear data if a
    tokenisation had failed, which is exactly what the token check catches)."""
    for r in ge_result.get("results", []):
        if personal.intersection(expectation_columns(r["expectation_config"].get("kwargs", {}))):
            r["result"] = {k: v for k, v in (r.get("result") or {}).items() if not _is_value_key(k)}
    return json_safe(ge_result)


def _exception_message(info: Any) -> str | None:
    """First line of the error GE caught, whether keyed by metric or flat."""
    if not isinstance(info, dict):
        return None
    entries = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    for entry in entries:
        if entry.get("raised_exception"):
            text = str(entry.get("exception_message") or "error").strip()
            return text.splitlines()[0][:300] if text else "error"
    return None


def _outcome(
    feed: str, r: dict[str, Any], personal: frozenset[str], *, small_batch: bool = False
) -> ExpectationOutcome:
    config = r["expectation_config"]
    kwargs = config.get("kwargs", {})
    meta = config.get("meta") or {}
    severity, note = meta.get("severity", "block"), None
    if small_batch and severity == "block" and kwargs.get("mostly") is not None:
        severity, note = "warn", "block only on larger batches: too few rows to judge a share"
    columns = expectation_columns(kwargs)
    result = r.get("result") or {}
    is_personal = bool(personal.intersection(columns))
    success = bool(r.get("success"))
    # Examples help whoever fixes the source; a null is no example, and personal values never leave.
    wants_sample = not (success or is_personal or config["type"].endswith("not_be_null"))
    sample = list(result.get("partial_unexpected_counts") or [])[:SAMPLE_SIZE] if wants_sample else []
    outcome = ExpectationOutcome(
        feed=feed,
        expectation_type=config["type"],
        column=", ".join(columns) or None,
        severity=severity,
        success=success,
        why=str(meta.get("why", "")),
        message="",
        unexpected_count=result.get("unexpected_count"),
        unexpected_percent=result.get("unexpected_percent"),
        observed_value=None if is_personal else result.get("observed_value"),
        kwargs={k: v for k, v in kwargs.items() if k not in _LOCATION_KWARGS},
        sample_unexpected=sample,
        exception=_exception_message(r.get("exception_info")),
        note=note,
    )
    return _with_message(outcome, result)


def _with_message(o: ExpectationOutcome, result: dict[str, Any]) -> ExpectationOutcome:
    head = f"{o.feed}: {o.expectation_type}" + (f"({o.column})" if o.column else "")
    text = f"{head} {'passed' if o.success else 'FAILED'} [{o.severity}]"
    detail = _detail(o, result)
    if detail:
        text += f": {detail}"
    if not o.success and o.why:
        text += f" — {o.why}"
    if not o.success and o.note:
        text += f" ({o.note})"
    return replace(o, message=text)


def _detail(o: ExpectationOutcome, result: dict[str, Any]) -> str:
    if o.exception:
        return f"could not be evaluated: {o.exception}"
    if o.expectation_type == "expect_table_row_count_to_be_between":
        bounds = [f"at least {o.kwargs['min_value']}" if o.kwargs.get("min_value") is not None else ""]
        bounds.append(f"at most {o.kwargs['max_value']}" if o.kwargs.get("max_value") is not None else "")
        expected = " and ".join(b for b in bounds if b) or "any number"
        return f"{o.observed_value} rows, expected {expected}"
    if o.expectation_type == "expect_table_columns_to_match_set":
        missing = ((result.get("details") or {}).get("mismatched") or {}).get("missing") or []
        return f"missing columns: {', '.join(map(str, missing))}" if missing else ""
    if o.unexpected_count is not None:
        if not result.get("element_count"):
            return "no rows"
        counted = result["element_count"] - (result.get("missing_count") or 0)
        unit = "rows" if o.expectation_type.endswith("not_be_null") else "non-null values"
        percent = o.unexpected_percent or 0.0
        text = f"{o.unexpected_count} of {counted} {unit} unexpected ({percent:.1f}%"
        mostly = o.kwargs.get("mostly")
        text += f", allowed {100 * (1 - mostly):.0f}%)" if mostly is not None else ", allowed none)"
        return text
    if o.observed_value is not None:
        return f"observed {o.observed_value}"
    return ""
