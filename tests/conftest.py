"""Shared fixtures: the real embedded broker, a tokenisation key, fresh topic names, a webhook receiver, and
one register built through the broker for the tests that read one."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from pipelines.kafka import EmbeddedBroker
from pipelines.pii import HMAC_KEY_ENV
from tests.shared_stores import BatchedRegister, SharedRegister, build_batched_register, build_shared_register

TEST_KEY = "test-key-0123456789abcdef"
# In-process tests pass TOKEN_KEY down; the commands they start as subprocesses read TEST_KEY from their
# environment (the autouse fixture below).
TOKEN_KEY = TEST_KEY.encode()
_topic_counter = itertools.count()


@pytest.fixture(autouse=True)
def hmac_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """The key in the environment of the commands tests start as subprocesses (``unitfusion``, Airflow)."""
    monkeypatch.setenv(HMAC_KEY_ENV, TEST_KEY)
    return TEST_KEY


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """One real Kafka-protocol broker for the session; tests keep apart by topic prefix."""
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture(scope="session")
def shared_register(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> SharedRegister:
    """A generated city in two register runs through the broker (``tests.shared_stores``), built once a
    session. Read it only; a test that changes a store takes a ``shared_stores.copy_store`` of it."""
    return build_shared_register(
        broker.bootstrap, tmp_path_factory.mktemp("shared-sample"), tmp_path_factory.mktemp("shared-store")
    )


@pytest.fixture(scope="session")
def batched_register(tmp_path_factory: pytest.TempPathFactory) -> BatchedRegister:
    """A city staged as a first load and three batches, a register run after each (``tests.shared_stores``),
    built once a session. Read it only; copy the store to change it."""
    return build_batched_register(
        tmp_path_factory.mktemp("batched-sample"),
        tmp_path_factory.mktemp("batched-parts"),
        tmp_path_factory.mktemp("batched-store"),
        tmp_path_factory.mktemp("batched-keys"),
        TOKEN_KEY,
    )


@pytest.fixture
def topic_prefix() -> str:
    """A fresh topic prefix per test: the broker keeps everything in memory and has no retention."""
    return f"t{next(_topic_counter)}."


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict]]]:
    """A real HTTP receiver on 127.0.0.1 that keeps every JSON body POSTed to it."""
    received: list[dict] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/alerts", received
    finally:
        server.shutdown()
        server.server_close()
