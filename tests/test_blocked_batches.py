"""A blocked batch has a way out: only its feed waits, and an operator accepts it or sets it aside.

On the real embedded broker: a tax batch with a third of its tax paid negative fails a block expectation
while registration is fine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from markupsafe import escape

from pipelines.cli import main
from pipelines.config import IngestSettings, default_topics
from pipelines.ingest import batches
from pipelines.ingest.job import run_ingest
from pipelines.kafka import produce_messages
from pipelines.ops import tasks
from pipelines.quality import BlockingQualityError
from pipelines.standardise.codes import make_uscc
from pipelines.store import RunStore
from tests.conftest import TOKEN_KEY
from tests.test_dags import AIRFLOW, REPO, _alerts, _pass_env, airflow_env  # noqa: F401  (a fixture)

pytestmark = pytest.mark.integration
FEEDS = ("registration", "tax")
REASON = "sign error confirmed by the tax office; corrected in next month's filing"


def _tax(i: int, tax_paid: float) -> dict:
    return {
        "record_id": f"T{i}",
        "taxpayer_id": make_uscc("9", "1", "330106", f"MA2H{i:04d}"),
        "taxpayer_name": f"杭州测试{i}科技有限公司",
        "period": "2026-10",
        "tax_paid": tax_paid,
        "taxpayer_status": "正常",
        "updated_at": "2026-11-02T09:00:00+08:00",
    }


def _bad_tax(first: int, count: int = 60) -> list[dict]:
    """A third of the filings with negative tax paid: the block expectation allows 5%."""
    return [_tax(i, -10.0 if i % 3 == 0 else float(i)) for i in range(first, first + count)]


def _registration(i: int) -> dict:
    return {
        "record_id": f"R{i}",
        "uscc": make_uscc("9", "1", "330106", f"MA2H{i:04d}"),
        "name": f"杭州测试{i}科技有限公司",
        "updated_at": "2026-11-02T09:00:00+08:00",
    }


def _send(bootstrap: str, topic: str, records: list[dict], extra: list[tuple[bytes, bytes]] = ()) -> None:
    messages = [(r["record_id"].encode(), json.dumps(r, ensure_ascii=False).encode()) for r in records]
    produce_messages(bootstrap, topic, [*messages, *extra])


def _cli(*args: str | Path):
    return CliRunner().invoke(main, [str(a) for a in args])


def _quarantine(store: RunStore, manifest: dict) -> pa.Table:
    files = [store.root / f for f in manifest["quarantine"]["files"]]
    return pa.concat_tables([pq.read_table(f) for f in files]) if files else None


def test_a_blocked_feed_waits_alone_until_decided_and_a_later_bad_batch_blocks_again(
    broker, topic_prefix, tmp_path
):
    topics = {feed: default_topics(topic_prefix)[feed] for feed in FEEDS}
    out = tmp_path / "out"
    settings = IngestSettings(bootstrap=broker.bootstrap, out=out, topics=topics)
    store = RunStore(out)
    _send(broker.bootstrap, topics["tax"], _bad_tax(0), [(b"T-bad", b"{broken")])
    _send(broker.bootstrap, topics["registration"], [_registration(i) for i in range(10)])

    # 1. Tax blocks; registration lands with its offsets; nothing of tax is committed.
    first = run_ingest(settings, TOKEN_KEY)
    assert set(first.blocked) == {"tax"} and first.committed
    [manifest] = store.manifests()
    assert manifest["feeds"]["registration"]["staged"] == 10 and "tax" not in manifest["feeds"]
    assert {o["feed"] for o in manifest["offsets"]} == {"registration"}
    assert store.committed_files("tax") == []
    assert _quarantine(store, manifest) is None  # the broken tax message waits with its batch
    blocked = manifest["blocked"]["tax"]
    assert (blocked["planned"], blocked["staged"], blocked["quarantined"]) == (61, 60, 1)
    [failure] = [f for f in blocked["failures"] if f["severity"] == "block"]
    assert (failure["expectation_type"], failure["column"]) == (
        "expect_column_values_to_be_between",
        "tax_paid",
    )
    assert failure["unexpected_count"] == 20
    error = first.blocking_error()
    assert error.feeds == ["tax"] and error.landed == ["registration"] and error.run_id == manifest["run_id"]
    assert Path(error.batches["tax"]["report_path"]).is_absolute()
    assert Path(error.batches["tax"]["report_path"]).is_file()
    assert "tax_paid" in str(error) and "batches list" in str(error)
    with pytest.raises(BlockingQualityError):
        first.raise_if_blocked()

    # 2. A rerun reads the same tax messages and blocks again, on tax only; nothing else to commit.
    second = run_ingest(settings, TOKEN_KEY)
    assert set(second.blocked) == {"tax"} and not second.committed
    assert len(store.manifests()) == 1
    assert second.blocked["tax"]["offsets"] == blocked["offsets"]
    assert (out / second.blocked["tax"]["report"]).is_file()  # kept under rejected/
    assert second.blocked["tax"]["report"].startswith("rejected/")

    # 3. The operator looks and accepts; a good filing arriving after that is not part of the decision.
    listed = _cli("batches", "list", "--out", out)
    assert listed.exit_code == 0, listed.output
    assert "BLOCKED tax" in listed.output and "tax_paid" in listed.output
    accepted = _cli("batches", "accept", "--out", out, "--feed", "tax", "--reason", REASON, "--by", "wang.li")
    assert accepted.exit_code == 0, accepted.output
    assert "accepted by the next run" in accepted.output
    _send(broker.bootstrap, topics["tax"], [_tax(100, 5.0)])
    third = run_ingest(settings, TOKEN_KEY)
    assert third.committed and not third.blocked
    landed = store.latest_manifest()
    assert landed["feeds"]["tax"]["staged"] == 60 and landed["feeds"]["tax"]["quarantined"] == 1
    decision = landed["decisions"]["tax"]
    assert (decision["action"], decision["by"], decision["reason"]) == ("accept", "wang.li", REASON)
    assert decision["decided_at"] and decision["offsets"] == blocked["offsets"]
    assert any(f["column"] == "tax_paid" and f["severity"] == "block" for f in landed["quality"]["failures"])
    assert batches.blocked_batches(store) == {} and batches.pending_decisions(store) == {}
    assert not store.decision_file("tax").exists() and not store.blocked_batch_file("tax").exists()
    assert "applied in" in _cli("batches", "list", "--out", out).output

    # 4. The late filing is checked on its own and lands.
    fourth = run_ingest(settings, TOKEN_KEY)
    assert fourth.committed and not fourth.blocked and fourth.feeds["tax"].staged == 1

    # 5. A new bad batch blocks again: the acceptance was for that batch only. The DAG's quality gate fails.
    _send(broker.bootstrap, topics["tax"], _bad_tax(200))
    params = {
        "bootstrap": broker.bootstrap,
        "out": str(out),
        "topic_prefix": topic_prefix,
        "feeds": list(FEEDS),
    }
    fifth = tasks.ingest(params)
    assert list(fifth["blocked"]) == ["tax"] and fifth["run_id"] is None
    with pytest.raises(BlockingQualityError) as gate:
        tasks.quality_gate(fifth)
    assert gate.value.feeds == ["tax"] and gate.value.failures[0].unexpected_count == 20
    with pytest.raises(batches.BatchDecisionError):
        batches.decide(store, "registration", batches.ACCEPT, "nothing is blocked there")
    with pytest.raises(batches.BatchDecisionError):
        batches.decide(store, "tax", batches.SET_ASIDE, "  ")

    # 6. Set aside through the DAG param: to quarantine with its reason, and the offsets move on.
    aside = {"feed": "tax", "reason": "replayed March filings", "by": "zhao.min"}
    sixth = tasks.ingest({**params, "set_aside_blocked": aside})
    assert sixth["decided"] == {"tax": "set_aside"} and sixth["decisions_applied"] == {"tax": "set_aside"}
    assert not sixth["blocked"] and sixth["run_id"]
    assert tasks.quality_gate(sixth)["blocked"] == []
    manifest = store.latest_manifest()
    assert manifest["feeds"]["tax"]["staged"] == 0 and manifest["quarantine"]["by_reason"] == {
        "set_aside": 60
    }
    quarantined = _quarantine(store, manifest).to_pylist()
    assert len(quarantined) == 60 and {q["reason"] for q in quarantined} == {"set_aside"}
    assert all("zhao.min" in q["detail"] and "replayed March" in q["detail"] for q in quarantined)
    assert {json.loads(q["raw_payload"])["record_id"] for q in quarantined} == {
        f"T{i}" for i in range(200, 260)
    }
    assert manifest["decisions"]["tax"]["by"] == "zhao.min"
    offsets = store.committed_offsets()
    assert all(
        offsets[o["topic"], o["partition"]] == o["end"] for o in manifest["decisions"]["tax"]["offsets"]
    )
    assert not run_ingest(settings, TOKEN_KEY).committed and batches.blocked_batches(store) == {}

    # 7. A decision param for a feed with nothing blocked (a retry after it was applied) does not fail.
    assert tasks.ingest({**params, "accept_blocked": {"feed": "tax", "reason": "again"}})["decided"] == {
        "tax": "nothing blocked"
    }


def test_unitfusion_run_fails_naming_the_blocked_feed_and_the_report_shows_the_acceptance(
    broker, topic_prefix, tmp_path, monkeypatch
):
    monkeypatch.setenv("UNITFUSION_TOPIC_PREFIX", topic_prefix)
    topics = default_topics(topic_prefix)
    out = tmp_path / "out"
    _send(broker.bootstrap, topics["tax"], _bad_tax(0))
    _send(broker.bootstrap, topics["registration"], [_registration(i) for i in range(10)])

    blocked = _cli("run", "--bootstrap", broker.bootstrap, "--out", out)
    assert blocked.exit_code == 1, blocked.output
    assert "BLOCKED tax" in blocked.output and "data quality blocks tax" in blocked.output
    assert "unitfusion batches accept|set-aside" in blocked.output
    store = RunStore(out)
    register = store.register_latest()  # registration went on to the register
    assert register is not None and pq.read_table(register / "links.parquet").num_rows == 10

    accepted = _cli("batches", "accept", "--out", out, "--feed", "tax", "--reason", REASON, "--by", "wang.li")
    assert accepted.exit_code == 0, accepted.output
    done = _cli("run", "--bootstrap", broker.bootstrap, "--out", out)
    assert done.exit_code == 0, done.output
    assert "tax: the batch blocked in run-000001 was accepted by wang.li" in done.output
    page = (store.reports_dir / f"{store.register_latest().name}.html").read_text(encoding="utf-8")
    section = page[page.index('<section id="batches">') :]
    section = section[: section.index("</section>")]
    assert "accepted" in section and "wang.li" in section and escape(REASON) in section
    assert "tax_paid" in section and "run-000001" in section


def test_the_dags_take_a_decision_as_a_param():
    sys.path.insert(0, str(Path(__file__).parents[1] / "dags"))
    try:
        from unitfusion_common import common_params
    finally:
        sys.path.pop(0)
    from airflow.sdk.exceptions import ParamValidationError

    params = common_params(late_after_hours=36)
    for name in ("accept_blocked", "set_aside_blocked"):
        assert params[name].resolve(None) is None  # no decision: the trigger form accepts it empty
        decision = {"feed": "tax", "reason": REASON, "by": "wang.li"}
        assert params[name].resolve(decision) == decision
        for wrong in ({"feed": "nope", "reason": "x"}, {"feed": "tax"}):
            with pytest.raises(ParamValidationError):
                params[name].resolve(wrong)


@pytest.mark.airflow
def test_the_daily_dag_lands_the_other_feeds_and_fails_on_the_blocked_one(
    airflow_env,  # noqa: F811
    broker,
    topic_prefix,
    tmp_path,
    webhook,
):
    """Under Airflow: ingest commits registration, resolve and land publish it, the quality gate fails the
    run, and the failure alert names the blocked feed."""
    topics = default_topics(topic_prefix)
    _send(broker.bootstrap, topics["tax"], _bad_tax(0))
    _send(broker.bootstrap, topics["registration"], [_registration(i) for i in range(10)])
    out = tmp_path / "out"
    env = _pass_env(airflow_env, broker.bootstrap, out, topic_prefix, webhook[0])
    done = subprocess.run(
        [AIRFLOW, "dags", "test", "unitfusion_daily"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode != 0 and "DagRun failed" in done.stdout + done.stderr, done.stdout[-3000:]
    store = RunStore(out)
    [manifest] = store.manifests()
    assert manifest["feeds"]["registration"]["staged"] == 10 and list(manifest["blocked"]) == ["tax"]
    register = store.register_latest()  # resolve and land went on for registration
    assert register is not None and (store.reports_dir / f"{register.name}.html").exists()
    blocked = [a for a in _alerts(webhook[1]) if a["kind"] == "dq_blocked"]
    assert (
        blocked and blocked[0]["feed"] == "tax" and "tax_paid" in json.dumps(blocked[0], ensure_ascii=False)
    )
