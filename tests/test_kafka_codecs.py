"""Feeds compressed with any codec a producer may use (gzip, snappy, lz4, zstd) are read.

Batches are produced by librdkafka (confluent-kafka), as departments' producers often are, on the real
embedded broker; the test checks the broker kept them compressed, so the reader really decoded each codec.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from confluent_kafka import Producer
from kafka.record import MemoryRecords
from kafka.record.default_records import DefaultRecordBase

from pipelines.config import IngestSettings
from pipelines.generate import generate
from pipelines.ingest.job import run_ingest
from pipelines.kafka import plan_ranges, read_range
from pipelines.store import RunStore
from tests.conftest import TOKEN_KEY

pytestmark = pytest.mark.integration

CODECS = {
    "gzip": DefaultRecordBase.CODEC_GZIP,
    "snappy": DefaultRecordBase.CODEC_SNAPPY,
    "lz4": DefaultRecordBase.CODEC_LZ4,
    "zstd": DefaultRecordBase.CODEC_ZSTD,
}


def produce_compressed(bootstrap: str, topic: str, codec: str, messages: list[tuple[bytes, bytes]]) -> None:
    """Send with librdkafka, batching enough that every batch is compressed."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "compression.type": codec,
            "linger.ms": 50,
            "enable.idempotence": False,
        }
    )
    failed: list[str] = []
    for key, value in messages:
        producer.produce(topic, key=key, value=value, on_delivery=lambda e, _m: e and failed.append(str(e)))
    assert producer.flush(30) == 0
    assert not failed


@pytest.fixture
def batch_codecs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The codec of every record batch the broker returned to a kafka-python fetch (observed, not altered)."""
    import kafka.consumer.fetcher as fetcher

    seen: list[int] = []

    class Observed(MemoryRecords):
        def __init__(self, data: bytes) -> None:
            super().__init__(data)
            probe = MemoryRecords(bytes(data))
            while probe.has_next():
                seen.append(probe.next_batch().compression_type)

    monkeypatch.setattr(fetcher, "MemoryRecords", Observed)
    return seen


@pytest.mark.parametrize("codec", list(CODECS))
def test_batches_compressed_by_librdkafka_are_read_whole(broker, topic_prefix, batch_codecs, codec):
    topic = f"{topic_prefix}codec.{codec}"
    sent = [
        (f"K{i}".encode(), json.dumps({"record_id": f"K{i}", "名称": f"重庆某某商贸有限公司 {i}"}).encode())
        for i in range(400)
    ]
    produce_compressed(broker.bootstrap, topic, codec, sent)

    ranges = plan_ranges(broker.bootstrap, {"tax": topic}, {})
    assert sum(r.size for r in ranges) == len(sent)
    batch_codecs.clear()
    read = [(m.key, m.value) for r in ranges for m in read_range(broker.bootstrap, r)]

    assert sorted(read) == sorted(sent)
    assert batch_codecs and set(batch_codecs) == {CODECS[codec]}  # the broker kept them as produced


def test_an_ingest_run_stages_feeds_each_compressed_with_another_codec(broker, topic_prefix, tmp_path):
    sample = tmp_path / "sample"
    generate(units=60, seed=5, out_dir=sample)
    feeds = dict(zip(("registration", "tax", "utility", "waybill"), CODECS, strict=True))
    topics = {feed: f"{topic_prefix}{feed}.{codec}" for feed, codec in feeds.items()}
    produced = Counter()
    for feed, codec in feeds.items():
        lines = (sample / f"{feed}.jsonl").read_bytes().splitlines()
        produce_compressed(
            broker.bootstrap, topics[feed], codec, [(json.loads(v)["record_id"].encode(), v) for v in lines]
        )
        produced[feed] = len(lines)

    out = tmp_path / "out"
    result = run_ingest(IngestSettings(bootstrap=broker.bootstrap, out=out, topics=topics), TOKEN_KEY)

    assert result.committed
    assert {feed: stats.read for feed, stats in result.feeds.items()} == produced
    staged = Counter()
    for feed in feeds:
        staged[feed] = sum(pq.read_metadata(f).num_rows for f in RunStore(out).committed_files(feed))
    assert staged == Counter({feed: result.feeds[feed].staged for feed in feeds})
    assert all(staged[feed] > 0.9 * produced[feed] for feed in feeds)


def test_the_codec_libraries_are_declared_for_install():
    """A fresh install must bring them: kafka-python only imports them if present."""
    from kafka import codec

    assert codec.has_snappy() and codec.has_lz4() and codec.has_zstd()
    setup = (Path(__file__).parents[1] / "setup.cfg").read_text()
    install = setup.split("install_requires =")[1].split("\n[")[0]
    for package in ("lz4", "python-snappy", "zstandard"):
        assert f"\n    {package}" in install
