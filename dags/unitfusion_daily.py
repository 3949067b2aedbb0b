"""
### unitfusion daily pass: ingest → resolve → land

**ingest** reads every departmental feed topic from the offsets the last committed run recorded up to where
the topics end now, checks each message against its feed contract (bad ones go to quarantine with a
reason), tokenises personal data, validates data quality and commits typed staging Parquet together with the
new offsets.
Rerunning is safe: a run that failed half-way left nothing visible, and a run with nothing new is a no-op.
**resolve** links the staged records into business units with the saved Splink model and township verdicts,
and writes a new register run (unpublished) when staging, verdicts or model changed. **land** publishes it:
`register/latest/` switches to the new run in one step.

Configuration (DAG params, else Airflow Variables `unitfusion_<name>`, else `UNITFUSION_<NAME>`):
`bootstrap` (Kafka), `out` (run store). The tokenisation key is `UNITFUSION_HMAC_KEY` or the password of the
connection `unitfusion_hmac`.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task

from pipelines.ops.notifier import FailureNotifier


@dag(
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    max_active_runs=1,  # runs commit offsets in order; the run store also refuses a second writer
    doc_md=__doc__,
    tags=["unitfusion"],
    default_args={
        "retries": int(os.environ.get("UNITFUSION_TASK_RETRIES", "2")),
        "retry_delay": timedelta(minutes=5),
        "execution_timeout": timedelta(hours=2),
        "on_failure_callback": FailureNotifier(),
    },
    params={
        "bootstrap": Param("", type="string", description="Kafka bootstrap servers; empty = Variable/env"),
        "out": Param("", type="string", description="Run store directory; empty = Variable/env"),
        "topic_prefix": Param("", type="string", description="Topic prefix; empty = contract topics"),
    },
)
def unitfusion_daily():
    @task
    def ingest(params: dict | None = None) -> dict:
        from pipelines.ops.tasks import ingest as run_ingest_pass

        return run_ingest_pass(params or {})

    @task
    def resolve(params: dict | None = None) -> dict:
        from pipelines.ops.tasks import resolve as resolve_register

        return resolve_register(params or {})

    @task
    def land(params: dict | None = None) -> dict:
        from pipelines.ops.tasks import land as publish_register

        return publish_register(params or {})

    ingest() >> resolve() >> land()


unitfusion_daily()
