"""Where resolution goes wrong, by feed and error class, and what each class costs in accuracy.

    .venv/bin/python benchmarks/resolution_errors.py SAMPLE_DIR STORE_DIR

SAMPLE_DIR holds a generated sample (``truth.jsonl``); STORE_DIR a store resolved from it (``unitfusion
run`` after loading the sample through a broker, as ``resolution_accuracy.py`` does). Each record is classed
against the truth: in its unit (ok), in a unit another true unit owns (placed_other), in a unit although it is
a private person's (placed_private), alone in a unit of its own while its true unit sits elsewhere
(split_off), in no unit (not_attached) or its true unit found nowhere (unit_missing). Then, per class, the
B-cubed F1 and pairwise precision the register would have if that class's records sat in their true unit's
main cluster: the classes worth working on first. Use tuning seeds (101 and up), never the seeds the accuracy
benchmark reports.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Hashable
from pathlib import Path

import pyarrow.parquet as pq

from pipelines.generate import TRUTH_FILES
from pipelines.resolve.evaluation import bcubed, pairwise

Record = tuple[str, str]  # feed, record_id


def _majority(votes: dict[str, Counter]) -> dict[str, Hashable]:
    return {key: counter.most_common(1)[0][0] for key, counter in votes.items()}


def classify(truth: dict[Record, str | None], links: dict[Record, dict]) -> dict[Record, str]:
    """The error class of every record of the truth."""
    owners: dict[str, Counter] = defaultdict(Counter)  # predicted unit → true units of its records
    homes: dict[str, Counter] = defaultdict(Counter)  # true unit → predicted units of its records
    for record, link in links.items():
        owners[link["unit_id"]][truth.get(record)] += 1
        if truth.get(record):
            homes[truth[record]][link["unit_id"]] += 1
    owner, home = _majority(owners), _majority(homes)
    classes = {}
    for record, true_unit in truth.items():
        unit = links[record]["unit_id"] if record in links else None
        if unit is None:
            found = "ok" if true_unit is None else "not_attached" if true_unit in home else "unit_missing"
        elif true_unit is None:
            found = "placed_private"
        elif owner[unit] != true_unit:
            found = "placed_other"
        else:
            found = "ok" if home[true_unit] == unit else "split_off"
        classes[record] = found
    return classes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sample", type=Path)
    parser.add_argument("store", type=Path)
    args = parser.parse_args()
    truth: dict[Record, str | None] = {}
    for name in TRUTH_FILES:
        for line in (args.sample / name).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            truth[(row["feed"], row["record_id"])] = row["unit_id"]
    table = pq.read_table(args.store / "register" / "latest" / "links.parquet")
    links = {(row["feed"], row["record_id"]): row for row in table.to_pylist()}
    loaded = {feed for feed, _ in links}  # a store loaded from some of the sample's feeds (``--feeds``)
    truth = {record: unit for record, unit in truth.items() if record[0] in loaded}
    classes = classify(truth, links)

    counts = Counter((record[0], found) for record, found in classes.items())
    for feed in sorted({feed for feed, _ in counts}):
        print(json.dumps({"feed": feed, **{f: n for (fd, f), n in sorted(counts.items()) if fd == feed}}))

    keyed_truth = {f"{feed}/{rid}": unit for (feed, rid), unit in truth.items()}
    predicted = {f"{feed}/{rid}": link["unit_id"] for (feed, rid), link in links.items()}
    homes: dict[str, Counter] = defaultdict(Counter)
    for record, link in links.items():
        if truth.get(record):
            homes[truth[record]][link["unit_id"]] += 1
    home = _majority(homes)

    def figures(clusters: dict[str, str | None]) -> dict[str, float]:
        return {
            "bcubed_f1": round(bcubed(keyed_truth, clusters).f1, 5),
            "pairwise_precision": round(pairwise(keyed_truth, clusters).precision, 5),
        }

    print(json.dumps({"now": figures(predicted)}))
    for feed, found in sorted(key for key in counts if key[1] != "ok"):
        fixed = dict(predicted)
        for (record_feed, rid), record_class in classes.items():
            if (record_feed, found) == (feed, record_class):
                fixed[f"{record_feed}/{rid}"] = home.get(truth[(record_feed, rid)] or "")
        line = {"feed": feed, "class": found, "records": counts[(feed, found)], "if_fixed": figures(fixed)}
        print(json.dumps(line))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
