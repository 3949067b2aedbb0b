"""Ingest throughput and peak memory: generate feeds, load them into the embedded broker, run one pass.

    .venv/bin/python benchmarks/ingest_throughput.py --records 10000 100000

The pass runs in a child process (``python -m pipelines.ingest.job``), so its figures are its own: wall
seconds, messages/s, CPU seconds and peak RSS of its process tree (the job and the process it validates in,
sampled), and the run's stage timings. Prints one line per size.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from pipelines.config import default_topics
from pipelines.contracts import load_contracts
from pipelines.generate import generate
from pipelines.kafka import EmbeddedBroker, jsonl_messages, produce_messages
from pipelines.pii import HMAC_KEY_ENV
from pipelines.store import RunStore

RECORDS_PER_UNIT = 7.5
SAMPLE_EVERY_S = 0.1


def _tree_rss(process: psutil.Process) -> int:
    """Current RSS of a process and its descendants (the job's validation worker); those gone count 0."""
    try:
        family = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for member in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += member.memory_info().rss
    return total


def _run_job(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of the ingest job and its children."""
    begun = time.monotonic()
    job = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    process, peak = psutil.Process(job.pid), 0
    while job.poll() is None:
        peak = max(peak, _tree_rss(process))
        time.sleep(SAMPLE_EVERY_S)
    if job.returncode:
        raise subprocess.CalledProcessError(job.returncode, args)
    return time.monotonic() - begun, peak


def measure(records: int, broker: EmbeddedBroker, work: Path) -> dict[str, object]:
    prefix = f"bench{records}."
    sample = work / f"sample-{records}"
    generate(units=max(1, round(records / RECORDS_PER_UNIT)), seed=1, out_dir=sample)
    topics = default_topics(prefix)
    produced = sum(
        produce_messages(broker.bootstrap, topics[feed], jsonl_messages(sample / f"{feed}.jsonl"))
        for feed in load_contracts()
    )
    out = work / f"out-{records}"
    env = {**os.environ, "UNITFUSION_TOPIC_PREFIX": prefix, HMAC_KEY_ENV: "benchmark-key-0123456789"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall, peak = _run_job(
        [sys.executable, "-m", "pipelines.ingest.job", "--bootstrap", broker.bootstrap, "--out", str(out)],
        env,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    manifest = RunStore(out).latest_manifest() or {}
    return {
        "messages": produced,
        "wall_s": round(wall, 1),
        "messages_per_s": round(produced / wall),
        "cpu_s": round(cpu, 1),
        "peak_rss_mib": round(peak / 2**20),
        "beam_stage_messages_per_s": round(produced / manifest["timings_s"]["beam"]) if manifest else None,
        "stage_s": manifest.get("timings_s"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        for records in sorted(args.records):
            print(json.dumps({"target_records": records, **measure(records, broker, Path(tmp))}), flush=True)


if __name__ == "__main__":
    main()
