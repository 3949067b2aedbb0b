"""Kafka access from pure Python: produce JSONL feeds, plan bounded offset ranges, read one range.

Reading by ``assign`` + ``seek`` over explicit ``[start, end)`` ranges needs no consumer group and lets any
Beam runner (Direct, Flink, Spark, Dataflow) split the work; the offsets a run has read are kept with its
output, not in Kafka, which is what makes exactly-once landing possible.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

POLL_TIMEOUT_MS = 500
STALL_TIMEOUT_S = 60.0
CHECK_TIMEOUT_S = 6.0  # the bootstrap check: connect and a Kafka answer, all addresses together
BOOTSTRAP_TIMEOUT_MS = 6000  # a client's first metadata (kafka-python waits 30 s by default, naming nothing)

log = logging.getLogger(__name__)
_ADDRESS_RE = re.compile(r"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\s:\[\],]+)):(?P<port>[^:]*)")


class _ClosedWhileRefreshing(logging.Filter):
    """kafka-python logs ERROR when a client is closed while its metadata refresh is in flight (the request
    is cancelled by the close; seen with short reads under load). Nothing failed: drop exactly that record."""

    def filter(self, record: logging.LogRecord) -> bool:
        from kafka.errors import Cancelled

        cancelled = bool(record.args) and isinstance(record.args[0], Cancelled)  # type: ignore[index]
        return not (record.msg == "Metadata refresh: failed %s" and cancelled)


logging.getLogger("kafka.cluster").addFilter(_ClosedWhileRefreshing())


class KafkaReadError(RuntimeError):
    pass


class BrokerUnreachableError(RuntimeError):
    """No broker of the bootstrap list answered."""


class NoTopicsError(RuntimeError):
    """None of the feed topics exists: a wrong prefix or cluster, not an empty day."""


def parse_bootstrap(text: str) -> list[tuple[str, int]]:
    """``HOST:PORT[,HOST:PORT...]`` as pairs, or ValueError saying what is wrong.

    The port is required: kafka-python would silently take 9092 and read whatever broker listens there.
    """
    addresses = []
    for item in (part.strip() for part in text.split(",")):
        match = _ADDRESS_RE.fullmatch(item)
        if not match:
            raise ValueError(f"{item!r} is not HOST:PORT (host and port are both required)")
        port = match["port"]
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"the port of {item!r} must be a number from 1 to 65535")
        addresses.append((match["ipv6"] or match["host"], int(port)))
    return addresses


def _kafka_answer(host: str, port: int, timeout_s: float) -> None:
    """Send an ApiVersions request (v0, the one every broker answers) and read the reply's header."""
    client_id = b"unitfusion-check"
    request = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id  # api key, version, id, client
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        header = b""
        while len(header) < 8:  # size, correlation id
            chunk = sock.recv(8 - len(header))
            if not chunk:
                raise ConnectionError("closed the connection: not a Kafka listener?")
            header += chunk
    if struct.unpack(">i", header[4:])[0] != 1:
        raise ConnectionError("answered, but not as Kafka does")


def check_bootstrap(bootstrap: str, timeout_s: float = CHECK_TIMEOUT_S) -> None:
    """Fail fast, naming the addresses, unless one of them answers as a Kafka broker. kafka-python would
    retry quietly until its bootstrap timeout, leave its IO thread running, and name nothing."""
    deadline = time.monotonic() + timeout_s
    failures = []
    for host, port in parse_bootstrap(bootstrap):
        try:
            _kafka_answer(host, port, max(0.5, deadline - time.monotonic()))
            return
        except TimeoutError:
            failures.append(f"{host}:{port} (no answer within {timeout_s:.0f} s)")
        except OSError as error:
            failures.append(f"{host}:{port} ({error.strerror or error})")
    raise BrokerUnreachableError(f"no Kafka broker reachable at {', '.join(failures)}")


def _bootstrapped(make: Callable[..., object], bootstrap: str, **settings: object):
    """A kafka-python client, or BrokerUnreachableError naming the address when no broker answers."""
    from kafka.errors import KafkaTimeoutError

    check_bootstrap(bootstrap)
    try:
        return make(bootstrap_servers=bootstrap, bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS, **settings)
    except KafkaTimeoutError:
        raise BrokerUnreachableError(
            f"no Kafka broker answered at {bootstrap} within {BOOTSTRAP_TIMEOUT_MS / 1000:.0f} s "
            "(is it a Kafka listener?)"
        ) from None


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
        "group_id": None,
        "enable_auto_commit": False,
        "auto_offset_reset": "none",  # a planned offset that no longer exists is an error, not a silent skip
        "fetch_max_wait_ms": 100,
        "max_partition_fetch_bytes": 4 * 1024 * 1024,
        "request_timeout_ms": 30000,
    }
    settings.update(overrides)
    return _bootstrapped(KafkaConsumer, bootstrap, **settings)


def _close(consumer) -> None:  # type: ignore[no-untyped-def]
    """Close once no metadata refresh is in flight: closing under one cancels it, and kafka-python logs
    that as an ERROR although nothing failed (the filter above catches the rarer race left)."""
    cluster = getattr(consumer, "_cluster", None)  # kafka-python 3 internals; absent elsewhere: just close
    deadline = time.monotonic() + 2.0
    while cluster is not None and cluster.metadata_refresh_in_progress and time.monotonic() < deadline:
        time.sleep(0.01)
    consumer.close()


def producer(bootstrap: str):
    """A producer that survives broker restarts (no idempotence) and batches for throughput."""
    from kafka import KafkaProducer

    return _bootstrapped(
        KafkaProducer,
        bootstrap,
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
    ``end_offsets``, and taking the larger of the two is right on all of them. A feed whose topic does not
    exist is warned about and skipped; when none exists, NoTopicsError (a wrong prefix or cluster).
    """
    from kafka import TopicPartition

    consumer = _consumer(bootstrap, auto_offset_reset="latest", allow_auto_create_topics=False)
    try:
        partitions = {
            feed: sorted(consumer.partitions_for_topic(topic) or ()) for feed, topic in topics.items()
        }
        missing = sorted(feed for feed, parts in partitions.items() if not parts)
        if topics and len(missing) == len(topics):
            raise NoTopicsError(
                f"none of the feed topics exists on {bootstrap} ({', '.join(sorted(topics.values()))}); "
                "check --bootstrap and the topic prefix (UNITFUSION_TOPIC_PREFIX)"
            )
        for feed in missing:
            log.warning("feed %s: topic %s does not exist on %s; nothing read", feed, topics[feed], bootstrap)
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
        _close(consumer)


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
        _close(consumer)
