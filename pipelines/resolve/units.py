"""Units: which clusters are business units, and their rows of the register.

A cluster is a unit if it holds a registration, a tax record or a non-residential power account; a sender
seen only through waybills, or a shop seen only on platforms without a licence, only with steady volume
(the mappings' ``alone_needs_volume``); private persons never. A unit's row is computed over
tables (its entities, its records' figures, the test records attached to it) for just the units a run
touched; every other row is carried over as it was.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date

import pyarrow as pa

from pipelines.contracts import resolver_schema
from pipelines.mappings import (
    anchor_feeds,
    feeds_where,
    mapping,
    person_feeds,
    sql_list,
    unit_feeds,
    volume_feeds,
)
from pipelines.resolve.engine import Engine
from pipelines.resolve.types import ResolveSettings

# The register's figures: when a record was true, its period, its meter, and every figure a feed's mapping
# names (tax paid, kWh, parcels, a new department's orders …), in one shape across feeds.
_FACT_TYPES = {"moment": "TIMESTAMPTZ", "period": "VARCHAR", "meter": "VARCHAR"}
# The figures the register's own flags read (tax_active, power_active, the e-commerce and zombie flags): null,
# not missing, when no feed's mapping gives them.
REGISTER_FIGURES = ("tax_paid", "kwh", "parcels")


def figure_names() -> tuple[str, ...]:
    named = (f for feed in unit_feeds() for f in mapping(feed).figures)
    return tuple(dict.fromkeys((*REGISTER_FIGURES, *named)))


def figure_columns(feed: str) -> dict[str, str]:
    """Register name -> the feed's field, for the facts and figures the feed has."""
    found = mapping(feed)
    return {
        **{role: found.roles[role] for role in _FACT_TYPES if role in found.roles},
        **found.figures,
    }


def figures_sql(feeds: Collection[str]) -> str:
    """One row per record of the given feeds: feed, record_id, entity_id and the figures, in one shape."""
    types = {**_FACT_TYPES, **dict.fromkeys(figure_names(), "DOUBLE")}
    selects = []
    for feed in feeds:
        columns = figure_columns(feed)
        figures = ", ".join(
            f"CAST({columns[name]} AS {kind}) AS {name}" if name in columns else f"NULL::{kind} AS {name}"
            for name, kind in types.items()
        )
        selects.append(f"SELECT '{feed}' AS feed, record_id, entity_id, {figures} FROM {feed}")
    return "\nUNION ALL\n".join(selects)


def figure_tables(records: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """The unit feeds' records, only the columns ``figures_sql`` reads."""
    return {
        feed: records[feed].select(["record_id", "entity_id", *figure_columns(feed).values()])
        for feed in unit_feeds()
    }


# -- which clusters are units -----------------------------------------------------------------------------


@dataclass(frozen=True)
class UnitDraft:
    """A cluster that is a business unit, before it has its id."""

    cluster: int  # its position among the clusters decided about
    members: tuple[str, ...]  # entity ids, sorted
    anchor: str  # its valid USCC, else its smallest record key: where a new id is minted from
    registered: bool


def draft_units(
    engine: Engine,
    clusters: list[list[str]],
    entities: pa.Table,
    records: dict[str, pa.Table],
    not_business: Collection[str],
    settings: ResolveSettings,
) -> list[UnitDraft]:
    """The clusters that are business units (members a verdict says are no business left out)."""
    wanted = pa.array(sorted({e for members in clusters for e in members}), pa.string())
    by_volume = volume_feeds()
    volume = " ".join(f"WHEN '{feed}' THEN r.{figure}" for feed, figure in by_volume.items())
    month = "coalesce(r.period, strftime(r.moment, '%Y-%m'))"
    facts = engine.query(
        f"""
        WITH wanted AS (SELECT entity_id FROM wanted_ids),
        recs AS ({figures_sql(unit_feeds())})
        SELECT e.entity_id, e.feed, e.is_person, e.uscc,
               min(r.feed || '/' || r.record_id) AS first_record,
               coalesce(sum({f"CASE r.feed {volume} END" if volume else "NULL"}), 0) AS volume,
               list(DISTINCT {month})
                   FILTER (WHERE r.feed IN {sql_list(list(by_volume))} AND {month} IS NOT NULL) AS months
        FROM entities e JOIN wanted USING (entity_id) JOIN recs r USING (entity_id)
        GROUP BY ALL
        """,
        wanted_ids=pa.table({"entity_id": wanted}),
        entities=entities.select(["entity_id", "feed", "is_person", "uscc"]),
        **figure_tables(records),
    )
    about = {row["entity_id"]: row for row in facts.to_pylist()}
    drafts = []
    for index, cluster in enumerate(clusters):
        members = [m for m in cluster if m not in not_business and m in about]
        if not members:
            continue
        feeds = {about[m]["feed"] for m in members}
        business = [m for m in members if not about[m]["is_person"]]
        if feeds <= set(by_volume) and not any(about[m]["uscc"] for m in members):
            volume = sum(about[m]["volume"] for m in members)
            months = {month for m in members for month in about[m]["months"] or []}
            if (
                not business
                or volume < settings.ecommerce_min_parcels
                or len(months) < settings.ecommerce_min_months
            ):
                continue
        elif not business:
            continue
        uscc = next((about[m]["uscc"] for m in members if about[m]["uscc"]), None)
        anchor = f"uscc:{uscc}" if uscc else min(about[m]["first_record"] for m in members)
        registered = bool(feeds & set(anchor_feeds()))
        drafts.append(UnitDraft(index, tuple(members), anchor, registered))
    return drafts


# -- the register's rows ------------------------------------------------------------------------------


def months_before(period: str, months: int) -> str:
    year, month = int(period[:4]), int(period[5:7])
    index = year * 12 + (month - 1) - months + 1
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def licence_sql() -> str:
    return f"""
    -- 一户多证: an operator's licences at one address (district and street, else road)
    SELECT unit_id,
           legal_rep_name || '|' || district_code || '|' || coalesce(street_key, road) AS licence_key
    FROM main_entities
    WHERE feed IN {sql_list(anchor_feeds())} AND legal_rep_name IS NOT NULL AND district_code IS NOT NULL
      AND coalesce(street_key, road) IS NOT NULL
    """


def main_sql() -> str:
    anchors = sql_list(anchor_feeds())
    return f"""
    -- the entity that speaks for a unit: its registration (the first by id), else the one with most records
    WITH member_entities AS (
        SELECT m.unit_id, e.* FROM members m JOIN entities e USING (entity_id)
    ),
    record_counts AS (SELECT entity_id, count(*) AS record_count FROM recs GROUP BY entity_id)
    SELECT * EXCLUDE (rank) FROM (
        SELECT me.*, row_number() OVER (
            PARTITION BY me.unit_id
            ORDER BY me.feed NOT IN {anchors},
                     CASE WHEN me.feed IN {anchors} THEN 0 ELSE coalesce(rc.record_count, 0) END DESC,
                     me.entity_id) AS rank
        FROM member_entities me LEFT JOIN record_counts rc USING (entity_id)
    ) WHERE rank = 1
    """


# What a registration says about its unit, as the register shows it: register column -> (role, SQL type).
_ANCHOR_FACTS = {
    "entity_type": ("entity_type", "VARCHAR"),
    "legal_rep_name": ("legal_rep_name", "VARCHAR"),
    "industry_code": ("industry_code", "VARCHAR"),
    "status": ("status", "VARCHAR"),
    "abnormal_since": ("abnormal_since", "DATE"),
}


def anchor_records(records: dict[str, pa.Table], role: str, kind: pa.DataType) -> pa.Table:
    """feed, record_id and the field in ``role`` (as ``role``) of the anchor feeds' records."""
    schema = pa.schema([("feed", pa.string()), ("record_id", pa.string()), (role, kind)])
    tables = [schema.empty_table()]
    for feed in anchor_feeds():
        table, field = records[feed], mapping(feed).field(role)
        values = table[field].cast(kind) if field else pa.nulls(table.num_rows, kind)
        feeds = pa.array([feed] * table.num_rows, pa.string())
        tables.append(pa.Table.from_arrays([feeds, table["record_id"], values], schema=schema))
    return pa.concat_tables(tables)


def anchor_sql() -> str:
    """The anchor feeds' records (registrations) in one shape: feed, record_id and ``_ANCHOR_FACTS``."""
    selects = []
    for feed in anchor_feeds():
        roles = mapping(feed).roles
        facts = ", ".join(
            f"CAST({roles[role]} AS {kind}) AS {column}" if role in roles else f"NULL::{kind} AS {column}"
            for column, (role, kind) in _ANCHOR_FACTS.items()
        )
        selects.append(f"SELECT '{feed}' AS feed, record_id, {facts} FROM {feed}")
    empty = ", ".join(f"NULL::{kind} AS {column}" for column, (_, kind) in _ANCHOR_FACTS.items())
    return "\nUNION ALL\n".join(selects) or f"SELECT NULL AS feed, NULL AS record_id, {empty} WHERE false"


def licence_keys(
    engine: Engine, members: pa.Table, entities: pa.Table, records: dict[str, pa.Table]
) -> pa.Table:
    """unit_id, licence_key of the units in ``members`` whose registration names an operator and a site."""
    return engine.query(
        f"WITH recs AS ({figures_sql(unit_feeds())}), main_entities AS ({main_sql()}) {licence_sql()}",
        members=members.select(["entity_id", "unit_id"]),
        entities=entities,
        **figure_tables(records),
    )


def register_rows(
    engine: Engine,
    members: pa.Table,
    entities: pa.Table,
    records: dict[str, pa.Table],
    person_links: pa.Table,
    multi_licence: pa.Array,
    reference: str | None,
    settings: ResolveSettings,
    run_id: str,
) -> pa.Table:
    """The register rows of the units in ``members`` (entity_id, unit_id, probability).

    ``person_links``: test records attached to these units (record_id, unit_id); ``multi_licence``: the unit
    ids that share an operator and address with another unit; ``reference``: the latest period of the tax and
    electricity figures, which the look-back window ends at."""
    window_start = months_before(reference, settings.lookback_months) if reference else "9999-99"
    zombie_days = 365 * settings.zombie_abnormal_years
    reference_day = date.fromisoformat(f"{reference}-01") if reference else None
    listed_long = (
        f"DATE '{reference_day}' - reg.abnormal_since >= {zombie_days}" if reference_day else "false"
    )
    feeds = unit_feeds()
    counts = ",\n".join(f"count(*) FILTER (WHERE r.feed = '{feed}') AS {feed}_records" for feed in feeds)
    online_records = " + ".join(f"f.{feed}_records" for feed in feeds_where("online")) or "0"
    all_records = " + ".join(f"f.{feed}_records" for feed in feeds)
    registered_records = " + ".join(f"f.{feed}_records" for feed in anchor_feeds()) or "0"
    rows = engine.query(
        f"""
        WITH recs AS ({figures_sql(feeds)}),
        unit_recs AS (SELECT r.*, m.unit_id FROM recs r JOIN members m USING (entity_id)),
        main_entities AS ({main_sql()}),
        anchors AS ({anchor_sql()}),
        member_entities AS (
            SELECT m.unit_id, m.probability, e.* FROM members m JOIN entities e USING (entity_id)
        ),
        names AS (
            SELECT unit_id, name, count(*) AS n, min(entity_id) AS first_entity
            FROM member_entities WHERE name IS NOT NULL GROUP BY unit_id, name
        ),
        canonical AS (
            SELECT main.unit_id, coalesce(main.name, (
                SELECT name FROM names WHERE names.unit_id = main.unit_id
                ORDER BY n DESC, first_entity LIMIT 1
            )) AS name
            FROM main_entities main
        ),
        aliases AS (
            SELECT n.unit_id,
                   list(n.name ORDER BY n.name) FILTER (WHERE n.name IS DISTINCT FROM c.name) AS aliases
            FROM names n JOIN canonical c USING (unit_id) GROUP BY n.unit_id
        ),
        members_summary AS (
            SELECT me.unit_id,
                   min(coalesce(me.probability, 1.0)) AS confidence,
                   -- the first member (by id) that has one; the phone of the main entity first
                   min_by(me.uscc, me.entity_id) FILTER (WHERE me.uscc IS NOT NULL) AS uscc,
                   min_by(me.district_code, me.entity_id)
                       FILTER (WHERE me.district_code IS NOT NULL) AS district,
                   min_by(me.township, me.entity_id) FILTER (WHERE me.township IS NOT NULL) AS township,
                   min_by(me.legal_rep_name, me.entity_id)
                       FILTER (WHERE me.legal_rep_name IS NOT NULL) AS rep,
                   min_by(me.phone, (me.entity_id <> main.entity_id)::INT || me.entity_id)
                       FILTER (WHERE me.phone_kind IN ('mobile', 'landline')) AS phone
            FROM member_entities me JOIN main_entities main USING (unit_id) GROUP BY me.unit_id
        ),
        figures AS (
            SELECT unit_id, {counts},
                   min(moment) AS first_seen, max(moment) AS last_seen,
                   count(DISTINCT meter) AS meters,
                   coalesce(sum(parcels), 0) AS parcels,
                   coalesce(sum(tax_paid) FILTER (WHERE period >= '{window_start}'), 0) AS tax_paid,
                   coalesce(sum(kwh) FILTER (WHERE period >= '{window_start}'), 0) AS kwh
            FROM unit_recs r GROUP BY unit_id
        ),
        persons AS (
            SELECT unit_id, count(*) AS persons, min(moment) AS first_seen, max(moment) AS last_seen
            FROM person_links GROUP BY unit_id
        )
        SELECT main.unit_id,
               s.uscc,
               c.name,
               coalesce(a.aliases, []) AS aliases,
               reg.entity_type,
               CASE WHEN reg.record_id IS NOT NULL THEN reg.legal_rep_name ELSE s.rep END AS legal_rep_name,
               reg.industry_code,
               main.address,
               coalesce(main.district_code, s.district) AS division_code,
               coalesce(main.township, s.township) AS township,
               s.phone,
               reg.status,
               least(f.first_seen, p.first_seen) AS first_seen,
               greatest(f.last_seen, p.last_seen) AS last_seen,
               {", ".join(f"f.{feed}_records" for feed in feeds)},
               {", ".join(f"coalesce(p.persons, 0) AS {feed}_records" for feed in person_feeds())},
               {registered_records} = 0 AS unregistered,
               main.unit_id IN (SELECT unit_id FROM multi_licence) AS multi_licence,
               f.meters > 1 AS multi_meter,
               f.parcels >= {settings.ecommerce_min_parcels}
                   AND {online_records} >= {settings.ecommerce_waybill_share}
                       * ({all_records} + coalesce(p.persons, 0)) AS ecommerce_candidate,
               coalesce(reg.abnormal_since IS NOT NULL
                   AND {listed_long}
                   AND f.tax_paid <= 0, false) AS zombie_candidate,
               f.tax_paid > 0 AS tax_active,
               f.kwh > 0 AS power_active,
               s.confidence,
               '{run_id}' AS run_id
        FROM main_entities main
        JOIN members_summary s USING (unit_id)
        JOIN canonical c USING (unit_id)
        LEFT JOIN aliases a USING (unit_id)
        JOIN figures f USING (unit_id)
        LEFT JOIN persons p USING (unit_id)
        LEFT JOIN anchors reg ON reg.feed = main.feed AND reg.record_id = main.rep_record_id
        ORDER BY main.unit_id
        """,
        members=members.select(["entity_id", "unit_id", "probability"]),
        entities=entities,
        person_links=person_links.select(["unit_id", "moment"]),
        multi_licence=pa.table({"unit_id": pa.array(multi_licence, pa.string())}),
        **{feed: records[feed] for feed in feeds},
    )
    # the best contact's columns are joined on afterwards (pipelines.contacts.best)
    typed = [f for f in resolver_schema("register") if f.name in rows.column_names]
    return rows.select([f.name for f in typed]).cast(pa.schema(typed))
