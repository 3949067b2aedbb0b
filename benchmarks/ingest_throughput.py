"""Ingest throughput and peak memory: generate feeds, load them into the embedded broker, run one pass.

    .venv/bin/python benchmarks/ingest_throughput.py --records 10000 100000

The pass runs in a child process (``python -m pipelines.ingest.job``) so its peak RSS is its own.
Prints one line per size: messages, wall seconds, messages/s, peak RSS, and the run's stage timings.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipelines.config import default_topics
from pipelines.contracts import load_contracts
from pipelines.generate import generate
from pipelines.kafka import EmbeddedBroker, jsonl_messages, produce_messages
from pipelines.pii import HMAC_KEY_ENV
from pipelines.store import RunStore

RECORDS_PER_UNIT = 7.5


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
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    begun = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "pipelines.ingest.job", "--bootstrap", broker.bootstrap, "--out", str(out)],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wall = time.monotonic() - begun
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    manifest = RunStore(out).latest_manifest() or {}
    return {
        "messages": produced,
        "wall_s": round(wall, 1),
        "messages_per_s": round(produced / wall),
        "peak_rss_mib": round(peak_kib / 1024) if peak_kib > before else "≤ previous run",
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
