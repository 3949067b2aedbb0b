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
connection `unitfusion_hmac`; the contact vault's key (optional: without it no contact is sealed) is
`UNITFUSION_VAULT_KEY` or the password of the connection `unitfusion_vault`; alerts go to the connections
`unitfusion_smtp` and `unitfusion_webhook`.
Failed tasks retry, then notify ops; a run still going after 3 hours raises a late-run alert, after 6 hours
it is stopped.

A new register emits the asset `unitfusion_register` (schedule a BI refresh on it); the `report` task's
extra link **Run report** opens the run report.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag
from unitfusion_common import common_params, operations_pass, pass_dag_settings


@dag(
    schedule="@daily",
    description="Daily pass: Kafka feeds → staged runs → register → work queues, report, alerts",
    doc_md=__doc__,
    tags=["unitfusion"],
    params=common_params(late_after_hours=36),
    **pass_dag_settings(dagrun_timeout=timedelta(hours=6)),  # late-run alert after 3 hours
)
def unitfusion_daily():
    operations_pass()


unitfusion_daily()
