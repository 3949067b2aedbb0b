"""Evidence that entities are one unit, besides the model: codes, registered names, premises and township
verdicts.

Deterministic edges come from joins over the whole entity table (cheap: a few hash joins), so every run sees
exactly the edges the current entities imply; comparing them with the previous run's says which entities a
batch touched. Verdicts are translated into entity-level constraints once, when first applied, and kept: a
verdict about unit ids keeps meaning the same entities after those units merge or split.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import pyarrow as pa
import pyarrow.compute as pc

from pipelines import verdicts as vd
from pipelines.mappings import anchor_feeds, feeds_where, sql_list
from pipelines.resolve.clustering import Constraints
from pipelines.resolve.engine import Engine
from pipelines.resolve.model import EDGE_SCHEMA
from pipelines.resolve.types import Edge
from pipelines.standardise.names import REGISTERED_FORMS


def deterministic_sql() -> str:
    """The deterministic edges' query; the registration and the premises feeds come from the mappings."""
    anchors, premises = sql_list(anchor_feeds()), sql_list(feeds_where("joins_at_premises"))
    shopfront = sql_list(feeds_where("private_at_shopfront"))
    return f"""
WITH coded AS (
    -- per USCC, the registration first, then by entity id: the anchor the others join
    SELECT entity_id, uscc, org_code,
           row_number() OVER (PARTITION BY uscc ORDER BY feed NOT IN {anchors}, entity_id) AS rank
    FROM entities WHERE uscc IS NOT NULL
),
org_holder AS (
    -- an organisation code inside exactly one USCC (two USCCs sharing one leave the model to decide: picking
    -- either would be a guess, and a guess that flips between runs)
    SELECT org_code, min_by(entity_id, rank) AS entity_id FROM coded
    WHERE org_code IS NOT NULL GROUP BY org_code HAVING count(DISTINCT uscc) = 1
),
registered AS (
    -- a full registered name (with its region) held by exactly one registered unit
    SELECT name_key, min(entity_id) AS entity_id, min(district_code) AS district_code FROM entities
    WHERE feed IN {anchors} AND uscc IS NOT NULL AND name_key IS NOT NULL AND NOT is_person
    GROUP BY name_key HAVING count(*) = 1
),
registered_core AS (
    -- a registered name without its region (银瑞联贸易有限公司) that exactly one registered unit has
    SELECT name_core, min(entity_id) AS entity_id FROM entities
    WHERE feed IN {anchors} AND uscc IS NOT NULL AND name_core IS NOT NULL AND NOT is_person
    GROUP BY name_core HAVING count(*) = 1
),
held AS (
    -- business power accounts in a person's name (a landlord's, the owner's), with no code; and private
    -- senders at a shopfront (a road and number, no building or room: nobody lives there)
    SELECT entity_id, district_code, street_key, address_rest, is_person AS shopfront FROM entities
    WHERE (feed IN {premises} AND NOT is_person AND trade_name IS NULL AND legal_rep_name IS NOT NULL
           OR feed IN {shopfront} AND is_person AND address_rest IS NULL)
      AND uscc IS NULL AND org_code IS NULL AND district_code IS NOT NULL AND street_key IS NOT NULL
),
at_site AS (
    -- the registrations at such an account's site: same district and street, the same room where both say;
    -- at a shopfront, registrations that name no room either
    SELECT h.entity_id AS account, r.entity_id AS holder,
           coalesce(h.address_rest = r.address_rest, false) AS same_room
    FROM held h JOIN entities r
      ON r.feed IN {anchors} AND r.district_code = h.district_code AND r.street_key = h.street_key
    WHERE CASE WHEN h.shopfront THEN r.address_rest IS NULL
               ELSE h.address_rest IS NULL OR r.address_rest IS NULL OR h.address_rest = r.address_rest END
),
premises AS (
    -- the registration in the same room if one is, else those that name no room: exactly one, or none
    SELECT account, min(holder) AS holder FROM at_site s
    WHERE same_room OR NOT EXISTS (SELECT 1 FROM at_site t WHERE t.account = s.account AND t.same_room)
    GROUP BY account HAVING count(*) = 1
)
SELECT anchor.entity_id AS a, other.entity_id AS b, 1.0 AS probability, 'uscc' AS matched_by
FROM coded anchor JOIN coded other ON anchor.uscc = other.uscc AND anchor.rank = 1 AND other.rank > 1
UNION ALL
-- a legacy 15-character taxpayer id whose organisation code is a USCC's (characters 9-17)
SELECT holder.entity_id, e.entity_id, 1.0, 'org_code'
FROM entities e JOIN org_holder holder ON e.org_code = holder.org_code
WHERE e.uscc IS NULL
UNION ALL
-- a record with no code carrying that name, unless its own district says it is somewhere else
SELECT holder.entity_id, e.entity_id, 1.0, 'registered_name'
FROM entities e JOIN registered holder ON e.name_key = holder.name_key
WHERE e.feed NOT IN {anchors} AND e.uscc IS NULL AND e.org_code IS NULL AND NOT e.is_person
  AND (e.district_code IS NULL OR e.district_code = holder.district_code)
UNION ALL
-- a record with no code and no place whose company name (a form only a registration gives, no region) is
-- exactly one registered unit's: nothing says it is anywhere else, and a company is registered
SELECT holder.entity_id, e.entity_id, 1.0, 'registered_core'
FROM entities e JOIN registered_core holder ON e.name_core = holder.name_core
WHERE e.feed NOT IN {anchors} AND e.uscc IS NULL AND e.org_code IS NULL AND NOT e.is_person
  AND e.district_code IS NULL AND e.name_key IS NULL AND e.organisation_form IN {sql_list(REGISTERED_FORMS)}
UNION ALL
-- a power account in a person's name at the site of exactly one registered unit: the unit's (a shop's meter
-- often stays in the landlord's name); a private sender at its shopfront: the shop's (a clerk shipping
-- without the shop's name)
SELECT holder, account, 1.0, 'premises' FROM premises
"""


def deterministic_edges(engine: Engine, entities: pa.Table) -> pa.Table:
    """Equal valid USCC; legacy taxpayer ids to a USCC through the organisation code; the registered name,
    or its core where nothing says where a record is; a power account in a person's name at one registered
    unit's premises, a private sender at its shopfront."""
    columns = "a, b, probability, matched_by, NULL::VARCHAR AS weights"
    found = engine.query(f"SELECT {columns} FROM ({deterministic_sql()}) ORDER BY a, b", entities=entities)
    return found.cast(EDGE_SCHEMA)


def namesake_senders_held_back(
    engine: Engine, entities: pa.Table, edges: pa.Table, threshold: float
) -> pa.Table:
    """Model edges between two senders of a ``namesakes_apart`` feed (waybills) that share a name but
    neither phone nor street (the streets given on both sides) stay below ``threshold``: online shops with
    one name are many (青柠文具工作室
    twice in one district), and a name alone must not chain their parcels together. They stay in the review
    band."""
    held = engine.query(
        f"""
        SELECT e.a, e.b,
               CASE WHEN a.feed = b.feed AND a.feed IN {sql_list(feeds_where("namesakes_apart"))}
                         AND a.street_key <> b.street_key AND a.phone IS DISTINCT FROM b.phone
                    THEN least(e.probability, {threshold} - 1e-6) ELSE e.probability END AS probability,
               e.matched_by, e.weights
        FROM edges e JOIN entities a ON a.entity_id = e.a JOIN entities b ON b.entity_id = e.b
        """,
        edges=edges,
        entities=entities.select(["entity_id", "feed", "phone", "street_key"]),
    )
    return held.cast(EDGE_SCHEMA)


def changed_endpoints(engine: Engine, before: pa.Table, after: pa.Table) -> set[str]:
    """Entities with an edge in one table and not the other (by pair and kind)."""
    found = engine.query(
        """
        SELECT a, b FROM (SELECT a, b, matched_by FROM before EXCEPT SELECT a, b, matched_by FROM after)
        UNION ALL
        SELECT a, b FROM (SELECT a, b, matched_by FROM after EXCEPT SELECT a, b, matched_by FROM before)
        """,
        before=before.select(["a", "b", "matched_by"]),
        after=after.select(["a", "b", "matched_by"]),
    )
    return set(found["a"].to_pylist()) | set(found["b"].to_pylist())


# -- township verdicts ----------------------------------------------------------------------------------

CONSTRAINT_SCHEMA = pa.schema(
    [
        pa.field("verdict_id", pa.string()),
        pa.field(
            "verdict_hash", pa.string()
        ),  # of the verdict as decided: a changed verdict is translated again
        pa.field("kind", pa.string()),  # must / cannot / alone / not_business
        pa.field("a", pa.string()),
        pa.field("b", pa.string()),
    ]
)


def _verdict_hash(verdict: vd.Verdict) -> str:
    return hashlib.sha1(json.dumps(asdict(verdict), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class VerdictEffects:
    constraints: Constraints
    table: pa.Table  # CONSTRAINT_SCHEMA: what every verdict in force means, in entity ids
    touched: set[str]  # entities whose constraints this run added or lifted
    unknown: list[dict[str, str | None]]  # verdicts about records or units nobody knows (vd.unapplied)


def apply_verdicts(
    verdicts: list[vd.Verdict],
    previous: pa.Table,
    entity_of_record: dict[tuple[str, str], str],
    entities_of_unit: dict[str, list[str]],
) -> VerdictEffects:
    """Entity-level constraints of the verdicts in force. A verdict applied before keeps its translation;
    a new (or changed) one is translated with the records and units as they are now."""
    kept: dict[tuple[str, str], list[dict]] = {}
    for row in previous.to_pylist():
        kept.setdefault((row["verdict_id"], row["verdict_hash"]), []).append(row)
    rows: list[dict] = []
    unknown: list[dict[str, str | None]] = []
    for verdict in verdicts:
        key = (verdict.verdict_id, _verdict_hash(verdict))
        if key in kept:
            rows += kept[key]
            continue
        translated = _translate(verdict, entity_of_record, entities_of_unit)
        if not translated:
            unknown.append(vd.unapplied(verdict, _why_not(verdict, entity_of_record, entities_of_unit)))
        rows += [
            {"verdict_id": key[0], "verdict_hash": key[1], "kind": k, "a": a, "b": b}
            for k, a, b in translated
        ]
    table = pa.Table.from_pylist(rows, schema=CONSTRAINT_SCHEMA)
    before = {(r["kind"], r["a"], r["b"]) for r in previous.to_pylist()}
    after = {(r["kind"], r["a"], r["b"]) for r in rows}
    touched = {e for _, a, b in before ^ after for e in (a, b) if e}
    return VerdictEffects(_constraints(rows), table, touched, unknown)


def _translate(
    verdict: vd.Verdict,
    entity_of_record: dict[tuple[str, str], str],
    entities_of_unit: dict[str, list[str]],
) -> list[tuple[str, str, str | None]]:
    if verdict.record_id:
        entity = entity_of_record.get((verdict.feed or "", verdict.record_id))
        side_a = [entity] if entity else []
    else:
        side_a = sorted(entities_of_unit.get(verdict.unit_id_a or "", []))
    side_b = sorted(entities_of_unit.get(verdict.unit_id_b or "", []))
    if verdict.decision == vd.SAME_UNIT:
        return [("must", a, b) for a in side_a[:1] for b in side_b[:1]]
    if verdict.decision in (vd.DIFFERENT_UNITS, vd.SAME_OPERATOR):  # 一户多证 is two units: never a merge
        return [("cannot", a, b) for a in side_a for b in side_b]
    if verdict.decision == vd.NEW_UNIT:
        return [("alone", a, None) for a in side_a]
    return [("not_business", a, None) for a in side_a]


def _why_not(
    verdict: vd.Verdict,
    entity_of_record: dict[tuple[str, str], str],
    entities_of_unit: dict[str, list[str]],
) -> str:
    """Why a verdict means nothing in entity ids: the record or units it names that nobody knows."""
    missing = []
    if verdict.record_id and (verdict.feed or "", verdict.record_id) not in entity_of_record:
        missing.append(f"unknown record {verdict.feed} {verdict.record_id}")
    units = [verdict.unit_id_b] if verdict.record_id else [verdict.unit_id_a, verdict.unit_id_b]
    missing += [f"unknown unit {unit}" for unit in units if unit and not entities_of_unit.get(unit)]
    return "; ".join(missing) or "nothing to apply it to"


def _constraints(rows: list[dict]) -> Constraints:
    return Constraints(
        must=tuple(Edge(r["a"], r["b"], 1.0, "verdict") for r in rows if r["kind"] == "must"),
        cannot=tuple((r["a"], r["b"]) for r in rows if r["kind"] == "cannot"),
        alone=frozenset(r["a"] for r in rows if r["kind"] == "alone"),
        not_business=frozenset(r["a"] for r in rows if r["kind"] == "not_business"),
    )


def entities_of(records: dict[str, pa.Table], keys: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """(feed, record_id) → entity id, for the given records only."""
    found: dict[tuple[str, str], str] = {}
    for feed in {feed for feed, _ in keys}:
        if feed not in records:
            continue
        wanted = pa.array([r for f, r in keys if f == feed], pa.string())
        table = records[feed]
        rows = table.filter(pc.is_in(table["record_id"], wanted)).select(["record_id", "entity_id"])
        for record_id, entity_id in zip(
            rows["record_id"].to_pylist(), rows["entity_id"].to_pylist(), strict=True
        ):
            if entity_id:
                found[(feed, record_id)] = entity_id
    return found
