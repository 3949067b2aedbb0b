"""What a validation found, as plain data: easy to serialise for manifests, reports and ops alerts."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pipelines.quality.suites import Severity


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation of one feed's suite, validated. Never holds values of personal fields."""

    feed: str
    expectation_type: str
    column: str | None
    severity: Severity
    success: bool
    why: str
    message: str
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    observed_value: Any = None
    # The thresholds the data was held to (mostly, min/max, value set...), parameters already filled in.
    kwargs: dict[str, Any] = field(default_factory=dict)
    # A few unexpected values with their counts; always empty for personal fields.
    sample_unexpected: list[dict[str, Any]] = field(default_factory=list)
    exception: str | None = None
    # Why the severity differs from the suite's, e.g. a block share check on too few rows to judge.
    note: str | None = None

    @property
    def blocking(self) -> bool:
        return not self.success and self.severity == "block"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExpectationOutcome:
        """Back from ``to_dict`` (a manifest, an XCom)."""
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "feed": self.feed,
                "expectation_type": self.expectation_type,
                "column": self.column,
                "severity": self.severity,
                "success": self.success,
                "why": self.why,
                "message": self.message,
                "unexpected_count": self.unexpected_count,
                "unexpected_percent": self.unexpected_percent,
                "observed_value": self.observed_value,
                "kwargs": self.kwargs,
                "sample_unexpected": self.sample_unexpected,
                "exception": self.exception,
                "note": self.note,
            }
        )


@dataclass
class FeedQuality:
    """A feed's validation: its outcomes in suite order, and what the volume check was held to."""

    feed: str
    rows: int
    outcomes: list[ExpectationOutcome]
    previous_rows: int | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    # GE's own validation result (``to_json_dict()``), with values of personal fields removed.
    ge_result: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    @property
    def blocking_failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if o.blocking]

    @property
    def warnings(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success and o.severity == "warn"]

    @property
    def ok(self) -> bool:
        """True when nothing blocks: warnings let the data through."""
        return not self.blocking_failures

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "feed": self.feed,
                "rows": self.rows,
                "previous_rows": self.previous_rows,
                "ok": self.ok,
                "evaluated": len(self.outcomes),
                "blocking_failures": len(self.blocking_failures),
                "warnings": len(self.warnings),
                "parameters": self.parameters,
                "seconds": round(self.seconds, 3),
                "outcomes": [o.to_dict() for o in self.outcomes],
            }
        )


class BlockingQualityError(Exception):
    """A ``block`` expectation failed: the feed's batch is held back (its offsets stay), the other feeds land.

    ``batches`` says, per blocked feed, what an operator and an alert need: the offset ranges, row counts and
    the data-quality report (``report_path``: absolute). ``run_id`` is the run that found it and ``landed``
    the feeds that run committed."""

    def __init__(
        self,
        failures: list[ExpectationOutcome],
        batches: dict[str, dict[str, Any]] | None = None,
        run_id: str | None = None,
        landed: list[str] | None = None,
        hint: str | None = None,
    ) -> None:
        self.failures = failures
        self.batches = batches or {}
        self.run_id = run_id
        self.landed = landed or []
        feeds = sorted({f.feed for f in failures})
        lines = [f"data quality blocks {', '.join(feeds)} ({len(failures)} failed block expectation(s)):"]
        lines += [f"  - {f.message}" for f in failures]
        if batches is not None:
            landed = f"{', '.join(self.landed)} landed in {run_id}" if self.landed else "nothing else landed"
            lines.append(f"  (held back and read again next run; {landed})")
        if hint:
            lines.append(f"  next: {hint}")
        super().__init__("\n".join(lines))

    @classmethod
    def from_batches(
        cls,
        batches: dict[str, dict[str, Any]],
        run_id: str | None = None,
        landed: list[str] | None = None,
        hint: str | None = None,
    ) -> BlockingQualityError:
        """The error of blocked batches as recorded (each with its ``failures`` as dicts)."""
        failures = [
            ExpectationOutcome.from_dict(f)
            for batch in batches.values()
            for f in batch["failures"]
            if f["severity"] == "block"
        ]
        return cls(failures, batches=batches, run_id=run_id, landed=landed, hint=hint)

    @property
    def feeds(self) -> list[str]:
        return sorted({f.feed for f in self.failures})


def raise_if_blocking(results: Iterable[FeedQuality]) -> None:
    """Raise ``BlockingQualityError`` naming every failed block expectation of every feed."""
    failures = [outcome for quality in results for outcome in quality.blocking_failures]
    if failures:
        raise BlockingQualityError(failures)


def json_safe(value: Any) -> Any:
    """Plain JSON types only: NaN and infinities become null, dates ISO strings, numpy scalars Python ones."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return json_safe(float(value))
    if type(value).__name__ in {"NAType", "NaTType"}:  # pandas missing values
        return None
    if hasattr(value, "isoformat"):  # pandas Timestamp
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalar
        try:
            return json_safe(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)
