"""The register's record-level tables for the units a run touched: links and review items, over tables."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.contracts import output_schema
from pipelines.resolve.engine import Engine
from pipelines.resolve.entities import ENTITY_FEEDS
from pipelines.resolve.identity import LineageEvent
from pipelines.resolve.persons import PERSON_FEED
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
        SELECT '{PERSON_FEED}', record_id, unit_id, 1.0, matched_by, NULL, NULL, '{run_id}' FROM person_links
        ORDER BY unit_id, feed, record_id
        """,
        members=members,
        person_links=person_links.select(["record_id", "unit_id", "matched_by"]),
        **{feed: records[feed].select(["record_id", "entity_id"]) for feed in ENTITY_FEEDS},
    )
    return rows.cast(output_schema("links"))


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
    field check can say whose meter it is). A candidate unit whose valid USCC differs from the record's own
    is left out: "same unit" could never apply to it (distinct USCCs never merge), and an uncertain or rival
    item left with no candidate is no question at all. ``members``: every entity's unit."""
    rows = engine.query(
        f"""
        WITH unit_of AS (
            SELECT entity_id, unit_id, matched_by, probability FROM members WHERE unit_id IS NOT NULL
        ),
        mine AS (SELECT * FROM unit_of WHERE unit_id IN (SELECT unit_id FROM scope)),
        model AS (SELECT a, b, probability FROM edges WHERE matched_by = 'model'),
        either_way AS (
            SELECT a AS this, b AS other, probability FROM model WHERE a IN (SELECT entity_id FROM mine)
            UNION ALL
            SELECT b, a, probability FROM model WHERE b IN (SELECT entity_id FROM mine)
        ),
        scored AS (
            SELECT w.this, o.unit_id AS candidate, max(w.probability) AS p
            FROM either_way w JOIN unit_of o ON o.entity_id = w.other JOIN mine m ON m.entity_id = w.this
            WHERE o.unit_id <> m.unit_id GROUP BY w.this, o.unit_id
        ),
        candidate_code AS (
            SELECT o.unit_id, max(e.uscc) AS uscc FROM unit_of o JOIN entities e USING (entity_id)
            WHERE e.uscc IS NOT NULL AND o.unit_id IN (SELECT candidate FROM scored) GROUP BY o.unit_id
        ),
        answerable AS (
            -- "same unit?" cannot apply between distinct valid USCCs (they never merge): no such question
            SELECT s.* FROM scored s JOIN entities e ON e.entity_id = s.this
            LEFT JOIN candidate_code c ON c.unit_id = s.candidate
            WHERE e.uscc IS NULL OR c.uscc IS NULL OR e.uscc = c.uscc
        ),
        best AS (
            SELECT this, list(candidate ORDER BY p DESC, candidate)[1:3] AS candidates,
                   list(round(p, 4) ORDER BY p DESC, candidate)[1:3] AS scores, max(p) AS top
            FROM answerable GROUP BY this
        ),
        first_record AS (
            SELECT entity_id, min(record_id) AS record_id FROM ({records_sql()}) GROUP BY entity_id
        ),
        items AS (
            SELECT m.entity_id, m.unit_id, e.feed, e.name, e.address, e.district_code, e.township,
                   coalesce(b.candidates, []) AS candidates, coalesce(b.scores, []) AS scores,
                   CASE
                       WHEN m.unit_id NOT IN (SELECT unit_id FROM registered) AND e.feed IN ('tax', 'utility')
                           THEN 'no_registration_match'
                       WHEN b.top >= {settings.review_threshold} AND b.top < {settings.link_threshold}
                           THEN 'uncertain_link'
                       WHEN b.top IS NOT NULL AND e.feed <> 'registration' AND m.matched_by = 'model'
                            AND b.top >= m.probability
                           THEN 'rival_unit'
                   END AS reason
            FROM mine m JOIN entities e USING (entity_id) LEFT JOIN best b ON b.this = m.entity_id
        )
        SELECT i.feed || '/' || f.record_id AS review_id, i.feed, f.record_id, i.reason, i.name, i.address,
               i.district_code AS division_code, i.township,
               i.candidates AS candidate_unit_ids, i.scores AS candidate_scores,
               i.unit_id AS current_unit_id,
               CASE WHEN i.reason = 'no_registration_match' THEN 1 ELSE 2 END AS priority,
               '{run_id}' AS run_id
        FROM items i JOIN first_record f USING (entity_id)
        WHERE i.reason IS NOT NULL
        """,
        members=members,
        scope=pa.table({"unit_id": pa.array(scope, pa.string())}),
        entities=entities.select(
            ["entity_id", "feed", "name", "address", "district_code", "township", "uscc"]
        ),
        edges=edges.select(["a", "b", "probability", "matched_by"]),
        registered=pa.table({"unit_id": pa.array(registered_units, pa.string())}),
        **{feed: records[feed].select(["record_id", "entity_id"]) for feed in ENTITY_FEEDS},
    )
    return rows.cast(output_schema("review"))


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
