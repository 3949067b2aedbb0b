"""Township verdicts as labels: pairs of entities a township said are, or are not, one unit.

A verdict overrides the model in the register; as a label it also says how right the model was, and teaches
it (``unitfusion train``). The labels are in Splink's pairwise form for a dedupe on ``entity_id``
(``entity_id_l``, ``entity_id_r``, ``clerical_match_score`` 1.0 or 0.0), read by its estimation of m from
pairwise labels and its accuracy analysis from a labels table. They are built from the state a register run
keeps, so every run labels the same pairs while the verdicts stand. First what each verdict meant in entity
ids when it was first applied (``evidence.CONSTRAINT_SCHEMA``: a must pair is a match, a cannot pair is not),
which stays true when unit ids move (the id of a unit a verdict split may follow the record it was about);
then, with the units as they are now:

- ``same_unit``: the record's entity (or unit_id_a's main entities) against unit_id_b's main entities → 1.0;
- ``different_units`` / ``same_operator``: the same sides → 0.0;
- ``new_unit`` / ``not_a_business``: against unit_id_b's main entities when the verdict names one, else
  against the entities it was scored most like (its edges, kept with the state; where it was linked before
  the verdict took it out is forgotten once the register follows the verdict) → 0.0.

A unit's main entities: the one that founded its cluster first, then those joined by codes, then by the
model, strongest first; ``per_side`` of them, and at most ``per_side`` squared pairs per verdict, so that a
verdict on a large unit stays a few pairs. A pair two verdicts label differently takes the later verdict's
label.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

from pipelines import verdicts as vd
from pipelines.resolve.engine import Engine
from pipelines.resolve.entities import ENTITY_FEEDS
from pipelines.resolve.evidence import CONSTRAINT_SCHEMA
from pipelines.resolve.settings import UNIQUE_ID
from pipelines.resolve.state import ResolutionState

LEFT, RIGHT = f"{UNIQUE_ID}_l", f"{UNIQUE_ID}_r"
LABEL_SCHEMA = pa.schema(
    [
        pa.field(LEFT, pa.string()),  # the lower entity id of the pair
        pa.field(RIGHT, pa.string()),
        pa.field("clerical_match_score", pa.float64()),  # 1.0 one unit, 0.0 not
        pa.field("verdict_id", pa.string()),  # the verdict the label comes from
    ]
)
_VERDICT_SCHEMA = pa.schema(
    [
        pa.field("verdict_id", pa.string()),
        pa.field("decision", pa.string()),
        pa.field("decided_at", pa.timestamp("us", tz="UTC")),
        pa.field("feed", pa.string()),
        pa.field("record_id", pa.string()),
        pa.field("unit_id_a", pa.string()),
        pa.field("unit_id_b", pa.string()),
    ]
)
_NO_RECORD = (
    "SELECT NULL::VARCHAR AS feed, NULL::VARCHAR AS record_id, NULL::VARCHAR AS entity_id WHERE false"
)
PER_SIDE = 3  # main entities of a unit a verdict is labelled against

LABELS_SQL = """
WITH
record_side AS (
    SELECT v.verdict_id, r.entity_id FROM verdicts v JOIN records r USING (feed, record_id)
),
ranked_members AS (
    -- a unit's main entities first: its founder, then joined by codes or verdicts, then by the model
    SELECT entity_id, unit_id,
           CASE WHEN matched_by IS NULL THEN 0 WHEN matched_by = 'model' THEN 2 ELSE 1 END AS tier,
           -coalesce(probability, 1.0) AS weakness
    FROM members WHERE unit_id IN (SELECT unit_id_a FROM verdicts UNION SELECT unit_id_b FROM verdicts)
),
unit_a_side AS (
    SELECT verdict_id, entity_id FROM (
        SELECT v.verdict_id, m.entity_id,
               row_number() OVER (PARTITION BY v.verdict_id ORDER BY m.tier, m.weakness, m.entity_id) AS n
        FROM verdicts v JOIN ranked_members m ON m.unit_id = v.unit_id_a
        WHERE v.record_id IS NULL
    ) WHERE n <= {per_side}
),
side_a AS (SELECT * FROM record_side UNION SELECT * FROM unit_a_side),
candidates AS (
    SELECT v.verdict_id, m.entity_id, m.tier, m.weakness
    FROM verdicts v JOIN ranked_members m ON m.unit_id = v.unit_id_b
    UNION ALL
    -- a record taken out of units with no unit named: the entities it was scored most like
    SELECT a.verdict_id, CASE WHEN e.a = a.entity_id THEN e.b ELSE e.a END, 0, -e.probability
    FROM side_a a JOIN verdicts v USING (verdict_id) JOIN edges e ON e.a = a.entity_id
    WHERE v.decision IN ('new_unit', 'not_a_business') AND v.unit_id_b IS NULL
    UNION ALL
    SELECT a.verdict_id, CASE WHEN e.a = a.entity_id THEN e.b ELSE e.a END, 0, -e.probability
    FROM side_a a JOIN verdicts v USING (verdict_id) JOIN edges e ON e.b = a.entity_id
    WHERE v.decision IN ('new_unit', 'not_a_business') AND v.unit_id_b IS NULL
),
side_b AS (
    SELECT verdict_id, entity_id FROM (
        SELECT verdict_id, entity_id,
               row_number() OVER (PARTITION BY verdict_id ORDER BY tier, weakness, entity_id) AS n
        FROM (
            SELECT verdict_id, entity_id, min(tier) AS tier, min(weakness) AS weakness
            FROM candidates GROUP BY verdict_id, entity_id
        ) c
        WHERE NOT EXISTS (
            SELECT 1 FROM side_a a WHERE a.verdict_id = c.verdict_id AND a.entity_id = c.entity_id
        )
    ) WHERE n <= {per_side}
),
found AS (
    -- as first applied, then as the units are now
    SELECT 0 AS source, c.verdict_id, least(c.a, c.b) AS l, greatest(c.a, c.b) AS r,
           CASE WHEN c.kind = 'must' THEN 1.0 ELSE 0.0 END AS score
    FROM constraints c JOIN verdicts v USING (verdict_id)
    WHERE c.kind IN ('must', 'cannot') AND c.a <> c.b
    UNION ALL
    SELECT 1, a.verdict_id, least(a.entity_id, b.entity_id), greatest(a.entity_id, b.entity_id),
           CASE WHEN v.decision = 'same_unit' THEN 1.0 ELSE 0.0 END
    FROM side_a a JOIN side_b b USING (verdict_id) JOIN verdicts v USING (verdict_id)
    WHERE a.entity_id <> b.entity_id
),
pairs AS (
    SELECT p.*, v.decided_at FROM (
        SELECT *, row_number() OVER (PARTITION BY verdict_id ORDER BY source, l, r) AS rank FROM (
            SELECT verdict_id, l, r, min(source) AS source, min(score) AS score FROM found
            GROUP BY verdict_id, l, r
        )
    ) p JOIN verdicts v USING (verdict_id)
    WHERE p.rank <= {per_side} * {per_side}
)
SELECT l AS {left}, r AS {right}, score AS clerical_match_score, verdict_id FROM (
    SELECT *, row_number() OVER (PARTITION BY l, r ORDER BY decided_at DESC, verdict_id DESC) AS n
    FROM pairs
) WHERE n = 1
ORDER BY {left}, {right}
"""


def verdict_table(verdicts: list[vd.Verdict]) -> pa.Table:
    """The verdicts as a table (``decided_at`` in UTC, so that later means later whatever the offset)."""
    rows = [
        {
            "verdict_id": v.verdict_id,
            "decision": v.decision,
            "decided_at": datetime.fromisoformat(v.decided_at).astimezone(UTC),
            "feed": v.feed,
            "record_id": v.record_id,
            "unit_id_a": v.unit_id_a,
            "unit_id_b": v.unit_id_b,
        }
        for v in verdicts
    ]
    return pa.Table.from_pylist(rows, schema=_VERDICT_SCHEMA)


def verdict_labels(
    engine: Engine,
    verdicts: list[vd.Verdict],
    records: dict[str, pa.Table],
    members: pa.Table,
    edges: pa.Table,
    constraints: pa.Table | None = None,
    per_side: int = PER_SIDE,
) -> pa.Table:
    """Labelled entity pairs (``LABEL_SCHEMA``) of the verdicts in force, over a register run's state:
    ``records`` (per feed: record_id → entity_id), ``members`` (entity_id → unit_id), ``edges`` (the
    scored pairs) and ``constraints`` (the verdicts in entity ids as first applied, which the run's
    history keeps). A verdict about a record or unit the state does not know gives no label."""
    if not verdicts:
        return LABEL_SCHEMA.empty_table()
    table = verdict_table(verdicts)
    selects = [
        f"SELECT '{feed}' AS feed, record_id, entity_id FROM {feed} WHERE entity_id IS NOT NULL "
        f"AND record_id IN (SELECT record_id FROM verdicts WHERE feed = '{feed}')"
        for feed in ENTITY_FEEDS
        if feed in records
    ]
    known = engine.query(
        " UNION ALL ".join([_NO_RECORD, *selects]),
        verdicts=table,
        **{feed: records[feed] for feed in ENTITY_FEEDS if feed in records},
    )
    sql = LABELS_SQL.format(per_side=int(per_side), left=LEFT, right=RIGHT)
    found = engine.query(
        sql,
        verdicts=table,
        records=known,
        members=members.select(["entity_id", "unit_id", "matched_by", "probability"]),
        edges=edges.select(["a", "b", "probability"]),
        constraints=(CONSTRAINT_SCHEMA.empty_table() if constraints is None else constraints).select(
            ["verdict_id", "kind", "a", "b"]
        ),
    )
    return found.cast(LABEL_SCHEMA)


def label_counts(labels: pa.Table) -> dict[str, int]:
    """How many labelled pairs, and how many of them matches."""
    scores = labels["clerical_match_score"].to_pylist()
    return {"pairs": len(scores), "matches": sum(1 for s in scores if s >= 0.5)}


def labels_from_kept_state(engine: Engine, verdicts: list[vd.Verdict], kept: dict[str, pa.Table]) -> pa.Table:
    """Labelled pairs of the verdicts in force, placed by a register run's kept state (``RunStore.
    register_state``): what ``unitfusion train`` learns from."""
    state, constraints = ResolutionState.from_tables(kept, None), kept.get("constraints")
    return verdict_labels(engine, verdicts, state.records, state.members, state.edges, constraints)
