"""Operating the DAGs from Airflow itself: the trigger form accepts the defaults, a new register schedules a
DAG on its asset, each run links to its report, and nothing listens beyond 127.0.0.1.

One real Airflow for the module (api-server, scheduler without its log server, dag-processor) in a temporary
home, with the daily DAG and a small BI-refresh DAG scheduled on the register asset, against the embedded
Kafka broker; the UI is driven by headless Chromium."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from pipelines.config import default_topics
from pipelines.kafka import produce_messages
from pipelines.pii import HMAC_KEY_ENV
from pipelines.standardise.codes import make_uscc

pytestmark = [pytest.mark.airflow, pytest.mark.integration]
REPO = Path(__file__).resolve().parent.parent
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
USER, PASSWORD = "operator", secrets.token_urlsafe(12)
RECORDS = 30

# The BI refresh a data bureau would write: it runs when a pass publishes a new register, and gets the
# register's paths from the triggering event.
BI_REFRESH_DAG = """
from airflow.sdk import Asset, dag, task

REGISTER = Asset(name="unitfusion_register", uri="x-unitfusion://store/register/latest")


@dag(schedule=REGISTER, catchup=False, tags=["bi"])
def bi_refresh():
    @task
    def refresh(triggering_asset_events=None) -> list:
        return [dict(event.extra) for event in triggering_asset_events[REGISTER]]

    refresh()


bi_refresh()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> set[str]:
    """The local addresses (hex, as the kernel lists them) with a socket listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def _tax_messages(prefix: str) -> list[tuple[bytes, bytes]]:
    messages = []
    for i in range(RECORDS):
        record = {
            "record_id": f"T{i}",
            "taxpayer_id": make_uscc("9", "1", "330106", f"MA3U{i:04d}"),
            "taxpayer_name": f"杭州界面{i}科技有限公司",
            "period": "2026-10",
            "tax_paid": float(i),
            "taxpayer_status": "正常",
            "updated_at": "2026-11-02T09:00:00+08:00",
        }
        messages.append((f"T{i}".encode(), json.dumps(record, ensure_ascii=False).encode()))
    return messages


@dataclass
class Airflow:
    url: str
    home: Path
    out: Path
    ports: dict[str, int]
    token: str = ""

    def api(self, path: str, method: str = "GET", body: dict | None = None) -> dict:
        request = urllib.request.Request(
            f"{self.url}/api/v2{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def runs(self, dag_id: str) -> list[dict]:
        return self.api(f"/dags/{dag_id}/dagRuns")["dag_runs"]

    def wait(self, what: str, check, timeout: float = 420) -> object:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found := check():
                return found
            time.sleep(2)
        logs = "\n".join(p.read_text()[-3000:] for p in sorted(self.home.glob("*.out")))
        raise AssertionError(f"timed out waiting for {what}\n{logs}")


def _token(url: str) -> str:
    request = urllib.request.Request(
        f"{url}/auth/token",
        data=json.dumps({"username": USER, "password": PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["access_token"]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory, broker) -> Iterator[Airflow]:
    """Airflow as docs/airflow.md runs it on one machine: everything on 127.0.0.1, two task slots, one
    parsing process, no log servers (the API server reads the task logs from disk)."""
    home = tmp_path_factory.mktemp("airflow_ui")
    dags = home / "dags"
    dags.mkdir()
    for name in ("unitfusion_daily.py", "unitfusion_common.py", ".airflowignore"):
        (dags / name).symlink_to(REPO / "dags" / name)
    (dags / "bi_refresh.py").write_text(BI_REFRESH_DAG)
    (home / "passwords.json").write_text(json.dumps({USER: PASSWORD}))
    prefix = f"ui{os.getpid()}."
    produce_messages(broker.bootstrap, default_topics(prefix)["tax"], _tax_messages(prefix))

    ports = {"api": _free_port(), "worker_logs": _free_port(), "trigger_logs": _free_port()}
    url = f"http://127.0.0.1:{ports['api']}"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",  # the scheduled run starts as soon as parsed
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(ports["api"]),
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(ports["worker_logs"]),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(ports["trigger_logs"]),
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        # the run's settings as an operator keeps them: a Variable for Kafka, the environment for the store
        "AIRFLOW_VAR_UNITFUSION_BOOTSTRAP": broker.bootstrap,
        "UNITFUSION_OUT": str(home / "store"),
        "UNITFUSION_TOPIC_PREFIX": prefix,
        "UNITFUSION_TASK_RETRIES": "0",
        HMAC_KEY_ENV: "ui-test-key-0123456789abcdef",
    }
    for name in ("UNITFUSION_BOOTSTRAP", "UNITFUSION_ALERT_WEBHOOK", "UNITFUSION_ALERT_SMTP"):
        env.pop(name, None)
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)

    processes = []

    def start(name: str, *args: str) -> None:
        with open(home / f"{name}.out", "wb") as log:
            processes.append(
                subprocess.Popen(
                    [AIRFLOW, *args], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            )

    server = Airflow(url=url, home=home, out=home / "store", ports=ports)
    try:
        start("api-server", "api-server")  # first: the tasks report to its execution API
        server.wait("the API server", lambda: _healthy(url), timeout=180)
        server.token = _token(url)
        start("scheduler", "scheduler", "--skip-serve-logs")
        start("dag-processor", "dag-processor")
        dag_ids = lambda: {d["dag_id"] for d in server.api("/dags")["dags"]}  # noqa: E731
        server.wait("the DAGs to be parsed", lambda: {"unitfusion_daily", "bi_refresh"} <= dag_ids())
        yield server
    finally:
        for process in processes:  # each component with the workers it forked (its own process group)
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def test_nothing_listens_beyond_loopback(airflow):
    loopback = {"0100007F", "0000000000000000FFFF00000100007F"}  # 127.0.0.1, also as IPv4-mapped IPv6
    assert _listening(airflow.ports["api"]) and _listening(airflow.ports["api"]) <= loopback
    assert _listening(airflow.ports["worker_logs"]) == set()  # the scheduler serves no logs
    assert _listening(airflow.ports["trigger_logs"]) == set()


def test_the_trigger_form_triggers_a_run_with_the_defaults(airflow):
    """Today's empty-string params made the form mark bootstrap, out and topic_prefix required and keep
    Trigger disabled; now the defaults go through and the run takes its settings from Variable and env."""
    from playwright.sync_api import expect, sync_playwright

    manual = lambda: [r for r in airflow.runs("unitfusion_daily") if r["run_type"] == "manual"]  # noqa: E731
    assert manual() == []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{airflow.url}/dags/unitfusion_daily")
            page.get_by_label("Username").fill(USER)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()

            page.get_by_role("button", name="Trigger").first.click()
            dialog = page.get_by_role("dialog")
            for name in ("bootstrap", "out", "topic_prefix"):
                field = dialog.locator(f"#element_{name}")
                expect(field).to_be_visible()
                expect(field).to_have_value("")
            trigger = dialog.get_by_role("button", name="Trigger")
            expect(trigger).to_be_enabled()
            trigger.click()
            try:
                [run] = airflow.wait("the run from the trigger form", manual, timeout=60)
            except AssertionError:
                page.screenshot(path=str(airflow.home / "trigger.png"))
                raise AssertionError(page.locator("body").inner_text()) from None
        finally:
            browser.close()

    assert {run["conf"].get(name) for name in ("bootstrap", "out", "topic_prefix")} == {None}


def _daily_runs_done(airflow: Airflow) -> list[dict]:
    runs = airflow.runs("unitfusion_daily")
    return runs if runs and all(r["state"] in ("success", "failed") for r in runs) else []


def test_a_new_register_schedules_the_dag_on_its_asset(airflow):
    runs = airflow.wait("the daily runs", lambda: _daily_runs_done(airflow))
    assert {r["state"] for r in runs} == {"success"}, runs
    [bi_run] = airflow.wait(
        "the BI refresh",
        lambda: [r for r in airflow.runs("bi_refresh") if r["state"] in ("success", "failed")],
        timeout=180,
    )
    assert bi_run["state"] == "success" and bi_run["run_type"] == "asset_triggered"
    run_id = quote(bi_run["dag_run_id"], safe="")
    xcom = airflow.api(f"/dags/bi_refresh/dagRuns/{run_id}/taskInstances/refresh/xcomEntries/return_value")
    [event] = xcom["value"]  # one pass published a register; a pass with nothing new emits nothing
    register = Path(event["register"])
    assert register.parent.parent == (airflow.out / "register").resolve()
    assert (register / "register.parquet").exists()
    assert event["dag_id"] == "unitfusion_daily" and Path(event["report"]).exists()
    marts = Path(event["marts"])  # built with the register: unitfusion_marts was emitted beside it
    assert marts == airflow.out.resolve() / "marts" and (marts / "units").is_dir()
    published = [r for r in runs if r["dag_run_id"] == event["dag_run_id"]]
    assert published, (event, runs)


def test_each_run_links_to_its_report(airflow):
    runs = airflow.wait("the daily runs", lambda: _daily_runs_done(airflow))
    reports = {path.resolve().as_uri() for path in (airflow.out / "reports").glob("*.html")}
    assert reports
    for run in runs:  # the report of the register the run published, else of the latest one
        run_id = quote(run["dag_run_id"], safe="")
        links = airflow.api(f"/dags/unitfusion_daily/dagRuns/{run_id}/taskInstances/report/links")
        assert links["extra_links"]["Run report"] in reports, (run, links)
