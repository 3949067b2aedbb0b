"""Resolve: from the records a batch brings, and what the last register kept, to the next register.

Order of evidence, strongest first:
1. township verdicts (same unit / different units / new unit / not a business), which override the rest;
2. deterministic links: equal valid USCC; a legacy taxpayer id's organisation code equal to a USCC's;
   electricity accounts carrying a USCC;
3. the Splink model over standardised fields, for what codes cannot decide; then the registered name.
Clusters never hold two different valid USCCs. Test records (persons) attach afterwards, only through a
unit's legal representative or a work-unit name that names exactly one unit.

A run does only what its batch calls for: it standardises the entities whose records changed, scores them
against the rest, clusters again only the clusters those changes reach (with their one-hop neighbourhood),
and recomputes rows only for the units that changed; every other unit keeps its id and its row. A rebuild is
the same run from an empty state: everything is new. ``resolve`` does no IO; ``pipelines.landing`` reads
its inputs and writes what it returns.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.contacts import best
from pipelines.mappings import anchor_feeds, feeds_with, mapping, unit_feeds
from pipelines.pii import Tokeniser
from pipelines.resolve import clustering, evidence, persons, tables, units
from pipelines.resolve.engine import Engine
from pipelines.resolve.entities import empty_entities, update_entities
from pipelines.resolve.frames import drop_where, only, without
from pipelines.resolve.identity import assign_unit_ids
from pipelines.resolve.model import MODEL_PATH, score_new, term_frequencies
from pipelines.resolve.records import empty_records, merge_records
from pipelines.resolve.state import ISSUED_SCHEMA, History, ResolutionState
from pipelines.resolve.types import DETERMINISTIC, Edge, ResolveSettings
from pipelines.verdicts import Verdict


@dataclass(frozen=True)
class ResolveInputs:
    batch: dict[str, pa.Table]  # per feed, the latest version of each record staged since the last register
    state: ResolutionState  # what the last register run kept; ResolutionState.empty() rebuilds everything
    history: History  # ids issued so far, the last register's tables, verdicts as first applied
    verdicts: list[Verdict]  # the verdicts in force
    tokens: Tokeniser  # business phones are compared as tokens, like the persons' ones
    run_id: str
    engine: Engine
    settings: ResolveSettings = field(default_factory=ResolveSettings)
    model_path: Path = MODEL_PATH
    contact_masks: pa.Table = field(default_factory=best.empty_masks)  # token, masked: the vault's phones


@dataclass
class Resolution:
    run_id: str
    tables: dict[str, pa.Table]  # register, links, review, lineage
    state: ResolutionState
    history: History  # what the next run continues
    touched_units: pa.Array  # units whose rows were computed again (warnings follow them)
    reference_changed: bool
    stats: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    unknown_verdicts: list[dict[str, str | None]] = field(default_factory=list)  # named, with why


class _Laps:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._clock = time.monotonic()

    def __call__(self, stage: str) -> None:
        now = time.monotonic()
        self.timings[stage] = round(self.timings.get(stage, 0.0) + now - self._clock, 3)
        self._clock = now


def _strings(values) -> pa.Array:  # type: ignore[no-untyped-def]
    return pa.array(sorted(values), pa.string())


def resolve(inputs: ResolveInputs) -> Resolution:
    """The next register from ``inputs`` (values in, values out)."""
    laps = _Laps()
    state, history, engine = inputs.state, inputs.history, inputs.engine
    settings, run_id = inputs.settings, inputs.run_id

    changes = merge_records(engine, state.records, inputs.batch)
    entities = update_entities(
        engine, state.entities, changes.records, changes.changed, changes.left, inputs.tokens
    )
    laps("standardise")

    frequencies = state.term_frequencies or term_frequencies(engine, entities.table, inputs.model_path)
    stale = _strings(entities.rescored | entities.removed)
    deterministic = evidence.deterministic_edges(engine, entities.table)
    model_kept = without(
        without(only(state.edges, "matched_by", pa.array(["model"])), "a", stale), "b", stale
    )
    model_new = score_new(
        engine,
        entities.table,
        _strings(entities.rescored),
        frequencies,
        settings.review_threshold,
        inputs.model_path,
    )
    model_new = evidence.namesake_senders_held_back(
        engine, entities.table, model_new, settings.link_threshold
    )
    edges = pa.concat_tables([deterministic, model_kept, model_new])
    before = only(state.edges, "matched_by", pa.array(list(DETERMINISTIC)))
    touched = set(entities.rescored | entities.removed)
    touched |= evidence.changed_endpoints(engine, before, deterministic)
    laps("predict")

    effects = _verdicts(inputs.verdicts, inputs.history, changes.records)
    touched |= effects.touched
    region = clustering.region(
        engine, _strings(touched), state.members, edges, effects.table, settings.link_threshold
    )
    region = region.difference(entities.removed)
    nodes = _strings(region)
    clustered = clustering.cluster(
        nodes.to_pylist(),
        _edges_within(edges, nodes),
        _codes(entities.table, nodes, "uscc"),
        settings.link_threshold,
        _constraints_within(effects.constraints, region),
        _codes(entities.table, nodes, "reg_no"),
    )
    laps("cluster")

    # The clusters to decide about: the ones just formed, and those whose records grew (a sender's volume).
    grown_elsewhere = _strings(entities.grown - region)
    kept_clusters = _clusters_of(state.members, grown_elsewhere)
    decided = clustered.clusters + list(kept_clusters.values())
    drafts = units.draft_units(
        engine, decided, entities.table, changes.records, effects.constraints.not_business, settings
    )
    decided_entities = _strings({e for c in decided for e in c})
    held, previous_ids = _previous_units(engine, decided, drafts, changes.records, inputs.history.links)
    issued_ids = inputs.history.issued["unit_id"].to_pylist()
    anchors = {i: d.anchor for i, d in enumerate(drafts)}
    anchors_before = _uscc_anchors(history.register, previous_ids)
    unit_ids, events = assign_unit_ids(held, anchors, issued_ids, previous_ids, anchors_before)
    new_members = _members(decided, drafts, unit_ids, clustered.joined_by, state.members, kept_clusters)
    members = pa.concat_tables(
        [
            without(
                state.members, "entity_id", _strings(set(decided_entities.to_pylist()) | entities.removed)
            ),
            new_members,
        ]
    )
    gone = _strings({e.from_unit_id for e in events if e.event in ("merged", "retired")})
    decided_units = set(unit_ids.values())
    laps("identity")

    scope_units = _strings(decided_units)
    scope_members = only(members, "unit_id", scope_units)
    founding = units.anchor_records(changes.records, "established_on", pa.date32())
    keys_new, info_new = persons.unit_keys(engine, scope_members, entities.table, founding)
    dropped = _strings(decided_units | set(gone.to_pylist()))
    unit_keys = pa.concat_tables([without(state.unit_keys, "owner", dropped), keys_new])
    unit_info = pa.concat_tables([without(state.unit_info, "unit_id", dropped), info_new])
    people = persons.as_people(changes.records[persons.person_feed()])
    changed_people = persons.as_people(changes.changed[persons.person_feed()])
    person_keys = pa.concat_tables(
        [
            without(state.person_keys, "owner", changed_people["record_id"]),
            persons.person_keys(changed_people),
        ]
    )
    previous_person_links = _person_links(engine, history.links, people)
    deciding = persons.people_to_decide(
        engine,
        changed_people,
        people,
        person_keys,
        previous_person_links,
        (state.unit_keys, state.unit_info),
        (unit_keys, unit_info),
        _strings(decided_units),
        gone,
    )
    decided_links = persons.link_persons(engine, deciding, person_keys, unit_keys, unit_info)
    own_links = pa.concat_tables(
        [
            without(
                without(previous_person_links, "record_id", deciding["record_id"]),
                "matched_by",
                pa.array([persons.SAME_PERSON]),
            ),
            decided_links,
        ]
    )
    person_links = pa.concat_tables(
        [own_links, persons.same_person_links(engine, people, own_links, person_keys, unit_keys)]
    )
    moved = _units_with_other_people(engine, previous_person_links, person_links)
    laps("persons")

    member_scope = _strings((decided_units | moved) - set(gone.to_pylist()))
    reference = _reference(changes.records)
    reference_changed = reference != state.reference
    licences, licence_changed = _licences(
        engine, state, members, entities.table, changes.records, member_scope, gone
    )
    multi = _multi_licence(licences)
    if reference_changed:
        row_scope = pc.unique(pc.drop_null(members["unit_id"]))
    else:
        contacts_stale = best.stale_units(history.register, person_links, changed_people["record_id"])
        row_scope = _strings(set(member_scope.to_pylist()) | licence_changed | contacts_stale)
    scoped_members = only(members, "unit_id", row_scope)
    scoped_links = only(person_links, "unit_id", row_scope)
    rows = units.register_rows(
        engine,
        scoped_members,
        entities.table,
        changes.records,
        scoped_links,
        multi,
        reference,
        settings,
        run_id,
    )
    rows = best.with_best_contacts(
        engine.query,
        rows,
        scoped_members,
        entities.table,
        changes.records,
        scoped_links,
        people,
        persons.person_feed(),
        inputs.contact_masks,
        inputs.tokens,
    )
    rows = _unchanged_keep_their_run(engine, rows, history.register, ["unit_id"])
    register = pa.concat_tables(
        [without(without(history.register, "unit_id", row_scope), "unit_id", gone), rows]
    )
    register = register.sort_by("unit_id")
    laps("register")

    links = _links(
        engine, history.links, members, member_scope, gone, changes.records, person_links, deciding, run_id
    )
    review_scope = _review_scope(engine, members, edges, member_scope)
    registered = pc.unique(
        pc.drop_null(only(members, "entity_id", _registration_entities(entities.table))["unit_id"])
    )
    items = tables.review_rows(
        engine, members, review_scope, entities.table, edges, changes.records, registered, settings, run_id
    )
    kept_items = without(without(history.review, "current_unit_id", review_scope), "current_unit_id", gone)
    review = tables.sort_review(
        pa.concat_tables(
            [kept_items, _unchanged_keep_their_run(engine, items, history.review, ["review_id"])]
        )
    )
    laps("assemble")

    new_state = ResolutionState(
        records=changes.records,
        entities=entities.table,
        edges=edges,
        members=members,
        unit_keys=unit_keys,
        unit_info=unit_info,
        person_keys=person_keys,
        licences=licences,
        term_frequencies=frequencies,
        reference=reference,
    )
    return Resolution(
        run_id=run_id,
        tables={
            "register": register,
            "links": links,
            "review": review,
            "lineage": tables.lineage_rows(events, run_id),
        },
        state=new_state,
        history=History(
            issued=_issued(history.issued, decided_units, gone, run_id),
            register=register,
            links=links,
            review=review,
            constraints=effects.table,
        ),
        touched_units=row_scope,
        reference_changed=reference_changed,
        stats={
            "records_in": sum(t.num_rows for t in inputs.batch.values()),
            "records_changed": changes.count,
            "entities": entities.table.num_rows,
            "entities_rescored": len(entities.rescored),
            "entities_grown": len(entities.grown),
            "entities_removed": len(entities.removed),
            "entities_reclustered": len(region),
            "predicted_pairs": model_new.num_rows,
            "refused_joins": clustered.refused,
            "units": register.num_rows,
            "units_touched": len(member_scope),
            "rows_recomputed": rows.num_rows,
            "unknown_verdicts": len(effects.unknown),
            "people_decided": deciding.num_rows,
            "people_linked": person_links.num_rows,
        },
        timings=laps.timings,
        unknown_verdicts=effects.unknown,
    )


def entity_table(engine: Engine, records: dict[str, pa.Table], tokens: Tokeniser) -> pa.Table:
    """Every entity of ``records`` (per feed, the latest version of each record), standardised."""
    changes = merge_records(engine, empty_records(), records)
    return update_entities(
        engine, empty_entities(), changes.records, changes.changed, changes.left, tokens
    ).table


# -- the steps' small parts ------------------------------------------------------------------------------


def _unchanged_keep_their_run(
    engine: Engine, fresh: pa.Table, previous: pa.Table, key: list[str]
) -> pa.Table:
    """``fresh`` rows, where one equals its previous version in everything but ``run_id``, with the previous
    ``run_id``: a row's run is the run that last changed it, so a row recomputed to the same values is the
    same row."""
    if not fresh.num_rows or not previous.num_rows:
        return fresh
    values = [name for name in fresh.column_names if name != "run_id"]
    same = " AND ".join(f"f.{name} IS NOT DISTINCT FROM p.{name}" for name in values)
    columns = ", ".join(f"f.{name}" for name in values)
    joined = engine.query(
        f"""
        SELECT {columns}, CASE WHEN p.run_id IS NOT NULL AND {same} THEN p.run_id ELSE f.run_id END AS run_id
        FROM fresh f LEFT JOIN previous p USING ({", ".join(key)})
        """,
        fresh=fresh,
        previous=previous.filter(pc.is_in(previous[key[-1]], fresh[key[-1]])),
    )
    return joined.select(fresh.column_names).cast(fresh.schema)


def _verdicts(
    verdicts: list[Verdict], history: History, records: dict[str, pa.Table]
) -> evidence.VerdictEffects:
    """The verdicts in force in entity ids: records through the records, units through the last register."""
    record_keys = [(v.feed or "", v.record_id) for v in verdicts if v.record_id]
    unit_ids = {u for v in verdicts for u in (v.unit_id_a, v.unit_id_b) if u}
    unit_records = only(history.links, "unit_id", _strings(unit_ids)).select(["feed", "record_id", "unit_id"])
    rows = unit_records.to_pylist()
    entity_of = evidence.entities_of(records, record_keys + [(r["feed"], r["record_id"]) for r in rows])
    entities_of_unit: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        entity = entity_of.get((row["feed"], row["record_id"]))
        if entity and entity not in entities_of_unit[row["unit_id"]]:
            entities_of_unit[row["unit_id"]].append(entity)
    return evidence.apply_verdicts(verdicts, history.constraints, entity_of, entities_of_unit)


def _edges_within(edges: pa.Table, nodes: pa.Array) -> list[Edge]:
    inside = edges.filter(pc.and_(pc.is_in(edges["a"], nodes), pc.is_in(edges["b"], nodes)))
    columns = (inside[name].to_pylist() for name in Edge._fields)
    return [Edge(*values) for values in zip(*columns, strict=True)]


def _codes(entities: pa.Table, nodes: pa.Array, column: str) -> dict[str, str]:
    """The entities among ``nodes`` that carry a code in ``column``, with it."""
    coded = only(entities, "entity_id", nodes).select(["entity_id", column])
    coded = coded.filter(pc.is_valid(coded[column]))
    return dict(zip(coded["entity_id"].to_pylist(), coded[column].to_pylist(), strict=True))


def _constraints_within(constraints: clustering.Constraints, region: set[str]) -> clustering.Constraints:
    return clustering.Constraints(
        must=tuple(e for e in constraints.must if e.a in region and e.b in region),
        cannot=tuple((a, b) for a, b in constraints.cannot if a in region and b in region),
        alone=frozenset(constraints.alone & region),
        not_business=frozenset(constraints.not_business & region),
    )


def _clusters_of(members: pa.Table, entity_ids: pa.Array) -> dict[str, list[str]]:
    """The whole clusters (key → sorted entity ids) the given entities are in."""
    keys = pc.unique(only(members, "entity_id", entity_ids)["cluster"])
    rows = only(members, "cluster", keys).select(["cluster", "entity_id"]).sort_by("entity_id")
    clusters: dict[str, list[str]] = defaultdict(list)
    for key, entity in zip(rows["cluster"].to_pylist(), rows["entity_id"].to_pylist(), strict=True):
        clusters[key].append(entity)
    return dict(clusters)


def _previous_units(
    engine: Engine,
    decided: list[list[str]],
    drafts: list[units.UnitDraft],
    records: dict[str, pa.Table],
    links: pa.Table,
) -> tuple[dict[int, dict[str, int]], set[str]]:
    """Per draft, how many of its records each previous unit id held; and every previous unit id of the
    records decided about (those no draft holds any more are retired)."""
    draft_of = {e: d_index for d_index, d in enumerate(drafts) for e in d.members}
    rows = [{"entity_id": e, "draft": draft_of.get(e)} for cluster in decided for e in cluster]
    counted = engine.query(
        f"""
        WITH recs AS ({tables.records_sql()})
        SELECT d.draft, l.unit_id, count(*) AS n
        FROM recs r JOIN decided d USING (entity_id)
        JOIN links l ON l.feed = r.feed AND l.record_id = r.record_id
        GROUP BY ALL
        """,
        decided=pa.Table.from_pylist(
            rows, schema=pa.schema([("entity_id", pa.string()), ("draft", pa.int64())])
        ),
        links=links.select(["feed", "record_id", "unit_id"]),
        **{feed: records[feed].select(["record_id", "entity_id"]) for feed in unit_feeds()},
    )
    held: dict[int, dict[str, int]] = defaultdict(dict)
    previous: set[str] = set()
    for row in counted.to_pylist():
        previous.add(row["unit_id"])
        if row["draft"] is not None:
            held[row["draft"]][row["unit_id"]] = row["n"]
    return dict(held), previous


def _uscc_anchors(register: pa.Table, unit_ids: set[str]) -> dict[str, str]:
    """The USCC anchor (``uscc:…``) of the given units of the last register that had a valid USCC."""
    rows = only(register, "unit_id", _strings(unit_ids)).select(["unit_id", "uscc"]).to_pylist()
    return {row["unit_id"]: f"uscc:{row['uscc']}" for row in rows if row["uscc"]}


def _members(
    decided: list[list[str]],
    drafts: list[units.UnitDraft],
    unit_ids: dict,
    joined_by: dict[str, Edge],
    previous: pa.Table,
    kept: dict[str, list[str]],
) -> pa.Table:
    """Member rows of the clusters decided about: the cluster's unit (if it is one), and the edge that
    brought each entity in (kept as it was for clusters that were not clustered again)."""
    kept_entities = _strings({e for members in kept.values() for e in members})
    before = {row["entity_id"]: row for row in only(previous, "entity_id", kept_entities).to_pylist()}
    draft_of_cluster = {d.cluster: (i, d) for i, d in enumerate(drafts)}
    rows = []
    for index, cluster in enumerate(decided):
        found = draft_of_cluster.get(index)
        unit_id = unit_ids[found[0]] if found else None
        in_unit = set(found[1].members) if found else set()
        for entity in cluster:
            row = {"entity_id": entity, "cluster": unit_id or f"~{cluster[0]}"}
            row["unit_id"] = unit_id if entity in in_unit else None
            if entity in before:
                row |= {k: before[entity][k] for k in ("matched_by", "probability", "weights")}
            elif edge := joined_by.get(entity):
                row |= {
                    "matched_by": edge.matched_by,
                    "probability": edge.probability,
                    "weights": edge.weights,
                }
            rows.append(row)
    return pa.Table.from_pylist(rows, schema=tables.MEMBER_SCHEMA)


def _person_links(engine: Engine, links: pa.Table, people: pa.Table) -> pa.Table:
    """The test records the last register attached, with their time."""
    found = engine.query(
        f"""
        SELECT l.record_id, l.unit_id, l.matched_by, p.moment
        FROM links l JOIN people p USING (record_id) WHERE l.feed = '{persons.person_feed()}'
        """,
        links=links.select(["feed", "record_id", "unit_id", "matched_by"]),
        people=people.select(["record_id", "moment"]),
    )
    return found.cast(persons.PERSON_LINK_SCHEMA)


def _units_with_other_people(engine: Engine, before: pa.Table, after: pa.Table) -> set[str]:
    changed = engine.query(
        """
        SELECT unit_id FROM (
            SELECT record_id, unit_id FROM before EXCEPT SELECT record_id, unit_id FROM after)
        UNION SELECT unit_id FROM (
            SELECT record_id, unit_id FROM after EXCEPT SELECT record_id, unit_id FROM before)
        """,
        before=before.select(["record_id", "unit_id"]),
        after=after.select(["record_id", "unit_id"]),
    )
    return set(changed["unit_id"].to_pylist())


def _reference(records: dict[str, pa.Table]) -> str | None:
    """The latest period of the period figures (tax, electricity …): where the look-back window ends."""
    periods = [pc.max(records[feed][mapping(feed).roles["period"]]).as_py() for feed in feeds_with("period")]
    return max((p for p in periods if p), default=None)


def _licences(
    engine: Engine,
    state: ResolutionState,
    members: pa.Table,
    entities: pa.Table,
    records: dict[str, pa.Table],
    scope: pa.Array,
    gone: pa.Array,
) -> tuple[pa.Table, set[str]]:
    """Every unit's licence key after this run, and the units whose 一户多证 company may have changed."""
    fresh = units.licence_keys(engine, only(members, "unit_id", scope), entities, records)
    dropped = pa.concat_arrays([scope, gone]) if len(gone) else scope
    old = only(state.licences, "unit_id", dropped)
    licences = pa.concat_tables([without(state.licences, "unit_id", dropped), fresh])
    keys = pc.unique(
        pa.concat_arrays([old["licence_key"].combine_chunks(), fresh["licence_key"].combine_chunks()])
    )
    affected = set(only(licences, "licence_key", keys)["unit_id"].to_pylist())
    return licences, affected


def _multi_licence(licences: pa.Table) -> pa.Array:
    counts = licences.group_by("licence_key").aggregate([("unit_id", "count")])
    shared = counts.filter(pc.greater(counts["unit_id_count"], 1))["licence_key"]
    return pc.unique(only(licences, "licence_key", shared)["unit_id"])


def _links(
    engine: Engine,
    previous: pa.Table,
    members: pa.Table,
    scope: pa.Array,
    gone: pa.Array,
    records: dict[str, pa.Table],
    person_links: pa.Table,
    decided_people: pa.Table,
    run_id: str,
) -> pa.Table:
    """The links table: rows of the units in ``scope`` and of the test records decided again computed anew,
    every other row carried over."""
    decided = decided_people["record_id"]

    def redone(links: pa.RecordBatch) -> pa.Array:
        dropped_unit = pc.or_(pc.is_in(links["unit_id"], scope), pc.is_in(links["unit_id"], gone))
        return pc.if_else(
            pc.equal(links["feed"], persons.person_feed()),
            pc.is_in(links["record_id"], decided),
            dropped_unit,
        )

    kept = drop_where(previous, redone)
    new_people = only(person_links, "record_id", decided_people["record_id"])
    fresh = tables.link_rows(engine, only(members, "unit_id", scope), records, new_people, run_id)
    # the rows carried over as they were, then the new ones (sorting would copy a register's worth of links)
    return pa.concat_tables([kept, _unchanged_keep_their_run(engine, fresh, previous, ["feed", "record_id"])])


def _review_scope(engine: Engine, members: pa.Table, edges: pa.Table, scope: pa.Array) -> pa.Array:
    """The units in ``scope`` and those with a model edge to one of them (their candidates may change)."""
    found = engine.query(
        """
        WITH mine AS (SELECT entity_id FROM members WHERE unit_id IN (SELECT unit_id FROM scope)),
        next_to AS (
            SELECT b AS entity_id FROM edges WHERE matched_by = 'model' AND a IN (SELECT entity_id FROM mine)
            UNION SELECT a FROM edges WHERE matched_by = 'model' AND b IN (SELECT entity_id FROM mine)
        )
        SELECT unit_id FROM scope
        UNION SELECT unit_id FROM members
        WHERE entity_id IN (SELECT entity_id FROM next_to) AND unit_id IS NOT NULL
        """,
        members=members.select(["entity_id", "unit_id"]),
        edges=edges.select(["a", "b", "matched_by"]),
        scope=pa.table({"unit_id": scope}),
    )
    return pc.unique(found["unit_id"])


def _registration_entities(entities: pa.Table) -> pa.Array:
    return entities.filter(pc.is_in(entities["feed"], pa.array(anchor_feeds())))["entity_id"].combine_chunks()


def _issued(issued: pa.Table, current: set[str], gone: pa.Array, run_id: str) -> pa.Table:
    """Every id ever issued: new ones added, those merged away or retired marked so (never reissued)."""
    known = set(issued["unit_id"].to_pylist())
    gone_ids = set(gone.to_pylist())
    rows = [
        {**row, "retired_run": row["retired_run"] or (run_id if row["unit_id"] in gone_ids else None)}
        for row in only(issued, "unit_id", gone).to_pylist()
    ]
    rows += [{"unit_id": u, "issued_run": run_id, "retired_run": None} for u in sorted(current - known)]
    return pa.concat_tables(
        [without(issued, "unit_id", gone), pa.Table.from_pylist(rows, schema=ISSUED_SCHEMA)]
    )
