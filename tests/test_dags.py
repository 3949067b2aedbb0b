"""The DAGs parse with their operations settings, the monthly arithmetic is right, and both DAGs run end to
end under Airflow against the real broker, delivering alerts to a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.config import default_topics
from pipelines.contracts import load_contracts
from pipelines.kafka import produce_messages
from pipelines.ops.tasks import (
    due_date,
    previous_period,
    run_key,
    run_period,
    selected_feeds,
)
from pipelines.pii import HMAC_KEY_ENV
from pipelines.standardise.codes import make_uscc
from pipelines.store import RunStore

pytestmark = pytest.mark.airflow
REPO = Path(__file__).resolve().parent.parent
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
FEEDS = sorted(load_contracts())


# --- the monthly arithmetic (pure) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "due"),
    [
        ("2026-10", date(2026, 11, 6)),  # ends on a Saturday: Mon 2 .. Fri 6 November
        ("2026-01", date(2026, 2, 6)),  # ends on a Saturday too
        ("2026-07", date(2026, 8, 7)),  # ends on a Friday: Mon 3 .. Fri 7 August
        ("2026-04", date(2026, 5, 7)),  # ends on a Thursday: Fri 1, Mon 4 .. Thu 7 May (the latest possible)
        ("2026-02", date(2026, 3, 6)),  # ends on a Saturday, not a leap year
        ("2028-02", date(2028, 3, 7)),  # leap year: ends on Tuesday 29 February
        ("2026-12", date(2027, 1, 7)),  # the due date falls in the next year
    ],
)
def test_due_date_is_the_fifth_working_day_after_month_end(period, due):
    assert due_date(period) == due
    assert due.weekday() < 5


def test_due_date_counts_only_working_days():
    assert due_date("2026-10", working_days=1) == date(2026, 11, 2)  # Sat 31 Oct → Mon 2 Nov
    with pytest.raises(ValueError, match="YYYY-MM"):
        due_date("2026-13")


def test_the_monthly_schedule_runs_after_every_due_date():
    """The DAG runs on the 8th; the fifth working day after any month end is never later than the 7th."""
    latest = max(due_date(f"{year}-{month:02d}").day for year in range(2026, 2036) for month in range(1, 13))
    assert latest == 7


def test_the_default_period_is_the_month_before():
    assert previous_period(date(2026, 11, 8)) == "2026-10"
    assert previous_period(date(2027, 1, 8)) == "2026-12"
    assert previous_period(date(2026, 3, 31)) == "2026-02"
    assert run_period({}, date(2026, 11, 8)) == "2026-10"
    assert run_period({"period": ""}, date(2026, 11, 8)) == "2026-10"
    assert run_period({"period": "2025-06"}, date(2026, 11, 8)) == "2025-06"  # a backfill
    with pytest.raises(ValueError, match="YYYY-MM"):
        run_period({"period": "2025-6"}, date(2026, 11, 8))


def test_feeds_param_restricts_and_checks_names():
    assert selected_feeds({}, FEEDS) == FEEDS
    assert selected_feeds({"feeds": []}, FEEDS) == FEEDS
    assert selected_feeds({"feeds": ["utility", "tax"]}, FEEDS) == ["tax", "utility"]
    assert selected_feeds({"feeds": "tax, utility"}, FEEDS) == ["tax", "utility"]
    with pytest.raises(ValueError, match="electricity"):
        selected_feeds({"feeds": ["tax", "electricity"]}, FEEDS)


def test_run_key_is_a_safe_file_name():
    key = run_key("unitfusion_daily", "scheduled__2026-11-08T22:00:00+00:00")
    assert key == "unitfusion_daily.scheduled__2026-11-08T22_00_00_00_00"
    assert "/" not in run_key("d", "../../etc/passwd")


# --- parsing ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A temporary Airflow home with a migrated SQLite metadata DB and this project's DAG folder."""
    home = tmp_path_factory.mktemp("airflow_home")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "UNITFUSION_TASK_RETRIES": "0",  # a failure shows at once instead of after two retry delays
    }
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    return env


_DESCRIBE = """
import json
from pathlib import Path
from airflow.dag_processing.dagbag import BundleDagBag
bag = BundleDagBag(dag_folder="dags", bundle_path=Path("dags").resolve())
out = {"errors": {k: str(v) for k, v in bag.import_errors.items()}, "files": sorted(Path(s.file).name for s in bag.dagbag_stats), "dags": {}}
for dag_id, dag in bag.dags.items():
    out["dags"][dag_id] = {
        "args": sorted(dag.default_args),
        "execution_timeout_s": dag.default_args["execution_timeout"].total_seconds(),
        "dagrun_timeout_s": dag.dagrun_timeout.total_seconds() if dag.dagrun_timeout else None,
        "deadline": [(type(d.reference).__name__, d.interval.total_seconds(), d.callback.path)
                     for d in dag.deadline or []],
        "on_failure_callback": bool(dag.on_failure_callback),
        "schedule": str(dag.schedule),
        "params": dag.params.dump(),
        "upstream": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks},
        "trigger_rules": {t.task_id: t.trigger_rule.value for t in dag.tasks},
        "param_schemas": {k: {**p.schema, "description": p.description} for k, p in dag.params.items()},
        "description": dag.description,
        "owners": sorted({t.owner for t in dag.tasks}),
        "task_docs": {t.task_id: t.doc_md for t in dag.tasks},
        "outlets": {t.task_id: [(type(o).__name__, o.name) for o in t.outlets] for t in dag.tasks},
        "extra_links": {t.task_id: [link.name for link in t.operator_extra_links] for t in dag.tasks},
    }
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def dagbag(airflow_env) -> dict:
    """The DAG folder as the DAG processor sees it (its bundle root on the import path)."""
    done = subprocess.run(
        [sys.executable, "-c", _DESCRIBE],
        env=airflow_env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_dagbag_has_no_import_errors(dagbag):
    assert dagbag["errors"] == {}
    assert set(dagbag["dags"]) == {"unitfusion_daily", "unitfusion_monthly"}
    assert "unitfusion_common.py" not in dagbag["files"]  # shared code, not a DAG file (.airflowignore)


@pytest.mark.parametrize("dag_id", ["unitfusion_daily", "unitfusion_monthly"])
def test_dags_have_retries_timeouts_and_the_notifier(dagbag, dag_id):
    dag = dagbag["dags"][dag_id]
    assert {"retries", "retry_delay", "execution_timeout", "on_failure_callback"} <= set(dag["args"])
    assert dag["on_failure_callback"]  # a run stopped by dagrun_timeout notifies too
    assert 0 < dag["execution_timeout_s"] < dag["dagrun_timeout_s"]
    [(reference, interval, callback)] = dag["deadline"]
    assert reference == "DagRunQueuedAtDeadline"
    assert 0 < interval < dag["dagrun_timeout_s"]  # the late alert comes before the run is stopped
    assert callback == "pipelines.ops.tasks.deadline_missed"


@pytest.mark.parametrize("dag_id", ["unitfusion_daily", "unitfusion_monthly"])
def test_dags_run_the_operations_tasks_after_land(dagbag, dag_id):
    dag = dagbag["dags"][dag_id]
    assert dag["upstream"] == {
        "wait_for_earlier_runs": [],
        "ingest": ["wait_for_earlier_runs"],
        "quality_gate": ["ingest"],  # a blocked feed fails the run; the others resolve and land
        "resolve": ["ingest"],
        "land": ["resolve"],
        "work_queues": ["land"],
        "report": ["land"],
        "alerts": ["land"],
    }
    assert dag["trigger_rules"]["alerts"] == "all_done"
    assert dag["params"]["feeds"] == FEEDS


@pytest.mark.parametrize("dag_id", ["unitfusion_daily", "unitfusion_monthly"])
def test_a_run_waits_for_earlier_runs_before_it_reads(dagbag, dag_id):
    """Runs of a backfill count against the backfill's own max_active_runs (10 unless given), not the DAG's
    max_active_runs=1: the first task holds each run until earlier runs finished (tests/test_backfill.py
    runs it under a scheduler)."""
    dag = dagbag["dags"][dag_id]
    assert [task for task, upstream in dag["upstream"].items() if not upstream] == ["wait_for_earlier_runs"]


def test_monthly_dag_params_and_schedule(dagbag):
    dag = dagbag["dags"]["unitfusion_monthly"]
    assert dag["params"]["period"] is None  # = the month before the logical date
    assert dag["param_schemas"]["period"]["type"] == ["null", "string"]  # not required in the trigger form
    assert "period" not in dagbag["dags"]["unitfusion_daily"]["params"]
    assert dag["schedule"] == "0 6 8 * *"


@pytest.mark.parametrize("dag_id", ["unitfusion_daily", "unitfusion_monthly"])
def test_deployment_params_are_optional_in_the_trigger_form(dagbag, dag_id):
    """The UI's trigger form marks a param required unless its type admits null, and keeps Trigger disabled
    while a required one is empty: the settings that default to the Variable or environment are nullable."""
    dag = dagbag["dags"][dag_id]
    for name in ("bootstrap", "out", "topic_prefix"):
        assert dag["params"][name] is None  # empty = the Variable, then the environment
        assert dag["param_schemas"][name]["type"] == ["null", "string"]
        assert dag["param_schemas"][name]["description"]


@pytest.mark.parametrize("dag_id", ["unitfusion_daily", "unitfusion_monthly"])
def test_dags_have_owner_description_and_task_docs(dagbag, dag_id):
    dag = dagbag["dags"][dag_id]
    assert dag["owners"] == ["unitfusion-ops"]
    assert dag["description"]
    assert all(dag["task_docs"].values()), dag["task_docs"]


@pytest.mark.parametrize("dag_id", ["unitfusion_daily", "unitfusion_monthly"])
def test_land_publishes_the_register_asset_and_report_has_a_link(dagbag, dag_id):
    dag = dagbag["dags"][dag_id]
    assert dag["outlets"]["land"] == [["AssetAlias", "unitfusion_published"]]  # register and marts through it
    assert dag["extra_links"]["report"] == ["Run report"]


# --- end to end -------------------------------------------------------------------------------------------


def _alerts(received: list[dict]) -> list[dict]:
    """The alerts in what the receiver got (one POST per batch, or one per alert)."""
    found = []
    for body in received:
        found += body["alerts"] if isinstance(body, dict) and "alerts" in body else [body]
    return found


def _tax_record(i: int, period: str = "2026-10") -> dict:
    uscc = make_uscc("9", "1", "330106", f"MA2H{i:04d}")
    return {
        "record_id": f"T{i}",
        "taxpayer_id": uscc,
        "taxpayer_name": f"杭州测试{i}科技有限公司",
        "period": period,
        "tax_paid": float(i),
        "taxpayer_status": "正常",
        "updated_at": "2026-11-02T09:00:00+08:00",
    }


def _produce_tax(bootstrap: str, topic_prefix: str, count: int) -> None:
    produce_messages(
        bootstrap,
        default_topics(topic_prefix)["tax"],
        [(f"T{i}".encode(), json.dumps(_tax_record(i), ensure_ascii=False).encode()) for i in range(count)]
        + [(b"T-bad", b"{broken")],
    )


def _dags_test(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [AIRFLOW, "dags", "test", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=600
    )
    failed = [line for line in done.stdout.splitlines() if "error" in line.lower() or "Traceback" in line]
    assert done.returncode == 0, "\n".join(failed[-40:]) + done.stdout[-2000:] + done.stderr[-2000:]


def _pass_env(airflow_env: dict[str, str], bootstrap: str, out: Path, topic_prefix: str, hook: str) -> dict:
    env = {
        **airflow_env,
        "UNITFUSION_BOOTSTRAP": bootstrap,
        "UNITFUSION_OUT": str(out),
        "UNITFUSION_TOPIC_PREFIX": topic_prefix,
        # The key and the alert webhook come from Airflow connections here, not from the environment.
        "AIRFLOW_CONN_UNITFUSION_HMAC": json.dumps(
            {"conn_type": "generic", "password": "dag-test-key-0123456789"}
        ),
        "AIRFLOW_CONN_UNITFUSION_WEBHOOK": json.dumps({"conn_type": "http", "host": hook}),  # URL as host
    }
    # `airflow dags test` (3.3.2) crashes after a successful run of a DAG with a deadline, apache/airflow#73428;
    # the deadline itself is checked by the parse test above.
    env["UNITFUSION_LATE_RUN_DEADLINE"] = "0"
    env.pop(HMAC_KEY_ENV, None)
    env.pop("UNITFUSION_ALERT_WEBHOOK", None)
    env.pop("UNITFUSION_ALERT_SMTP", None)
    return env


def test_daily_dag_runs_against_the_broker(airflow_env, broker, topic_prefix, tmp_path, webhook):
    _produce_tax(broker.bootstrap, topic_prefix, 50)
    out = tmp_path / "out"
    _dags_test(_pass_env(airflow_env, broker.bootstrap, out, topic_prefix, webhook[0]), "unitfusion_daily")

    store = RunStore(out)
    manifests = store.manifests()
    assert len(manifests) == 1
    assert manifests[0]["feeds"]["tax"]["staged"] == 50
    assert manifests[0]["quarantine"]["by_reason"] == {"invalid_json": 1}
    register = store.register_latest()  # resolve and land ran as their own tasks
    assert register is not None and (register / "register.parquet").exists()
    assert pq.read_table(register / "register.parquet").num_rows == 50
    # The operations tasks ran on the register run land published.
    assert (store.reports_dir / f"{register.name}.html").exists()
    queues = sorted(p.suffix for p in store.queues_dir(register.name).iterdir())
    review = pq.read_table(register / "review.parquet").num_rows
    assert (".xlsx" in queues and ".csv" in queues) if review else queues == []
    ledgers = list(store.alerts_dir.glob("unitfusion_daily.*.jsonl")) if store.alerts_dir.exists() else []
    assert all("feed_due" not in ledger.read_text() for ledger in ledgers)
    assert all(a["kind"] != "feed_due" for a in _alerts(webhook[1]))  # only the monthly import has due dates


def test_monthly_dag_imports_the_selected_departments(airflow_env, broker, topic_prefix, tmp_path, webhook):
    """October's tax arrived, October's electricity did not: only those two topics are read, and ops hear
    that electricity is overdue (due 6 November 2026; the run is about 9 November)."""
    hook, received = webhook
    _produce_tax(broker.bootstrap, topic_prefix, 20)
    registration = default_topics(topic_prefix)["registration"]
    produce_messages(broker.bootstrap, registration, [(b"R1", b'{"record_id": "R1"}')])  # not selected
    out = tmp_path / "out"
    env = _pass_env(airflow_env, broker.bootstrap, out, topic_prefix, hook)
    _dags_test(env, "unitfusion_monthly", "2026-11-09", "--conf", json.dumps({"feeds": ["tax", "utility"]}))

    store = RunStore(out)
    [manifest] = store.manifests()
    assert {entry["feed"] for entry in manifest["offsets"]} <= {"tax", "utility"}
    assert registration not in {entry["topic"] for entry in manifest["offsets"]}
    assert manifest["feeds"]["tax"]["staged"] == 20
    register = store.register_latest()
    assert register is not None and (store.reports_dir / f"{register.name}.html").exists()
    pack = json.loads((store.pack_dir("2026-10") / "summary.json").read_text(encoding="utf-8"))
    assert pack["records"]["tax"] == 20 and pack["register_run"] == register.name  # the month's pack

    due = [a for a in _alerts(received) if a["kind"] == "feed_due"]
    assert [a["feed"] for a in due] == ["utility"]  # tax delivered October; registration was not selected
    assert "2026-10" in json.dumps(due, ensure_ascii=False)  # the default period: the month before
    [ledger] = store.alerts_dir.glob("unitfusion_monthly.*.jsonl")  # sent once for this DAG run
    assert "feed_due" in ledger.read_text()
