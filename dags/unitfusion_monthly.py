"""
### unitfusion monthly department import

Each department delivers its month within five working days (Mon–Fri) of month end. This DAG runs on the
8th of every month, when every department's previous month is due, and does the daily pass for the
departments in param `feeds` only (their topics; default all): ingest → resolve → land → work queues (for
`period`), report, alerts. Besides the daily alerts it raises a `feed_due` alert for every selected
department with no record of `period` although its due date has passed.

Params: `period` (`YYYY-MM`; empty = the month before the run's logical date), `feeds`, and those of the
daily DAG (`bootstrap`, `out`, `topic_prefix`, `late_after_hours`).

A run reads every selected topic to its end (offsets stay in order, nothing is left behind), but what it
writes for its month is of that month only: the pack `packs/<period>/` (the township work queues of the
month's records and warnings, and `summary.json`) counts records of later months without including them,
and it is written even when nothing new arrived.

Backfill a period: `airflow dags trigger unitfusion_monthly --conf '{"period": "2026-03", "feeds": ["tax"]}'`,
or months in a row: `airflow backfill create --dag-id unitfusion_monthly --from-date 2026-04-01
--to-date 2026-05-31 --max-active-runs 1` (the runs of 8 April and 8 May: periods 2026-03 and 2026-04; no
`period` in `--dag-run-conf`, or every run would pack that one month). Runs go one at a time: the flag keeps
the later ones queued, and without it task `wait_for_earlier_runs` holds each until the earlier ones finish.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag
from unitfusion_common import common_params, operations_pass, pass_dag_settings


@dag(
    schedule="0 6 8 * *",  # 06:00 on the 8th: the fifth working day after month end is the 7th at the latest
    description="Monthly department import of a period → register → work queues, report, alerts",
    doc_md=__doc__,
    tags=["unitfusion", "monthly"],
    params={
        **common_params(late_after_hours=24 * 35),
        "period": Param(
            None,  # nullable: the trigger form would mark an empty string field required
            type=["null", "string"],
            pattern=r"^(\d{4}-(0[1-9]|1[0-2]))?$",
            title="Period (YYYY-MM)",
            description="Month imported, YYYY-MM; empty = the month before the logical date",
        ),
    },
    **pass_dag_settings(dagrun_timeout=timedelta(hours=12)),  # late-run alert after 6 hours
)
def unitfusion_monthly():
    operations_pass(monthly=True)


unitfusion_monthly()
