"""A monthly run is about its period: the month's pack holds that month's records only (later months that
arrived are staged and counted, not packed), it is written even when nothing new arrived, and a backfill of
two months under a real scheduler runs them one after another."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.contracts import contract, output_schema
from pipelines.kafka import produce_messages
from pipelines.ops import tasks
from pipelines.ops.outputs import complete_outputs, complete_pack
from pipelines.staging import latest_records
from pipelines.standardise.codes import make_uscc
from pipelines.store import RunStore
from tests.staging import commit_rows
from tests.test_workqueue import _review_item, _warning

REPO = Path(__file__).resolve().parent.parent
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
WHEN = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)


def _power(record_id: str, period: str) -> dict:
    return {"record_id": record_id, "account_no": f"33{record_id}", "account_name": f"单位{record_id}",
            "meter_no": f"M{record_id}", "period": period, "kwh": 500.0, "updated_at": WHEN}  # fmt: skip


def _publish(store: RunStore, run_id: str, review: list[dict], warnings: list[dict]) -> None:
    """A hand-made register run (the resolver is not what these tests are about)."""
    units = [{"unit_id": u, "name": n} for u, n in (("U00000000000A", "甲单位"), ("U00000000000B", "乙单位"))]
    tables = {
        "register": pa.Table.from_pylist(units, schema=output_schema("register")),
        "review": pa.Table.from_pylist(review, schema=output_schema("review")),
        "warnings": pa.Table.from_pylist(warnings, schema=output_schema("warnings")),
    }
    store.write_register(run_id, tables, {})
    store.publish_register(run_id)


@pytest.fixture
def april_run(tmp_path) -> RunStore:
    """What the April run saw: it read the topic to its end, so late-October power rows came in with April's."""
    store = RunStore(tmp_path / "out")
    rows = [
        _power("A1", "2026-04"),
        _power("A2", "2026-04"),
        _power("O1", "2026-10"),
        _power("O2", "2026-10"),
    ]
    commit_rows(store, {"utility": rows})
    review = [_review_item(r, 1, "330105", "米市巷街道") for r in ("A1", "O1", "O2")]
    review.append(_review_item("A2", 2, "330106", "文新街道"))
    warnings = [_warning("W04", "2026-04", 1, "米市巷街道"), _warning("W10", "2026-10", 1, "湖墅街道")]
    _publish(store, "reg-000001", review, warnings)
    return store


def _packed(store: RunStore, period: str) -> tuple[set[str], set[str]]:
    """(record ids, warning ids) in a month's pack, read from its CSVs as staff would open them."""
    records, warnings = set(), set()
    for path in store.pack_dir(period).glob("*.csv"):
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.DictReader(handle))
        if path.stem.endswith("预警"):
            warnings |= {row["预警编号"] for row in rows}
        else:
            records |= {row["记录编号（勿改）"] for row in rows}
    return records, warnings


def test_the_april_pack_excludes_late_october_rows(april_run):
    summary = complete_pack(april_run, "2026-04")
    assert _packed(april_run, "2026-04") == ({"A1", "A2"}, {"W04"})
    assert summary["records"]["utility"] == 2
    assert summary["later_records"]["utility"] == 2  # staged and in the register, not in April's pack
    assert summary["review_items"] == 2 and summary["warnings"] == {"power_without_tax": 1}
    assert not any("湖墅街道" in name for name in summary["files"])  # only October's warning is there
    saved = json.loads((april_run.pack_dir("2026-04") / "summary.json").read_text(encoding="utf-8"))
    assert saved == summary

    complete_pack(april_run, "2026-10")  # October's rows are October's pack, when its run comes
    assert _packed(april_run, "2026-10") == ({"O1", "O2"}, {"W10"})


def test_a_month_is_packed_when_nothing_new_arrived(april_run):
    complete_outputs(april_run, steps=["work_queues"])  # the register's own queues were exported already
    params = {"out": str(april_run.root)}

    done = tasks.work_queues(params, None, "2026-04")  # a monthly run that landed nothing new
    assert done["done"] == {}  # no register run was owed its queues
    assert done["pack"]["register_run"] == "reg-000001" and done["pack"]["records"]["utility"] == 2
    assert _packed(april_run, "2026-04") == ({"A1", "A2"}, {"W04"})
    assert april_run.output_done("period-2026-04", "pack")

    written = {p: p.stat().st_mtime_ns for p in april_run.pack_dir("2026-04").iterdir()}
    again = tasks.work_queues(params, None, "2026-04")  # a retry, or the month backfilled again
    assert again["pack"]["found"] is True
    assert {p: p.stat().st_mtime_ns for p in april_run.pack_dir("2026-04").iterdir()} == written

    # April's power arrives late for one more account: a newer register, so the month is packed again
    commit_rows(april_run, {"utility": [_power("A3", "2026-04")]})
    _publish(
        april_run, "reg-000002", [_review_item(r, 1, "330105", "米市巷街道") for r in ("A1", "A3", "O1")], []
    )
    assert tasks.work_queues(params, "reg-000002", "2026-04")["pack"]["register_run"] == "reg-000002"
    assert _packed(april_run, "2026-04") == ({"A1", "A3"}, set())


def test_a_record_is_about_its_period_or_its_date_in_china_time(tmp_path):
    store = RunStore(tmp_path / "out")
    late_evening = datetime(2026, 4, 30, 17, 0, tzinfo=UTC)  # 1 May, 01:00 in Hangzhou
    commit_rows(
        store,
        {
            "registration": [{"record_id": "R1", "name": "甲", "updated_at": late_evening}],
            "utility": [_power("E1", "2026-04")],
        },
    )
    assert contract("registration").record_periods(latest_records(store, "registration")).to_pylist() == [
        "2026-05"
    ]
    assert contract("utility").record_periods(latest_records(store, "utility")).to_pylist() == ["2026-04"]


# --- a backfill under Airflow's scheduler -----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _tax(record_id: str, period: str) -> tuple[bytes, bytes]:
    record = {"record_id": record_id, "taxpayer_id": make_uscc("9", "1", "330106", f"MA2H{record_id[-4:]}"),
              "taxpayer_name": f"杭州测试{record_id}科技有限公司", "period": period, "tax_paid": 100.0,
              "taxpayer_status": "正常", "updated_at": "2026-11-02T09:00:00+08:00"}  # fmt: skip
    return record_id.encode(), json.dumps(record, ensure_ascii=False).encode()


def _airflow(env: dict[str, str], *args: str, timeout: int = 120) -> str:
    done = subprocess.run(
        [AIRFLOW, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"airflow {' '.join(args)}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _rows(db: Path, query: str) -> list[tuple]:
    for _ in range(20):  # the scheduler may hold the write lock for a moment
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
                return con.execute(query).fetchall()
        except sqlite3.OperationalError:
            time.sleep(0.5)
    raise AssertionError(f"cannot read {db}")


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.airflow
def test_a_backfill_runs_its_periods_one_after_another(broker, topic_prefix, tmp_path):
    """`airflow backfill create` without `--max-active-runs` (so Airflow would start both runs at once): the
    DAG still runs them one after another, and each month gets its pack, the second with nothing new."""
    produce_messages(
        broker.bootstrap,
        f"{topic_prefix}tax",
        [
            _tax("T0301", "2026-03"),
            _tax("T0302", "2026-03"),
            _tax("T0401", "2026-04"),
            _tax("T1001", "2026-10"),
        ],
    )
    home, out, port = tmp_path / "airflow", tmp_path / "out", _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "UNITFUSION_ALERT"))},
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",  # only the backfill's runs, no run of today
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": "backfill-test-secret-0123456789abcdef",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
        "UNITFUSION_BOOTSTRAP": broker.bootstrap,
        "UNITFUSION_OUT": str(out),
        "UNITFUSION_TOPIC_PREFIX": topic_prefix,
        "UNITFUSION_TASK_RETRIES": "0",  # a store-lock clash would fail the run instead of waiting for a retry
    }
    _airflow(env, "db", "migrate")
    started = []

    def start(*component: str) -> None:
        log = (tmp_path / f"{component[0]}.log").open("w")
        started.append(  # its own process group: stopped with its workers below
            subprocess.Popen(
                [AIRFLOW, *component], env=env, cwd=REPO, stdout=log, stderr=log, start_new_session=True
            )
        )

    try:
        start("api-server", "--apps", "execution")  # where tasks report to; it starts while the DAG is parsed
        _airflow(env, "dags", "reserialize")
        # created before the scheduler starts: SQLite takes one writer at a time
        _airflow(
            env, "backfill", "create", "--dag-id", "unitfusion_monthly", "--from-date", "2026-04-01",
            "--to-date", "2026-05-31", "--dag-run-conf", json.dumps({"feeds": ["tax"]}),
        )  # fmt: skip
        start("scheduler")
        db = home / "airflow.db"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            states = _rows(db, "SELECT state FROM dag_run WHERE dag_id = 'unitfusion_monthly'")
            if len(states) == 2 and all(s in ("success", "failed") for (s,) in states):
                break
            time.sleep(2)
    finally:
        for process in started:
            os.killpg(process.pid, signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)

    runs = _rows(
        db, "SELECT run_id, state FROM dag_run WHERE dag_id = 'unitfusion_monthly' ORDER BY logical_date"
    )
    logs = "".join((tmp_path / f"{name}.log").read_text()[-3000:] for name in ("scheduler", "api-server"))
    assert [state for _, state in runs] == ["success", "success"], logs
    tis = _rows(db, "SELECT run_id, task_id, start_date, end_date, try_number FROM task_instance")
    assert all(try_number == 1 for *_, try_number in tis)  # nobody hit the store lock and retried
    first, second = (run_id for run_id, _ in runs)
    first_ended = max(_moment(end) for run_id, _, _, end, _ in tis if run_id == first)
    second_began = min(
        _moment(start)
        for run_id, task, start, _, _ in tis
        if run_id == second and task != "wait_for_earlier_runs"
    )
    assert second_began >= first_ended  # one period after the other, not at once

    store = RunStore(out)
    assert len(store.register_runs()) == 1  # the April run (8 May) found nothing new to resolve
    march = json.loads((store.pack_dir("2026-03") / "summary.json").read_text(encoding="utf-8"))
    april = json.loads((store.pack_dir("2026-04") / "summary.json").read_text(encoding="utf-8"))
    assert (march["records"]["tax"], march["later_records"]["tax"]) == (2, 2)
    assert (april["records"]["tax"], april["later_records"]["tax"]) == (1, 1)  # October's row: not April's
    assert _packed(store, "2026-04")[0] == {"T0401"}
