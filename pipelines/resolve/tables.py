"""The register's record-level tables for the units a run touched: links and review items, over tables."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.contracts import output_schema
from pipelines.mappings import anchor_feeds, feeds_where, mapping, sql_list
from pipelines.resolve import triage
from pipelines.resolve.engine import Engine
from pipelines.resolve.entities import ENTITY_FEEDS
from pipelines.resolve.identity import LineageEvent
from pipelines.resolve.persons import person_feed
from pipelines.resolve.types import ResolveSettings

MEMBER_SCHEMA = pa.schema(
    [
        pa.field("entity_id", pa.string()),
        pa.field("cluster", pa.string()),  # the cluster it is in: its unit id, or ~<first entity> if no unit
        pa.field("unit_id", pa.string()),  # null when the cluster is no unit or a verdict said no business
        pa.field(
            "matched_by", pa.string()
        ),  # the edge that brought it into its cluster (null: it founded it)
        pa.field("probability", pa.float64()),
        pa.field("weights", pa.string()),
    ]
)


def records_sql() -> str:
    """feed, record_id, entity_id of every record of the entity feeds (each feed's table by its name)."""
    selects = [f"SELECT '{feed}' AS feed, record_id, entity_id FROM {feed}" for feed in ENTITY_FEEDS]
    return "\nUNION ALL\n".join(selects)


def link_rows(
    engine: Engine, members: pa.Table, records: dict[str, pa.Table], person_links: pa.Table, run_id: str
) -> pa.Table:
    """Every record of the units in ``members`` and the test records in ``person_links``, with its unit."""
    rows = engine.query(
        f"""
        SELECT r.feed, r.record_id, m.unit_id,
               coalesce(m.probability, 1.0) AS match_probability,
               coalesce(m.matched_by, 'self') AS matched_by,
               m.weights AS field_weights, r.entity_id, '{run_id}' AS run_id
        FROM ({records_sql()}) r JOIN members m USING (entity_id)
        WHERE m.unit_id IS NOT NULL
        UNION ALL
        SELECT '{person_feed()}', record_id, unit_id, 1.0, matched_by, NULL, NULL, '{run_id}'
        FROM person_links
        ORDER BY unit_id, feed, record_id
        """,
        members=members,
        person_links=person_links.select(["record_id", "unit_id", "matched_by"]),
        **{feed: records[feed].select(["record_id", "entity_id"]) for feed in ENTITY_FEEDS},
    )
    return rows.cast(output_schema("links"))


# Columns review_rows reads beyond the ones every caller gives; absent ones (a narrow table built by a test,
# records without volumes) read as null.
_ENTITY_COLUMNS = {
    "entity_id": pa.string(), "feed": pa.string(), "name": pa.string(), "address": pa.string(),
    "district_code": pa.string(), "township": pa.string(), "uscc": pa.string(), "org_code": pa.string(),
    "phone": pa.string(), "legal_rep_name_token": pa.string(), "is_person": pa.bool_(),
}  # fmt: skip
_EDGE_COLUMNS = {"a": pa.string(), "b": pa.string(), "probability": pa.float64(), "matched_by": pa.string(),
                 "weights": pa.string()}  # fmt: skip
_VOLUMES = {"tax": "tax_paid", "kwh": "kwh", "parcels": "parcels"}  # volume column -> the figure it sums
_SIDE = ("feed", "record_id", "name", "address", "district_code", "township", "phone", "legal_rep")


def _columns(table: pa.Table, columns: dict[str, pa.DataType]) -> pa.Table:
    """``table``'s ``columns``, in that order, a missing one as nulls."""
    return pa.table(
        {
            name: table[name].cast(kind) if name in table.column_names else pa.nulls(table.num_rows, kind)
            for name, kind in columns.items()
        }
    )


def _volumes(records: dict[str, pa.Table]) -> pa.Table:
    """entity_id, tax (yuan), kwh and parcels of every record that gives one, for the triage and the rank."""
    parts = []
    for feed in ENTITY_FEEDS:
        table, figures = records[feed], mapping(feed).figures
        row = {"entity_id": table["entity_id"].cast(pa.string())}
        for name, figure in _VOLUMES.items():
            given = figures.get(figure) in table.column_names
            row[name] = (
                table[figures[figure]].cast(pa.float64()) if given else pa.nulls(table.num_rows, pa.float64())
            )
        parts.append(pa.table(row))
    return pa.concat_tables(parts)


def review_rows(
    engine: Engine,
    members: pa.Table,
    scope: pa.Array,
    entities: pa.Table,
    edges: pa.Table,
    records: dict[str, pa.Table],
    registered_units: pa.Array,
    settings: ResolveSettings,
    run_id: str,
) -> pa.Table:
    """Review items of the entities of the units ``scope``: tax and power records with no registration
    match, model links in the uncertain band, and records the model placed although another unit scored as
    high (a meter at the address of two licences of one operator: the code keeps the licences apart, only a
    field check can say whose meter it is). A candidate unit whose code differs from the record's own is
    left out: "same unit" could never apply to it (distinct USCCs never merge; a legacy taxpayer id names
    its organisation code), and an uncertain or rival item left with no candidate is no question at all.
    Items that evidence settles (``triage.RULES``) are left out too; the rest carry their ``importance``,
    ``why`` in Chinese, and the pair behind their best candidate (match weights, the two records' fields,
    phones and names as tokens) for the comparison page. ``members``: every entity's unit."""
    rows = engine.query(
        f"""
        WITH unit_of AS (
            SELECT entity_id, unit_id, matched_by, probability FROM members WHERE unit_id IS NOT NULL
        ),
        mine AS (SELECT * FROM unit_of WHERE unit_id IN (SELECT unit_id FROM scope)),
        model AS (SELECT a, b, probability, weights FROM edges WHERE matched_by = 'model'),
        either_way AS (
            SELECT a AS this, b AS other, probability, weights FROM model
            WHERE a IN (SELECT entity_id FROM mine)
            UNION ALL
            SELECT b, a, probability, weights FROM model WHERE b IN (SELECT entity_id FROM mine)
        ),
        own AS (  -- the strongest model pair holding the record in its own unit
            SELECT w.this, max(w.probability) AS p
            FROM either_way w JOIN unit_of o ON o.entity_id = w.other JOIN mine m ON m.entity_id = w.this
            WHERE o.unit_id = m.unit_id GROUP BY w.this
        ),
        scored AS (
            SELECT w.this, o.unit_id AS candidate, max(w.probability) AS p,
                   list(w.other ORDER BY w.probability DESC, w.other)[1] AS other,
                   list(w.weights ORDER BY w.probability DESC, w.other)[1] AS weights
            FROM either_way w JOIN unit_of o ON o.entity_id = w.other JOIN mine m ON m.entity_id = w.this
            WHERE o.unit_id <> m.unit_id GROUP BY w.this, o.unit_id
        ),
        candidate_code AS (
            SELECT o.unit_id, max(e.uscc) AS uscc, max(e.org_code) AS org_code
            FROM unit_of o JOIN entities e USING (entity_id)
            WHERE e.uscc IS NOT NULL AND o.unit_id IN (SELECT candidate FROM scored) GROUP BY o.unit_id
        ),
        answerable AS (
            -- "same unit?" cannot apply between distinct valid USCCs (they never merge), nor between a legacy
            -- taxpayer id and a USCC of another organisation code: no such question
            SELECT s.* FROM scored s JOIN entities e ON e.entity_id = s.this
            LEFT JOIN candidate_code c ON c.unit_id = s.candidate
            WHERE (e.uscc IS NULL OR c.uscc IS NULL OR e.uscc = c.uscc)
              AND (e.org_code IS NULL OR c.org_code IS NULL OR e.org_code = c.org_code)
        ),
        best AS (
            SELECT this, list(candidate ORDER BY p DESC, candidate)[1:3] AS candidates,
                   list(round(p, 4) ORDER BY p DESC, candidate)[1:3] AS scores, max(p) AS top,
                   list(other ORDER BY p DESC, candidate)[1] AS top_other,
                   list(weights ORDER BY p DESC, candidate)[1] AS top_weights
            FROM answerable GROUP BY this
        ),
        all_records AS ({records_sql()}),
        first_record AS (SELECT entity_id, min(record_id) AS record_id FROM all_records GROUP BY entity_id),
        volume AS (
            SELECT entity_id, sum(tax) AS tax, sum(kwh) AS kwh, sum(parcels) AS parcels, count(*) AS records
            FROM volumes GROUP BY entity_id
        ),
        items AS (
            SELECT m.entity_id, m.unit_id, e.feed, e.name, e.address, e.district_code, e.township,
                   e.is_person, v.parcels, v.kwh,
                   coalesce(b.candidates, []) AS candidates, coalesce(b.scores, []) AS scores,
                   b.top, b.top_other, b.top_weights,
                   {triage.match_weight_sql("b.top")} AS top_weight,
                   {triage.match_weight_sql("own.p")} AS own_weight,
                   CASE
                       WHEN m.unit_id NOT IN (SELECT unit_id FROM registered)
                            AND e.feed IN {sql_list(feeds_where("ask_when_unregistered"))}
                           THEN 'no_registration_match'
                       WHEN b.top >= {settings.review_threshold} AND b.top < {settings.link_threshold}
                           THEN 'uncertain_link'
                       WHEN b.top IS NOT NULL AND e.feed NOT IN {sql_list(anchor_feeds())}
                            AND m.matched_by = 'model' AND b.top >= m.probability
                           THEN 'rival_unit'
                   END AS reason
            FROM mine m JOIN entities e USING (entity_id) LEFT JOIN best b ON b.this = m.entity_id
            LEFT JOIN own ON own.this = m.entity_id LEFT JOIN volume v ON v.entity_id = m.entity_id
        ),
        unsettled AS (
            SELECT * FROM items WHERE reason IS NOT NULL AND ({triage.settled_by_sql(settings)}) IS NULL
        ),
        asked AS (  -- {triage.ONCE_PER_PAIR}: one uncertain link per pair of units, its strongest record's
            SELECT * EXCLUDE (pair_rank) FROM (
                SELECT *, row_number() OVER (
                    PARTITION BY unit_id, reason, candidates[1] ORDER BY top DESC, entity_id
                ) AS pair_rank
                FROM unsettled
            ) WHERE reason <> 'uncertain_link' OR pair_rank = 1
        ),
        stake AS (  -- the units an answer concerns: the record's own and its best candidate
            SELECT entity_id, unit_id FROM asked
            UNION SELECT entity_id, candidates[1] FROM asked WHERE len(candidates) > 0
        ),
        unit_volume AS (
            SELECT o.unit_id, sum(v.records) AS records, sum(v.tax) AS tax, sum(v.kwh) AS kwh
            FROM unit_of o JOIN volume v USING (entity_id)
            WHERE o.unit_id IN (SELECT unit_id FROM stake) GROUP BY o.unit_id
        ),
        at_stake AS (
            SELECT s.entity_id, sum(u.records) AS stake_records, sum(u.tax) AS stake_tax,
                   sum(u.kwh) AS stake_kwh
            FROM stake s JOIN unit_volume u USING (unit_id) GROUP BY s.entity_id
        )
        SELECT i.feed || '/' || f.record_id AS review_id, i.feed, f.record_id, i.reason, i.name, i.address,
               i.district_code AS division_code, i.township,
               i.candidates AS candidate_unit_ids, i.scores AS candidate_scores,
               i.unit_id AS current_unit_id,
               CASE WHEN i.reason = 'no_registration_match' THEN 1 ELSE 2 END AS priority,
               '{run_id}' AS run_id,
               {triage.IMPORTANCE_SQL} AS importance,
               i.top_weights AS match_weights,
               CASE WHEN i.top IS NOT NULL THEN round(i.top_weight, 3) END AS match_weight,
               i.top AS top_score,
               e.phone AS rec_phone, e.legal_rep_name_token AS rec_legal_rep,
               o.feed AS cand_feed, fo.record_id AS cand_record_id, o.name AS cand_name,
               o.address AS cand_address, o.district_code AS cand_district_code, o.township AS cand_township,
               o.phone AS cand_phone, o.legal_rep_name_token AS cand_legal_rep
        FROM asked i JOIN first_record f USING (entity_id) JOIN entities e USING (entity_id)
        LEFT JOIN at_stake USING (entity_id)
        LEFT JOIN entities o ON o.entity_id = i.top_other
        LEFT JOIN first_record fo ON fo.entity_id = i.top_other
        """,
        members=members,
        scope=pa.table({"unit_id": pa.array(scope, pa.string())}),
        entities=_columns(entities, _ENTITY_COLUMNS),
        edges=_columns(edges, _EDGE_COLUMNS),
        registered=pa.table({"unit_id": pa.array(registered_units, pa.string())}),
        volumes=_volumes(records),
        **{feed: records[feed].select(["record_id", "entity_id"]) for feed in ENTITY_FEEDS},
    )
    return _explained(rows).select(output_schema("review").names).cast(output_schema("review"))


def _explained(rows: pa.Table) -> pa.Table:
    """The items with ``why`` (Chinese, from the match weights) and ``compared`` (the pair behind the best
    candidate, side by side: only fields the register may show, phones and names of people as tokens)."""
    items = rows.to_pylist()
    why = [triage.explain(r["reason"], r["match_weights"], r["top_score"], r["match_weight"]) for r in items]
    compared = [
        json.dumps(
            {
                "record": {key: r["rec_legal_rep"] if key == "legal_rep" else
                           r["rec_phone"] if key == "phone" else
                           r["division_code"] if key == "district_code" else r[key] for key in _SIDE},
                "candidate": {key: r[f"cand_{key}"] for key in _SIDE} if r["cand_feed"] else None,
            },
            ensure_ascii=False,
            sort_keys=True,
        )
        for r in items
    ]  # fmt: skip
    return rows.append_column("why", pa.array(why, pa.string())).append_column(
        "compared", pa.array(compared, pa.string())
    )


def sort_review(review: pa.Table) -> pa.Table:
    """Most urgent first, by division (items with none first), then by item."""
    keys = pa.table(
        {
            "priority": review["priority"],
            "division": pc.fill_null(review["division_code"], ""),
            "review_id": review["review_id"],
        }
    )
    order = pc.sort_indices(
        keys, [("priority", "ascending"), ("division", "ascending"), ("review_id", "ascending")]
    )
    return review.take(order)


def lineage_rows(events: list[LineageEvent], run_id: str) -> pa.Table:
    rows = [
        {
            "event": e.event,
            "from_unit_id": e.from_unit_id,
            "to_unit_id": e.to_unit_id,
            "records": e.records,
            "run_id": run_id,
        }
        for e in events
    ]
    return pa.Table.from_pylist(rows, schema=output_schema("lineage"))
