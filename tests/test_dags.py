"""The DAGs parse, and the ingest DAG runs end to end under Airflow against the real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.config import default_topics
from pipelines.kafka import produce_messages
from pipelines.pii import HMAC_KEY_ENV
from pipelines.standardise.codes import make_uscc
from pipelines.store import RunStore

pytestmark = pytest.mark.airflow
REPO = Path(__file__).resolve().parent.parent
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


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


def test_dagbag_has_no_import_errors(airflow_env):
    code = (
        "from airflow.dag_processing.dagbag import DagBag;"
        "b = DagBag(dag_folder='dags');"
        "import json; print(json.dumps({'errors': {k: str(v) for k, v in b.import_errors.items()},"
        " 'dags': sorted(b.dags), 'args': sorted(b.dags['unitfusion_daily'].default_args)}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=airflow_env, cwd=REPO, capture_output=True, text=True, timeout=300
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["errors"] == {}
    assert "unitfusion_daily" in report["dags"]
    assert {"retries", "retry_delay", "on_failure_callback"} <= set(report["args"])


def _tax_record(i: int) -> dict:
    uscc = make_uscc("9", "1", "330106", f"MA2H{i:04d}")
    return {
        "record_id": f"T{i}",
        "taxpayer_id": uscc,
        "taxpayer_name": f"杭州测试{i}科技有限公司",
        "period": "2026-10",
        "tax_paid": float(i),
        "taxpayer_status": "正常",
        "updated_at": "2026-11-02T09:00:00+08:00",
    }


def test_ingest_dag_runs_against_the_broker(airflow_env, broker, topic_prefix, tmp_path):
    topic = default_topics(topic_prefix)["tax"]
    produce_messages(
        broker.bootstrap,
        topic,
        [(f"T{i}".encode(), json.dumps(_tax_record(i), ensure_ascii=False).encode()) for i in range(50)]
        + [(b"T-bad", b"{broken")],
    )
    out = tmp_path / "out"
    env = {
        **airflow_env,
        "UNITFUSION_BOOTSTRAP": broker.bootstrap,
        "UNITFUSION_OUT": str(out),
        "UNITFUSION_TOPIC_PREFIX": topic_prefix,
        # The key comes from the Airflow connection here, not from the environment.
        "AIRFLOW_CONN_UNITFUSION_HMAC": json.dumps(
            {"conn_type": "generic", "password": "dag-test-key-0123456789"}
        ),
    }
    env.pop(HMAC_KEY_ENV, None)
    done = subprocess.run(
        [AIRFLOW, "dags", "test", "unitfusion_daily"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    manifests = RunStore(out).manifests()
    assert len(manifests) == 1
    assert manifests[0]["feeds"]["tax"]["staged"] == 50
    assert manifests[0]["quarantine"]["by_reason"] == {"invalid_json": 1}
    register = RunStore(out).register_latest()  # resolve and land ran as their own tasks
    assert register is not None and (register / "register.parquet").exists()
    assert pq.read_table(register / "register.parquet").num_rows == 50
