"""``generate``: sample feeds, their ground truth and the true units, deterministic per (units, seed)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.contracts import load_contracts
from pipelines.generate.added import ADDED_FEEDS, AddedFeedMaker
from pipelines.generate.anomalies import AnomalyPlanter
from pipelines.generate.difficulty import DIFFICULTIES
from pipelines.generate.feeds import DEPARTMENT_VOCABULARIES, FeedMaker
from pipelines.generate.units import ZOMBIE_LISTED_BY, Population, Unit
from pipelines.generate.writer import FeedFiles, write_jsonl_line

# Record-id prefix per feed: record ids are unique within a feed and say which feed they come from.
RECORD_PREFIXES = {
    "registration": "REG",
    "tax": "TAX",
    "utility": "PWR",
    "waybill": "WBL",
    "nucleic_contact": "NAT",
    "platform_merchant": "PLT",
    "bookkeeping_client": "BKC",
}
# The ground truth and the units only they show of the feeds added later (added.py), beside truth.jsonl and
# units.jsonl, which stay as they were without them.
TRUTH_ADDED, UNITS_ADDED = "truth_added.jsonl", "units_added.jsonl"
TRUTH_FILES = ("truth.jsonl", TRUTH_ADDED)  # every record's truth: read both
CLOSED = {"注销", "迁出"}


@dataclass(frozen=True)
class GenerateSummary:
    units: int
    seed: int
    counts: dict[str, int]  # records per feed
    paths: dict[str, Path]  # per feed, plus "truth", "units", "anomalies", "truth_added" and "units_added"
    anomalies: int = 0  # planted anomalies the figures show (lines of anomalies.jsonl)
    units_added: int = 0  # units only the feeds added later show (lines of units_added.jsonl)

    @property
    def records(self) -> int:
        return sum(self.counts.values())

    @property
    def records_per_unit(self) -> float:
        return self.records / (self.units + self.units_added)


def unit_row(unit: Unit, tax_paid: float) -> dict[str, Any]:
    """A line of units.jsonl: the unit as it truly is, with the conditions planted in it."""
    zombie = bool(
        unit.abnormal_since
        and unit.abnormal_since <= ZOMBIE_LISTED_BY
        and unit.status not in CLOSED
        and tax_paid <= 0
    )
    return {
        "unit_id": unit.unit_id,
        "uscc": unit.uscc,
        "name": unit.name,
        "trade_name": unit.parts.trade,
        "entity_type": unit.entity_type,
        "kind": unit.kind,
        "parent_unit_id": unit.parent.unit_id if unit.parent else None,
        "legal_rep": unit.legal_rep.name,
        "division_code": unit.district.code,
        "township": unit.site.township,
        "address": unit.site.canonical(),
        "status": unit.status,
        "multi_licence": unit.multi_licence,
        "multi_meter": unit.meters > 1,
        "ecommerce": unit.online,
        "zombie": zombie,
    }


def generate(
    units: int, seed: int, out_dir: Path, vocabulary: str = "default", difficulty: str = "default"
) -> GenerateSummary:
    """Write one JSONL file per feed, ``truth.jsonl``, ``units.jsonl`` and ``anomalies.jsonl``; and for the
    feeds added later (``added.py``: platform merchants, bookkeeping clients) ``truth_added.jsonl`` and
    ``units_added.jsonl`` (the units only they show, with ids after the ``units`` others).

    Everything comes from ``random.Random(seed)``: the same (units, seed) gives byte-identical files. The
    anomalies planted in the figures draw from a second generator derived from the seed, so records and ids
    are the same as without them. ``vocabulary`` names how departments spell their codes
    (``DEPARTMENT_VOCABULARIES``: "default", or "variant": industry codes without the section letter and
    another power company's tariff names); only those codes differ between vocabularies. ``difficulty``
    names the shares the data is drawn with (``DIFFICULTIES``: "default", the generator as it always was, or
    "hard": the pilots' proportions of the hard cases; see ``difficulty.py``); the two knobs are independent.
    The added feeds draw from generators of their own derived from the seed, after each family's other
    records: every other file is byte for byte what it was before they were added.
    """
    if units < 1:
        raise ValueError("units must be at least 1")
    if vocabulary not in DEPARTMENT_VOCABULARIES:
        raise ValueError(
            f"no department vocabulary {vocabulary!r}; there are {sorted(DEPARTMENT_VOCABULARIES)}"
        )
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"no difficulty {difficulty!r}; there are {sorted(DIFFICULTIES)}")
    contracts = load_contracts()
    unknown = sorted(set(contracts) - set(RECORD_PREFIXES))
    if unknown:
        raise ValueError(f"no generator for feed(s) {unknown}: add them to pipelines/generate")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    # The added feeds' records and their order: generators of their own (str seeds are stable across runs).
    added_rng, added_order = (random.Random(f"unitfusion-added-{part}-{seed}") for part in ("feeds", "order"))
    original = {feed: c for feed, c in contracts.items() if feed not in ADDED_FEEDS}
    added = {feed: contracts[feed] for feed in ADDED_FEEDS}
    units_path, anomalies_path = out_dir / "units.jsonl", out_dir / "anomalies.jsonl"
    units_added_path = out_dir / UNITS_ADDED
    with (
        FeedFiles(out_dir, original, RECORD_PREFIXES, rng) as files,
        FeedFiles(out_dir, added, RECORD_PREFIXES, added_order, truth_name=TRUTH_ADDED) as added_files,
        units_path.open("w", encoding="utf-8", newline="\n") as unit_file,
        anomalies_path.open("w", encoding="utf-8", newline="\n") as anomaly_file,
        units_added_path.open("w", encoding="utf-8", newline="\n") as units_added_file,
    ):
        level = DIFFICULTIES[difficulty]
        population = Population(rng, level)
        planter = AnomalyPlanter(seed, files.emit)
        maker = FeedMaker(rng, planter.emit, DEPARTMENT_VOCABULARIES[vocabulary], level)
        added_maker = AddedFeedMaker(added_rng, added_files.emit, level, maker.sign_names)
        for family in population.units(units):
            planter.begin(family)
            tax_paid = maker.family(family)
            planter.end(anomaly_file, write_jsonl_line)
            for unit in family:
                write_jsonl_line(unit_file, unit_row(unit, tax_paid[unit.unit_id]))
            added_maker.family(family)  # after the family's other records: it reads what they settled
        planter.finish(anomaly_file, write_jsonl_line)  # anomalies that need the whole city (pillar ranks)
        # Units only the added feeds show: a population of their own generator that knows the codes and
        # names taken (the main population is done with them).
        elsewhere = Population(added_rng, level)
        elsewhere.usccs, elsewhere.names = population.usccs, population.names
        added_units = added_maker.finish(
            elsewhere,
            units + 1,
            units,
            units_added_file,
            lambda unit, feed: {**unit_row(unit, 0.0), "seen_only_in": feed},
        )
    return GenerateSummary(
        units=units,
        seed=seed,
        counts={**files.counts, **added_files.counts},
        paths={
            **files.paths,
            **added_files.paths,
            "truth": files.truth_path,
            "units": units_path,
            "anomalies": anomalies_path,
            "truth_added": added_files.truth_path,
            "units_added": units_added_path,
        },
        anomalies=planter.planted,
        units_added=added_units,
    )
