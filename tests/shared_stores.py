"""Registers built once a session and shared by the test files that read them; a test that changes a store
works on a copy. One generated city resolved through the real broker (marts, register quality, pages), and
one city staged as a first load and batches with a register run after each (incremental runs, marts).

Each such store costs an ingest pass and a register run or two (several seconds each whatever the city's
size), so building one per test file was most of the integration tests' time."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from pipelines.config import IngestSettings, default_topics
from pipelines.contracts import contract, load_contracts
from pipelines.generate import generate
from pipelines.generate.batches import BatchSplit, split_batches
from pipelines.ingest.job import run_ingest
from pipelines.kafka import produce_messages
from pipelines.landing import Landed, resolve_and_land
from pipelines.malformed import malformed_messages
from pipelines.store import RunStore
from tests.staging import stage_sample

# The city: every situation the lock-on lists look for is planted in it, and its review items and warnings
# fill the month of the pages' answered item.
UNITS = 200
SEED = 29
# Built outside the per-test key (conftest's TEST_KEY): nothing that reads the store may need the key.
KEY = b"shared-register-key-0123456789"
TOPIC_PREFIX = "shared."
MALFORMED_TAG = "shared"
# The batched city: batches of 300 records touch few of its units.
BATCHED_UNITS = 900
BATCHED_SEED = 13
BATCHES = 3
BATCH_RECORDS = 300


@dataclass(frozen=True)
class SharedRegister:
    """A generated sample (its feeds, truth and planted situations) and the run store built from it."""

    sample: Path
    store: RunStore
    key: bytes


def _messages(lines: list[bytes]) -> list[tuple[bytes, bytes]]:
    return [(json.loads(line)["record_id"].encode(), line) for line in lines]


def build_shared_register(bootstrap: str, sample: Path, root: Path) -> SharedRegister:
    """Generate the city into ``sample``; send the first half of each feed through the broker, ingest and
    resolve (``reg-000001``, a rebuild); then the second half with one malformed message of every kind,
    ingest and resolve again (``reg-000002``, incremental)."""
    generate(units=UNITS, seed=SEED, out_dir=sample)
    store = RunStore(root)
    topics = default_topics(TOPIC_PREFIX)
    settings = IngestSettings(bootstrap=bootstrap, out=store.root, topics=topics)
    lines = {feed: (sample / f"{feed}.jsonl").read_bytes().splitlines() for feed in load_contracts()}
    for first_half in (True, False):
        for feed, feed_lines in lines.items():
            cut = len(feed_lines) // 2
            messages = _messages(feed_lines[:cut] if first_half else feed_lines[cut:])
            if not first_half:
                messages += [(k, v) for k, v, _ in malformed_messages(contract(feed), tag=MALFORMED_TAG)]
            produce_messages(bootstrap, topics[feed], messages)
        assert run_ingest(settings, KEY).committed
        assert resolve_and_land(store, key=KEY) is not None
    assert store.register_runs() == ["reg-000001", "reg-000002"]
    return SharedRegister(sample, store, KEY)


@dataclass(frozen=True)
class BatchedRegister:
    """A sample split into a first load and batches, the store fed each part with a register run after each
    (``runs``, oldest first), and each run's person and unit keys (``keys_of_runs / <run>``: the store prunes
    older runs' state)."""

    parts: BatchSplit
    store: RunStore
    runs: list[Landed]
    keys_of_runs: Path


def build_batched_register(
    sample: Path, parts_dir: Path, root: Path, keys_dir: Path, key: bytes
) -> BatchedRegister:
    """Generate the batched city into ``sample``, split it into ``parts_dir`` and stage each part (no broker)
    into a store at ``root``, resolving after each: a rebuild, then one incremental run per batch."""
    generate(units=BATCHED_UNITS, seed=BATCHED_SEED, out_dir=sample)
    parts = split_batches(sample, parts_dir, batches=BATCHES, batch_records=BATCH_RECORDS, seed=BATCHED_SEED)
    store = RunStore(root)
    runs = []
    for part in [parts.first_load, *parts.batches]:
        stage_sample(store, part, key)
        landed = resolve_and_land(store, key=key)
        assert landed is not None
        runs.append(landed)
        kept = keys_dir / landed.path.name
        kept.mkdir()
        for name in ("person_keys", "unit_keys"):
            shutil.copy(landed.path / "state" / f"{name}.parquet", kept)
    return BatchedRegister(parts, store, runs, keys_dir)


def copy_store(store: RunStore, root: Path) -> RunStore:
    """A copy of ``store`` at ``root`` (which must not exist) to change freely; its links stay relative."""
    shutil.copytree(store.root, root, symlinks=True)
    return RunStore(root)
