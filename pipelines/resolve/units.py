"""Units: which clusters are business units, and their rows of the register.

A cluster is a unit if it holds a registration, a tax record or a non-residential power account; a sender
seen only through waybills only with steady volume; private persons never. A unit's row is computed over
tables (its entities, its records' figures, the test records attached to it) for just the units a run
touched; every other row is carried over as it was.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date

import pyarrow as pa

from pipelines.contracts import resolver_schema
from pipelines.resolve.engine import Engine
from pipelines.resolve.types import ResolveSettings

# Which column of each department's records is its time, and which carry the figures the register sums:
# the one mapping from feed fields to the register's figures.
FIGURES: dict[str, dict[str, str]] = {
    "registration": {"moment": "updated_at"},
    "tax": {"moment": "updated_at", "period": "period", "tax_paid": "tax_paid"},
    "utility": {"moment": "updated_at", "period": "period", "kwh": "kwh", "meter_no": "meter_no"},
    "waybill": {"moment": "shipped_at", "parcels": "parcel_count"},
}
_FIGURE_TYPES = {
    "moment": "TIMESTAMPTZ",
    "period": "VARCHAR",
    "tax_paid": "DOUBLE",
    "kwh": "DOUBLE",
    "meter_no": "VARCHAR",
    "parcels": "BIGINT",
}
PERSON_FEED = "nucleic_contact"
PERSON_MOMENT = "sampled_at"


def figures_sql(feeds: Collection[str]) -> str:
    """One row per record of the given feeds: feed, record_id, entity_id and the figures, in one shape."""
    selects = []
    for feed in feeds:
        columns = FIGURES[feed]
        figures = ", ".join(
            f"CAST({columns[name]} AS {kind}) AS {name}" if name in columns else f"NULL::{kind} AS {name}"
            for name, kind in _FIGURE_TYPES.items()
        )
        selects.append(f"SELECT '{feed}' AS feed, record_id, entity_id, {figures} FROM {feed}")
    return "\nUNION ALL\n".join(selects)


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
    facts = engine.query(
        f"""
        WITH wanted AS (SELECT entity_id FROM wanted_ids),
        recs AS ({figures_sql(FIGURES)})
        SELECT e.entity_id, e.feed, e.is_person, e.uscc,
               min(r.feed || '/' || r.record_id) AS first_record,
               coalesce(sum(r.parcels), 0) AS parcels,
               list(DISTINCT strftime(r.moment, '%Y-%m'))
                   FILTER (WHERE r.feed = 'waybill' AND r.moment IS NOT NULL) AS months
        FROM entities e JOIN wanted USING (entity_id) JOIN recs r USING (entity_id)
        GROUP BY ALL
        """,
        wanted_ids=pa.table({"entity_id": wanted}),
        entities=entities.select(["entity_id", "feed", "is_person", "uscc"]),
        **{
            feed: records[feed].select(["record_id", "entity_id", *FIGURES[feed].values()])
            for feed in FIGURES
        },
    )
    about = {row["entity_id"]: row for row in facts.to_pylist()}
    drafts = []
    for index, cluster in enumerate(clusters):
        members = [m for m in cluster if m not in not_business and m in about]
        if not members:
            continue
        feeds = {about[m]["feed"] for m in members}
        business = [m for m in members if not about[m]["is_person"]]
        if feeds == {"waybill"}:
            volume = sum(about[m]["parcels"] for m in members)
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
        registered = "registration" in feeds
        drafts.append(UnitDraft(index, tuple(members), anchor, registered))
    return drafts


# -- the register's rows ------------------------------------------------------------------------------


def months_before(period: str, months: int) -> str:
    year, month = int(period[:4]), int(period[5:7])
    index = year * 12 + (month - 1) - months + 1
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


LICENCE_SQL = """
-- 一户多证: an operator's licences at one address (district and street, else road)
SELECT unit_id,
       legal_rep_name || '|' || district_code || '|' || coalesce(street_key, road) AS licence_key
FROM main_entities
WHERE feed = 'registration' AND legal_rep_name IS NOT NULL AND district_code IS NOT NULL
  AND coalesce(street_key, road) IS NOT NULL
"""

MAIN_SQL = """
-- the entity that speaks for a unit: its registration (the first by id), else the one with most records
WITH member_entities AS (
    SELECT m.unit_id, e.* FROM members m JOIN entities e USING (entity_id)
),
record_counts AS (SELECT entity_id, count(*) AS record_count FROM recs GROUP BY entity_id)
SELECT * EXCLUDE (rank) FROM (
    SELECT me.*, row_number() OVER (
        PARTITION BY me.unit_id
        ORDER BY me.feed <> 'registration',
                 CASE WHEN me.feed = 'registration' THEN 0 ELSE coalesce(rc.record_count, 0) END DESC,
                 me.entity_id) AS rank
    FROM member_entities me LEFT JOIN record_counts rc USING (entity_id)
) WHERE rank = 1
"""


def licence_keys(
    engine: Engine, members: pa.Table, entities: pa.Table, records: dict[str, pa.Table]
) -> pa.Table:
    """unit_id, licence_key of the units in ``members`` whose registration names an operator and a site."""
    return engine.query(
        f"WITH recs AS ({figures_sql(FIGURES)}), main_entities AS ({MAIN_SQL}) {LICENCE_SQL}",
        members=members.select(["entity_id", "unit_id"]),
        entities=entities,
        **{
            feed: records[feed].select(["record_id", "entity_id", *FIGURES[feed].values()])
            for feed in FIGURES
        },
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
    feeds = ("registration", "tax", "utility", "waybill")
    counts = ",\n".join(f"count(*) FILTER (WHERE r.feed = '{feed}') AS {feed}_records" for feed in feeds)
    rows = engine.query(
        f"""
        WITH recs AS ({figures_sql(FIGURES)}),
        unit_recs AS (SELECT r.*, m.unit_id FROM recs r JOIN members m USING (entity_id)),
        main_entities AS ({MAIN_SQL}),
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
                   count(DISTINCT meter_no) AS meters,
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
               coalesce(p.persons, 0) AS {PERSON_FEED}_records,
               f.registration_records = 0 AS unregistered,
               main.unit_id IN (SELECT unit_id FROM multi_licence) AS multi_licence,
               f.meters > 1 AS multi_meter,
               f.parcels >= {settings.ecommerce_min_parcels}
                   AND f.waybill_records >= {settings.ecommerce_waybill_share}
                       * (f.registration_records + f.tax_records + f.utility_records + f.waybill_records
                          + coalesce(p.persons, 0)) AS ecommerce_candidate,
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
        LEFT JOIN registration reg ON main.feed = 'registration' AND reg.record_id = main.rep_record_id
        ORDER BY main.unit_id
        """,
        members=members.select(["entity_id", "unit_id", "probability"]),
        entities=entities,
        person_links=person_links.select(["unit_id", "moment"]),
        multi_licence=pa.table({"unit_id": pa.array(multi_licence, pa.string())}),
        **{feed: records[feed] for feed in FIGURES},
    )
    # the best contact's columns are joined on afterwards (pipelines.contacts.best)
    typed = [f for f in resolver_schema("register") if f.name in rows.column_names]
    return rows.cast(pa.schema(typed))
