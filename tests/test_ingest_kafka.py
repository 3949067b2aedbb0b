"""Ingest against the real embedded broker: nothing lost, nothing twice, nothing personal in clear."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kafka import KafkaProducer

from pipelines.config import IngestSettings, default_topics
from pipelines.contracts import contract, load_contracts
from pipelines.generate import generate
from pipelines.ingest.job import run_ingest
from pipelines.malformed import malformed_messages
from pipelines.standardise.phones import normalise_phone
from pipelines.store import RunStore
from tests.conftest import TOKEN_KEY

pytestmark = pytest.mark.integration
UNITS = 150


def produce_with_receipts(bootstrap: str, topic: str, messages) -> Counter[tuple[str, int]]:
    """Produce with a plain kafka-python producer and count what the broker acknowledged per partition."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=10)
    futures = [producer.send(topic, key=key, value=value) for key, value in messages]
    producer.flush()
    receipts = Counter((m.topic, m.partition) for m in (f.get(timeout=30) for f in futures))
    producer.close()
    return receipts


def load_feeds(bootstrap: str, prefix: str, sample_dir: Path, tag: str) -> Counter[tuple[str, int]]:
    """Sample feeds with every kind of malformed message mixed in; returns acknowledged counts."""
    receipts: Counter[tuple[str, int]] = Counter()
    topics = default_topics(prefix)
    for feed in load_contracts():
        lines = (sample_dir / f"{feed}.jsonl").read_bytes().splitlines()
        good = [(json.loads(line)["record_id"].encode(), line) for line in lines]
        bad = [(key, value) for key, value, _ in malformed_messages(contract(feed), tag=tag)]
        receipts += produce_with_receipts(
            bootstrap, topics[feed], good[: len(good) // 2] + bad + good[len(good) // 2 :]
        )
    return receipts


def landed(out: Path) -> dict[str, list[dict]]:
    """Every committed row per feed and in quarantine, sorted, with Kafka coordinates."""
    store = RunStore(out)
    rows: dict[str, list[dict]] = {}
    for feed in load_contracts():
        files = store.committed_files(feed)
        table = pa.concat_tables([pq.read_table(f) for f in files]) if files else None
        rows[feed] = (
            sorted(table.to_pylist(), key=lambda r: (r["_topic"], r["_partition"], r["_offset"]))
            if table
            else []
        )
    files = store.committed_files(kind="quarantine")
    quarantine = pa.concat_tables([pq.read_table(f) for f in files]).to_pylist() if files else []
    rows["quarantine"] = sorted(quarantine, key=lambda r: (r["topic"], r["partition"], r["offset"]))
    return rows


def per_partition(rows: dict[str, list[dict]]) -> Counter[tuple[str, int]]:
    counts: Counter[tuple[str, int]] = Counter()
    for name, feed_rows in rows.items():
        for row in feed_rows:
            counts[
                (row["topic"], row["partition"])
                if name == "quarantine"
                else (row["_topic"], row["_partition"])
            ] += 1
    return counts


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample")
    generate(units=UNITS, seed=11, out_dir=out)
    return out


def test_every_message_lands_once_and_a_second_run_adds_nothing(broker, topic_prefix, sample_dir, tmp_path):
    produced = load_feeds(broker.bootstrap, topic_prefix, sample_dir, tag="bad")
    settings = IngestSettings(
        bootstrap=broker.bootstrap, out=tmp_path / "out", topics=default_topics(topic_prefix)
    )

    first = run_ingest(settings, TOKEN_KEY)
    assert first.committed
    rows = landed(settings.out)
    assert per_partition(rows) == produced
    offsets = [(r["_topic"], r["_partition"], r["_offset"]) for f in load_contracts() for r in rows[f]]
    offsets += [(r["topic"], r["partition"], r["offset"]) for r in rows["quarantine"]]
    assert len(offsets) == len(set(offsets)) == sum(produced.values())
    expected_reasons = Counter(
        reason for f in load_contracts() for _, _, reason in malformed_messages(contract(f))
    )
    assert Counter(r["reason"] for r in rows["quarantine"]) == expected_reasons

    second = run_ingest(settings, TOKEN_KEY)
    assert not second.committed
    assert landed(settings.out) == rows

    # New messages after a commit are picked up from the committed offsets, and only they are.
    more = produce_with_receipts(
        broker.bootstrap,
        default_topics(topic_prefix)["tax"],
        [(b"T-late", b'{"record_id": "T-late", "tax_paid": 1.0}')],
    )
    third = run_ingest(settings, TOKEN_KEY)
    assert third.committed and third.messages == 1
    assert per_partition(landed(settings.out)) == produced + more


def _clear_personal_values(sample_dir: Path) -> set[str]:
    """ID numbers anywhere and phones of persons, as they appeared in the input.

    A phone that a business itself registered (registration, tax, electricity) is public contact data and
    may stay, so those are not counted as personal even when a person's record repeats them.
    """
    personal, business_phones = set(), set()
    for feed, spec in ((c.feed, f) for c in load_contracts().values() for f in c.fields):
        if not (spec.personal or spec.kind in ("id_number", "phone")):
            continue
        for line in (sample_dir / f"{feed}.jsonl").read_text(encoding="utf-8").splitlines():
            value = json.loads(line).get(spec.name)
            if not value:
                continue
            if spec.kind == "phone" and not spec.personal:
                business_phones.add(normalise_phone(value))
            elif spec.kind in ("id_number", "phone"):
                personal.add(value)
    return {v for v in personal if normalise_phone(v) not in business_phones and len(v) >= 7}


def test_no_clear_id_number_or_personal_phone_reaches_the_output(broker, topic_prefix, sample_dir, tmp_path):
    load_feeds(broker.bootstrap, topic_prefix, sample_dir, tag="pii")
    out = tmp_path / "out"
    run_ingest(
        IngestSettings(bootstrap=broker.bootstrap, out=out, topics=default_topics(topic_prefix)), TOKEN_KEY
    )
    secrets = _clear_personal_values(sample_dir) | {"11010519491231002X"}  # the one in the malformed samples
    assert len(secrets) > UNITS  # the grep below must have something to find
    blobs = []
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            blobs.append(data)
            if path.suffix == ".parquet":  # compressed pages: grep the decoded values too
                blobs.append(
                    json.dumps(pq.read_table(path).to_pylist(), default=str, ensure_ascii=False).encode()
                )
    found = [s for s in secrets if any(s.encode() in blob for blob in blobs)]
    assert found == []


def _run_job_subprocess(bootstrap: str, out: Path, prefix: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "UNITFUSION_TOPIC_PREFIX": prefix}
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.ingest.job", "--bootstrap", bootstrap, "--out", str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_a_run_killed_midway_and_rerun_equals_an_uninterrupted_run(
    broker, topic_prefix, sample_dir, tmp_path, monkeypatch
):
    load_feeds(broker.bootstrap, topic_prefix, sample_dir, tag="crash")
    topics = default_topics(topic_prefix)
    reference = tmp_path / "reference"
    run_ingest(IngestSettings(bootstrap=broker.bootstrap, out=reference, topics=topics), TOKEN_KEY)

    # 1. Killed with SIGKILL while the Beam job is writing.
    killed = tmp_path / "killed"
    job = _run_job_subprocess(broker.bootstrap, killed, topic_prefix)
    deadline = time.monotonic() + 120
    while not (killed / "runs").exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    job.send_signal(signal.SIGKILL)
    job.wait()
    assert RunStore(killed).manifests() == []  # nothing committed, so nothing visible
    run_ingest(IngestSettings(bootstrap=broker.bootstrap, out=killed, topics=topics), TOKEN_KEY)
    assert landed(killed) == landed(reference)

    # 2. Crashed at the commit itself, after all files were written.
    crashed = tmp_path / "crashed"

    def crash(self, manifest):
        raise OSError("disk full while writing the manifest")

    with monkeypatch.context() as patched, pytest.raises(OSError):
        patched.setattr(RunStore, "commit", crash)
        run_ingest(IngestSettings(bootstrap=broker.bootstrap, out=crashed, topics=topics), TOKEN_KEY)
    assert landed(crashed)["registration"] == []
    run_ingest(IngestSettings(bootstrap=broker.bootstrap, out=crashed, topics=topics), TOKEN_KEY)
    assert landed(crashed) == landed(reference)
    assert not run_ingest(
        IngestSettings(bootstrap=broker.bootstrap, out=crashed, topics=topics), TOKEN_KEY
    ).committed
