"""The README's demo command works end to end: broker, sample feeds, ingest, register on disk."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.pii import HMAC_KEY_ENV
from pipelines.store import RunStore

UNITFUSION = str(Path(sys.executable).with_name("unitfusion"))


def _demo(out: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != HMAC_KEY_ENV}  # the demo makes its own key
    return subprocess.run(
        [UNITFUSION, "demo", "--out", str(out), "--units", "300"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.integration
def test_demo_builds_a_register_from_sample_feeds(tmp_path):
    out = tmp_path / "demo"
    done = _demo(out)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "quarantined by reason" in done.stdout and "units" in done.stdout
    store = RunStore(out)
    manifest = store.latest_manifest()
    assert manifest and all(stats["staged"] > 0 for stats in manifest["feeds"].values())
    register = pq.read_table(store.register_latest_link / "register.parquet")
    links = pq.read_table(store.register_latest_link / "links.parquet")
    assert 250 <= register.num_rows <= 400  # about one row per generated unit
    assert links.num_rows > 5 * register.num_rows
    meta = json.loads((store.register_latest_link / "_meta.json").read_text())
    assert meta["inputs"]["ingest_run"] == manifest["run_id"]
    # The operations of a pass: warnings beside the register, township queues, the run report.
    run = store.register_latest().name
    assert (store.register_latest_link / "warnings.parquet").exists() and "warnings:" in done.stdout
    assert list(store.queues_dir(run).glob("*.xlsx")) and (store.reports_dir / f"{run}.html").exists()
    report = subprocess.run([UNITFUSION, "report", "--out", str(out)], capture_output=True, text=True)
    assert report.returncode == 0 and f"{run}.html" in report.stdout
    # A second demo into the same folder starts from scratch instead of failing on stale offsets.
    again = _demo(out)
    assert again.returncode == 0, again.stderr[-2000:]


@pytest.mark.integration
def test_broker_command_says_when_ready_serves_kafka_and_stops_cleanly(tmp_path):
    import signal

    from pipelines.kafka import free_port, plan_ranges, produce_messages

    port = free_port()
    broker = subprocess.Popen([UNITFUSION, "broker", "--port", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert "ready on 127.0.0.1:" in broker.stdout.readline()
        bootstrap = f"127.0.0.1:{port}"
        produce_messages(bootstrap, "cli.tax", [(b"T1", b'{"record_id": "T1"}')])
        assert sum(r.size for r in plan_ranges(bootstrap, {"tax": "cli.tax"}, {})) == 1
    finally:
        broker.send_signal(signal.SIGINT)
        assert broker.wait(timeout=30) == 0


def test_train_estimates_m_from_the_verdicts_labelled_pairs_unless_told_not_to(tmp_path_factory, tmp_path):
    """``unitfusion train`` places the verdicts in force with the latest register and says how many labelled
    pairs they give; with enough matches the model it writes differs from the EM-only one (--no-verdicts)."""
    from click.testing import CliRunner

    from pipelines.cli import main
    from pipelines.landing import resolve_and_land
    from pipelines.resolve.model import MIN_LABELLED_MATCHES
    from pipelines.townships.verdict_files import add_verdict_file
    from tests.conftest import TEST_KEY, TOKEN_KEY
    from tests.staging import generated_store

    _, store = generated_store(tmp_path_factory, units=300, seed=11, key=TEST_KEY)
    state = resolve_and_land(store, key=TOKEN_KEY).result.state
    records = {
        row["entity_id"]: (feed, row["record_id"])
        for feed, table in state.records.items()
        if "entity_id" in table.column_names
        for row in table.select(["record_id", "entity_id"]).to_pylist()
    }
    joined = [m for m in state.members.to_pylist() if m["unit_id"] and m["matched_by"]][
        : MIN_LABELLED_MATCHES + 5
    ]
    verdicts = tmp_path / "xihu.csv"
    verdicts.write_text(
        "verdict_id,feed,record_id,unit_id_a,unit_id_b,decision,decided_by,decided_at,note\n"
        + "".join(
            f"V{n},{records[m['entity_id']][0]},{records[m['entity_id']][1]},,{m['unit_id']},same_unit,"
            "文新街道办,2026-11-05T10:00:00+08:00,\n"
            for n, m in enumerate(joined)
        ),
        encoding="utf-8",
    )
    add_verdict_file(verdicts, store.verdicts_dir)

    def train(*options: str) -> tuple[str, dict]:
        model = tmp_path / f"model{len(options)}.json"
        done = CliRunner().invoke(
            main, ["train", "--out", str(store.root), "--model", str(model), "--max-pairs", "2e5", *options]
        )
        assert done.exit_code == 0, done.output
        saved = json.loads(model.read_text(encoding="utf-8"))
        return done.output, {k: v for k, v in saved.items() if k != "linker_uid"}

    taught_output, taught = train()
    plain_output, plain = train("--no-verdicts")
    assert "m from them too" in taught_output and "verdicts:" not in plain_output
    assert taught != plain
