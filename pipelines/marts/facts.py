"""``unit_month``: one row per unit and month, the figures BI tools chart (tax, sales, kWh, parcels).

Every current record linked to a unit counts in the month its contract says it is about
(``FeedContract.record_periods``: the period field, else the first timestamp in China time). A record with
no month is left out. Which field each figure sums is configuration (the feed mappings' ``[figures]``).

A register run that touched only some units recomputes only their rows: every other unit kept its records
and its links, so its rows of the last run stand.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.contracts import contract, load_contracts
from pipelines.marts.config import MartConfig, Measure
from pipelines.marts.sql import query

UNIT_COLUMNS = ("division_code", "township", "industry_code", "industry_section")


def _feed_facts(records: dict[str, pa.Table], config: MartConfig) -> pa.Table:
    """Every record's feed, id, month and measures (null where the feed has none of them)."""
    parts = []
    for feed, feed_contract in load_contracts().items():
        table = records.get(feed)
        if table is None or not table.num_rows:
            continue
        columns = {
            "feed": pa.array([feed] * table.num_rows, pa.string()),
            "record_id": table["record_id"],
            "period": feed_contract.record_periods(table).cast(pa.string()),
        }
        for measure in config.measures:
            field = measure.field_of(feed)
            columns[measure.name] = (
                table[field].cast(pa.float64()) if field else pa.nulls(table.num_rows, pa.float64())
            )
        parts.append(pa.table(columns))
    if not parts:
        names = ["feed", "record_id", "period", *(m.name for m in config.measures)]
        types = [pa.string()] * 3 + [pa.float64()] * len(config.measures)
        return pa.schema(list(zip(names, types, strict=True))).empty_table()
    return pa.concat_tables(parts)


def _sql_type(measure: Measure) -> str:
    """A count stays a whole number (parcels); money and energy are doubles."""
    counts = all(contract(feed).field_spec(field).type == "integer" for feed, field in measure.fields)
    return "BIGINT" if counts else "DOUBLE"


def unit_month(
    units: pa.Table,
    links: pa.Table,
    records: dict[str, pa.Table],
    config: MartConfig,
    touched: pa.Array | None = None,
    previous: pa.Table | None = None,
) -> pa.Table:
    """The ``unit_month`` mart. ``units``: the ``units`` mart (the unit's division, township, industry).
    With ``touched`` and ``previous``: recompute the touched units' rows, carry the others over."""
    if touched is not None and previous is not None:
        links = links.filter(pc.is_in(links["unit_id"], touched))
    facts = _feed_facts(records, config)
    measures = ", ".join(f"sum({m.name})::{_sql_type(m)} AS {m.name}" for m in config.measures)
    counts = ", ".join(
        f"count(*) FILTER (WHERE feed = '{feed}')::BIGINT AS {feed}_records" for feed in load_contracts()
    )
    flags = ", ".join(f"coalesce({f.measure} > {f.above}, false) AS {f.name}" for f in config.activity_flags)
    active = " OR ".join(f.name for f in config.activity_flags)
    attributes = ", ".join(f"u.{name}" for name in UNIT_COLUMNS)
    fresh = query(
        f"""
        WITH monthly AS (
            SELECT l.unit_id, f.period, {measures}, {counts}
            FROM facts f JOIN links l USING (feed, record_id)
            WHERE f.period IS NOT NULL
            GROUP BY l.unit_id, f.period
        ), flagged AS (SELECT *, {flags} FROM monthly)
        SELECT m.unit_id, m.period, {attributes}, m.* EXCLUDE (unit_id, period), ({active}) AS active
        FROM flagged m JOIN units u USING (unit_id)
        ORDER BY m.period, m.unit_id
        """,
        facts=facts,
        links=links.select(["feed", "record_id", "unit_id"]),
        units=units.select(["unit_id", *UNIT_COLUMNS]),
    )
    if touched is None or previous is None:
        return fresh
    current = units["unit_id"]
    kept = previous.filter(
        pc.and_(pc.invert(pc.is_in(previous["unit_id"], touched)), pc.is_in(previous["unit_id"], current))
    )
    merged = pa.concat_tables([kept.select(fresh.column_names).cast(fresh.schema), fresh])
    return merged.take(pc.sort_indices(merged, [("period", "ascending"), ("unit_id", "ascending")]))
