"""``generate``: sample feeds, their ground truth and the true units, deterministic per (units, seed)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.contracts import load_contracts
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
}
CLOSED = {"注销", "迁出"}


@dataclass(frozen=True)
class GenerateSummary:
    units: int
    seed: int
    counts: dict[str, int]  # records per feed
    paths: dict[str, Path]  # per feed, plus "truth", "units" and "anomalies"
    anomalies: int = 0  # planted anomalies the figures show (lines of anomalies.jsonl)

    @property
    def records(self) -> int:
        return sum(self.counts.values())

    @property
    def records_per_unit(self) -> float:
        return self.records / self.units


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
    """Write one JSONL file per feed, ``truth.jsonl``, ``units.jsonl`` and ``anomalies.jsonl``.

    Everything comes from ``random.Random(seed)``: the same (units, seed) gives byte-identical files. The
    anomalies planted in the figures draw from a second generator derived from the seed, so records and ids
    are the same as without them. ``vocabulary`` names how departments spell their codes
    (``DEPARTMENT_VOCABULARIES``: "default", or "variant": industry codes without the section letter and
    another power company's tariff names); only those codes differ between vocabularies. ``difficulty``
    names the shares the data is drawn with (``DIFFICULTIES``: "default", the generator as it always was, or
    "hard": the pilots' proportions of the hard cases; see ``difficulty.py``); the two knobs are independent.
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
    units_path, anomalies_path = out_dir / "units.jsonl", out_dir / "anomalies.jsonl"
    with (
        FeedFiles(out_dir, contracts, RECORD_PREFIXES, rng) as files,
        units_path.open("w", encoding="utf-8", newline="\n") as unit_file,
        anomalies_path.open("w", encoding="utf-8", newline="\n") as anomaly_file,
    ):
        level = DIFFICULTIES[difficulty]
        population = Population(rng, level)
        planter = AnomalyPlanter(seed, files.emit)
        maker = FeedMaker(rng, planter.emit, DEPARTMENT_VOCABULARIES[vocabulary], level)
        for family in population.units(units):
            planter.begin(family)
            tax_paid = maker.family(family)
            planter.end(anomaly_file, write_jsonl_line)
            for unit in family:
                write_jsonl_line(unit_file, unit_row(unit, tax_paid[unit.unit_id]))
        planter.finish(anomaly_file, write_jsonl_line)  # anomalies that need the whole city (pillar ranks)
    return GenerateSummary(
        units=units,
        seed=seed,
        counts=dict(files.counts),
        paths={**files.paths, "truth": files.truth_path, "units": units_path, "anomalies": anomalies_path},
        anomalies=planter.planted,
    )
