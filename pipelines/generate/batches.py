"""Split a generated sample into a first load and later batches, to measure incremental register runs.

A batch is what a later delivery brings: units never seen before (every record of some true units, held back
from the first load), the newest month of units already known (their latest tax and utility ``period`` and
waybill month, held back), and new versions of registrations already loaded (same ``record_id``, a later
``updated_at``, a new phone, address or status 注销). Every generated record lands exactly once, in the first
load or in one batch; the updates are extra versions. Each part is a directory in the format ``generate``
writes: one ``<feed>.jsonl`` per feed, ``truth.jsonl`` and ``truth_added.jsonl``. The same sample and seed
give the same bytes. The feeds added later (platform merchants, bookkeeping clients) do not change the plan:
their records arrive with their unit when it arrives whole in a batch, else in the first load.
"""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from pipelines.contracts import load_contracts
from pipelines.generate.generator import TRUTH_ADDED, TRUTH_FILES
from pipelines.generate.units import AS_OF

# Shares of a batch's records; the rest are registration updates.
NEW_UNITS_SHARE = 0.4
NEW_MONTHS_SHARE = 0.4
# Feeds that arrive month by month, and the field whose first seven characters are the month.
MONTH_FIELDS = {"tax": "period", "utility": "period", "waybill": "shipped_at"}
FIRST_LOAD = "first"

Key = tuple[str, str]  # (feed, record_id)
_encode = json.JSONEncoder(ensure_ascii=False).encode


@dataclass(frozen=True)
class BatchSplit:
    first_load: Path
    batches: list[Path]
    records: dict[str, int]  # lines written per part (FIRST_LOAD, "batch-01", …), updates included


def batch_name(number: int) -> str:
    return f"batch-{number:02d}"


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


def _latest_month_records(keys: list[Key], month_of: dict[Key, str]) -> list[Key]:
    """The records of each monthly feed that fall in that feed's latest month (for one unit)."""
    by_feed: dict[str, list[Key]] = defaultdict(list)
    for key in keys:
        if key in month_of:
            by_feed[key[0]].append(key)
    latest = []
    for feed_keys in by_feed.values():
        newest = max(month_of[key] for key in feed_keys)
        latest += [key for key in feed_keys if month_of[key] == newest]
    return latest


def _plan(sample: Path, batches: int, batch_records: int, seed: int) -> tuple[dict[Key, int], dict[str, int]]:
    """Which batch each held-back record goes to, and which registrations get a new version in which batch."""
    records_of: dict[str, list[Key]] = defaultdict(list)
    for row in _rows(sample / "truth.jsonl"):
        if row["unit_id"]:
            records_of[row["unit_id"]].append((row["feed"], row["record_id"]))
    month_of = {
        (feed, row["record_id"]): row[field][:7]
        for feed, field in MONTH_FIELDS.items()
        for row in _rows(sample / f"{feed}.jsonl")
        if row.get(field)
    }
    units = sorted(records_of)
    random.Random(seed).shuffle(units)
    candidates = iter(units)

    def next_unit() -> str:
        unit = next(candidates, None)
        if unit is None:
            raise ValueError(f"{sample} has too few units for {batches} batches of {batch_records} records")
        return unit

    destination: dict[Key, int] = {}
    updates: dict[str, int] = {}
    arrived: dict[str, int] = {}  # units whose every record arrives in a batch
    for batch in range(1, batches + 1):
        taken = 0
        while taken < NEW_UNITS_SHARE * batch_records:
            unit = next_unit()
            keys = records_of[unit]
            destination.update(dict.fromkeys(keys, batch))
            taken += len(keys)
            arrived[unit] = batch
        while taken < (NEW_UNITS_SHARE + NEW_MONTHS_SHARE) * batch_records:
            keys = records_of[next_unit()]
            latest = _latest_month_records(keys, month_of)
            if latest and len(latest) < len(keys):  # the unit stays known from the first load
                destination.update(dict.fromkeys(latest, batch))
                taken += len(latest)
        while taken < batch_records:
            registrations = [rid for feed, rid in records_of[next_unit()] if feed == "registration"]
            if registrations:
                updates[registrations[0]] = batch
                taken += 1
    for row in _rows(sample / TRUTH_ADDED):  # the added feeds' records follow their unit
        if row["unit_id"] in arrived:
            destination[row["feed"], row["record_id"]] = arrived[row["unit_id"]]
    return destination, updates


def _new_version(row: dict[str, Any], batch: int, seed: int) -> dict[str, Any]:
    """The registration as the register later holds it: a new phone, a move along the street, or 注销."""
    rng = random.Random(f"{seed}/{row['record_id']}")
    changed = dict(row)
    change = rng.choice(["phone", "address", "status"])
    number = re.search(r"(\d+)号", row.get("address") or "")
    if change == "address" and number:
        moved = rng.choice([n for n in range(1, 400) if str(n) != number.group(1)])
        changed["address"] = row["address"][: number.start(1)] + str(moved) + row["address"][number.end(1) :]
    elif change == "status" and row.get("status") != "注销":
        changed["status"] = "注销"
    else:
        while changed.get("phone") == row.get("phone"):
            changed["phone"] = f"13{rng.randrange(10**9):09d}"
    day = AS_OF + timedelta(days=batch)  # after everything in the sample
    changed["updated_at"] = f"{day.isoformat()}T{rng.randint(8, 17):02d}:{rng.randint(0, 59):02d}:00+08:00"
    return changed


def split_batches(sample: Path, out: Path, batches: int, batch_records: int, seed: int) -> BatchSplit:
    """Write ``out/first/`` and ``out/batch-01/`` … from the sample ``generate`` wrote in ``sample``."""
    sample, out = Path(sample), Path(out)
    destination, updates = _plan(sample, batches, batch_records, seed)
    parts = [out / FIRST_LOAD, *(out / batch_name(n) for n in range(1, batches + 1))]
    feeds = list(load_contracts())
    counts = dict.fromkeys((part.name for part in parts), 0)
    with ExitStack() as files:
        for part in parts:
            part.mkdir(parents=True, exist_ok=True)

        def opened(part: Path, name: str) -> IO[str]:
            return files.enter_context((part / name).open("w", encoding="utf-8", newline="\n"))

        feed_files = {
            (index, feed): opened(part, f"{feed}.jsonl") for index, part in enumerate(parts) for feed in feeds
        }
        truth_files = {name: [opened(part, name) for part in parts] for name in TRUTH_FILES}
        for feed in feeds:
            with (sample / f"{feed}.jsonl").open(encoding="utf-8") as lines:
                for line in lines:
                    row = json.loads(line)
                    index = destination.get((feed, row["record_id"]), 0)  # 0: the first load
                    feed_files[index, feed].write(line)
                    counts[parts[index].name] += 1
                    if feed == "registration" and row["record_id"] in updates:
                        batch = updates[row["record_id"]]
                        feed_files[batch, feed].write(_encode(_new_version(row, batch, seed)) + "\n")
                        counts[parts[batch].name] += 1
        for name, files_of_parts in truth_files.items():
            with (sample / name).open(encoding="utf-8") as lines:
                for line in lines:
                    row = json.loads(line)
                    files_of_parts[destination.get((row["feed"], row["record_id"]), 0)].write(line)
                    if row["feed"] == "registration" and row["record_id"] in updates:
                        files_of_parts[updates[row["record_id"]]].write(line)
    return BatchSplit(first_load=parts[0], batches=parts[1:], records=counts)
