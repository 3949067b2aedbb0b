"""What an operator sees when something is wrong: one line, the right exit code, quickly; and on a run that
went well, no ERROR or WARNING at all. The real command runs as a subprocess against the real broker."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipelines.config import default_topics
from pipelines.contracts import load_contracts
from pipelines.generate import generate
from pipelines.kafka import free_port, plan_ranges, produce_messages
from pipelines.kafka.client import (
    BOOTSTRAP_TIMEOUT_MS,
    CHECK_TIMEOUT_S,
    BrokerUnreachableError,
    check_bootstrap,
    parse_bootstrap,
)
from pipelines.store import RunStore, StoreLockedError

UNITFUSION = str(Path(sys.executable).with_name("unitfusion"))


def unitfusion(*args: str, tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    begun = time.monotonic()
    done = subprocess.run(
        [UNITFUSION, *args],
        env={**os.environ, "UNITFUSION_LOG_DIR": str(tmp_path / "fallback-logs"), **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    return done, time.monotonic() - begun


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


# -- usage errors: exit 2, one line ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bootstrap", "says"),
    [
        ("127.0.0.1:notaport", "port of '127.0.0.1:notaport' must be a number"),
        ("127.0.0.1", "'127.0.0.1' is not HOST:PORT"),  # never silently port 9092
        ("127.0.0.1:0", "must be a number from 1 to 65535"),
        ("127.0.0.1:65536", "must be a number from 1 to 65535"),
        (":9092", "':9092' is not HOST:PORT"),
        ("a:9092,,b:9092", "'' is not HOST:PORT"),
    ],
)
def test_a_bad_bootstrap_is_a_usage_error_in_one_line(tmp_path, bootstrap, says):
    done, _ = unitfusion("run", "--bootstrap", bootstrap, "--out", str(tmp_path / "out"), tmp_path=tmp_path)
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert "--bootstrap" in line and says in line
    assert not (tmp_path / "out").exists()  # refused before anything was touched


def test_bootstrap_lists_and_ipv6_addresses_are_accepted():
    assert parse_bootstrap("kafka-1:9092, kafka-2:19092") == [("kafka-1", 9092), ("kafka-2", 19092)]
    assert parse_bootstrap("[::1]:9092") == [("::1", 9092)]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["run", "--bootstrap", "127.0.0.1:9092", "--out", "{file}"], "'--out'"),
        (["rebuild", "--out", "{file}"], "'--out'"),
        (["nonsense"], "No such command 'nonsense'"),
        (["run", "--out", "{tmp}"], "Missing option '--bootstrap'"),
    ],
)
def test_other_usage_errors_exit_2_in_one_line(tmp_path, args, says):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    args = [a.format(file=a_file, tmp=tmp_path) for a in args]
    done, _ = unitfusion(*args, tmp_path=tmp_path)
    assert done.returncode == 2
    assert says in one_line(done.stderr)


# -- failures: exit 1, one line naming the log with the traceback ---------------------------------------


def test_the_timeouts_let_an_unreachable_broker_fail_within_10_s():
    assert CHECK_TIMEOUT_S < 10 and BOOTSTRAP_TIMEOUT_MS / 1000 < 10


def test_no_broker_fails_at_once_naming_the_address_with_the_traceback_in_the_log(tmp_path):
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    out = tmp_path / "out"
    done, seconds = unitfusion("run", "--bootstrap", address, "--out", str(out), tmp_path=tmp_path)
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert f"no Kafka broker reachable at {address}" in line
    logs = list((out / "logs").glob("unitfusion-*.log"))
    assert len(logs) == 1 and str(logs[0]) in line
    assert "Traceback" in logs[0].read_text() and "BrokerUnreachableError" in logs[0].read_text()
    assert seconds < 15, seconds  # a behaviour check of the settings above; was 34 s


def test_a_port_that_is_not_kafka_fails_within_10_s(tmp_path):
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        begun = time.monotonic()
        with pytest.raises(BrokerUnreachableError, match=f"reachable at {address} \\(no answer within"):
            plan_ranges(address, {"tax": "feeds.tax"}, {})
        assert time.monotonic() - begun < 10
        done, seconds = unitfusion("run", "--bootstrap", address, "--out", str(tmp_path), tmp_path=tmp_path)
    assert done.returncode == 1 and f"no Kafka broker reachable at {address}" in one_line(done.stderr)
    assert seconds < 20, seconds


def test_a_listener_that_hangs_up_is_not_taken_for_a_broker():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        address = f"127.0.0.1:{server.getsockname()[1]}"
        closer = threading.Thread(target=lambda: server.accept()[0].close())
        closer.start()
        with pytest.raises(
            BrokerUnreachableError, match=f"reachable at {address} \\((closed|Connection reset)"
        ):
            check_bootstrap(address)
        closer.join()


def test_check_bootstrap_needs_only_one_reachable_broker_of_the_list(broker):
    check_bootstrap(f"127.0.0.1:{free_port()},{broker.bootstrap}")
    with pytest.raises(BrokerUnreachableError, match=r"127\.0\.0\.1:1 "):
        check_bootstrap("127.0.0.1:1")


@pytest.mark.integration
def test_no_feed_topic_on_the_broker_fails_in_one_line(broker, tmp_path):
    done, _ = unitfusion(
        "run",
        "--bootstrap",
        broker.bootstrap,
        "--out",
        str(tmp_path / "out"),
        tmp_path=tmp_path,
        UNITFUSION_TOPIC_PREFIX="nothing-here.",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    line = one_line(done.stderr)
    assert "none of the feed topics exists" in line and "nothing-here.tax" in line


@pytest.mark.integration
def test_a_missing_feed_topic_is_one_warning_for_that_feed(broker, topic_prefix, caplog):
    topics = default_topics(topic_prefix)
    produce_messages(broker.bootstrap, topics["tax"], [(b"T1", b'{"record_id": "T1"}')])
    with caplog.at_level(logging.WARNING, logger="pipelines.kafka.client"):
        ranges = plan_ranges(broker.bootstrap, topics, {})
    assert sum(r.size for r in ranges) == 1
    warned = [r.getMessage() for r in caplog.records if r.name == "pipelines.kafka.client"]
    missing = sorted(feed for feed in topics if feed != "tax")
    assert len(warned) == len(missing)
    for feed in missing:
        assert sum(f"feed {feed}: topic {topics[feed]} does not exist" in w for w in warned) == 1
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    try:
        assert not {topics[feed] for feed in missing} & consumer.topics()  # asking did not create them
    finally:
        consumer.close()


def test_a_locked_store_says_who_holds_it_since_when(tmp_path):
    store = RunStore(tmp_path / "out")
    with store.lock():
        with pytest.raises(StoreLockedError) as raised:
            with RunStore(store.root).lock():
                pass
        note = json.loads((store.root / ".lock").read_text())
        assert note["pid"] == os.getpid() and note["host"] == socket.gethostname() and note["since"]
        assert f"pid {os.getpid()} on {socket.gethostname()}" in str(raised.value)
        assert note["since"] in str(raised.value) and note["command"] in str(raised.value)
    with store.lock():  # released, and taken again
        pass


@pytest.mark.integration
def test_a_locked_store_fails_the_command_in_one_line(broker, topic_prefix, tmp_path):
    topics = default_topics(topic_prefix)
    produce_messages(broker.bootstrap, topics["tax"], [(b"T1", b'{"record_id": "T1"}')])
    out = tmp_path / "out"
    with RunStore(out).lock():
        done, _ = unitfusion(
            "run",
            "--bootstrap",
            broker.bootstrap,
            "--out",
            str(out),
            tmp_path=tmp_path,
            UNITFUSION_TOPIC_PREFIX=topic_prefix,
        )
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert f"{out} is locked by pid {os.getpid()} on {socket.gethostname()}" in line and " since " in line


# -- success: quiet --------------------------------------------------------------------------------------


def test_the_closing_race_of_a_metadata_refresh_is_not_logged_but_real_failures_are(caplog):
    from kafka.errors import Cancelled, KafkaConnectionError

    cluster = logging.getLogger("kafka.cluster")
    with caplog.at_level(logging.ERROR, logger="kafka.cluster"):
        cluster.error("Metadata refresh: failed %s", Cancelled())
        cluster.error("Metadata refresh: failed %s", KafkaConnectionError("broker went away"))
    assert [r.getMessage() for r in caplog.records] == [
        "Metadata refresh: failed KafkaConnectionError: broker went away"
    ]


@pytest.mark.integration
def test_a_successful_run_prints_no_error_or_warning(broker, topic_prefix, tmp_path):
    sample = tmp_path / "sample"
    generate(units=40, seed=3, out_dir=sample)
    topics = default_topics(topic_prefix)
    for feed in load_contracts():
        lines = (sample / f"{feed}.jsonl").read_bytes().splitlines()
        produce_messages(broker.bootstrap, topics[feed], [(None, line) for line in lines])
    out = tmp_path / "out"
    done, _ = unitfusion(
        "run",
        "--bootstrap",
        broker.bootstrap,
        "--out",
        str(out),
        tmp_path=tmp_path,
        UNITFUSION_TOPIC_PREFIX=topic_prefix,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "units" in done.stdout
    noisy = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if "ERROR" in line or "WARNING" in line or "apitools" in line or "Traceback" in line
    ]
    assert noisy == []
    assert done.stderr == ""
