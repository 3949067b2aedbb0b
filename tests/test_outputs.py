"""Every output of a run is finished by a rerun, once: the work queues and the report of every published
register run, the alerts of every committed ingest run. A pass is killed with -9 at each point (a
subprocess patches the step to die, as in ``test_incremental``), or runs out of disk during the export; the
next pass, which finds its inputs unchanged, completes what is missing, and a real SMTP server and webhook
receiver on 127.0.0.1 get each alert exactly once."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from pipelines.cli import _operate
from pipelines.kafka import free_port
from pipelines.landing import resolve_and_land
from pipelines.ops.alerts import AlertChannels, alerts_for_ingest
from pipelines.ops.outputs import STEPS, OutputsIncomplete, complete_outputs
from pipelines.store import RunStore
from pipelines.townships import workqueue
from tests.conftest import TOKEN_KEY
from tests.staging import commit_rows
from tests.test_alerts import smtp_inbox  # noqa: F401  (a fixture)
from tests.test_resolve import _staging

ROOT = Path(__file__).resolve().parent.parent
LATE_TAX = {
    "record_id": "T-LATE",
    "taxpayer_name": "杭州迟到贸易有限公司",
    "period": "2026-10",
    "tax_paid": 5.0,
}

# The second pass: an ingest run whose feeds dropped (volume alerts), a register, then the outputs.
KILLER = """
import os, signal, sys
from pathlib import Path
from pipelines import cli, landing
from pipelines.ops import alerts, outputs
from pipelines.pii import load_key
from pipelines.store import RunStore
from pipelines.townships import workqueue
from tests.staging import commit_rows
from tests.test_outputs import LATE_TAX

point, root = sys.argv[1], sys.argv[2]
die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
if point == "after_ingest_commit":
    landing.resolve_and_land = die
elif point == "after_publish":
    outputs.complete_outputs = die
elif point == "during_queue_export":
    workqueue._write_csv = die  # after the first workbook is in the partial folder
elif point == "after_one_channel":
    alerts._email = die  # the webhook has sent, the e-mail dies
store = RunStore(Path(root))
run = commit_rows(store, {"tax": [LATE_TAX]})
landed = landing.resolve_and_land(store, key=load_key(os.environ))
cli._operate(store, landed, run)
"""
POINTS = ["after_ingest_commit", "after_publish", "during_queue_export", "after_one_channel"]


@pytest.fixture(scope="module")
def first_pass(tmp_path_factory) -> RunStore:
    """A store after one complete pass (ingest, register, outputs)."""
    store = RunStore(tmp_path_factory.mktemp("first") / "store")
    staging = _staging()
    staging["tax"] += [
        {**staging["tax"][0], "record_id": f"T1-{m}", "period": f"2026-0{m}"} for m in (4, 5, 6, 7)
    ]
    commit_rows(store, staging)  # six filings: the next run's one is a volume drop
    resolve_and_land(store, key=TOKEN_KEY)
    complete_outputs(store, channels=AlertChannels())
    return store


@pytest.fixture(scope="module")
def calm(first_pass, tmp_path_factory) -> RunStore:
    """The second pass, undisturbed."""
    store = RunStore(tmp_path_factory.mktemp("calm") / "store")
    shutil.copytree(first_pass.root, store.root, symlinks=True)
    commit_rows(store, {"tax": [LATE_TAX]})
    resolve_and_land(store, key=TOKEN_KEY)
    complete_outputs(store, channels=AlertChannels())
    return store


@pytest.fixture
def channels(smtp_inbox, webhook, monkeypatch):  # noqa: F811
    port, mails = smtp_inbox
    url, posts = webhook
    monkeypatch.setenv(
        "UNITFUSION_ALERT_SMTP", f"smtp://127.0.0.1:{port}?from=uf@bureau.test&to=ops@bureau.test"
    )
    monkeypatch.setenv("UNITFUSION_ALERT_WEBHOOK", url)
    return mails, posts


def _copy(store: RunStore, to: Path) -> RunStore:
    shutil.copytree(store.root, to, symlinks=True)
    return RunStore(to)


def _csvs(store: RunStore, run: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(store.queues_dir(run).glob("*.csv"))}


def _written(store: RunStore) -> dict[Path, int]:
    """When each file of the store was last written (the lock file is opened by every pass)."""
    return {p: p.stat().st_mtime_ns for p in store.root.rglob("*") if p.is_file() and p.name != ".lock"}


def _assert_complete_once(store: RunStore, calm: RunStore, mails: list, posts: list[dict]) -> None:
    """Every output of every run exists as an undisturbed pass made it, with nothing left half-written;
    each alert of the second ingest run reached each channel once."""
    assert store.register_runs() == calm.register_runs() == ["reg-000001", "reg-000002"]
    for run in store.register_runs():
        assert _csvs(store, run) == _csvs(calm, run), run
        assert sorted(p.name for p in store.queues_dir(run).iterdir()) == sorted(
            p.name for p in calm.queues_dir(run).iterdir()
        )
        assert store.report_path(run).is_file()
        assert store.output_done(run, "work_queues") and store.output_done(run, "report")
    assert store.stale_partials("work_queues") == [] and store.stale_partials("report") == []
    assert all(store.output_done(run, "alerts") for run in store.committed_runs())
    expected = sorted(a.dedup_key for a in alerts_for_ingest(store, "run-000002"))
    assert expected  # the feeds dropped: volume alerts
    posted = sorted(a["dedup_key"] for body in posts if body["run"] == "run-000002" for a in body["alerts"])
    assert posted == expected  # each once
    subjects = [message_from_bytes(m.content, policy=policy.default)["Subject"] for m in mails]
    assert len([s for s in subjects if "run-000002" in s]) == 1
    assert all("run-000001" not in s for s in subjects)  # the first run raised nothing


@pytest.mark.parametrize("point", POINTS)
def test_a_pass_killed_with_sigkill_gets_every_output_from_the_next_pass(
    first_pass, calm, channels, tmp_path, point
):
    mails, posts = channels
    store = _copy(first_pass, tmp_path / "killed")
    done = subprocess.run(
        [sys.executable, "-c", KILLER, point, str(store.root)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    if point == "during_queue_export":
        assert store.stale_partials("work_queues")  # the half-written export is there...
    if point == "after_one_channel":
        assert len(posts) == 1 and not mails  # the webhook had sent before the kill

    # the rerun; its inputs are unchanged but after a kill
    _operate(store, resolve_and_land(store, key=TOKEN_KEY), None)
    _assert_complete_once(store, calm, mails, posts)  # ... and gone now

    before = _written(store)
    _operate(store, resolve_and_land(store, key=TOKEN_KEY), None)  # once more: nothing to do
    assert len(posts) == 1 and len(mails) == 1
    assert _written(store) == before


def test_a_full_disk_during_the_export_still_sends_the_report_and_alerts_and_the_next_pass_exports(
    first_pass, calm, channels, tmp_path, monkeypatch
):
    mails, posts = channels
    store = _copy(first_pass, tmp_path / "full")
    run = commit_rows(store, {"tax": [LATE_TAX]})
    landed = resolve_and_land(store, key=TOKEN_KEY)
    real = workqueue._write_csv

    def write_csv(*args, **kwargs):  # the workbook is written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(workqueue, "_write_csv", write_csv)
    with pytest.raises(OutputsIncomplete, match="work_queues of reg-000002: OSError"):
        _operate(store, landed, run)
    assert store.stale_partials("work_queues") and not store.queues_dir("reg-000002").exists()
    assert store.output_done("reg-000002", "report") and store.output_done(run, "alerts")
    monkeypatch.setattr(workqueue, "_write_csv", real)  # space again

    _operate(store, resolve_and_land(store, key=TOKEN_KEY), None)
    _assert_complete_once(store, calm, mails, posts)


def test_alerts_a_channel_could_not_take_are_sent_by_the_next_pass(first_pass, tmp_path, webhook):
    """An unreachable channel leaves the ingest run's alerts unmarked; the next pass sends them once."""
    url, posts = webhook
    store = _copy(first_pass, tmp_path / "store")
    run = commit_rows(store, {"tax": [LATE_TAX]})
    down = AlertChannels(webhook_url=f"http://127.0.0.1:{free_port()}/nobody")
    completed = complete_outputs(store, steps=["alerts"], channels=down)
    assert ("alerts", run) in completed.unfinished and not store.output_done(run, "alerts")
    complete_outputs(store, steps=["alerts"], channels=AlertChannels(webhook_url=url))
    complete_outputs(store, steps=["alerts"], channels=AlertChannels(webhook_url=url))
    assert [body["run"] for body in posts] == [run] and store.output_done(run, "alerts")
    outbox = [json.loads(line) for line in store.alert_log(run).read_text().splitlines()]
    assert {e["dedup_key"] for e in outbox} == {a.dedup_key for a in alerts_for_ingest(store, run)}


def test_outputs_already_there_are_adopted_not_written_again(first_pass, tmp_path):
    """A store from before the markers (or a kill between an export's rename and its marker): complete
    outputs are marked, not rewritten (township staff may be filling in the files)."""
    store = _copy(first_pass, tmp_path / "store")
    shutil.rmtree(store.outputs_dir)
    before = {p: p.stat().st_mtime_ns for p in store.queues_dir("reg-000001").iterdir()}
    completed = complete_outputs(store, channels=AlertChannels())
    assert completed.done["work_queues"]["reg-000001"]["found"]
    assert {p: p.stat().st_mtime_ns for p in store.queues_dir("reg-000001").iterdir()} == before
    assert all(store.output_done(run, step) for step in STEPS[:2] for run in store.register_runs())


CLI_WITHOUT_AIRFLOW = """
import os, sys
sys.modules["airflow"] = None  # not installed
from pathlib import Path
from pipelines.cli import _run_pass, _operate
from pipelines.landing import resolve_and_land
from pipelines.pii import load_key
from pipelines.store import RunStore
from tests.staging import commit_rows
from tests.test_outputs import LATE_TAX

store = RunStore(Path(sys.argv[1]))
run = commit_rows(store, {"tax": [LATE_TAX]})
_operate(store, resolve_and_land(store, key=load_key(os.environ)), run)
assert not [name for name in sys.modules if name.startswith("airflow") and sys.modules[name] is not None]
"""


def test_a_pass_and_its_outputs_need_no_airflow(first_pass, tmp_path):
    store = _copy(first_pass, tmp_path / "store")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AIRFLOW_CONN_UNITFUSION_SMTP": "smtp://nowhere"}
    done = subprocess.run(
        [sys.executable, "-c", CLI_WITHOUT_AIRFLOW, str(store.root)],
        env=env,
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert all(store.output_done(run, step) for step in STEPS[:2] for run in store.register_runs())
