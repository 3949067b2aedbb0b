"""
### unitfusion daily pass: ingest → resolve → land → work queues, report, alerts

**ingest** reads the departmental feed topics (param `feeds`, default all) from the offsets the last committed
run recorded up to where the topics end now, checks each message against its feed contract (bad ones go to
quarantine with a reason), tokenises personal data, validates data quality and commits typed staging Parquet
together with the new offsets. Rerunning is safe: a run that failed half-way left nothing visible, and a run
with nothing new is a no-op.
**resolve** links the staged records into business units with the saved Splink model and township verdicts,
and writes a new register run (unpublished) when staging, verdicts or model changed. **land** publishes it:
`register/latest/` switches to the new run in one step.
**work_queues** writes the township work lists (`queues/<reg-run>/`), **report** the run report
(`reports/<reg-run>.html`), **alerts** tells ops about data-quality warnings, quarantine spikes, volume drops
and a pipeline that has not committed for `late_after_hours`.

Configuration (DAG params, else Airflow Variables `unitfusion_<name>`, else `UNITFUSION_<NAME>`):
`bootstrap` (Kafka), `out` (run store). The tokenisation key is `UNITFUSION_HMAC_KEY` or the password of the
connection `unitfusion_hmac`; alerts go to the connections `unitfusion_smtp` and `unitfusion_webhook`.
Failed tasks retry, then notify ops; a run still going after 3 hours raises a late-run alert, after 6 hours
it is stopped.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag
from unitfusion_common import common_params, dag_run_failed, default_args, late_run_deadline, operations_pass


@dag(
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    max_active_runs=1,  # runs commit offsets in order; the run store also refuses a second writer
    dagrun_timeout=timedelta(hours=6),
    deadline=late_run_deadline(timedelta(hours=3)),
    on_failure_callback=dag_run_failed,  # a run that timed out
    doc_md=__doc__,
    tags=["unitfusion"],
    default_args=default_args(),
    params=common_params(late_after_hours=36),
)
def unitfusion_daily():
    operations_pass()


unitfusion_daily()
