"""Alerts through Airflow's SMTP and HTTP providers, in real Airflow runs, to a real SMTP server and a real chat
robot on 127.0.0.1, with the channels as Airflow connections in their standard forms:

- a DAG run (``airflow dags test``) whose ``ingest`` fails on blocking data quality after its retry, beside
  the pass's own ``alerts`` task: the pipeline's alerts, the task failure and the DAG-level failure, each once
  by e-mail and once by WeCom markdown, with the same facts, and all in the ``alerts/`` ledger;
- a run stopped by its ``dagrun_timeout``. Airflow 3.3.2's ``dags test`` (``DAG.test``) never applies
  ``dagrun_timeout``: only the scheduler does (``SchedulerJobRunner._schedule_dag_run`` fails the run, skips
  its unfinished tasks and asks the DAG processor to run the DAG's failure callback with reason
  ``timed_out``). So the test creates a running ``unitfusion_daily`` run started 7 hours ago and runs those
  two real steps, the scheduler's and the DAG processor's (``_execute_dag_callbacks``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.store import RunStore
from tests.test_alerts import _commit, fact_lines, mail_text, robot, signed_by, smtp_inbox  # noqa: F401
from tests.test_dags import AIRFLOW, REPO, airflow_env  # noqa: F401  (a fixture)

pytestmark = pytest.mark.airflow
MOBILE = "13812345678"

PROBE_DAG = '''"""A DAG that needs no broker, for the alert tests: the pass DAGs' settings and callbacks, an ``ingest``
that fails on blocking data quality (one retry, a second apart) and the pass's own ``alerts`` task."""

from datetime import timedelta

from airflow.sdk import dag, task
from unitfusion_common import alerts, pass_dag_settings

settings = pass_dag_settings(dagrun_timeout=timedelta(minutes=30))
settings["default_args"] = {**settings["default_args"], "retries": 1, "retry_delay": timedelta(seconds=1)}


@dag(dag_id="unitfusion_alert_probe", schedule=None, **settings)
def probe():
    @task
    def ingest():
        from pipelines.quality.outcomes import BlockingQualityError, ExpectationOutcome

        null_ids = ExpectationOutcome(
            feed="tax", expectation_type="expect_column_values_to_not_be_null", column="taxpayer_id",
            severity="block", success=False, why="null ids", message="taxpayer_id null, e.g. near 13812345678",
            unexpected_count=12, unexpected_percent=24.0,
        )
        raise BlockingQualityError([null_ids])

    ingest()
    alerts()


probe()
'''

TIMEOUT = """
import json, sys
from datetime import timedelta
from pathlib import Path

import structlog
from airflow.dag_processing.bundles.manager import DagBundlesManager
from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
from airflow.dag_processing.processor import _execute_dag_callbacks
from airflow.jobs.job import Job
from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
from airflow.models.dagrun import get_or_create_dagrun
from airflow.serialization.serialized_objects import DagSerialization
from airflow.utils import timezone
from airflow.utils.session import create_session
from airflow.utils.types import DagRunTriggeredByType

folder = Path(sys.argv[1])
with create_session() as session:
    DagBundlesManager().sync_bundles_to_db(session=session)
bag = BundleDagBag(dag_folder=folder, bundle_path=folder, bundle_name="dags-folder")
sync_bag_to_db(bag, "dags-folder", None)
dag = bag.dags["unitfusion_daily"]
started = timezone.utcnow() - dag.dagrun_timeout - timedelta(hours=1)
with create_session() as session:
    run = get_or_create_dagrun(
        dag=DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag)),
        run_id="manual__timeout_probe", logical_date=None, data_interval=None, run_after=started, conf=None,
        triggered_by=DagRunTriggeredByType.TEST, triggering_user_name="test", start_date=started,
        session=session,
    )
    request = SchedulerJobRunner(job=Job())._schedule_dag_run(run, session)  # the scheduler's timeout check
    session.commit()
    state = run.state
_execute_dag_callbacks(bag, request, structlog.get_logger())  # what the DAG processor does with the request
print(json.dumps({"state": getattr(state, "value", state), "reason": request.msg}))
"""


@pytest.fixture(scope="module")
def dag_folder(tmp_path_factory) -> Path:
    """The project's DAG folder plus the probe DAG."""
    folder = tmp_path_factory.mktemp("dags")
    for name in ("unitfusion_common.py", "unitfusion_daily.py", ".airflowignore"):
        (folder / name).symlink_to(REPO / "dags" / name)
    (folder / "unitfusion_alert_probe.py").write_text(PROBE_DAG, encoding="utf-8")
    return folder


def _env(airflow_env, dag_folder, out: Path, robot_url: str, shape: str, smtp_port: int) -> dict[str, str]:  # noqa: F811
    webhook = {"conn_type": "http", "host": robot_url, "extra": {"shape": shape}}
    if shape == "dingtalk":
        webhook["password"] = "SEC0123"  # the robot's signing secret
    env = {
        **airflow_env,
        "AIRFLOW__CORE__DAGS_FOLDER": str(dag_folder),
        "UNITFUSION_OUT": str(out),
        "UNITFUSION_LATE_RUN_DEADLINE": "0",  # `dags test` crashes after a run of a DAG with a deadline
        # the channels in the connections' standard forms: the URL as the http connection's host, the
        # provider's own SMTP extras; the message shape and the recipients in the extras
        "AIRFLOW_CONN_UNITFUSION_WEBHOOK": json.dumps(webhook),
        "AIRFLOW_CONN_UNITFUSION_SMTP": json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": smtp_port,
                "extra": {
                    "from_email": "unitfusion@bureau.test",
                    "to": "ops@bureau.test",
                    "disable_ssl": True,
                    "disable_tls": True,
                },
            }
        ),
    }
    for name in ("UNITFUSION_ALERT_WEBHOOK", "UNITFUSION_ALERT_SMTP", "UNITFUSION_ALERT_WEBHOOK_SHAPE"):
        env.pop(name, None)
    return env


def _messages(posts: list[dict], mails: list, key: str) -> dict[str, tuple[list[str], str]]:
    """Each webhook message's facts by the alert kind it is about, with the e-mail that says the same."""
    found = {}
    for post in posts:
        facts = fact_lines(post["body"]["markdown"][key])
        kind = next(line.split("] ")[1].split("**")[0] for line in post["body"]["markdown"][key].splitlines()
                    if line.startswith("**["))  # fmt: skip
        [mail] = [m for m in mails if all(fact in mail_text(m) for fact in facts)]
        found[kind] = (facts, mail_text(mail))
    return found


def test_a_failing_run_alerts_its_pipeline_findings_task_and_dag_failure_through_the_providers(
    airflow_env,  # noqa: F811
    dag_folder,
    tmp_path,
    robot,  # noqa: F811
    smtp_inbox,  # noqa: F811
):
    url, posts, _ = robot
    port, mails = smtp_inbox
    out = tmp_path / "out"
    store = RunStore(out)
    for _ in range(3):
        _commit(store, {"tax": 1000}, {"tax": 3})
    spike_run = _commit(store, {"tax": 1000}, {"tax": 300})  # what the alerts task finds
    blocked_report = store.quality_dir(store.next_run_id()) / "report.html"  # what the blocked run wrote
    blocked_report.parent.mkdir(parents=True)
    blocked_report.write_text("<html>blocked</html>", encoding="utf-8")

    env = _env(airflow_env, dag_folder, out, url, "wecom", port)
    subprocess.run(  # the run fails (that is the point): its outcome is what the robot and inbox got
        [AIRFLOW, "dags", "test", "unitfusion_alert_probe"],
        env=env,
        cwd=REPO,
        capture_output=True,
        timeout=300,
    )

    [ledger] = store.alerts_dir.glob("unitfusion_alert_probe.*.jsonl")
    dag_run = json.loads(ledger.read_text().splitlines()[0])["dag_run"]
    # one message per finding and channel: the failed task once, after its retry, not on the first try
    assert len(posts) == 3 and len(mails) == 3, [p["body"] for p in posts]
    assert all(p["path"] == "/cgi-bin/webhook/send?key=k1" for p in posts)
    messages = _messages(posts, mails, "content")
    assert set(messages) == {"quarantine_spike", "dq_blocked", "dag_failed"}
    for facts, _ in messages.values():
        assert "DAG: unitfusion_alert_probe" in facts and f"DAG run: {dag_run}" in facts

    spike, _ = messages["quarantine_spike"]
    assert {"feed: tax", f"ingest run: {spike_run}", "quarantined: 300", "read: 1300"} <= set(spike)
    assert f"report: {(out / 'runs' / spike_run / 'dq' / 'report.html').resolve()}" in spike
    blocked, _ = messages["dq_blocked"]
    assert "feed: tax" in blocked and f"report: {blocked_report.resolve()}" in blocked
    assert (
        "expectations: tax: expect_column_values_to_not_be_null on taxpayer_id: 12 unexpected (24.0%)"
        in blocked
    )
    failed, _ = messages["dag_failed"]
    assert "reason: task_failure" in failed and "failed task: ingest" in failed

    # one ledger: the task and DAG failures under the DAG run's key, the pipeline's under the ingest run's
    entries = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert {e["kind"] for e in entries if "kind" in e} == {"dq_blocked", "dag_failed"}
    sent = [channel for e in entries for channel, outcome in e["delivery"].items() if outcome == "sent"]
    assert sorted(sent) == ["email", "email", "webhook", "webhook"]
    assert "quarantine_spike" in store.alert_log(spike_run).read_text()
    everything = json.dumps(posts, ensure_ascii=False) + "".join(m.content.decode() for m in mails)
    assert MOBILE not in everything + ledger.read_text()


def test_a_run_stopped_by_its_timeout_is_alerted_through_the_providers(
    airflow_env,  # noqa: F811
    dag_folder,
    tmp_path,
    robot,  # noqa: F811
    smtp_inbox,  # noqa: F811
):
    url, posts, _ = robot
    port, mails = smtp_inbox
    out = tmp_path / "out"
    env = _env(airflow_env, dag_folder, out, url, "dingtalk", port)
    done = subprocess.run(
        [sys.executable, "-c", TIMEOUT, str(dag_folder)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"state": "failed", "reason": "timed_out"}

    [post], [mail] = posts, mails
    assert signed_by(post["path"], "SEC0123")
    body = post["body"]
    assert (
        body["msgtype"] == "markdown"
        and "stopped by its dagrun_timeout (6:00:00)" in body["markdown"]["title"]
    )
    facts = fact_lines(body["markdown"]["text"])
    assert {"DAG: unitfusion_daily", "DAG run: manual__timeout_probe", "reason: timed_out"} <= set(facts)
    assert "dagrun_timeout: 6:00:00" in facts
    assert any(f.startswith("report: http") and f.endswith("/dags/unitfusion_daily/runs/manual__timeout_probe")
               for f in facts)  # fmt: skip
    assert all(fact in mail_text(mail) for fact in facts)
    ledger = RunStore(out).alert_log("unitfusion_daily.manual__timeout_probe").read_text()
    assert '"dag_failed"' in ledger and '{"webhook": "sent"}' in ledger and '{"email": "sent"}' in ledger


def test_the_cli_sends_without_airflow_through_the_environment():
    """Outside Airflow nothing of it is imported: the plain transports are configured from the environment."""
    code = (
        "import sys; sys.modules['airflow'] = None\n"
        "from pipelines.ops.alerts import AlertChannels, send_alerts\n"
        "from pipelines.ops import outputs\n"
        "assert AlertChannels.from_environment().webhook_shape == 'wecom'\n"
    )
    env = {**os.environ, "UNITFUSION_ALERT_WEBHOOK_SHAPE": "wecom", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
