"""Settings of a deployment, as plain data. Local demo, tests and production differ here only."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.contracts import load_contracts

DEFAULT_RUNNER = "FnApiRunner"  # in-process, no download attempt; pass --runner=FlinkRunner etc. to scale out
DEFAULT_MAX_RANGE = 50_000  # offsets read by one worker bundle


def default_topics(prefix: str | None = None) -> dict[str, str]:
    """Feed → topic. ``UNITFUSION_TOPIC_PREFIX`` changes the default ``feeds.`` prefix; a contract's own
    ``topic`` is used when no prefix is given."""
    prefix = prefix if prefix is not None else os.environ.get("UNITFUSION_TOPIC_PREFIX")
    contracts = load_contracts()
    return {feed: (f"{prefix}{feed}" if prefix else c.topic) for feed, c in contracts.items()}


@dataclass(frozen=True)
class IngestSettings:
    bootstrap: str
    out: Path
    topics: dict[str, str] = field(default_factory=default_topics)
    runner: str = DEFAULT_RUNNER
    max_range: int = DEFAULT_MAX_RANGE
    pipeline_args: tuple[str, ...] = ()
