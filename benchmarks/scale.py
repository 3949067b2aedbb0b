"""Scale: time, memory and accuracy of Kafka → published register, for first loads and incremental batches.

    .venv/bin/python benchmarks/scale.py          # first loads of 150k, 500k and 1M records; 3 batches of 10k
    .venv/bin/python benchmarks/scale.py --sizes 20000 --batches 2 --batch-records 2000 --work /tmp/scale

First loads: per size, generate a sample (about 7.7 records per unit), start an embedded broker, produce every
feed (setup, not timed), then time ``unitfusion run`` in a child process from start to exit while sampling
the RSS of its whole process tree. Batches: split the largest sample (``pipelines.generate.batches``), run the
first load, then produce and run each batch; finally ``unitfusion rebuild`` a copy of the store and compare
the two registers. Figures are JSON lines on stdout, progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psutil
import pyarrow.parquet as pq

from pipelines.config import default_topics
from pipelines.contracts import load_contracts
from pipelines.generate import TRUTH_FILES, generate
from pipelines.generate.batches import split_batches
from pipelines.kafka import EmbeddedBroker, jsonl_messages, produce_messages
from pipelines.pii import HMAC_KEY_ENV
from pipelines.resolve.evaluation import bcubed, pairwise
from pipelines.store import RunStore

RECORDS_PER_UNIT = 7.7  # what the generator makes on average
KEY = "benchmark-key-0123456789"
TOPIC_PREFIX = "scale."
SAMPLE_EVERY_S = 0.2
MIB = 2**20
# _meta.json fields shown on their own, or bookkeeping; whatever else a register run records is shown as is.
META_SHOWN_APART = {"run_id", "mode", "rebuild_reason", "timings_s", "inputs", "created_at", "state"}

Key = tuple[str, str]  # (feed, record_id)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def emit(figures: dict) -> None:
    print(json.dumps(figures, ensure_ascii=False), flush=True)


def tree_rss(process: psutil.Process) -> int:
    """RSS of a process and all its descendants (children come and go: those gone are skipped)."""
    try:
        family = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for member in family:
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


@dataclass
class Timed:
    wall_s: float
    peak_rss_mib: int
    published_s: float | None  # when register/latest pointed at a new run: Kafka → published register


def _latest_target(store: Path | None) -> str | None:
    try:
        return os.readlink(store / "register" / "latest") if store else None
    except OSError:
        return None


def unitfusion(args: list[str], log_file: Path, store: Path | None = None) -> Timed:
    """Run ``unitfusion ARGS`` in a child process: wall time from start to exit, peak RSS of its tree, and
    (given the run ``store``) when the register was published, before the township queues, report and
    alerts that follow it."""
    env = {**os.environ, HMAC_KEY_ENV: KEY, "UNITFUSION_TOPIC_PREFIX": TOPIC_PREFIX}
    log_file.parent.mkdir(parents=True, exist_ok=True)
    before, published = _latest_target(store), None
    with log_file.open("w", encoding="utf-8") as output:
        begun = time.monotonic()
        child = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", *args], stdout=output, stderr=subprocess.STDOUT, env=env
        )
        process, peak = psutil.Process(child.pid), 0
        while True:
            peak = max(peak, tree_rss(process))
            if published is None and store and _latest_target(store) not in (before, None):
                published = time.monotonic() - begun
            try:
                child.wait(timeout=SAMPLE_EVERY_S)
                break
            except subprocess.TimeoutExpired:
                pass
        wall = time.monotonic() - begun
    if child.returncode:
        tail = log_file.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"unitfusion {' '.join(args)} exited with {child.returncode}:\n{tail}")
    return Timed(round(wall, 1), round(peak / MIB), round(published, 1) if published is not None else None)


def has_command(name: str) -> bool:
    found = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", name, "--help"], capture_output=True, check=False
    )
    return found.returncode == 0


def sample_for(records: int, seed: int, work: Path) -> Path:
    """The generated sample of about ``records`` records; one finished earlier in ``work`` is reused."""
    sample = work / f"sample-{records}-seed{seed}"
    done = sample / ".complete"
    if not done.exists():
        units = max(1, round(records / RECORDS_PER_UNIT))
        log(f"generating {units} units (about {records} records) into {sample}")
        generate(units=units, seed=seed, out_dir=sample)
        done.touch()
    return sample


def fresh(path: Path) -> Path:
    """``path``, emptied of an earlier benchmark's files (a run into an old store reads nothing new)."""
    if path.exists():
        shutil.rmtree(path)
    return path


def produce(broker: EmbeddedBroker, part: Path) -> int:
    topics = default_topics(TOPIC_PREFIX)
    return sum(
        produce_messages(broker.bootstrap, topics[feed], jsonl_messages(part / f"{feed}.jsonl"))
        for feed in load_contracts()
    )


def read_truth(part: Path) -> dict[Key, str | None]:
    truth = {}
    for name in TRUTH_FILES:
        with (part / name).open(encoding="utf-8") as lines:
            for line in lines:
                row = json.loads(line)
                truth[row["feed"], row["record_id"]] = row["unit_id"]
    return truth


def read_links(store: Path) -> dict[Key, str | None]:
    """record → unit_id of the published register."""
    links = pq.read_table(
        RunStore(store).register_latest() / "links.parquet", columns=["feed", "record_id", "unit_id"]
    )
    columns = [links[name].to_pylist() for name in ("feed", "record_id", "unit_id")]
    return {(feed, record_id): unit for feed, record_id, unit in zip(*columns, strict=True)}


def accuracy(truth: dict[Key, str | None], links: dict[Key, str | None]) -> dict:
    predicted = {key: links.get(key) for key in truth}
    return {"bcubed": bcubed(truth, predicted).as_dict(), "pairwise": pairwise(truth, predicted).as_dict()}


def stage_figures(store: Path) -> dict:
    """What the run recorded: ingest stage timings (its manifest) and the register run's _meta.json.

    Only the fields present are read: the incremental rewrite adds ``mode`` and counts of what it touched."""
    runs = RunStore(store)
    manifest = runs.latest_manifest() or {}
    latest = runs.register_latest()
    meta = json.loads((latest / "_meta.json").read_text(encoding="utf-8")) if latest else {}
    return {
        "ingest_run": manifest.get("run_id"),
        "ingest_s": manifest.get("timings_s"),
        "register_run": meta.get("run_id"),
        "mode": meta.get("mode"),
        "rebuild_reason": meta.get("rebuild_reason"),
        "register_s": meta.get("timings_s"),
        "register": {k: v for k, v in meta.items() if k not in META_SHOWN_APART},
        "marts_mib": _mib_under(latest / "marts") if latest else None,
    }


def _mib_under(folder: Path) -> float | None:
    """Bytes on disk of the files under ``folder`` (the BI marts of a register run), in MiB."""
    if not folder.is_dir():
        return None
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / MIB, 1)


def broker_rss_mib(broker: EmbeddedBroker) -> int:
    """The broker keeps every message in memory: its RSS is not part of the run's."""
    return round(psutil.Process(broker.pid).memory_info().rss / MIB)


def id_churn(
    previous: dict[Key, str | None],
    current: dict[Key, str | None],
    truth: dict[Key, str | None],
    batch: set[Key],
) -> dict[str, int]:
    """Records of units a batch did not touch whose unit_id changed between two registers (should be 0).

    Untouched by truth: true units with no record in the batch; this count also takes in corrections (a
    record that sat by mistake in a register unit the batch did touch, and moved to its own). Untouched in
    the register: units that held no record of the batch, before it or after. Of the records counted, those
    now in no unit (``unlinked``) lost a link the batch made ambiguous, e.g. a test record whose work-unit
    name now names two units in its city."""
    touched_true = {truth[key] for key in batch if truth.get(key)}
    touched_register = ({previous.get(key) for key in batch} | {current.get(key) for key in batch}) - {None}
    by_truth = by_register = unlinked = 0
    for key, before in previous.items():
        after = current.get(key)
        if after == before:
            continue
        of_untouched_true_unit = bool(truth.get(key)) and truth[key] not in touched_true
        of_untouched_register_unit = before not in touched_register and after not in touched_register
        by_truth += of_untouched_true_unit
        by_register += of_untouched_register_unit
        unlinked += (of_untouched_true_unit or of_untouched_register_unit) and after is None
    return {
        "untouched_true_units": len({u for u in truth.values() if u} - touched_true),
        "id_churn_untouched_true_units": by_truth,
        "id_churn_untouched_register_units": by_register,
        "id_churn_unlinked": unlinked,
    }


def placed_differently(a: dict[Key, str | None], b: dict[Key, str | None]) -> int:
    """Records whose cluster (as a set of records) differs between two registers, whatever the unit ids."""

    def cluster(links: dict[Key, str | None], key: Key) -> object:
        return links.get(key) or ("alone", key)  # an unlinked record is a cluster of its own

    keys = a.keys() | b.keys()
    both = Counter((cluster(a, key), cluster(b, key)) for key in keys)
    size_a, size_b = Counter(cluster(a, key) for key in keys), Counter(cluster(b, key) for key in keys)
    same = sum(n for (in_a, in_b), n in both.items() if n == size_a[in_a] == size_b[in_b])
    return len(keys) - same


def first_load(records: int, seed: int, work: Path) -> dict:
    sample = sample_for(records, seed, work)
    store = fresh(work / f"store-{records}")
    with EmbeddedBroker() as broker:
        log(f"producing {sample.name} to the broker on {broker.bootstrap}")
        produced = produce(broker, sample)
        log(f"unitfusion run: {produced} messages → {store}")
        run = ["run", "--bootstrap", broker.bootstrap, "--out", str(store)]
        timed = unitfusion(run, work / "logs" / f"run-{records}.log", store)
        broker_rss = broker_rss_mib(broker)
    return {
        "phase": "first_load",
        "records": produced,
        "wall_s": timed.wall_s,
        "published_s": timed.published_s,
        "peak_rss_mib": timed.peak_rss_mib,
        "broker_rss_mib": broker_rss,
        **stage_figures(store),
        "accuracy": accuracy(read_truth(sample), read_links(store)),
    }


def batches(records: int, count: int, batch_records: int, seed: int, work: Path) -> None:
    """First load, then each batch produced and run; then a rebuild of a copy of the store to compare."""
    sample = sample_for(records, seed, work)
    split = split_batches(sample, fresh(work / f"batches-{records}"), count, batch_records, seed)
    store, logs = fresh(work / f"store-batches-{records}"), work / "logs"
    with EmbeddedBroker() as broker:
        run = ["run", "--bootstrap", broker.bootstrap, "--out", str(store)]
        produced = produce(broker, split.first_load)
        log(f"unitfusion run: first load of {produced} messages (the rest held back) → {store}")
        timed = unitfusion(run, logs / f"batches-{records}-first.log", store)
        truth, previous = read_truth(split.first_load), read_links(store)
        emit(
            {
                "phase": "batch_first_load",
                "records": produced,
                "wall_s": timed.wall_s,
                "published_s": timed.published_s,
                "peak_rss_mib": timed.peak_rss_mib,
                "broker_rss_mib": broker_rss_mib(broker),
                **stage_figures(store),
                "accuracy": accuracy(truth, previous),
            }
        )
        for number, part in enumerate(split.batches, start=1):
            batch_truth = read_truth(part)
            produced = produce(broker, part)
            log(f"unitfusion run: batch {number} of {produced} messages")
            timed = unitfusion(run, logs / f"batches-{records}-{part.name}.log", store)
            truth.update(batch_truth)
            current = read_links(store)
            emit(
                {
                    "phase": "batch",
                    "batch": number,
                    "records_in_batch": produced,
                    "wall_s": timed.wall_s,
                    "published_s": timed.published_s,
                    "peak_rss_mib": timed.peak_rss_mib,
                    "broker_rss_mib": broker_rss_mib(broker),
                    **stage_figures(store),
                    **id_churn(previous, current, truth, set(batch_truth)),
                    "accuracy": accuracy(truth, current),
                }
            )
            previous = current
    compare_with_rebuild(store, truth, previous, work)


def compare_with_rebuild(
    store: Path, truth: dict[Key, str | None], incremental: dict[Key, str | None], work: Path
) -> None:
    """Resolve everything again in a copy of the store: how far the incremental register has drifted."""
    if not has_command("rebuild"):
        log("unitfusion has no rebuild command yet: the incremental register is not compared with a rebuild")
        emit({"phase": "rebuild", "skipped": "unitfusion has no rebuild command"})
        return
    copy = fresh(work / f"{store.name}-rebuild")
    shutil.copytree(store, copy, symlinks=True)
    log(f"unitfusion rebuild --out {copy}")
    timed = unitfusion(["rebuild", "--out", str(copy)], work / "logs" / f"{copy.name}.log", copy)
    rebuilt = read_links(copy)
    scores = accuracy(truth, rebuilt)
    incremental_f1 = accuracy(truth, incremental)["bcubed"]["f1"]
    emit(
        {
            "phase": "rebuild",
            "wall_s": timed.wall_s,
            "published_s": timed.published_s,
            "peak_rss_mib": timed.peak_rss_mib,
            **{k: v for k, v in stage_figures(copy).items() if not k.startswith("ingest")},  # none ran
            "accuracy": scores,
            "bcubed_f1_incremental_minus_rebuild": round(incremental_f1 - scores["bcubed"]["f1"], 5),
            "records_placed_differently": placed_differently(incremental, rebuilt),
            "records_with_another_unit_id": sum(rebuilt.get(k) != u for k, u in incremental.items()),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[150_000, 500_000, 1_000_000], help="records")
    parser.add_argument(
        "--batches", type=int, default=3, help="batches into the largest first load (0: none)"
    )
    parser.add_argument("--batch-records", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work", type=Path, help="keep samples, stores and logs here (default: a temp dir)")
    parser.add_argument("--skip-first-loads", action="store_true", help="only the batches")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        work = args.work or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        if not args.skip_first_loads:
            for records in sorted(args.sizes):
                emit(first_load(records, args.seed, work))
        if args.batches:
            batches(max(args.sizes), args.batches, args.batch_records, args.seed, work)


if __name__ == "__main__":
    main()
