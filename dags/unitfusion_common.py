"""What the unitfusion DAGs share: params, retries and timeouts, the tasks of one pass, the assets they
publish and the link from a run to its report.

Not a DAG file (listed in ``.airflowignore``); the DAG files import it from the DAG folder. Kept light for
parsing: only ``airflow.sdk`` and the notifier at import time; the work happens in ``pipelines.ops.tasks``.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import (
    Asset,
    AssetAlias,
    BaseOperatorLink,
    DeadlineAlert,
    DeadlineReference,
    Param,
    SyncCallback,
    TriggerRule,
    task,
)

from pipelines.ops.notifier import FailureNotifier
from pipelines.resources import FEED_CONTRACTS

# What a pass publishes, for DAGs that schedule on it (a BI refresh: ``schedule=REGISTER``). The run store's
# location is a deployment setting, so the URIs name the store's layout; each event's extra carries the
# absolute paths. Emitted through the alias only when ``land`` published a new register run.
REGISTER = Asset(name="unitfusion_register", uri="x-unitfusion://store/register/latest")
MARTS = Asset(name="unitfusion_marts", uri="x-unitfusion://store/marts")  # out/marts, once marts are built
PUBLISHED = AssetAlias(name="unitfusion_published")


def feed_names() -> list[str]:
    """The departments' feeds, one per contract file (``pipelines.resources`` is light: parsing stays
    fast, and a wheel install finds the contracts as a checkout does)."""
    return sorted(p.stem for p in FEED_CONTRACTS.glob("*.json"))


def default_args() -> dict[str, Any]:
    """Owner, retries, a per-task timeout and the failure notifier (e-mail and webhook to ops)."""
    return {
        "owner": "unitfusion-ops",
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
    """Params of every pass. Settings of the deployment are nullable (the trigger form may leave them
    empty): empty means the Airflow Variable, then the environment."""
    feeds = feed_names()
    return {
        "bootstrap": Param(
            None,
            type=["null", "string"],
            title="Kafka bootstrap servers",
            description="host:port[,host:port]; empty = Variable unitfusion_bootstrap, "
            "else env UNITFUSION_BOOTSTRAP",
        ),
        "out": Param(
            None,
            type=["null", "string"],
            title="Run store directory",
            description="Where runs, register and reports are kept; empty = Variable unitfusion_out, "
            "else env UNITFUSION_OUT",
        ),
        "topic_prefix": Param(
            None,
            type=["null", "string"],
            title="Topic prefix",
            description="Prefix of the feed topics (dept. reads dept.tax); empty = env "
            "UNITFUSION_TOPIC_PREFIX, else the contracts' topics",
        ),
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


@task(
    doc_md="Reads the selected `feeds`' topics from the offsets the last committed ingest run recorded, "
    "quarantines bad messages with a reason, tokenises personal data, validates data quality and commits "
    "`runs/run-NNNNNN/` with its manifest and the new offsets. Safe to rerun; nothing new is a no-op."
)
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


@task(
    doc_md="Links the staged records into business units (saved Splink model, township verdicts) and writes "
    "a new register run, unpublished, when staging, verdicts or the model changed."
)
def resolve(params: dict | None = None) -> dict:
    from pipelines.ops.tasks import resolve as resolve_register

    return resolve_register(params or {})


@task(
    outlets=[PUBLISHED],
    doc_md="Publishes the register run `resolve` wrote: `register/latest/` switches to it in one step. Then "
    "it emits the asset `unitfusion_register` (and `unitfusion_marts` once `out/marts/` exists) with the "
    "absolute paths in the event's extra, so DAGs scheduled on them run; nothing new published, no event.",
)
def land(params: dict | None = None, outlet_events=None, dag_run=None) -> dict:
    from pipelines.ops.tasks import land as publish_register
    from pipelines.ops.tasks import published_register

    params = params or {}
    landed = publish_register(params)
    if landed.get("published"):
        where = published_register(params, landed["published"])
        extra = {**where, "dag_id": dag_run.dag_id, "dag_run_id": dag_run.run_id}
        outlet_events[PUBLISHED].add(REGISTER, extra=extra)
        if where.get("marts"):
            outlet_events[PUBLISHED].add(MARTS, extra=extra)
    return landed


@task(
    doc_md="Writes the township work lists (`queues/<reg-run>/<division>_<township>.xlsx` and `.csv`) of "
    "every published register run that has none yet; exported queues are never rewritten. Monthly: also "
    "the pack of `period` (`packs/<period>/`: that month's work queues and `summary.json`), even when "
    "nothing new arrived."
)
def work_queues(landed: dict, monthly: bool = False, params: dict | None = None, dag_run=None) -> dict:
    from pipelines.ops.tasks import context_day, run_period
    from pipelines.ops.tasks import work_queues as export

    params = params or {}
    period = run_period(params, context_day(dag_run.logical_date, dag_run.run_after)) if monthly else None
    return export(params, landed.get("published"), period)


@task(
    doc_md="Writes the run report `reports/<reg-run>.html` of every published register run that has none "
    "yet. Its extra link **Run report** opens the report of this run's register (else the latest one)."
)
def report(landed: dict, params: dict | None = None) -> dict:
    from pipelines.ops.tasks import published_register
    from pipelines.ops.tasks import report as write_report

    params = params or {}
    written = write_report(params, landed.get("published"))
    where = published_register(params, landed.get("published"))
    return {**written, "report": where["report"], "report_url": where["report_url"]}


class RunReportLink(BaseOperatorLink):
    """The **Run report** button of the ``report`` task (REST: ``.../taskInstances/report/links``). The
    worker stores the URL the task returned when the task ends; the UI shows http(s) links only, so set
    ``unitfusion_report_base_url`` where ``reports/`` is served (else it is a ``file://`` URL)."""

    name = "Run report"

    def get_link(self, operator, *, ti_key) -> str:  # type: ignore[no-untyped-def]
        from airflow.sdk.bases.xcom import BaseXCom

        returned = BaseXCom.get_value(ti_key=ti_key, key="return_value")
        return (returned or {}).get("report_url") or ""


# ALL_DONE: after a failed resolve or land too, so ops still hear what ingest saw
@task(
    trigger_rule=TriggerRule.ALL_DONE,
    doc_md="Tells ops (e-mail, webhook) about data-quality warnings, quarantine spikes and volume drops of "
    "each committed ingest run, a pipeline that has not committed for `late_after_hours` and, monthly, "
    "departments whose `period` is overdue. Runs even when resolve or land failed; each alert is sent once.",
)
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
    # TaskFlow has no argument for extra links; the operator takes them as any operator class does.
    report(landed).operator.operator_extra_links = [RunReportLink()]
    landed >> alerts(monthly=monthly)
