"""The register's own quality, one row of figures per register run: how complete, how clean and how stable
it is (不重不漏: no duplicates, no omissions). The figures land in the ``register_quality`` mart and in the
run's ``_meta.json`` (``meta["quality"]``), so the run report can show them across runs.

Pure: tables in, figures out. The rules behind each figure, where a choice had to be made:

- ``units_without_uscc_share``: units whose register row has no valid USCC, over all units. The national
  basic unit register asks for under 1 % (``USCC_SHARE_TARGET``).
- ``duplicate_candidates``: distinct pairs of units that may be one business. A pair is a candidate when
  (a) both units are routed to the same division and their names standardise to the same core name
  (``CompanyName.core``: folded width, script and look-alikes, region prefix dropped, one spelling of the
  organisation form, the branch kept; a registration authority never gives two units one name in its
  area), or (b) a review item of a duplicate kind (``DUPLICATE_REVIEW_REASONS``: the model's uncertain band,
  or a rival unit scoring as high) asks whether its record's unit and a candidate unit are one. A pair
  found both ways counts once.
- ``coverage``: per feed, the share of the resolver's current records that are linked to a unit.
- ``review_age_*_days``: days from the item being raised to ``today`` (China dates). The review table keeps
  the run that raised the item *or last changed it* (candidates or scores moved), not the first run that
  raised it, so an age is a floor: a changed item starts again. A run's time is its ``created_at``, from
  ``run_times`` (earlier runs: the previous ``register_quality`` rows or their ``_meta.json``) and this
  run's. An item whose run time is not known is aged from the arrival of its record at the broker
  (``_kafka_timestamp``), the earliest it can have been raised; with neither it is left out.
- ``registration_lag_median_days``: for units with a registration record, days from the unit's
  ``first_seen`` (its earliest record in any feed) to its earliest ``established_on``; the median over the
  units first seen before they registered (seen by tax, power or couriers while unregistered). Units that
  registered first have no lag and are not counted, so the figure says how late the late ones were.
- ``contacts``: units whose sources give at least one phone (``contact_candidates`` > 0), and units whose
  best contact is confirmed (``contact_grade`` the confirmed grade of ``schemas/contacts/sources.toml``: two
  independent sources give the number), each with its share of all units.
- ``id_churn``: this run's lineage events (``merged`` / ``split`` / ``retired``) and ``share``: the units
  whose id changed this way (distinct ``from_unit_id``) per unit of the register.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from functools import cache
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from pipelines import resources
from pipelines.contacts.best import load_sources
from pipelines.contracts import CHINA_TIME_ZONE, expand_per, feed_names
from pipelines.mappings import anchor_feeds, mapping
from pipelines.marts.sql import query
from pipelines.standardise import parse_company_name

__all__ = [
    "DUPLICATE_REVIEW_REASONS",
    "USCC_SHARE_TARGET",
    "quality_schema",
    "quality_table",
    "register_quality",
]

USCC_SHARE_TARGET = 0.01  # the national register's ceiling on units without a USCC
DUPLICATE_REVIEW_REASONS = ("uncertain_link", "rival_unit")  # review reasons that ask "are these one unit?"
LINEAGE_EVENTS = ("merged", "split", "retired")
_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


# -- the mart's schema, documented in schemas/marts/register_quality.json ----------------------------------


def _arrow_type(field: dict[str, Any]) -> pa.DataType:
    if field["type"] == "struct":
        return pa.struct([pa.field(name, _arrow_type(f)) for name, f in _members(field["fields"])])
    return _TYPES[field["type"]]


def _members(fields: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(name, field) of a struct's documented fields, one per feed contract where marked ``"per": "feed"``."""
    return expand_per(fields, {"feed": feed_names()})


@cache
def quality_schema() -> pa.Schema:
    """Arrow schema of the ``register_quality`` mart (nested figures as structs, never JSON text)."""
    spec = json.loads((resources.MART_SCHEMAS / "register_quality.json").read_text(encoding="utf-8"))
    return pa.schema([pa.field(f["name"], _arrow_type(f)) for f in spec["fields"]])


def quality_table(rows: list[dict[str, Any]]) -> pa.Table:
    """The ``register_quality`` mart: one row per register run, as ``register_quality`` returned them
    (``created_at`` an ISO string or a datetime). Oldest run first."""
    schema = quality_schema()
    feeds = [f.name for f in schema.field("coverage").type]
    unknown = {feed for row in rows for feed in row.get("coverage") or {}} - set(feeds)
    if unknown:  # a feed the schema does not document would be dropped without a word
        raise ValueError(f"coverage of feeds not in register_quality.json: {sorted(unknown)}")
    shaped = [
        {
            **row,
            "created_at": _moment(row.get("created_at")),
            "coverage": {feed: (row.get("coverage") or {}).get(feed) for feed in feeds},
        }
        for row in sorted(rows, key=lambda row: row["run_id"])
    ]
    return pa.Table.from_pylist(shaped, schema=schema)


def _moment(value: str | datetime.datetime | None) -> datetime.datetime | None:
    if value is None or isinstance(value, datetime.datetime):
        return value
    return datetime.datetime.fromisoformat(value)


# -- the figures -------------------------------------------------------------------------------------------


def register_quality(
    tables: dict[str, pa.Table],
    records: dict[str, pa.Table],
    run_id: str,
    created_at: str,
    today: datetime.date,
    *,
    run_times: Mapping[str, str | datetime.datetime] | None = None,
    keys: pa.Table | None = None,
) -> dict[str, Any]:
    """The quality figures of one register run (rules in the module docstring). ``tables``: the run's
    register, links, review and lineage; ``records``: the resolver's current records per feed;
    ``today``: the day the ages are counted to, a China date (the run's own, normally); ``run_times``:
    ``created_at`` (ISO text or datetime) of earlier register runs by run id, to age the review items they
    raised: ``{row["run_id"]: row["created_at"] for row in <the previous register_quality rows>}``;
    ``keys``: the register's name keys (``name_keys``), when the caller has them already."""
    register, review = tables["register"], tables["review"]
    units = register.num_rows
    without_uscc = units - pc.count(_blank_to_null(register["uscc"])).as_py()
    return {
        "run_id": run_id,
        "created_at": created_at,
        "units": units,
        "units_without_uscc": without_uscc,
        "units_without_uscc_share": _share(without_uscc, units),
        "duplicate_candidates": _duplicate_candidates(
            register, review, keys if keys is not None else name_keys(register)
        ),
        "coverage": _coverage(tables["links"], records),
        "review_open": review.num_rows,
        **_review_ages(review, records, {**(run_times or {}), run_id: created_at}, today),
        "registration_lag_median_days": _registration_lag(register, tables["links"], records),
        "id_churn": _id_churn(tables["lineage"], run_id, units),
        "contacts": _contacts(register),
    }


def _query(sql: str, params: dict[str, Any] | None = None, **tables: pa.Table) -> tuple[Any, ...]:
    """The one row of a DuckDB query over the named Arrow tables."""
    con = duckdb.connect()
    try:
        for name, table in tables.items():
            con.register(name, table)
        row = con.execute(sql, params or {}).fetchone()
        assert row is not None
        return row
    finally:
        con.close()


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _blank_to_null(values: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.if_else(pc.equal(pc.utf8_trim_whitespace(values), ""), None, values)


def _china_dates(moments: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Calendar dates in China of UTC timestamps."""
    local = pc.local_timestamp(moments.cast(pa.timestamp("us", tz=CHINA_TIME_ZONE)))
    return pc.cast(local, pa.date32())


def name_keys(register: pa.Table, known: pa.Table | None = None) -> pa.Table:
    """The standardised core name (``name_key``) of each distinct (name, division) of the register: parsed
    once per name, with the division as the hint that tells same-named districts apart. ``known``: keys
    found before (name, division_code, name_key; the last run's ``units`` mart keeps them), so a run parses
    only the names it has not seen."""
    pairs = register.select(["name", "division_code"]).group_by(["name", "division_code"]).aggregate([])
    pairs = pairs.filter(pc.and_(pc.is_valid(pairs["name"]), pc.is_valid(pairs["division_code"])))
    found = pairs.append_column("name_key", pa.nulls(pairs.num_rows, pa.string())).slice(0, 0)
    if known is not None and known.num_rows:
        found = query(
            """
            SELECT p.name, p.division_code, any_value(k.name_key) AS name_key
            FROM pairs p JOIN known k USING (name, division_code) GROUP BY ALL
            """,
            pairs=pairs,
            known=known.select(["name", "division_code", "name_key"]),
        )
        pairs = query(
            "SELECT * FROM pairs ANTI JOIN found USING (name, division_code)", pairs=pairs, found=found
        )
    keys = [
        parse_company_name(name, division).core
        for name, division in zip(pairs["name"].to_pylist(), pairs["division_code"].to_pylist(), strict=True)
    ]
    parsed = pairs.append_column("name_key", pa.array(keys, pa.string()))
    return pa.concat_tables([found.cast(parsed.schema), parsed])


def _duplicate_candidates(register: pa.Table, review: pa.Table, keys: pa.Table) -> int:
    """Distinct unit pairs with one core name in one division, or put together by a review item of a
    duplicate kind."""
    return _query(
        """
        WITH keyed AS (
            SELECT u.unit_id, u.division_code, k.name_key
            FROM units u JOIN keys k USING (name, division_code) WHERE k.name_key <> ''
        ),
        same_name AS (
            SELECT a.unit_id AS a, b.unit_id AS b FROM keyed a JOIN keyed b
            ON a.division_code = b.division_code AND a.name_key = b.name_key AND a.unit_id < b.unit_id
        ),
        asked AS (
            SELECT current_unit_id AS this, unnest(candidate_unit_ids) AS other
            FROM items WHERE reason IN (SELECT reason FROM reasons)
        ),
        reviewed AS (
            SELECT least(this, other) AS a, greatest(this, other) AS b FROM asked
            WHERE this <> other
              AND this IN (SELECT unit_id FROM units) AND other IN (SELECT unit_id FROM units)
        )
        SELECT count(*) FROM (SELECT a, b FROM same_name UNION SELECT a, b FROM reviewed)
        """,
        keys=keys,
        units=register.select(["unit_id", "name", "division_code"]),
        items=review.select(["reason", "current_unit_id", "candidate_unit_ids"]),
        reasons=pa.table({"reason": pa.array(DUPLICATE_REVIEW_REASONS, pa.string())}),
    )[0]


def _coverage(links: pa.Table, records: dict[str, pa.Table]) -> dict[str, float | None]:
    """Per feed, the share of current records that are in a unit (None for a feed with no records)."""
    linked = links.filter(pc.is_valid(links["unit_id"])).select(["feed", "record_id"])
    coverage = {}
    for feed, table in records.items():
        total, covered = _query(
            """
            SELECT count(DISTINCT record_id),
                   count(DISTINCT record_id) FILTER (WHERE record_id IN (SELECT record_id FROM linked))
            FROM ids
            """,
            ids=table.select(["record_id"]),
            linked=linked.filter(pc.equal(linked["feed"], feed)),
        )
        coverage[feed] = _share(covered, total)
    return coverage


def _arrivals(records: dict[str, pa.Table]) -> pa.Table:
    """When each current record reached the broker, as a China date (null where not recorded)."""
    parts = []
    for feed, table in records.items():
        arrived = (
            _china_dates(table["_kafka_timestamp"])
            if "_kafka_timestamp" in table.column_names
            else pa.nulls(table.num_rows, pa.date32())
        )
        feeds = pa.array([feed] * table.num_rows, pa.string())
        parts.append(pa.table({"feed": feeds, "record_id": table["record_id"], "arrived_on": arrived}))
    empty = pa.table(
        {"feed": pa.array([], pa.string()), "record_id": pa.array([], pa.string()), "arrived_on": []},
        schema=pa.schema({"feed": pa.string(), "record_id": pa.string(), "arrived_on": pa.date32()}),
    )
    return pa.concat_tables([empty, *(part.cast(empty.schema) for part in parts)])


def _review_ages(
    review: pa.Table,
    records: dict[str, pa.Table],
    run_times: Mapping[str, str | datetime.datetime],
    today: datetime.date,
) -> dict[str, float | int | None]:
    """Median and oldest age in days of the open review items."""
    runs = pa.table(  # a China date per run: the day an item of that run was raised
        {
            "run_id": pa.array(list(run_times), pa.string()),
            "raised_on": _china_dates(
                pa.array([_moment(t) for t in run_times.values()], pa.timestamp("us", tz="UTC"))
            ),
        }
    )
    median, oldest = _query(
        """
        WITH raised AS (
            SELECT coalesce(r.raised_on, a.arrived_on) AS raised_on
            FROM items i
            LEFT JOIN runs r ON r.run_id = i.run_id
            LEFT JOIN arrivals a ON a.feed = i.feed AND a.record_id = i.record_id
        ),
        -- a today given in UTC can be the day before a run's China date: an item raised today is 0 days old
        ages AS (
            SELECT greatest(date_diff('day', raised_on, $today), 0) AS age
            FROM raised WHERE raised_on IS NOT NULL
        )
        SELECT median(age)::DOUBLE, max(age) FROM ages
        """,
        {"today": today},
        items=review.select(["feed", "record_id", "run_id"]),
        runs=runs,
        arrivals=_arrivals(records),
    )
    return {"review_age_median_days": median, "review_age_max_days": oldest}


def _registration_lag(register: pa.Table, links: pa.Table, records: dict[str, pa.Table]) -> float | None:
    """Median days from first seen to registered, over the units seen before they registered."""
    feeds = [f for f in anchor_feeds() if f in records and mapping(f).field("established_on")]
    if not feeds:
        return None
    established = pa.concat_tables(
        pa.table(
            {
                "feed": pa.array([feed] * records[feed].num_rows, pa.string()),
                "record_id": records[feed]["record_id"],
                "established_on": records[feed][mapping(feed).roles["established_on"]].cast(pa.date32()),
            }
        )
        for feed in feeds
    )
    return _query(
        """
        WITH registered AS (
            SELECT l.unit_id, min(e.established_on) AS established_on
            FROM linked l JOIN established e USING (feed, record_id)
            WHERE l.unit_id IS NOT NULL AND e.established_on IS NOT NULL GROUP BY l.unit_id
        ),
        lags AS (
            SELECT date_diff('day', s.first_seen_on, r.established_on) AS lag
            FROM registered r JOIN seen s USING (unit_id)
        )
        SELECT median(lag)::DOUBLE FROM lags WHERE lag > 0
        """,
        established=established,
        linked=links.select(["feed", "record_id", "unit_id"]),
        seen=pa.table(
            {"unit_id": register["unit_id"], "first_seen_on": _china_dates(register["first_seen"])}
        ),
    )[0]


def _contacts(register: pa.Table) -> dict[str, Any]:
    """Units with a contact candidate and with a confirmed best contact, and their shares."""
    units = register.num_rows
    offered = pc.sum(pc.greater(pc.fill_null(register["contact_candidates"], 0), 0)).as_py() or 0
    confirmed_grade = load_sources().confirmed
    confirmed = pc.sum(pc.fill_null(pc.equal(register["contact_grade"], confirmed_grade), False)).as_py() or 0
    return {
        "with_candidate": offered,
        "with_candidate_share": _share(offered, units),
        "confirmed": confirmed,
        "confirmed_share": _share(confirmed, units),
    }


def _id_churn(lineage: pa.Table, run_id: str, units: int) -> dict[str, Any]:
    """This run's merges, splits and retirements, and the share of units whose id changed so."""
    events = lineage.filter(pc.equal(lineage["run_id"], run_id))
    counts = {event: pc.sum(pc.equal(events["event"], event)).as_py() or 0 for event in LINEAGE_EVENTS}
    changed = len(pc.unique(events["from_unit_id"].drop_null()))
    return {**counts, "share": _share(changed, units)}
