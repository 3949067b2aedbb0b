"""Shared fixtures: the real embedded broker, a tokenisation key, fresh topic names."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from pipelines.kafka import EmbeddedBroker
from pipelines.pii import HMAC_KEY_ENV

TEST_KEY = "test-key-0123456789abcdef"
_topic_counter = itertools.count()


@pytest.fixture(autouse=True)
def hmac_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(HMAC_KEY_ENV, TEST_KEY)
    return TEST_KEY


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """One real Kafka-protocol broker for the session; tests keep apart by topic prefix."""
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture
def topic_prefix() -> str:
    """A fresh topic prefix per test: the broker keeps everything in memory and has no retention."""
    return f"t{next(_topic_counter)}."
