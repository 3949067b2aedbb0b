"""Resolve: from staged records to the master register (units, links, review items, lineage).

Order of evidence, strongest first:
1. deterministic links: equal valid USCC; a legacy taxpayer id's organisation code equal to a USCC's;
   electricity accounts carrying a USCC;
2. township verdicts (same unit / different units / new unit / not a business), which override the model;
3. the Splink model over standardised fields, for what codes cannot decide.
Clusters never hold two different valid USCCs. Person records (nucleic tests) attach afterwards, only through
a unit's legal representative (token equality) or a work-unit name that names exactly one unit.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from pipelines import verdicts as vd
from pipelines.pii import Tokeniser, load_key
from pipelines.resolve.clustering import ConstrainedClusters
from pipelines.resolve.entities import BUILDERS, Entity, registered_name_key
from pipelines.resolve.identity import assign_unit_ids
from pipelines.resolve.model import MODEL_PATH, model_version, predict
from pipelines.staging import all_latest_records
from pipelines.standardise.addresses import parse_address
from pipelines.standardise.names import CompanyName, parse_company_name
from pipelines.standardise.regions import match_region
from pipelines.standardise.text import fold
from pipelines.store import RunStore
from pipelines.townships.verdict_files import load_verdicts

log = logging.getLogger(__name__)
FEEDS_WITH_ENTITIES = ("registration", "tax", "utility", "waybill")
PERSON_FEED = "nucleic_contact"


@dataclass(frozen=True)
class ResolveSettings:
    link_threshold: float = 0.99  # model links at or above join units (chosen on seed-2 benchmark data)
    review_threshold: float = 0.3  # model links between this and link_threshold go to review
    lookback_months: int = 12  # tax_active / power_active / zombie look-back
    zombie_abnormal_years: int = 2
    ecommerce_min_parcels: int = 60  # over the look-back, for a waybill-only sender to be a unit
    ecommerce_min_months: int = 3
    ecommerce_waybill_share: float = 0.5  # of a unit's records, for the e-commerce flag


@dataclass
class ResolveResult:
    run_id: str
    tables: dict[str, pa.Table]
    model_version: str
    timings: dict[str, float] = field(default_factory=dict)
    refused_joins: int = 0
    predicted_pairs: int = 0

    def count(self, table: str) -> int:
        return self.tables[table].num_rows


@dataclass
class _Edge:
    a: str
    b: str
    probability: float
    matched_by: str
    weights: dict[str, float] | None = None


def _deterministic_edges(entities: dict[str, Entity]) -> list[_Edge]:
    """Equal valid USCC, and legacy taxpayer ids to a USCC through the organisation code."""
    edges: list[_Edge] = []
    by_uscc: dict[str, list[str]] = defaultdict(list)
    for entity in entities.values():
        if entity.uscc:
            by_uscc[entity.uscc].append(entity.entity_id)
    for members in by_uscc.values():
        members.sort(key=lambda e: (not e.startswith("registration:"), e))  # anchor on the registration
        edges += [_Edge(members[0], other, 1.0, "uscc") for other in members[1:]]
    by_org_code = {e.org_code: e.entity_id for e in entities.values() if e.uscc and e.org_code}
    for entity in entities.values():
        if entity.org_code and not entity.uscc and entity.org_code in by_org_code:
            edges.append(_Edge(by_org_code[entity.org_code], entity.entity_id, 1.0, "org_code"))
    return edges


def _registered_name_edges(entities: dict[str, Entity]) -> list[_Edge]:
    """A record with no code that carries the full registered name of exactly one registered unit belongs
    to it (an electricity account with no address, a tax record under a changed phone), unless its own
    district says it is somewhere else."""
    registered: dict[tuple[str, ...], list[Entity]] = defaultdict(list)
    for entity in entities.values():
        if entity.feed == "registration" and entity.uscc and (key := registered_name_key(entity)):
            registered[key].append(entity)
    edges = []
    for entity in entities.values():
        if entity.feed == "registration" or entity.uscc or entity.org_code:
            continue
        holders = registered.get(registered_name_key(entity) or (), [])
        if len(holders) == 1 and entity.district_code in (None, holders[0].district_code):
            edges.append(_Edge(holders[0].entity_id, entity.entity_id, 1.0, "registered_name"))
    return edges


def _model_edges(frame: pd.DataFrame, settings: ResolveSettings, model_path: Path) -> list[_Edge]:
    if len(frame) < 2:
        return []
    pairs, _ = predict(frame, threshold=settings.review_threshold, model_path=model_path)
    weight_columns = [c for c in pairs.columns if c.startswith("mw_")]
    edges = []
    for record in pairs.to_dict("records"):
        weights = {c[3:]: round(float(record[c]), 3) for c in weight_columns if pd.notna(record[c])}
        edges.append(
            _Edge(
                record["entity_id_l"],
                record["entity_id_r"],
                float(record["match_probability"]),
                "model",
                weights,
            )
        )
    return edges


def _previous_links(store: RunStore) -> pd.DataFrame | None:
    latest = store.register_latest()
    if latest is None or not (latest / "links.parquet").exists():
        return None
    return pd.read_parquet(latest / "links.parquet")


def _verdict_edges(
    verdicts: list[vd.Verdict],
    entity_of_record: dict[tuple[str, str], str],
    previous_units: dict[str, list[str]],
) -> tuple[list[_Edge], list[tuple[str, str]], set[str], set[str]]:
    """Must-link edges, cannot-link pairs, entities that must stand alone, entities that are no business."""
    must: list[_Edge] = []
    cannot: list[tuple[str, str]] = []
    alone: set[str] = set()
    not_business: set[str] = set()
    for verdict in verdicts:
        if verdict.record_id:
            entity = entity_of_record.get((verdict.feed or "", verdict.record_id))
            if entity is None:
                log.warning(
                    "verdict %s: record %s/%s is not staged",
                    verdict.verdict_id,
                    verdict.feed,
                    verdict.record_id,
                )
                continue
            side_a = [entity]
        else:
            side_a = previous_units.get(verdict.unit_id_a or "", [])
        side_b = previous_units.get(verdict.unit_id_b or "", [])
        if verdict.decision == vd.SAME_UNIT:
            must += [_Edge(a, b, 1.0, "verdict") for a in side_a[:1] for b in side_b[:1]]
        elif verdict.decision == vd.DIFFERENT_UNITS:
            cannot += [(a, b) for a in side_a for b in side_b]
        elif verdict.decision == vd.NEW_UNIT:
            alone.update(side_a)
        elif verdict.decision == vd.NOT_A_BUSINESS:
            not_business.update(side_a)
    return must, cannot, alone, not_business


def _period_figures(tables: dict[str, pa.Table]) -> tuple[pd.DataFrame, pd.DataFrame, str | None]:
    tax = tables["tax"].select(["record_id", "period", "tax_paid"]).to_pandas()
    power = tables["utility"].select(["record_id", "period", "kwh", "meter_no"]).to_pandas()
    periods = pd.concat([tax["period"], power["period"]]).dropna()
    return tax, power, (periods.max() if len(periods) else None)


def _months_before(period: str, months: int) -> str:
    year, month = int(period[:4]), int(period[5:7])
    index = year * 12 + (month - 1) - months + 1
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def resolve(
    store: RunStore,
    run_id: str,
    settings: ResolveSettings | None = None,
    model_path: Path = MODEL_PATH,
    records: dict[str, pa.Table] | None = None,
) -> ResolveResult:
    """Build the register of ``run_id`` from all committed staging (``records``, the latest version of
    every staged record per feed, when the caller has read them already)."""
    settings = settings or ResolveSettings()
    timings: dict[str, float] = {}
    clock = time.monotonic()

    def lap(stage: str) -> None:
        nonlocal clock
        timings[stage] = round(time.monotonic() - clock, 3)
        clock = time.monotonic()

    tables = records if records is not None else all_latest_records(store)
    tokens = Tokeniser(load_key())  # business phones are compared as tokens, like the persons' ones
    entities: dict[str, Entity] = {}
    entity_of_record: dict[tuple[str, str], str] = {}
    for feed in FEEDS_WITH_ENTITIES:
        for entity in BUILDERS[feed](tables[feed], tokens):
            entities[entity.entity_id] = entity
            for record_id in entity.record_ids:
                entity_of_record[(feed, record_id)] = entity.entity_id
    frame = pd.DataFrame([e.as_row() for e in entities.values()])
    lap("standardise")

    previous = _previous_links(store)
    previous_record_unit = (
        {f"{r.feed}/{r.record_id}": r.unit_id for r in previous.itertuples(index=False)}
        if previous is not None
        else {}
    )
    previous_units: dict[str, list[str]] = defaultdict(list)
    for (feed, record_id), entity_id in entity_of_record.items():
        unit = previous_record_unit.get(f"{feed}/{record_id}")
        if unit and entity_id not in previous_units[unit]:
            previous_units[unit].append(entity_id)
    verdict_list = load_verdicts(store.verdicts_dir)
    must, cannot, alone, not_business = _verdict_edges(verdict_list, entity_of_record, previous_units)

    deterministic = _deterministic_edges(entities)
    model = _model_edges(frame, settings, model_path) if len(frame) else []
    lap("predict")

    clusters = ConstrainedClusters(entities, {e.entity_id: e.uscc for e in entities.values() if e.uscc})
    for a, b in cannot:
        clusters.forbid(a, b)
    joined_by: dict[str, _Edge] = {}
    # The registered name only where neither codes nor the model placed a record. Model edges of equal
    # probability (a record as like one sibling as the other) are taken in entity-id order, not in the order
    # the SQL engine happened to return them, so the same inputs always give the same register.
    ordered = (
        must
        + deterministic
        + sorted(model, key=lambda e: (-e.probability, e.a, e.b))
        + _registered_name_edges(entities)
    )
    for edge in ordered:
        if edge.matched_by == "model" and edge.probability < settings.link_threshold:
            continue
        if {edge.a, edge.b} & (alone | not_business) and edge.matched_by != "verdict":
            continue
        if clusters.find(edge.a) != clusters.find(edge.b) and clusters.join(edge.a, edge.b):
            # the entity that joined keeps the edge that brought it in, for the links table
            for node in (edge.b, edge.a):
                joined_by.setdefault(node, edge)
    lap("cluster")

    units = _units(clusters.clusters(), entities, tables, settings, not_business)
    anchors = {root: info["anchor"] for root, info in units.items()}
    members = {
        root: sorted(f"{entities[e].feed}/{r}" for e in info["entities"] for r in entities[e].record_ids)
        for root, info in units.items()
    }
    unit_ids, lineage = assign_unit_ids(members, anchors, previous_record_unit)
    links = _links(units, unit_ids, entities, joined_by, run_id)
    links += _person_links(
        tables[PERSON_FEED],
        units,
        unit_ids,
        entities,
        run_id,
        _founded(tables, entities, units, unit_ids),
        tokens,
    )
    link_table = pa.Table.from_pylist(links, schema=_schema("links"))
    register = _register(units, unit_ids, entities, tables, link_table, settings, run_id)
    review = _review(units, unit_ids, entities, model, joined_by, settings, run_id)
    lineage_rows = [
        {
            "event": e.event,
            "from_unit_id": e.from_unit_id,
            "to_unit_id": e.to_unit_id,
            "records": e.records,
            "run_id": run_id,
        }
        for e in lineage
    ]
    lap("assemble")
    result = ResolveResult(
        run_id=run_id,
        tables={
            "register": pa.Table.from_pylist(register, schema=_schema("register")),
            "links": link_table,
            "review": pa.Table.from_pylist(review, schema=_schema("review")),
            "lineage": pa.Table.from_pylist(lineage_rows, schema=_schema("lineage")),
        },
        model_version=model_version(model_path),
        timings=timings,
        refused_joins=clusters.refused,
        predicted_pairs=len(model),
    )
    return result


def _schema(table: str) -> pa.Schema:
    from pipelines.contracts import output_schema

    return output_schema(table)


def _units(
    clusters: dict[Any, list[str]],
    entities: dict[str, Entity],
    tables: dict[str, pa.Table],
    settings: ResolveSettings,
    not_business: set[str],
) -> dict[Any, dict[str, Any]]:
    """Which clusters are business units: any with a registration, tax or non-residential power account;
    waybill-only senders only with steady volume from one place. Private persons stay unlinked."""
    parcels = {}
    waybills = tables["waybill"].select(["record_id", "shipped_at", "parcel_count"]).to_pandas()
    if len(waybills):
        waybills["month"] = waybills["shipped_at"].dt.strftime("%Y-%m")
        parcels = waybills.set_index("record_id")[["month", "parcel_count"]].to_dict("index")
    units = {}
    for root, members in clusters.items():
        members = [m for m in members if m not in not_business]
        if not members:
            continue
        feeds = {entities[m].feed for m in members}
        business = [m for m in members if not entities[m].is_person]
        if feeds == {"waybill"}:
            records = [r for m in members for r in entities[m].record_ids]
            months = {parcels[r]["month"] for r in records if r in parcels}
            volume = sum(parcels[r]["parcel_count"] or 0 for r in records if r in parcels)
            if (
                not business
                or volume < settings.ecommerce_min_parcels
                or len(months) < settings.ecommerce_min_months
            ):
                continue
        elif not business:
            continue
        registered = sorted(m for m in members if entities[m].feed == "registration")
        uscc = next((entities[m].uscc for m in members if entities[m].uscc), None)
        anchor = (
            f"uscc:{uscc}"
            if uscc
            else min(f"{entities[m].feed}/{r}" for m in members for r in entities[m].record_ids)
        )
        units[root] = {"entities": sorted(members), "registered": registered, "uscc": uscc, "anchor": anchor}
    return units


def _links(
    units: dict[Any, dict[str, Any]],
    unit_ids: dict[Any, str],
    entities: dict[str, Entity],
    joined_by: dict[str, _Edge],
    run_id: str,
) -> list[dict[str, Any]]:
    rows = []
    for root, info in units.items():
        for entity_id in info["entities"]:
            edge = joined_by.get(entity_id)
            entity = entities[entity_id]
            for record_id in entity.record_ids:
                rows.append(
                    {
                        "feed": entity.feed,
                        "record_id": record_id,
                        "unit_id": unit_ids[root],
                        "match_probability": edge.probability if edge else 1.0,
                        "matched_by": edge.matched_by if edge else "self",
                        "field_weights": json.dumps(edge.weights, sort_keys=True)
                        if edge and edge.weights
                        else None,
                        "entity_id": entity_id,
                        "run_id": run_id,
                    }
                )
    return rows


def _work_unit_index(
    units: dict[Any, dict[str, Any]], unit_ids: dict[Any, str], entities: dict[str, Entity]
) -> dict[tuple[str, ...], set[str]]:
    """Keys under which people name their employer, from the most to the least specific."""
    index: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for root, info in units.items():
        for entity_id in info["entities"]:
            entity = entities[entity_id]
            if entity.is_person or not entity.trade_name:
                continue
            unit = unit_ids[root]
            if entity.name:
                index[_full_name_key(parse_company_name(entity.name))].add(unit)
            index[("core", entity.name_core or "")].add(unit)
            index[
                ("trade+industry+branch", entity.trade_name, entity.industry or "", entity.branch or "")
            ].add(unit)
            index[("trade+branch", entity.trade_name, entity.branch or "")].add(unit)
            index[("sound+industry", entity.trade_pinyin or "", entity.industry or "")].add(unit)
            if entity.legal_rep_name and entity.entity_type and "个体" in entity.entity_type:
                index[("operator", entity.legal_rep_name)].add(unit)  # 个体户 are known by their operator
    return index


def _full_name_key(name: CompanyName) -> tuple[str, ...]:
    """The name with its region, however the region is spelt (杭州 / 杭州市 / 浙江省杭州市 → one code)."""
    return ("full", match_region(name.region).division_code or name.region, name.core)


def _work_unit_candidates(
    work_unit: str, city: str | None, index: dict[tuple[str, ...], set[str]], unit_city: dict[str, str]
) -> set[str]:
    """The units a work-unit name names, from its most specific key that finds any; several namesakes are
    narrowed to the person's own city."""
    name = parse_company_name(work_unit)
    keys = [_full_name_key(name), ("core", name.core)] if name.region else [("core", name.core)]
    if name.trade_name:
        keys.append(("trade+industry+branch", name.trade_name, name.industry, name.branch))
        if name.industry:
            keys.append(("sound+industry", name.trade_name_phonetic, name.industry))
        else:  # a bare trade name (德胜): any unit of that name; with an industry, only it
            keys.append(("trade+branch", name.trade_name, name.branch))
    keys.append(("operator", fold(work_unit)))
    for key in keys:
        found = index.get(key, set())
        if city:  # namesakes elsewhere: only the person's own city (or a unit whose city is unknown)
            found = {unit for unit in found if unit_city.get(unit, city) == city}
        if found:
            return found
    return set()


def _known(trait: tuple[str, str]) -> bool:
    return bool(trait[1]) and not trait[1].endswith("|None")


def _narrow(
    candidates: set[str], traits: list[tuple[str, str]], unit_traits: dict[str, set[tuple[str, str]]]
) -> set[str]:
    """Several candidate units: keep those that share the person's phone, then home street, as long as that
    leaves any."""
    for trait in traits:
        if len(candidates) <= 1:
            break
        if _known(trait):
            kept = {unit for unit in candidates if trait in unit_traits[unit]}
            candidates = kept or candidates
    return candidates


def _founded(
    tables: dict[str, pa.Table],
    entities: dict[str, Entity],
    units: dict[Any, dict[str, Any]],
    unit_ids: dict[Any, str],
) -> dict[str, date]:
    """Registration date of each registered unit: nobody worked for a unit before it existed."""
    established = dict(
        zip(
            tables["registration"]["record_id"].to_pylist(),
            tables["registration"]["established_on"].to_pylist(),
            strict=True,
        )
    )
    founded: dict[str, date] = {}
    for root, info in units.items():
        dates = [established.get(entities[e].record_ids[0]) for e in info["registered"]]
        if dates := [d for d in dates if d]:
            founded[unit_ids[root]] = min(dates)
    return founded


def _person_links(
    people: pa.Table,
    units: dict[Any, dict[str, Any]],
    unit_ids: dict[Any, str],
    entities: dict[str, Entity],
    run_id: str,
    founded: dict[str, date],
    tokens: Tokeniser,
) -> list[dict[str, Any]]:
    """A test record joins a unit when the person is its legal representative (same ID-number token, one
    unit only), or when the work unit it names is exactly one unit, or, failing both, when the person has
    the name of exactly one unit's legal representative and shares that unit's phone or street."""
    by_rep: dict[str, set[str]] = defaultdict(set)
    by_rep_name: dict[str | None, set[str]] = defaultdict(set)  # the licence's public name, tokenised
    unit_city: dict[str, str] = {}
    unit_traits: dict[str, set[tuple[str, str]]] = defaultdict(set)  # phone tokens and streets
    for root, info in units.items():
        unit = unit_ids[root]
        for entity_id in info["entities"]:
            entity = entities[entity_id]
            if entity.legal_rep_token:
                by_rep[entity.legal_rep_token].add(unit)
            if entity.legal_rep_name:
                by_rep_name[tokens.token("person_name", entity.legal_rep_name)].add(unit)
            if entity.district_code:
                unit_city.setdefault(unit, entity.district_code[:4])
            unit_traits[unit] |= {
                ("phone", entity.phone or ""),
                ("street", f"{entity.district_code}|{entity.street_key}"),
            }
    index = _work_unit_index(units, unit_ids, entities)
    rows = []
    for person in people.select(
        ["record_id", "person_name", "id_number", "phone", "work_unit", "address", "site", "sampled_at"]
    ).to_pylist():
        home = parse_address(person["address"])
        site = match_region(fold(person["site"])).division_code
        district = home.division_code or site
        city = district[:4] if district else None
        traits = [("phone", person["phone"] or ""), ("street", f"{home.division_code}|{home.street_key}")]
        via_rep = by_rep.get(person["id_number"] or "", set())
        via_work = (
            _work_unit_candidates(person["work_unit"], city, index, unit_city)
            if person["work_unit"]
            else set()
        )
        if len(via_rep) > 1 and via_rep & via_work:
            via_rep = via_rep & via_work
        if person["sampled_at"]:  # of several candidates, only those that existed when the test was taken
            tested_on = person["sampled_at"].date()
            via_rep = {u for u in via_rep if founded.get(u, tested_on) <= tested_on} or via_rep
            via_work = {u for u in via_work if founded.get(u, tested_on) <= tested_on} or via_work
        via_rep, via_work = _narrow(via_rep, traits, unit_traits), _narrow(via_work, traits, unit_traits)
        # no usable ID number (missing, mistyped, or not on the licence): the legal representative's name,
        # backed by the unit's own phone or street, still identifies them
        via_name = {
            unit
            for unit in by_rep_name.get(person["person_name"], set())
            if any(trait in unit_traits[unit] for trait in traits if _known(trait))
        }
        if len(via_rep) == 1:
            unit, matched_by = next(iter(via_rep)), "legal_rep"
        elif len(via_work) == 1:
            unit, matched_by = next(iter(via_work)), "work_unit"
        elif len(via_name) == 1 and not via_rep:
            unit, matched_by = next(iter(via_name)), "legal_rep_name"
        else:
            continue
        rows.append(
            {
                "feed": PERSON_FEED,
                "record_id": person["record_id"],
                "unit_id": unit,
                "match_probability": 1.0,
                "matched_by": matched_by,
                "field_weights": None,
                "entity_id": None,
                "run_id": run_id,
            }
        )
    return rows


def _register(
    units: dict[Any, dict[str, Any]],
    unit_ids: dict[Any, str],
    entities: dict[str, Entity],
    tables: dict[str, pa.Table],
    links: pa.Table,
    settings: ResolveSettings,
    run_id: str,
) -> list[dict[str, Any]]:
    registration = {r["record_id"]: r for r in tables["registration"].to_pylist()}
    tax, power, as_of = _period_figures(tables)
    window_start = _months_before(as_of, settings.lookback_months) if as_of else None
    link_frame = links.select(["feed", "record_id", "unit_id", "match_probability"]).to_pandas()
    counts = link_frame.groupby(["unit_id", "feed"]).size().unstack(fill_value=0)
    confidence = link_frame.groupby("unit_id")["match_probability"].min()
    unit_of = {(r.feed, r.record_id): r.unit_id for r in link_frame.itertuples(index=False)}

    def figures(frame: pd.DataFrame, feed: str, value: str) -> dict[str, float]:
        if not len(frame) or window_start is None:
            return {}
        recent = frame[frame["period"].fillna("") >= window_start].copy()
        recent["unit_id"] = [unit_of.get((feed, r)) for r in recent["record_id"]]
        return recent.groupby("unit_id")[value].sum().to_dict()

    tax_paid, kwh = figures(tax, "tax", "tax_paid"), figures(power, "utility", "kwh")
    waybills = tables["waybill"].select(["record_id", "parcel_count"]).to_pandas()
    waybills["unit_id"] = [unit_of.get(("waybill", r)) for r in waybills["record_id"]]
    parcels = waybills.groupby("unit_id")["parcel_count"].sum().to_dict() if len(waybills) else {}
    meters = Counter()
    if len(power):
        power["unit_id"] = [unit_of.get(("utility", r)) for r in power["record_id"]]
        meters = Counter(
            power.dropna(subset=["unit_id", "meter_no"]).groupby("unit_id")["meter_no"].nunique().to_dict()
        )
    times = _record_times(tables, unit_of)
    licence_key_units: dict[tuple[str, str], set[str]] = defaultdict(set)
    rows = []
    for root, info in units.items():
        unit_id = unit_ids[root]
        members = [entities[e] for e in info["entities"]]
        main = (
            entities[info["registered"][0]]
            if info["registered"]
            else max(members, key=lambda e: len(e.record_ids))
        )
        reg = registration.get(main.record_ids[0]) if main.feed == "registration" else None
        operator = main.legal_rep_name  # the ID-number token is missing on some licences; the name is not
        if reg and operator and main.district_code and (main.street_key or main.road):
            licence_key_units[(operator, main.district_code, main.street_key or main.road)].add(unit_id)
        names = Counter(e.name for e in members if e.name)
        canonical = main.name or (names.most_common(1)[0][0] if names else None)
        count = {
            feed: int(counts.loc[unit_id, feed]) if unit_id in counts.index and feed in counts.columns else 0
            for feed in (*FEEDS_WITH_ENTITIES, PERSON_FEED)
        }
        abnormal_since = reg["abnormal_since"] if reg else None
        no_tax = tax_paid.get(unit_id, 0.0) <= 0
        reference = date.fromisoformat(f"{as_of}-01") if as_of else None
        zombie = bool(
            abnormal_since
            and reference
            and (reference - abnormal_since).days >= 365 * settings.zombie_abnormal_years
            and no_tax
        )
        first_seen, last_seen = times.get(unit_id, (None, None))
        rows.append(
            {
                "unit_id": unit_id,
                "uscc": info["uscc"],
                "name": canonical,
                "aliases": sorted(n for n in names if n != canonical),
                "entity_type": reg["entity_type"] if reg else None,
                "legal_rep_name": reg["legal_rep_name"]
                if reg
                else next((e.legal_rep_name for e in members if e.legal_rep_name), None),
                "industry_code": reg["industry_code"] if reg else None,
                "address": main.address,
                "division_code": main.district_code
                or next((e.district_code for e in members if e.district_code), None),
                "township": main.township or next((e.township for e in members if e.township), None),
                "phone": next(
                    (e.phone for e in [main, *members] if e.phone and e.phone_kind in ("mobile", "landline")),
                    None,
                ),
                "status": reg["status"] if reg else None,
                "first_seen": first_seen,
                "last_seen": last_seen,
                **{f"{feed}_records": n for feed, n in count.items()},
                "unregistered": not info["registered"],
                "multi_licence": False,
                "multi_meter": meters.get(unit_id, 0) > 1,
                "ecommerce_candidate": parcels.get(unit_id, 0) >= settings.ecommerce_min_parcels
                and count["waybill"] >= settings.ecommerce_waybill_share * sum(count.values()),
                "zombie_candidate": zombie,
                "tax_active": tax_paid.get(unit_id, 0.0) > 0,
                "power_active": kwh.get(unit_id, 0.0) > 0,
                "confidence": float(confidence.get(unit_id, 1.0)),
                "run_id": run_id,
            }
        )
    multi = {u for group in licence_key_units.values() if len(group) > 1 for u in group}
    for row in rows:
        row["multi_licence"] = row["unit_id"] in multi
    return sorted(rows, key=lambda r: r["unit_id"])


def _record_times(tables: dict[str, pa.Table], unit_of: dict[tuple[str, str], str]) -> dict[str, tuple]:
    """First and last source time of each unit's records."""
    spans: dict[str, list[datetime]] = {}
    for feed, column in (
        ("registration", "updated_at"),
        ("tax", "updated_at"),
        ("utility", "updated_at"),
        ("waybill", "shipped_at"),
        (PERSON_FEED, "sampled_at"),
    ):
        for record_id, moment in zip(
            tables[feed]["record_id"].to_pylist(), tables[feed][column].to_pylist(), strict=True
        ):
            unit = unit_of.get((feed, record_id))
            if unit and moment:
                span = spans.setdefault(unit, [moment, moment])
                span[0], span[1] = min(span[0], moment), max(span[1], moment)
    return {unit: (span[0].astimezone(UTC), span[1].astimezone(UTC)) for unit, span in spans.items()}


def _review(
    units: dict[Any, dict[str, Any]],
    unit_ids: dict[Any, str],
    entities: dict[str, Entity],
    model: list[_Edge],
    joined_by: dict[str, _Edge],
    settings: ResolveSettings,
    run_id: str,
) -> list[dict[str, Any]]:
    """Tax and power records with no registration match, model links in the uncertain band, and records the
    model placed although another unit scored as high (a meter at the address of two licences of one
    operator: the code keeps the licences apart, only a field check can say whose meter it is)."""
    unit_of_entity = {e: unit_ids[root] for root, info in units.items() for e in info["entities"]}
    registered_unit = {unit_ids[root] for root, info in units.items() if info["registered"]}
    candidates: dict[str, dict[str, float]] = defaultdict(dict)
    for edge in model:
        for this, other in ((edge.a, edge.b), (edge.b, edge.a)):
            unit = unit_of_entity.get(other)
            if unit and unit != unit_of_entity.get(this):
                candidates[this][unit] = max(candidates[this].get(unit, 0.0), edge.probability)
    rows = []
    for root, info in units.items():
        unit_id = unit_ids[root]
        for entity_id in info["entities"]:
            entity = entities[entity_id]
            best = sorted(candidates.get(entity_id, {}).items(), key=lambda kv: (-kv[1], kv[0]))[:3]
            placed_by = joined_by.get(entity_id)
            if unit_id not in registered_unit and entity.feed in ("tax", "utility"):
                reason, priority = "no_registration_match", 1
            elif best and best[0][1] >= settings.review_threshold and best[0][1] < settings.link_threshold:
                reason, priority = "uncertain_link", 2
            elif (
                best
                and entity.feed != "registration"
                and placed_by is not None
                and placed_by.matched_by == "model"
                and best[0][1] >= placed_by.probability
            ):
                reason, priority = "rival_unit", 2
            else:
                continue
            for record_id in entity.record_ids[:1] if entity.feed != "registration" else entity.record_ids:
                rows.append(
                    {
                        "review_id": f"{entity.feed}/{record_id}",
                        "feed": entity.feed,
                        "record_id": record_id,
                        "reason": reason,
                        "name": entity.name,
                        "address": entity.address,
                        "division_code": entity.district_code,
                        "township": entity.township,
                        "candidate_unit_ids": [u for u, _ in best],
                        "candidate_scores": [round(p, 4) for _, p in best],
                        "current_unit_id": unit_id,
                        "priority": priority,
                        "run_id": run_id,
                    }
                )
    return sorted(rows, key=lambda r: (r["priority"], r["division_code"] or "", r["review_id"]))
