"""Accuracy, speed and memory of resolution against ground truth, beside the naive Splink baseline.

    .venv/bin/python benchmarks/resolution_accuracy.py --units 20000 --seeds 1 2 3 --difficulties default hard

For each difficulty and seed (20,000 units make about 150k records): generate feeds, load them into the
embedded broker, ingest, then resolve in a child process (ours, then the baseline) so that each one's wall
time and peak memory are its own. Prints one JSON line per seed and method: B-cubed and pairwise
precision/recall/F1, false merges of distinct valid USCCs, review items and their share of records (the
baseline has no review queue), records, seconds and peak RSS; then the mean of each figure over the seeds
per difficulty and method. Thresholds were chosen on other seeds (101 and up): never tune on the seeds this
prints. ``--feeds`` loads only the named feeds (``--feeds registration tax utility waybill nucleic_contact``:
the five the accuracy targets were set on, about 150k records; the default loads every contract's feed).
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
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from benchmarks.baseline import baseline_clusters, columns_of
from pipelines.config import IngestSettings, default_topics
from pipelines.contracts import load_contracts
from pipelines.generate import DIFFICULTIES, TRUTH_FILES, generate
from pipelines.ingest.job import run_ingest
from pipelines.kafka import EmbeddedBroker, jsonl_messages, produce_messages
from pipelines.landing import resolve_and_land
from pipelines.pii import HMAC_KEY_ENV, load_key
from pipelines.resolve.evaluation import bcubed, pairwise
from pipelines.standardise.codes import is_valid_uscc
from pipelines.store import RunStore

KEY = "benchmark-key-0123456789"


def child(method: str, store_dir: Path, out_file: Path) -> None:
    """Run one resolver and write record → cluster as JSON (runs in its own process)."""
    store = RunStore(store_dir)
    begun = time.monotonic()
    if method == "ours":
        landed = resolve_and_land(store, key=load_key(os.environ))
        assert landed is not None, "nothing to resolve"
        links = landed.result.tables["links"].to_pylist()
        clusters = {f"{r['feed']}/{r['record_id']}": r["unit_id"] for r in links}
        review = landed.result.tables["review"]
        reasons = review["reason"].value_counts().to_pylist() if review.num_rows else []
        extra = {
            "timings_s": landed.meta["timings_s"],
            "review_items": review.num_rows,
            "review_reasons": {r["values"]: r["counts"] for r in reasons},
        }
    else:
        clusters = baseline_clusters(store)
        extra = {"review_items": 0}
    seconds = time.monotonic() - begun
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out_file.write_text(json.dumps({"clusters": clusters, "seconds": seconds, "peak_rss_mib": peak, **extra}))


def false_uscc_merges(clusters: dict[str, str], uscc_of: dict[str, str]) -> int:
    """Clusters holding more than one distinct valid USCC (counted as extra USCCs per cluster)."""
    codes: dict[str, set[str]] = defaultdict(set)
    for record, cluster in clusters.items():
        if record in uscc_of:
            codes[cluster].add(uscc_of[record])
    return sum(len(c) - 1 for c in codes.values() if len(c) > 1)


def measure(
    seed: int, units: int, difficulty: str, feeds: list[str], broker: EmbeddedBroker, work: Path
) -> list[dict]:
    sample, store_dir = work / f"sample-{difficulty}-{seed}", work / f"store-{difficulty}-{seed}"
    generate(units=units, seed=seed, out_dir=sample, difficulty=difficulty)
    prefix = f"bench-{difficulty}-{seed}."
    topics = default_topics(prefix)
    for feed in feeds:
        produce_messages(broker.bootstrap, topics[feed], jsonl_messages(sample / f"{feed}.jsonl"))
    run_ingest(IngestSettings(bootstrap=broker.bootstrap, out=store_dir, topics=topics), KEY.encode())

    truth = {}
    for name in TRUTH_FILES:
        for line in (sample / name).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if row["feed"] in feeds:
                truth[f"{row['feed']}/{row['record_id']}"] = row["unit_id"]
    uscc_of = {}
    for feed in feeds:
        field = columns_of(feed)["code"]
        if field is None:
            continue
        for line in (sample / f"{feed}.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if is_valid_uscc(row.get(field)):
                uscc_of[f"{feed}/{row['record_id']}"] = row[field].strip().upper()

    lines = []
    for method in ("ours", "baseline"):
        out_file = work / f"{method}-{seed}.json"
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                method,
                "--store",
                str(store_dir),
                "--result",
                str(out_file),
            ],
            check=True,
            env={**os.environ, HMAC_KEY_ENV: KEY},
        )
        found = json.loads(out_file.read_text())
        clusters = {record: found["clusters"].get(record) for record in truth}
        lines.append(
            {
                "difficulty": difficulty,
                "seed": seed,
                "method": method,
                "records": len(truth),
                "bcubed": bcubed(truth, clusters).as_dict(),
                "pairwise": pairwise(truth, clusters).as_dict(),
                "false_uscc_merges": false_uscc_merges({r: c for r, c in clusters.items() if c}, uscc_of),
                "resolve_s": round(found["seconds"], 1),
                "peak_rss_mib": round(found["peak_rss_mib"]),
                "review_items": found["review_items"],
                "review_share": round(found["review_items"] / len(truth), 5),
                **{k: v for k, v in found.items() if k in ("review_reasons", "timings_s")},
            }
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument(
        "--difficulties", nargs="+", default=["default", "hard"], choices=sorted(DIFFICULTIES)
    )
    parser.add_argument(
        "--feeds", nargs="+", default=list(load_contracts()), choices=sorted(load_contracts())
    )
    parser.add_argument("--child", choices=["ours", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.store, args.result)
        return
    lines = []
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        for difficulty in args.difficulties:
            for seed in args.seeds:
                for line in measure(seed, args.units, difficulty, args.feeds, broker, Path(tmp)):
                    print(json.dumps(line, ensure_ascii=False), flush=True)
                    lines.append(line)
    for summary in means(lines):
        print(json.dumps(summary, ensure_ascii=False), flush=True)


def _mean(group: list[dict], pick: Callable[[dict], float]) -> float:
    return round(sum(pick(line) for line in group) / len(group), 5)


def means(lines: list[dict]) -> list[dict]:
    """The mean of each figure over the seeds, per difficulty and method."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for line in lines:
        groups[(line["difficulty"], line["method"])].append(line)
    return [
        {
            "summary": "mean",
            "difficulty": difficulty,
            "method": method,
            "seeds": [line["seed"] for line in group],
            "records": _mean(group, lambda line: line["records"]),
            **{
                f"{kind}_{figure}": _mean(group, lambda line, k=kind, f=figure: line[k][f])
                for kind in ("bcubed", "pairwise")
                for figure in ("precision", "recall", "f1")
            },
            "false_uscc_merges": _mean(group, lambda line: line["false_uscc_merges"]),
            "review_share": _mean(group, lambda line: line["review_share"]),
        }
        for (difficulty, method), group in groups.items()
    ]


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
