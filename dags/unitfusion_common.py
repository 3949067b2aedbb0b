"""What the unitfusion DAGs share: params, retries and timeouts, and the tasks of one pass.

Not a DAG file (listed in ``.airflowignore``); the DAG files import it from the DAG folder. Kept light for
parsing: only ``airflow.sdk`` and the notifier at import time; the work happens in ``pipelines.ops.tasks``.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DeadlineAlert, DeadlineReference, Param, SyncCallback, TriggerRule, task

from pipelines.ops.notifier import FailureNotifier
from pipelines.resources import FEED_CONTRACTS


def feed_names() -> list[str]:
    """The departments' feeds, one per contract file (``pipelines.resources`` is light: parsing stays
    fast, and a wheel install finds the contracts as a checkout does)."""
    return sorted(p.stem for p in FEED_CONTRACTS.glob("*.json"))


def default_args() -> dict[str, Any]:
    """Retries, a per-task timeout and the failure notifier (e-mail and webhook to ops)."""
    return {
        "retries": int(os.environ.get("UNITFUSION_TASK_RETRIES", "2")),
        "retry_delay": timedelta(minutes=5),
        "execution_timeout": timedelta(hours=2),
        "on_failure_callback": FailureNotifier(),
    }


def dag_run_failed(context: dict[str, Any]) -> None:
    """DAG-level failure callback (a run stopped by ``dagrun_timeout``): the notifier's alert, sent without
    template rendering, which needs the authored DAG and fails on the serialized one ``dags test`` passes."""
    FailureNotifier().notify(context)


def late_run_deadline(after: timedelta) -> DeadlineAlert | None:
    """Airflow's deadline alert: a run still going ``after`` it was queued sends a ``run_late`` alert (it
    keeps running; ``dagrun_timeout`` is what stops it). ``UNITFUSION_LATE_RUN_DEADLINE=0`` leaves it out:
    ``airflow dags test`` of Airflow 3.3.2 crashes after a successful run of any DAG with a deadline
    (apache/airflow#73428); the scheduler is not affected."""
    if os.environ.get("UNITFUSION_LATE_RUN_DEADLINE", "1") == "0":
        return None
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=after,
        callback=SyncCallback("pipelines.ops.tasks.deadline_missed"),
    )


def pass_dag_settings(dagrun_timeout: timedelta) -> dict[str, Any]:
    """``@dag`` arguments every pass DAG shares: one run at a time (runs commit offsets in order; the run
    store also refuses a second writer), retries and the notifier, and a late-run alert at half the time
    after which the run is stopped (the DAG-level failure callback reports the stop)."""
    return {
        "start_date": pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
        "catchup": False,
        "max_active_runs": 1,
        "dagrun_timeout": dagrun_timeout,
        "deadline": late_run_deadline(dagrun_timeout / 2),
        "on_failure_callback": dag_run_failed,
        "default_args": default_args(),
    }


def common_params(late_after_hours: int) -> dict[str, Param]:
    """Params of every pass; empty strings fall back to Airflow Variables, then the environment."""
    feeds = feed_names()
    return {
        "bootstrap": Param("", type="string", description="Kafka bootstrap servers; empty = Variable/env"),
        "out": Param("", type="string", description="Run store directory; empty = Variable/env"),
        "topic_prefix": Param("", type="string", description="Topic prefix; empty = contract topics"),
        "feeds": Param(
            feeds,
            type="array",
            items={"type": "string", "enum": feeds} if feeds else {"type": "string"},
            description="Which departments' topics to read (default: all)",
        ),
        "late_after_hours": Param(
            late_after_hours,
            type="integer",
            minimum=0,
            description="Alert when no ingest run was committed for this many hours (0 = off)",
        ),
        **{name: _decision_param(feeds, what) for name, what in _DECISIONS.items()},
    }


_DECISIONS = {
    "accept_blocked": "Accept the feed's blocked batch: it lands as is",
    "set_aside_blocked": "Set the feed's blocked batch aside: quarantined (set_aside), offsets move on",
}


def _decision_param(feeds: list[str], what: str) -> Param:
    """A decision about a batch data quality blocked (docs/runbook.md); this run applies it."""
    return Param(
        None,
        type=["null", "object"],
        properties={
            "feed": {"type": "string", "enum": feeds} if feeds else {"type": "string"},
            "reason": {"type": "string", "minLength": 1},
            "by": {"type": "string"},
        },
        required=["feed", "reason"],
        title=what.split(":")[0],
        description=f'{what}. {{"feed": "tax", "reason": "why", "by": "who"}}; empty = no decision',
    )


# --- the tasks of one pass (bodies in pipelines.ops.tasks) ------------------------------------------------


@task.sensor(
    poke_interval=10,
    mode="poke",
    doc_md="Waits while an earlier run of this DAG (by logical date) is still running, so runs of a backfill "
    "go one after another in date order even when the backfill allows more at once (Airflow counts a "
    "backfill's runs against its own `--max-active-runs`, default 10, not the DAG's `max_active_runs`).",
)
def wait_for_earlier_runs(ti=None) -> bool:
    earlier = ti.get_previous_dagrun(state="running")
    if earlier is not None:
        logging.getLogger(__name__).info("waiting for the earlier run %s to finish", earlier.run_id)
    return earlier is None


@task
def ingest(params: dict | None = None) -> dict:
    from pipelines.ops.tasks import ingest as run_ingest_pass

    return run_ingest_pass(params or {})


@task(
    retries=0,
    doc_md="Fails the run when ingest held a feed's batch back (a failed block expectation), after the "
    "other feeds landed: the failure alert names feed, expectation and counts. See docs/runbook.md to "
    "accept or set the batch aside (params `accept_blocked` / `set_aside_blocked`).",
)
def quality_gate(ingested: dict) -> dict:
    from pipelines.ops.tasks import quality_gate as check

    return check(ingested)


@task
def resolve(params: dict | None = None) -> dict:
    from pipelines.ops.tasks import resolve as resolve_register

    return resolve_register(params or {})


@task
def land(params: dict | None = None) -> dict:
    from pipelines.ops.tasks import land as publish_register

    return publish_register(params or {})


@task
def work_queues(landed: dict, monthly: bool = False, params: dict | None = None, dag_run=None) -> dict:
    from pipelines.ops.tasks import context_day, run_period
    from pipelines.ops.tasks import work_queues as export

    params = params or {}
    period = run_period(params, context_day(dag_run.logical_date, dag_run.run_after)) if monthly else None
    return export(params, landed.get("published"), period)


@task
def report(landed: dict, params: dict | None = None) -> dict:
    from pipelines.ops.tasks import report as write_report

    return write_report(params or {}, landed.get("published"))


# ALL_DONE: after a failed resolve or land too, so ops still hear what ingest saw
@task(trigger_rule=TriggerRule.ALL_DONE)
def alerts(monthly: bool = False, params: dict | None = None, dag_run=None, ti=None) -> dict:
    from pipelines.ops.tasks import alerts as send
    from pipelines.ops.tasks import context_day, run_key, run_period, selected_feeds

    params = params or {}
    ingested = ti.xcom_pull(task_ids="ingest") or {}
    day = context_day(dag_run.logical_date, dag_run.run_after)
    return send(
        params,
        run_key(dag_run.dag_id, dag_run.run_id),
        ingested.get("run_id"),
        period=run_period(params, day) if monthly else None,
        feeds=selected_feeds(params, feed_names()) if monthly else None,
        today=day,
    )


def operations_pass(monthly: bool = False) -> None:
    """(after earlier runs) ingest >> resolve >> land, then the work queues, the run report and the alerts
    to ops."""
    landed = land()
    ingested = ingest()
    wait_for_earlier_runs() >> ingested >> resolve() >> landed
    quality_gate(ingested)  # a blocked feed fails the run; the others still resolve and land
    work_queues(landed, monthly=monthly)
    report(landed)
    landed >> alerts(monthly=monthly)
