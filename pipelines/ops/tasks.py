"""What the DAG tasks do, kept out of the DAG files so those stay thin and fast to parse."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pipelines.pii import HMAC_KEY_ENV

HMAC_CONNECTION_ID = "unitfusion_hmac"


def _setting(params: dict[str, Any], name: str) -> str:
    """A DAG param if given, else the Airflow Variable ``unitfusion_<name>``, else ``UNITFUSION_<NAME>``."""
    from airflow.sdk import Variable

    value = params.get(name) or Variable.get(f"unitfusion_{name}", default=None)
    value = value or os.environ.get(f"UNITFUSION_{name.upper()}")
    if not value:
        raise ValueError(
            f"no {name!r}: set the DAG param, the Airflow Variable unitfusion_{name} "
            f"or the environment variable UNITFUSION_{name.upper()}"
        )
    return str(value)


def ensure_hmac_key() -> None:
    """Take the tokenisation key from the environment, else from the Airflow connection's password."""
    if os.environ.get(HMAC_KEY_ENV):
        return
    from airflow.sdk import Connection

    try:
        password = Connection.get(HMAC_CONNECTION_ID).password
    except Exception:  # not found: load_key() below explains what to configure
        password = None
    if password:
        os.environ[HMAC_KEY_ENV] = password


def ingest(params: dict[str, Any]) -> dict[str, Any]:
    """Run one ingest pass; return a small summary for XCom (counts only, no data)."""
    from pipelines.config import IngestSettings, default_topics
    from pipelines.ingest.job import run_ingest

    ensure_hmac_key()
    settings = IngestSettings(
        bootstrap=_setting(params, "bootstrap"),
        out=Path(_setting(params, "out")),
        topics=default_topics(params.get("topic_prefix") or None),
    )
    result = run_ingest(settings)
    return {
        "run_id": result.run_id if result.committed else None,
        "messages": result.messages,
        "staged": {feed: stats.staged for feed, stats in result.feeds.items()},
        "quarantined": {feed: stats.quarantined for feed, stats in result.feeds.items()},
        "quality_failures": len(result.quality_failures),
    }


def resolve(params: dict[str, Any]) -> dict[str, Any]:
    """Write a new register run if staging, verdicts or model changed (unpublished until ``land``)."""
    from pipelines.resolve.landing import prepare_register
    from pipelines.store import RunStore

    ensure_hmac_key()
    result = prepare_register(RunStore(Path(_setting(params, "out"))))
    if result is None:
        return {"register_run": None}
    return {"register_run": result.run_id, **{name: t.num_rows for name, t in result.tables.items()}}


def land(params: dict[str, Any]) -> dict[str, Any]:
    """Publish the register run that ``resolve`` wrote: ``register/latest`` now shows it."""
    from pipelines.resolve.landing import publish_pending
    from pipelines.store import RunStore

    path = publish_pending(RunStore(Path(_setting(params, "out"))))
    return {"published": path.name if path else None}
