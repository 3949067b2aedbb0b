"""
### unitfusion monthly department import

Each department delivers its month within five working days (Mon–Fri) of month end. This DAG runs on the
8th of every month, when every department's previous month is due, and does the daily pass for the
departments in param `feeds` only (their topics; default all): ingest → resolve → land → work queues (for
`period`), report, alerts. Besides the daily alerts it raises a `feed_due` alert for every selected
department with no record of `period` although its due date has passed.

Params: `period` (`YYYY-MM`; empty = the month before the run's logical date), `feeds`, and those of the
daily DAG (`bootstrap`, `out`, `topic_prefix`, `late_after_hours`).

Backfill a period: `airflow dags trigger unitfusion_monthly --conf '{"period": "2026-03", "feeds": ["tax"]}'`,
or `airflow backfill create --dag-id unitfusion_monthly --from-date 2026-04-01 --to-date 2026-04-30`
(the run of 8 April imports March).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag
from unitfusion_common import common_params, dag_run_failed, default_args, late_run_deadline, operations_pass


@dag(
    schedule="0 6 8 * *",  # 06:00 on the 8th: the fifth working day after month end is the 7th at the latest
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    max_active_runs=1,  # runs commit offsets in order; the run store also refuses a second writer
    dagrun_timeout=timedelta(hours=12),
    deadline=late_run_deadline(timedelta(hours=6)),
    on_failure_callback=dag_run_failed,  # a run that timed out
    doc_md=__doc__,
    tags=["unitfusion", "monthly"],
    default_args=default_args(),
    params={
        **common_params(late_after_hours=24 * 35),
        "period": Param(
            "",
            type="string",
            pattern=r"^(\d{4}-(0[1-9]|1[0-2]))?$",
            description="Month imported, YYYY-MM; empty = the month before the logical date",
        ),
    },
)
def unitfusion_monthly():
    operations_pass(monthly=True)


unitfusion_monthly()
