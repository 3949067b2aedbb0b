"""Expectation suites as versioned JSON under ``expectations/``: loading and checking them without GE.

The suite files are plain Great Expectations 1.x suite JSON. Each expectation carries
``meta: {"severity": "block" | "warn", "why": ...}``; a failed ``block`` expectation stops a run before it
is committed, a failed ``warn`` expectation is only recorded. Checking the files needs no GE import (15 s),
so CI and ``validate_feed`` catch a suite that names a column the contract no longer has.
"""

from __future__ import annotations

import copy
import json
import math
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pipelines import resources
from pipelines.contracts import contract

EXPECTATIONS_DIR = resources.EXPECTATIONS

Severity = Literal["block", "warn"]
SEVERITIES: tuple[Severity, ...] = ("block", "warn")
# GE 1.x has its own severity field; keep it in step with ours so GE's JSON and renderers agree.
GE_SEVERITY = {"block": "critical", "warn": "warning"}

# The suite parameters that validate_feed fills at each call.
SUITE_PARAMETERS = ("min_rows", "max_date", "max_timestamp")
DEFAULT_MIN_ROWS_RATIO = 0.2
# Below this many rows, shares (``mostly``) say little: 1 bad row of 3 is 33%. Such block failures only warn.
DEFAULT_MIN_ROWS_FOR_SHARES = 50


def suite_path(feed: str, directory: Path = EXPECTATIONS_DIR) -> Path:
    return directory / f"{feed}.json"


@cache
def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def load_suite(feed: str, directory: Path = EXPECTATIONS_DIR) -> dict[str, Any]:
    """The feed's suite as a dict ready for ``gx.ExpectationSuite(**suite)``, GE severity filled in."""
    suite = copy.deepcopy(_read(suite_path(feed, directory)))
    for expectation in suite["expectations"]:
        severity = expectation.get("meta", {}).get("severity")
        if severity in GE_SEVERITY:
            expectation["severity"] = GE_SEVERITY[severity]
    return suite


def expectation_columns(kwargs: dict[str, Any]) -> tuple[str, ...]:
    """Columns an expectation reads (single column, column pair or column list)."""
    if "column" in kwargs:
        return (kwargs["column"],)
    if "column_A" in kwargs:
        return (kwargs["column_A"], kwargs["column_B"])
    return tuple(kwargs.get("column_list", ()))


def min_rows_ratio(suite: dict[str, Any]) -> float:
    return float(suite.get("meta", {}).get("min_rows_ratio", DEFAULT_MIN_ROWS_RATIO))


def min_rows_for_shares(suite: dict[str, Any]) -> int:
    return int(suite.get("meta", {}).get("min_rows_for_shares", DEFAULT_MIN_ROWS_FOR_SHARES))


def min_rows(suite: dict[str, Any], previous_rows: int | None) -> int:
    """Least row count that does not warn: a share of the previous run's rows, 0 without a previous run."""
    if not previous_rows:
        return 0
    return math.ceil(min_rows_ratio(suite) * previous_rows)


def check_suite(feed: str, directory: Path = EXPECTATIONS_DIR) -> list[str]:
    """Problems of a suite file (empty when fine): severities, reasons, columns against the contract."""
    columns = set(contract(feed).staging_schema().names)  # an unknown feed fails here, naming the known ones
    path = suite_path(feed, directory)
    if not path.is_file():
        return [f"{feed}: no suite file {path}"]
    suite = _read(path)
    problems: list[str] = []
    if suite.get("name") != feed:
        problems.append(f"{feed}: suite name is {suite.get('name')!r}")
    if not suite.get("expectations"):
        problems.append(f"{feed}: suite has no expectations")
    for i, expectation in enumerate(suite.get("expectations", [])):
        where = f"{feed}[{i}] {expectation.get('type')}"
        meta = expectation.get("meta") or {}
        if meta.get("severity") not in SEVERITIES:
            problems.append(
                f"{where}: meta.severity must be one of {SEVERITIES}, not {meta.get('severity')!r}"
            )
        if not str(meta.get("why") or "").strip():
            problems.append(f"{where}: meta.why is missing")
        kwargs = expectation.get("kwargs") or {}
        for column in expectation_columns(kwargs):
            if column not in columns:
                problems.append(f"{where}: column {column!r} is not in the staging schema")
        for name in kwargs.get("column_set", ()):
            if name not in columns:
                problems.append(f"{where}: column_set names {name!r}, not in the staging schema")
        for value in kwargs.values():
            if (
                isinstance(value, dict)
                and "$PARAMETER" in value
                and value["$PARAMETER"] not in SUITE_PARAMETERS
            ):
                problems.append(f"{where}: unknown suite parameter {value['$PARAMETER']!r}")
    return problems
