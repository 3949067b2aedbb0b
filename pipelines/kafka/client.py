"""Kafka access from pure Python: produce JSONL feeds, plan bounded offset ranges, read one range.

Reading by ``assign`` + ``seek`` over explicit ``[start, end)`` ranges needs no consumer group and lets any
Beam runner (Direct, Flink, Spark, Dataflow) split the work; the offsets a run has read are kept with its
output, not in Kafka, which is what makes exactly-once landing possible.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

POLL_TIMEOUT_MS = 500
STALL_TIMEOUT_S = 60.0


class KafkaReadError(RuntimeError):
    pass


class RawMessage(NamedTuple):
    """A Kafka message as read, with the feed it belongs to."""

    feed: str
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, order=True)
class OffsetRange:
    """Messages ``start <= offset < end`` of one topic partition, belonging to one feed."""

    feed: str
    topic: str
    partition: int
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start

    def split(self, max_messages: int) -> list[OffsetRange]:
        """Chunks of at most ``max_messages`` offsets, so a big partition is read in parallel."""
        bounds = range(self.start, self.end, max_messages)
        return [
            OffsetRange(self.feed, self.topic, self.partition, lo, min(lo + max_messages, self.end))
            for lo in bounds
        ]


def _consumer(bootstrap: str, **overrides: object):
    from kafka import KafkaConsumer

    settings: dict[str, object] = {
        "bootstrap_servers": bootstrap,
        "group_id": None,
        "enable_auto_commit": False,
        "auto_offset_reset": "none",  # a planned offset that no longer exists is an error, not a silent skip
        "fetch_max_wait_ms": 100,
        "max_partition_fetch_bytes": 4 * 1024 * 1024,
        "request_timeout_ms": 30000,
    }
    settings.update(overrides)
    return KafkaConsumer(**settings)


def producer(bootstrap: str):
    """A producer that survives broker restarts (no idempotence) and batches for throughput."""
    from kafka import KafkaProducer

    return KafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=False,
        acks="all",
        linger_ms=20,
        batch_size=512 * 1024,
        max_request_size=4 * 1024 * 1024,
    )


def produce_messages(
    bootstrap: str,
    topic: str,
    messages: Iterable[tuple[bytes | None, bytes | None]],
    on_sent: Callable[[int], None] | None = None,
) -> int:
    """Send ``(key, value)`` pairs and wait until the broker has them all; returns how many were sent."""
    client = producer(bootstrap)
    sent = 0
    try:
        futures = []
        for key, value in messages:
            futures.append(client.send(topic, key=key, value=value))
            sent += 1
            if on_sent and sent % 1000 == 0:
                on_sent(1000)
        client.flush()
        for future in futures:
            future.get(timeout=60)  # raise if any send failed
        if on_sent:
            on_sent(sent % 1000)
    finally:
        client.close()
    return sent


def jsonl_messages(path: Path, key_field: str = "record_id") -> Iterator[tuple[bytes | None, bytes]]:
    """Each non-blank line as it is; the key is the line's ``record_id`` when the line parses."""
    with path.open("rb") as lines:
        for line in lines:
            value = line.rstrip(b"\r\n")
            if not value.strip():
                continue
            try:
                record_id = json.loads(value).get(key_field)
            except (ValueError, AttributeError):
                record_id = None
            yield (str(record_id).encode() if record_id is not None else None), value


def plan_ranges(
    bootstrap: str, topics: dict[str, str], start_offsets: dict[tuple[str, int], int]
) -> list[OffsetRange]:
    """Ranges from the last committed offsets to the end of every partition as it stands now.

    The end is the high watermark reported by a fetch: some Kafka-compatible brokers report a stale
    ``end_offsets``, and taking the larger of the two is right on all of them.
    """
    from kafka import TopicPartition

    consumer = _consumer(bootstrap, auto_offset_reset="latest")
    try:
        partitions = {
            feed: sorted(consumer.partitions_for_topic(topic) or ()) for feed, topic in topics.items()
        }
        tps = {TopicPartition(topics[feed], p): feed for feed, parts in partitions.items() for p in parts}
        if not tps:
            return []
        listed_end = consumer.end_offsets(list(tps))
        consumer.assign(list(tps))
        for tp in tps:
            consumer.seek(tp, max(listed_end[tp], start_offsets.get((tp.topic, tp.partition), 0)))
        deadline = time.monotonic() + STALL_TIMEOUT_S
        while any(consumer.highwater(tp) is None for tp in tps):
            if time.monotonic() > deadline:
                raise KafkaReadError("could not learn the high watermark of every partition")
            consumer.poll(timeout_ms=POLL_TIMEOUT_MS, max_records=1000)
        ranges = []
        for tp, feed in sorted(tps.items(), key=lambda item: (item[0].topic, item[0].partition)):
            start = start_offsets.get((tp.topic, tp.partition), 0)
            end = max(listed_end[tp], consumer.highwater(tp) or 0)
            if end < start:
                raise KafkaReadError(
                    f"{tp.topic}[{tp.partition}] ends at {end}, before the committed offset {start}: "
                    "was the topic recreated? Refusing to guess."
                )
            ranges.append(OffsetRange(feed, tp.topic, tp.partition, start, end))
        return ranges
    finally:
        consumer.close()


def read_range(bootstrap: str, offsets: OffsetRange) -> Iterator[RawMessage]:
    """Every message of one planned range, in offset order."""
    from kafka import TopicPartition

    if offsets.size <= 0:
        return
    tp = TopicPartition(offsets.topic, offsets.partition)
    consumer = _consumer(bootstrap)
    try:
        consumer.assign([tp])
        consumer.seek(tp, offsets.start)
        last_progress = time.monotonic()
        while consumer.position(tp) < offsets.end:
            batch = consumer.poll(timeout_ms=POLL_TIMEOUT_MS, max_records=5000).get(tp, [])
            if batch:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > STALL_TIMEOUT_S:
                raise KafkaReadError(
                    f"no progress reading {offsets.topic}[{offsets.partition}] at offset "
                    f"{consumer.position(tp)} (planned end {offsets.end})"
                )
            for record in batch:
                if record.offset >= offsets.end:
                    return
                yield RawMessage(
                    offsets.feed,
                    record.topic,
                    record.partition,
                    record.offset,
                    record.timestamp,
                    record.key,
                    record.value,
                )
    finally:
        consumer.close()
