"""Kafka: the embedded broker for demo and tests, and the bounded-range client the ingest job reads with."""

from pipelines.kafka.broker import EmbeddedBroker, free_port
from pipelines.kafka.client import (
    OffsetRange,
    RawMessage,
    jsonl_messages,
    plan_ranges,
    produce_messages,
    read_range,
)

__all__ = [
    "EmbeddedBroker",
    "OffsetRange",
    "RawMessage",
    "free_port",
    "jsonl_messages",
    "plan_ranges",
    "produce_messages",
    "read_range",
]
