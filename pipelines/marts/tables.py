"""The register's tables in the form BI tools read: codes with their names, categorical values normalised to
the reviewed vocabularies (the source value kept beside them), nested values as Parquet structs and lists
instead of JSON strings, and dimensions with names (divisions down to township, industries, statuses).

The register's phone is a token (``t1_…``, tokenised at import: most registered phones are the owner's
mobile); the mart names it ``phone_token`` so nobody takes it for a number to dial.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.marts.sql import query
from pipelines.standardise.divisions import by_code
from pipelines.standardise.vocabularies import (
    industry_dimension,
    normalise_entity_types,
    normalise_industries,
    normalise_statuses,
    status_dimension,
)


def _lookup(values: pa.Array, mapping: dict[str, str]) -> pa.Array:
    """``mapping`` over an array, through its distinct values (no per-row Python)."""
    distinct = pc.unique(values)
    names = pa.array([mapping.get(v) if v is not None else None for v in distinct.to_pylist()], pa.string())
    return names.take(pc.index_in(values, distinct))


def _struct(table: pa.Table, columns: list[str], strip: str = "") -> pa.Array:
    arrays = [table[c].combine_chunks() for c in columns]
    return pa.StructArray.from_arrays(arrays, names=[c.removesuffix(strip) for c in columns])


def units(register: pa.Table, tiers: pa.Table | None = None, name_keys: pa.Table | None = None) -> pa.Table:
    """The ``units`` mart: one row per unit of the register, with names for its codes. ``name_keys``
    (name, division_code, name_key): each name's standardised core, kept as ``name_core``."""
    divisions = by_code()
    district = {code: d.name for code, d in divisions.items()}
    city = {code: divisions[d.city_code].name for code, d in divisions.items() if d.city_code in divisions}
    industries = normalise_industries(register["industry_code"])
    statuses = normalise_statuses("registration", register["status"])
    kinds = normalise_entity_types(register["entity_type"])
    township_code = pc.if_else(
        pc.is_null(register["township"]),
        pa.nulls(register.num_rows, pa.string()),
        pc.binary_join_element_wise(register["division_code"], register["township"], "-"),
    )
    flags = [f.name for f in register.schema if pa.types.is_boolean(f.type)]
    counts = [name for name in register.column_names if name.endswith("_records")]
    columns = {
        "unit_id": register["unit_id"],
        "uscc": register["uscc"],
        "name": register["name"],
        "aliases": register["aliases"],
        "entity_type": kinds["entity_type"],
        "entity_kind": kinds["entity_kind"],
        "entity_type_source": register["entity_type"],
        "industry_code": industries["industry_code"],
        "industry_name": industries["industry_name"],
        "industry_section": industries["industry_section"],
        "industry_section_name": industries["industry_section_name"],
        "industry_division": industries["industry_division"],
        "industry_division_name": industries["industry_division_name"],
        "industry_code_source": register["industry_code"],
        "status": statuses["status"],
        "status_label": statuses["status_label"],
        "status_source": register["status"],
        "division_code": register["division_code"],
        "district_name": _lookup(register["division_code"], district),
        "city_name": _lookup(register["division_code"], city),
        "township": register["township"],
        "township_code": township_code,
        "address": register["address"],
        "phone_token": register["phone"],
        "flags": _struct(register, flags),
        "records": _struct(register, counts, strip="_records"),
        "first_seen": register["first_seen"],
        "last_seen": register["last_seen"],
        "confidence": register["confidence"],
        "run_id": register["run_id"],
    }
    table = pa.table(columns)
    if tiers is not None and name_keys is not None:
        table = query(
            """
            SELECT u.*, k.name_key AS name_core, t.activity_score, t.tier
            FROM units u LEFT JOIN tiers t USING (unit_id)
            LEFT JOIN keys k ON k.name = u.name AND k.division_code = u.division_code
            ORDER BY unit_id
            """,
            units=table,
            tiers=tiers,
            keys=name_keys,
        )
    return table


def links(register_links: pa.Table, run_id: str | None = None, previous: pa.Table | None = None) -> pa.Table:
    """The ``links`` mart: per-field match weights as a list of (field, weight), not a JSON string. With
    ``previous`` (the last run's mart), only the links this run changed (``run_id``) are converted: any other
    link is the same row it was."""
    changed = register_links
    if previous is not None and run_id is not None:
        changed = register_links.filter(pc.equal(register_links["run_id"], run_id))
    fresh = query(
        """
        SELECT * REPLACE (
            list_transform(
                map_entries(json_transform(field_weights, '"MAP(VARCHAR, DOUBLE)"')),
                lambda e: {'field': e.key, 'weight': e.value}
            ) AS field_weights
        )
        FROM links
        """,
        links=changed,
    )
    if changed is register_links:
        return fresh
    this_run = run_id.replace("'", "''")
    kept = query(
        f"""
        SELECT p.* FROM previous p
        SEMI JOIN (SELECT feed, record_id FROM links WHERE run_id <> '{this_run}') USING (feed, record_id)
        """,
        previous=previous,
        links=register_links.select(["feed", "record_id", "run_id"]),
    )
    return pa.concat_tables([kept.cast(fresh.schema), fresh])


def warnings(register_warnings: pa.Table) -> pa.Table:
    """The ``warnings`` mart: each warning's evidence as a struct (the figures of the rules that fired)."""
    if not register_warnings.num_rows:
        return register_warnings.drop_columns(["evidence"])
    structure = query("SELECT json_group_structure(evidence::JSON) AS s FROM w", w=register_warnings)
    literal = str(structure["s"][0]).replace("'", "''")  # the union of the keys the fired rules give
    return query(
        f"SELECT * REPLACE (from_json(evidence, '{literal}') AS evidence) FROM w "
        "ORDER BY priority, warning_id",
        w=register_warnings,
    )


def divisions(units_table: pa.Table) -> pa.Table:
    """``dim_division``: provinces, cities and districts (code, name, level, parent), and the townships the
    register routes units to (code ``<district>-<township>``: the feeds carry no township codes)."""
    rows = by_code()
    parent = {
        "province": lambda d: None,
        "city": lambda d: d.province_code,
        "district": lambda d: d.city_code if d.city_code in rows else d.province_code,
    }
    known = pa.table(
        {
            "code": [d.code for d in rows.values()],
            "name": [d.name for d in rows.values()],
            "level": [d.level for d in rows.values()],
            "parent_code": [parent[d.level](d) for d in rows.values()],
        }
    )
    townships = query(
        """
        SELECT DISTINCT township_code AS code, township AS name, 'township' AS level,
               division_code AS parent_code
        FROM units WHERE township_code IS NOT NULL ORDER BY code
        """,
        units=units_table.select(["township_code", "township", "division_code"]),
    )
    return pa.concat_tables([known, townships.cast(known.schema)])


def industries() -> pa.Table:
    """``dim_industry``: GB/T 4754-2017 sections, divisions, groups and classes with their names."""
    return industry_dimension()


def statuses() -> pa.Table:
    """``dim_status``: the normalised registration and taxpayer statuses and the source values of each."""
    return status_dimension()
