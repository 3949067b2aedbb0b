"""What the DAG tasks do, kept out of the DAG files so those stay thin and fast to parse.

Every task body takes the DAG params (plus what upstream tasks returned) and returns a small JSON summary
for XCom: counts and paths, never data. Heavy imports happen inside the bodies.
"""

from __future__ import annotations

import calendar
import os
import re
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from pipelines.ops.settings import _optional_setting, _setting, _store, run_key

HMAC_CONNECTION_ID = "unitfusion_hmac"
DUE_WORKING_DAYS = 5  # per the pilots: a department delivers its month within five working days of month end
PERIOD_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def published_register(params: dict[str, Any], register_run: str | None) -> dict[str, str | None]:
    """Where a published register run and its report are (absolute paths, for the asset event and the
    run's report link); ``None``: the register published last. ``report_url`` is the report under
    ``report_base_url`` (Variable ``unitfusion_report_base_url`` or env, where ops serve ``reports/``
    over HTTP), else a file URL."""
    store = _store(params)
    marts = store.root.resolve() / "marts"  # the BI marts, once they are built
    if register_run is None:
        latest = store.register_latest()
        register_run = latest.name if latest else None
    if register_run is None:
        return {"register_run": None, "register": None, "report": None, "report_url": None, "marts": None}
    report = store.report_path(register_run).resolve()
    base = _optional_setting(params, "report_base_url")
    return {
        "register_run": register_run,
        "register": str(store.register_run_dir(register_run).resolve()),
        "report": str(report),
        "report_url": f"{base.rstrip('/')}/{report.name}" if base else report.as_uri(),
        "marts": str(marts) if marts.is_dir() else None,
    }


def hmac_key() -> bytes:
    """The tokenisation key of a task: ``UNITFUSION_HMAC_KEY``, else the password of the Airflow connection
    ``unitfusion_hmac``. Resolved in the task body and passed down as a value, never put into the
    environment; without a usable key the task refuses to start (``pii.MissingKeyError``)."""
    from pipelines.pii import HMAC_KEY_ENV, load_key

    if os.environ.get(HMAC_KEY_ENV):
        return load_key(os.environ)
    from airflow.sdk import Connection

    try:
        password = Connection.get(HMAC_CONNECTION_ID).password
    except Exception:  # not found: load_key() says what to configure
        password = None
    return load_key({HMAC_KEY_ENV: password or ""})


def vault_key() -> bytes | None:
    """The contact vault's key of a task: ``UNITFUSION_VAULT_KEY``, else the password of the Airflow
    connection ``unitfusion_vault``, else None (contacts are then tokenised only, and the run's manifest
    says none was sealed). Passed down as a value like the tokenisation key."""
    from pipelines.contacts.vault import VAULT_CONNECTION_ID, VAULT_KEY_ENV, load_vault_key

    if os.environ.get(VAULT_KEY_ENV):
        return load_vault_key(os.environ)
    from airflow.sdk import Connection

    try:
        password = Connection.get(VAULT_CONNECTION_ID).password
    except Exception:  # no such connection: no vault
        password = None
    return load_vault_key({VAULT_KEY_ENV: password or ""})


# --- periods and due dates (pure) ------------------------------------------------------------------------


def previous_period(day: date) -> str:
    """The month before ``day`` as ``YYYY-MM``: what a monthly import run on ``day`` is about."""
    first = day.replace(day=1) - timedelta(days=1)
    return f"{first.year:04d}-{first.month:02d}"


def due_date(period: str, working_days: int = DUE_WORKING_DAYS) -> date:
    """The ``working_days``-th working day (Mon–Fri) after the end of ``period``; public holidays are not
    known here, so a holiday week makes the due date early, never late."""
    if not PERIOD_RE.match(period):
        raise ValueError(f"period {period!r} is not YYYY-MM")
    year, month = map(int, period.split("-"))
    day = date(year, month, calendar.monthrange(year, month)[1])
    counted = 0
    while counted < working_days:
        day += timedelta(days=1)
        counted += day.weekday() < 5
    return day


def run_period(params: dict[str, Any], day: date) -> str:
    """The ``period`` param if given (checked), else the month before ``day``."""
    period = (params.get("period") or "").strip()
    if not period:
        return previous_period(day)
    if not PERIOD_RE.match(period):
        raise ValueError(f"param period {period!r} is not YYYY-MM")
    return period


def selected_feeds(params: dict[str, Any], known: list[str]) -> list[str]:
    """The ``feeds`` param (which departments to read); empty or missing means all of them."""
    feeds = params.get("feeds") or []
    if isinstance(feeds, str):
        feeds = [f.strip() for f in feeds.split(",") if f.strip()]
    unknown = sorted(set(feeds) - set(known))
    if unknown:
        raise ValueError(f"unknown feeds {unknown}; known feeds: {sorted(known)}")
    return sorted(feeds) if feeds else sorted(known)


# --- the pass ---------------------------------------------------------------------------------------------


def ingest(params: dict[str, Any]) -> dict[str, Any]:
    """Run one ingest pass over the selected feeds' topics; return counts only."""
    from pipelines.config import IngestSettings, default_topics
    from pipelines.ingest.job import run_ingest

    key = hmac_key()
    sealing = vault_key()
    topics = default_topics(params.get("topic_prefix") or None)
    feeds = selected_feeds(params, list(topics))
    settings = IngestSettings(
        bootstrap=_setting(params, "bootstrap"),
        out=Path(_setting(params, "out")),
        topics={feed: topics[feed] for feed in feeds},
    )
    decided = record_decisions(params, settings.out)
    result = run_ingest(settings, key, sealing)
    blocked = result.blocking_error()
    return {
        "run_id": result.run_id if result.committed else None,
        "feeds": feeds,
        "messages": result.messages,
        "staged": {feed: stats.staged for feed, stats in result.feeds.items()},
        "quarantined": {feed: stats.quarantined for feed, stats in result.feeds.items()},
        "quality_failures": len(result.quality_failures),
        "decided": decided,
        "decisions_applied": {feed: d["action"] for feed, d in result.decisions.items()},
        # what quality_gate fails the DAG run with (the other feeds landed and go on to resolve)
        "blocked": blocked.batches if blocked else {},
        "landed": blocked.landed if blocked else [],
    }


DECISION_PARAMS = {"accept_blocked": "accept", "set_aside_blocked": "set_aside"}


def record_decisions(params: dict[str, Any], out: Path) -> dict[str, str]:
    """The DAG params ``accept_blocked`` / ``set_aside_blocked`` (``{"feed": .., "reason": .., "by": ..}``,
    ``feed`` may be a list) recorded as decisions about the blocked batches; this run applies them. A feed
    with nothing blocked is only logged: a retry after the decision was applied must not fail."""
    import logging

    from pipelines.ingest.batches import blocked_batches, decide
    from pipelines.store import RunStore

    store, done = RunStore(out), {}
    for name, action in DECISION_PARAMS.items():
        wanted = params.get(name) or {}
        if not wanted:
            continue
        feeds = wanted.get("feed") or wanted.get("feeds") or []
        for feed in [feeds] if isinstance(feeds, str) else feeds:
            if feed not in blocked_batches(store):
                logging.getLogger(__name__).warning(
                    "%s: %s has no blocked batch; nothing to decide", name, feed
                )
                done[feed] = "nothing blocked"
                continue
            decide(store, feed, action, str(wanted.get("reason") or ""), wanted.get("by") or "airflow")
            done[feed] = action
    return done


def quality_gate(ingested: dict[str, Any]) -> dict[str, Any]:
    """Fail the DAG run when ingest held a feed back (after the other feeds went on to resolve and land):
    the error names feeds, expectations, counts, offsets and the report, for the failure alert."""
    from pipelines.quality import BlockingQualityError

    blocked = ingested.get("blocked") or {}
    if blocked:
        raise BlockingQualityError.from_batches(
            blocked,
            run_id=ingested.get("run_id"),
            landed=ingested.get("landed") or [],
            hint="accept or set aside with the DAG param accept_blocked / set_aside_blocked, or "
            "`unitfusion batches` (docs/runbook.md)",
        )
    return {"blocked": [], "decisions_applied": ingested.get("decisions_applied") or {}}


def resolve(params: dict[str, Any]) -> dict[str, Any]:
    """Write a new register run if staging, verdicts or model changed (unpublished until ``land``)."""
    from pipelines.landing import prepare_register

    prepared = prepare_register(_store(params), key=hmac_key())
    if prepared is None:
        return {"register_run": None}
    return {
        "register_run": prepared.run_id,
        "mode": prepared.meta["mode"],
        **{name: t.num_rows for name, t in prepared.tables.items()},
    }


def land(params: dict[str, Any]) -> dict[str, Any]:
    """Publish the register run that ``resolve`` wrote: ``register/latest`` now shows it."""
    from pipelines.landing import publish_pending

    path = publish_pending(_store(params))
    return {"published": path.name if path else None}


# --- operations after the pass ----------------------------------------------------------------------------


def _complete(
    params: dict[str, Any], step: str, period: str | None = None, channels: Any = None
) -> dict[str, Any]:
    """Finish ``step`` for every run that lacks it (not only the one this DAG run published): a run that
    died after publishing is completed here. ``channels``: where alerts go (the Airflow connections)."""
    from pipelines.ops.outputs import complete_outputs

    completed = complete_outputs(_store(params), steps=[step], period=period, channels=channels)
    return {
        "done": completed.done[step],
        "unfinished": {run: left["delivery"] for (_, run), left in completed.unfinished.items()},
        "cleaned": completed.cleaned,
    }


def work_queues(
    params: dict[str, Any], register_run: str | None, period: str | None = None
) -> dict[str, Any]:
    """Export the township work queues of every published register run that has none yet (the one just
    published, and any a crash left without); a run's exported queues are never written again, so files
    staff may already be filling in are left alone. With a ``period`` (the monthly import), also the pack
    of that month (``packs/<period>/``), written even when nothing new arrived."""
    from pipelines.ops.outputs import complete_pack

    done = {"register_run": register_run, **_complete(params, "work_queues", period)}
    return {**done, "pack": complete_pack(_store(params), period)} if period else done


def report(params: dict[str, Any], register_run: str | None) -> dict[str, Any]:
    """Write the HTML run report of every published register run that has none yet."""
    return {"register_run": register_run, **_complete(params, "report")}


def alerts(
    params: dict[str, Any],
    key: str,
    ingest_run: str | None,
    period: str | None = None,
    feeds: list[str] | None = None,
    today: date | None = None,
) -> dict[str, Any]:
    """Tell ops what the runs found: data-quality warnings, quarantine spikes and volume drops of every
    committed ingest run not yet alerted on (``ingest_run`` and any a crash left), under that run's key;
    then, under the DAG run's ``key``, a pipeline that has not committed for too long and, for a monthly
    import, departments whose month is overdue. Each alert is sent once, through the Airflow connections
    (``pipelines.ops.notifier``), naming this DAG run."""
    from airflow.sdk import get_current_context

    from pipelines.ops.alerts import feed_due_alerts, late_alerts, send_alerts
    from pipelines.ops.notifier import airflow_channels, origin_of

    store = _store(params)
    channels = airflow_channels(origin_of(get_current_context()))
    ingested = _complete(params, "alerts", channels=channels)
    found = []
    late_hours = int(params.get("late_after_hours") or 0)
    if late_hours > 0:
        found += late_alerts(store, max_age=timedelta(hours=late_hours))
    if period:
        feeds = feeds or []
        found += feed_due_alerts(store, period, feeds, due_date(period), today or date.today())
    delivery = send_alerts(store, key, found, channels)
    return {
        "ingest_run": ingest_run,
        "ingest_runs": ingested,
        "alerts": len(found),
        "by_kind": dict(Counter(alert.kind for alert in found)),
        "delivery": delivery,
    }


def deadline_missed(context: dict[str, Any] | None = None, **_: Any) -> None:
    """Deadline-alert callback (Airflow runs it when a DAG run is still going at its deadline): a late-run
    alert through the same channels and ledger as every other alert, sent once per DAG run."""
    from pipelines.ops.alerts import Alert, Origin, send_alerts
    from pipelines.ops.notifier import airflow_channels, run_url

    dag_run = (context or {}).get("dag_run") or {}
    dag_id, run_id = str(dag_run.get("dag_id")), str(dag_run.get("dag_run_id") or dag_run.get("run_id"))
    deadline = (context or {}).get("deadline") or {}
    alert = Alert(
        kind="run_late",
        severity="error",
        run_id=run_id,
        feed=None,
        title=f"{dag_id} run {run_id} has not finished by its deadline",
        details={
            "dag_id": dag_id,
            "state": dag_run.get("state"),
            "queued_at": dag_run.get("queued_at"),
            "deadline": str(deadline.get("deadline_time")),
        },
    )
    origin = Origin(dag_id=dag_id, dag_run=run_id, url=run_url(dag_id, run_id))
    send_alerts(_store({}), run_key(dag_id, run_id), [alert], airflow_channels(origin))


def context_day(logical_date: datetime | None, run_after: datetime | None) -> date:
    """The day a DAG run is about, in China time: its logical date, else (manual runs) when it ran."""
    import pendulum

    moment = logical_date or run_after or pendulum.now()
    return pendulum.instance(moment).in_timezone("Asia/Shanghai").date()
