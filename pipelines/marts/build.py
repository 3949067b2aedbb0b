"""All marts of a register run, from its tables and the resolver's current records. No IO: the pass
(``pipelines.landing``) reads the inputs and writes the result beside the register, so marts publish with
the register they describe."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.marts import activity, facts, tables
from pipelines.marts.config import MartConfig, load_config
from pipelines.marts.quality import name_keys, quality_table, register_quality
from pipelines.marts.sql import query

TIER_COLUMNS = ("activity_score", "tier")  # what the marts add to the register table itself
PARTITIONED = {"unit_month": "period"}  # marts written as hive partitions, by this column


@dataclass
class MartInputs:
    """``tables``: the run's register, links, review, lineage and warnings; ``records``: every current
    record per feed (the resolver's state). With ``touched`` and ``previous`` (the last run's marts), only
    the touched units' monthly rows are computed again."""

    tables: dict[str, pa.Table]
    records: dict[str, pa.Table]
    reference: str | None  # the latest month of the tax and electricity figures: "now"
    run_id: str
    created_at: str
    today: date
    touched: pa.Array | None = None
    previous: dict[str, pa.Table] = field(default_factory=dict)
    config: MartConfig = field(default_factory=load_config)


@dataclass
class Marts:
    register: pa.Table  # the run's register with its tier columns
    tables: dict[str, pa.Table]
    quality: dict[str, Any]


def with_tiers(register: pa.Table, tiers: pa.Table) -> pa.Table:
    """The register with each unit's ``activity_score`` and ``tier`` (in register order)."""
    base = register.drop_columns([c for c in TIER_COLUMNS if c in register.column_names])
    joined = query(
        "SELECT r.*, t.activity_score, t.tier FROM r LEFT JOIN t USING (unit_id) ORDER BY r.unit_id",
        r=base,
        t=tiers,
    )
    order = pc.index_in(base["unit_id"], joined["unit_id"])
    return joined.take(order)


def build_marts(inputs: MartInputs) -> Marts:
    config, register = inputs.config, inputs.tables["register"]
    links, records = inputs.tables["links"], inputs.records
    plain_units = tables.units(register)
    unit_month = facts.unit_month(
        plain_units, links, records, config, inputs.touched, inputs.previous.get("unit_month")
    )
    registration = activity.registration_facts(links, records)
    reference = inputs.reference
    tiers = activity.tiers(
        unit_month, plain_units, registration, inputs.tables["warnings"], config, reference
    )
    known = inputs.previous.get("units")
    keys = name_keys(
        register,
        None
        if known is None
        else known.select(["name", "division_code", "name_core"]).rename_columns(
            ["name", "division_code", "name_key"]
        ),
    )
    units = tables.units(register, tiers, keys)
    earlier = inputs.previous.get("register_quality")
    earlier_rows = [] if earlier is None else earlier.to_pylist()
    figures = register_quality(
        inputs.tables,
        records,
        inputs.run_id,
        inputs.created_at,
        inputs.today,
        run_times={row["run_id"]: row["created_at"] for row in earlier_rows},
        keys=keys,
    )
    marts = {
        "units": units,
        "unit_month": unit_month,
        "links": tables.links(links, inputs.run_id, inputs.previous.get("links")),
        "warnings": tables.warnings(inputs.tables["warnings"]),
        "demography": activity.demography(unit_month, units, registration, config, reference),
        "lockon": activity.lockon(unit_month, units, config, reference),
        "dim_division": tables.divisions(units),
        "dim_industry": tables.industries(),
        "dim_status": tables.statuses(),
        "register_quality": quality_table(
            [row for row in earlier_rows if row["run_id"] != inputs.run_id] + [figures]
        ),
    }
    return Marts(with_tiers(register, tiers), marts, figures)
