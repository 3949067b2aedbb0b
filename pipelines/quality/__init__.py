"""Data quality of staged feeds: GE suites from ``expectations/``, block/warn outcomes, run reports.

Importing this package does not import Great Expectations (15 s); the first ``validate_feed`` or
``preload`` call does, once per process, and a ``QualityWorker`` does it in a child process ahead of time.
"""

from pipelines.quality.outcomes import (
    BlockingQualityError,
    ExpectationOutcome,
    FeedQuality,
    raise_if_blocking,
)
from pipelines.quality.report import write_quality_reports
from pipelines.quality.suites import check_suite, load_suite
from pipelines.quality.validate import SuiteError, preload, validate_feed
from pipelines.quality.worker import QualityWorker, shared_worker, stop_shared_worker

__all__ = [
    "BlockingQualityError",
    "ExpectationOutcome",
    "FeedQuality",
    "QualityWorker",
    "SuiteError",
    "check_suite",
    "load_suite",
    "preload",
    "raise_if_blocking",
    "shared_worker",
    "stop_shared_worker",
    "validate_feed",
    "write_quality_reports",
]
