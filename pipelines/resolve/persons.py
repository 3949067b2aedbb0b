"""Test records (persons) attached to units, through keys both sides share.

A test record joins a unit when the person is its legal representative (same ID-number token, one unit
only), or when the work unit it names is exactly one unit, or, failing both, when the person has the name of
exactly one unit's legal representative and shares that unit's phone or street, or, failing that too, when
the person's phone is the phone of exactly one unit whose records name no one (a shop known only by its
waybills or its meter gives its owner's mobile; where a licence, an account or a sender names someone else,
a shared phone makes the person a contact there, not the unit's record). A record whose work unit names
several units joins the one of them all of the same person's other attached records are in. Both sides are
reduced to keys (tokens, name keys, traits) once; candidates are found by joining keys, and only the persons
a run can have changed are decided again: new test records, those attached to units the run touched, and
those whose keys name one of those units.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.mappings import mapping, person_feeds
from pipelines.resolve.engine import Engine
from pipelines.resolve.entities import full_name_key
from pipelines.standardise.addresses import parse_address
from pipelines.standardise.names import parse_company_name
from pipelines.standardise.regions import match_region
from pipelines.standardise.text import fold

# The person feed's roles the matching reads, under these names (``as_people``).
PEOPLE_SCHEMA = pa.schema(
    [pa.field("record_id", pa.string())]
    + [
        pa.field(role, pa.string())
        for role in ("person_id", "person_name", "phone", "work_unit", "address", "site")
    ]
    + [pa.field("moment", pa.timestamp("us", tz="UTC"))]
)
SAME_PERSON = "same_person"  # matched_by of a record attached through the person's other records
SAME_PHONE = "same_phone"  # matched_by of a record attached because its phone is one unit's own
KEY_SCHEMA = pa.schema(
    [
        pa.field("owner", pa.string()),  # unit id, or the test record's id
        pa.field("kind", pa.string()),
        pa.field("key", pa.string()),
        pa.field("rank", pa.int32()),  # work-unit keys: most specific first
    ]
)
UNIT_INFO_SCHEMA = pa.schema(
    [pa.field("unit_id", pa.string()), pa.field("city", pa.string()), pa.field("founded", pa.date32())]
)
PERSON_LINK_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string()),
        pa.field("unit_id", pa.string()),
        pa.field("matched_by", pa.string()),
        pa.field("moment", pa.timestamp("us", tz="UTC")),
    ]
)
WORK_KINDS = ("full", "core", "trade+industry+branch", "trade+branch", "trade", "sound+industry", "operator")
_SEP = "\x1f"


def person_feed() -> str:
    """The feed of persons naming where they work (the nucleic-test contacts); the mapping allows one."""
    (feed,) = person_feeds()
    return feed


def as_people(records: pa.Table) -> pa.Table:
    """The person feed's records with the fields in its mapping's roles under the role names."""
    roles = mapping(person_feed()).roles
    columns = [
        records[roles[f.name]].cast(f.type) if f.name in roles else pa.nulls(records.num_rows, f.type)
        for f in PEOPLE_SCHEMA
        if f.name != "record_id"
    ]
    return pa.Table.from_arrays([records["record_id"], *columns], schema=PEOPLE_SCHEMA)


def _key(*parts: str | None) -> str:
    return _SEP.join(part or "" for part in parts)


def _known(trait: str) -> bool:
    return bool(trait) and not trait.endswith("|None")


# -- the units' side --------------------------------------------------------------------------------


UNIT_KEYS_SQL = """
-- the keys under which people know a unit, through each of its entities
WITH e AS (
    SELECT m.unit_id, e.*, NOT e.is_person AND e.trade_name IS NOT NULL AS named
    FROM members m JOIN entities e USING (entity_id)
),
found AS (
    SELECT unit_id, 'rep' AS kind, legal_rep_token AS key FROM e WHERE legal_rep_token IS NOT NULL
    UNION ALL SELECT unit_id, 'rep_name', coalesce(legal_rep_name_token, '') FROM e
    WHERE legal_rep_name IS NOT NULL
    -- traits a person may share with the unit
    UNION ALL SELECT unit_id, 'phone', coalesce(phone, '') FROM e
    UNION ALL SELECT unit_id, 'street', coalesce(district_code, 'None') || '|' || coalesce(street_key, 'None')
    FROM e
    -- how people name their employer, from the most to the least specific
    UNION ALL SELECT unit_id, 'full', full_name_key FROM e WHERE named AND full_name_key IS NOT NULL
    UNION ALL SELECT unit_id, 'core', coalesce(name_core, '') FROM e WHERE named
    UNION ALL SELECT unit_id, 'trade+industry+branch',
        concat_ws(chr(31), trade_name, coalesce(industry, ''), coalesce(branch, '')) FROM e WHERE named
    UNION ALL SELECT unit_id, 'trade+branch', concat_ws(chr(31), trade_name, coalesce(branch, ''))
    FROM e WHERE named
    UNION ALL SELECT unit_id, 'trade', trade_name FROM e WHERE named
    UNION ALL SELECT unit_id, 'sound+industry',
        concat_ws(chr(31), coalesce(trade_pinyin, ''), coalesce(industry, '')) FROM e WHERE named
    -- 个体户 are known by their operator
    UNION ALL SELECT unit_id, 'operator', legal_rep_name FROM e
    WHERE named AND legal_rep_name IS NOT NULL AND entity_type LIKE '%个体%'
)
SELECT DISTINCT unit_id AS owner, kind, key, 0 AS rank FROM found ORDER BY owner, kind, key
"""


def unit_keys(
    engine: Engine, members: pa.Table, entities: pa.Table, registrations: pa.Table
) -> tuple[pa.Table, pa.Table]:
    """Keys (owner = unit id) and city and founding date of the units in ``members`` (entity_id, unit_id).
    ``registrations``: feed, record_id, established_on of the anchor feeds' records."""
    tables = {
        "members": members.select(["entity_id", "unit_id"]),
        "entities": entities,
        "registrations": registrations.select(["feed", "record_id", "established_on"]),
    }
    info = engine.query(
        """
        -- a unit's city: its first entity's (by id) with a district; founded: its earliest registration
        SELECT m.unit_id,
               substr(min_by(e.district_code, e.entity_id) FILTER (WHERE e.district_code IS NOT NULL), 1, 4)
                   AS city,
               min(r.established_on) AS founded
        FROM members m JOIN entities e USING (entity_id)
        LEFT JOIN registrations r ON r.feed = e.feed AND r.record_id = e.rep_record_id
        GROUP BY m.unit_id ORDER BY m.unit_id
        """,
        **tables,
    ).cast(UNIT_INFO_SCHEMA)
    keys = engine.query(UNIT_KEYS_SQL, **tables).cast(KEY_SCHEMA)
    return keys, info


# -- the persons' side --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    record_id: str
    city: str | None
    traits: tuple[tuple[str, str], ...]  # (phone, token) and (street, district|street), known ones only
    tested_on: date | None
    moment: Any


@lru_cache(maxsize=100_000)
def _work_keys(work_unit: str) -> tuple[tuple[str, str], ...]:
    """The keys a work-unit name may name a unit by, most specific first."""
    name = parse_company_name(work_unit)
    if name.trade_name and not (name.region or name.industry or name.organisation_form or name.branch):
        # a bare trade name (金诚) says only the trade name: every unit of that name, a branch too, is a
        # candidate alike, not first the one some record happens to write as bare (a waybill's 金诚)
        return (("trade", name.trade_name), ("operator", fold(work_unit)))
    keys = [("full", full_name_key(name)), ("core", name.core)] if name.region else [("core", name.core)]
    if name.trade_name:
        keys.append(("trade+industry+branch", _key(name.trade_name, name.industry, name.branch)))
        if name.industry:
            keys.append(("sound+industry", _key(name.trade_name_phonetic, name.industry)))
        else:  # a bare trade name (德胜): any unit of that name; with an industry, only it
            keys.append(("trade+branch", _key(name.trade_name, name.branch)))
    keys.append(("operator", fold(work_unit)))
    return tuple(keys)


def person_keys(people: pa.Table) -> pa.Table:
    """Keys (owner = record id) of test records: ID-number and name tokens, and their work-unit keys."""
    rows = []
    for person in people.select(["record_id", "person_id", "person_name", "work_unit"]).to_pylist():
        owner = person["record_id"]
        if person["person_id"]:
            rows.append({"owner": owner, "kind": "rep", "key": person["person_id"], "rank": 0})
        if person["person_name"]:
            rows.append({"owner": owner, "kind": "rep_name", "key": person["person_name"], "rank": 0})
        if person["work_unit"]:
            rows += [
                {"owner": owner, "kind": kind, "key": key, "rank": rank}
                for rank, (kind, key) in enumerate(_work_keys(person["work_unit"]), start=1)
            ]
    return pa.Table.from_pylist(rows, schema=KEY_SCHEMA)


@lru_cache(maxsize=100_000)
def _home(address: str | None) -> tuple[str | None, str | None]:
    """District code and street key of a home address (many people share a housing estate)."""
    home = parse_address(address)
    return home.division_code, home.street_key


@lru_cache(maxsize=10_000)
def _site_district(site: str | None) -> str | None:
    """The division a test site is named after, only when named in full (萧山区人民医院采样点): a site
    named after its township (临江街道…, 五常街道…) often starts with another place's short name (临江市)."""
    folded = fold(site)
    region = match_region(folded)
    named = region.district or region.city or region.province
    return named.code if named and folded[: region.end].endswith(named.name) else None


def _person(row: dict[str, Any]) -> Person:
    home_district, home_street = _home(row["address"])
    site = _site_district(row["site"])
    district = home_district or site
    traits = (("phone", row["phone"] or ""), ("street", f"{home_district}|{home_street}"))
    sampled = row["moment"]
    return Person(
        row["record_id"],
        district[:4] if district else None,
        tuple(t for t in traits if _known(t[1])),
        sampled.date() if sampled else None,
        sampled,
    )


# -- deciding -----------------------------------------------------------------------------------------


def _narrow(candidates: set[str], person: Person, traits: dict[str, set[tuple[str, str]]]) -> set[str]:
    """Several candidate units: keep those that share the person's phone, then home street, as long as that
    leaves any."""
    for trait in person.traits:
        if len(candidates) <= 1:
            break
        kept = {unit for unit in candidates if trait in traits[unit]}
        candidates = kept or candidates
    return candidates


def _decide(
    person: Person,
    found: dict[str, dict[int, set[str]]],
    work_kinds: dict[int, str],
    city_of: dict[str, str | None],
    founded: dict[str, date],
    traits: dict[str, set[tuple[str, str]]],
) -> tuple[str, str] | None:
    """(unit, matched_by) for one person from the units its keys found, or None. ``work_kinds``: which
    work-unit key each rank is."""
    via_rep = set(found.get("rep", {}).get(0, set()))
    via_work: set[str] = set()
    for rank in sorted(found.get("work", {})):
        units = found["work"][rank]
        if work_kinds[rank] != "full" and person.city:
            # namesakes elsewhere: only the person's own city (or a unit whose city is unknown); a full name
            # says where itself (杭州某某有限公司北京分公司), whatever the person's home
            units = {u for u in units if (city_of.get(u) or person.city) == person.city}
        if units:
            via_work = set(units)
            break
    if len(via_rep) > 1 and via_rep & via_work:
        via_rep &= via_work
    if person.tested_on:  # of several candidates, only those that existed when the test was taken
        day = person.tested_on
        via_rep = {u for u in via_rep if founded.get(u, day) <= day} or via_rep
        via_work = {u for u in via_work if founded.get(u, day) <= day} or via_work
    via_rep, via_work = _narrow(via_rep, person, traits), _narrow(via_work, person, traits)
    # no usable ID number (missing, mistyped, or not on the licence): the legal representative's name,
    # backed by the unit's own phone or street, still identifies them
    via_name = {
        u for u in found.get("rep_name", {}).get(0, set()) if any(t in traits[u] for t in person.traits)
    }
    if len(via_rep) == 1:
        return next(iter(via_rep)), "legal_rep"
    if len(via_work) == 1:
        return next(iter(via_work)), "work_unit"
    if len(via_name) == 1 and not via_rep:
        return next(iter(via_name)), "legal_rep_name"
    # nothing else names a unit: the person's phone, when exactly one unit whose records name no one gives it
    # as its own (the owner of a shop known by its waybills or meter, which give the owner's mobile)
    via_phone = found.get("phone", {}).get(0, set())
    if len(via_phone) == 1 and not via_rep and not via_work:
        return next(iter(via_phone)), SAME_PHONE
    return None


def link_persons(
    engine: Engine, people: pa.Table, keys_of_people: pa.Table, keys_of_units: pa.Table, unit_info: pa.Table
) -> pa.Table:
    """Links (PERSON_LINK_SCHEMA) of the test records ``people``, against every unit's keys."""
    if not people.num_rows:
        return PERSON_LINK_SCHEMA.empty_table()
    matches = engine.query(
        """
        SELECT p.owner AS record_id, p.kind, p.rank, u.owner AS unit_id
        FROM person_keys p JOIN unit_keys u ON p.kind = u.kind AND p.key = u.key
        WHERE p.owner IN (SELECT record_id FROM people) AND p.key <> ''
        UNION ALL
        SELECT p.record_id, 'phone', 0, u.owner
        FROM people p JOIN unit_keys u ON u.kind = 'phone' AND u.key = p.phone
        WHERE p.phone <> '' AND u.owner NOT IN (SELECT owner FROM unit_keys WHERE kind = 'rep_name')
        """,
        person_keys=keys_of_people,
        unit_keys=keys_of_units.filter(
            pc.is_in(keys_of_units["kind"], pa.array(["rep", "rep_name", "phone", *WORK_KINDS]))
        ),
        people=people.select(["record_id", "phone"]),
    )
    found: dict[str, dict[str, dict[int, set[str]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(set))
    )
    work_kinds: dict[str, dict[int, str]] = defaultdict(dict)
    for row in matches.to_pylist():
        group = row["kind"] if row["kind"] in ("rep", "rep_name", "phone") else "work"
        found[row["record_id"]][group][row["rank"]].add(row["unit_id"])
        if group == "work":  # which key a rank is: a full name needs no city check
            work_kinds[row["record_id"]][row["rank"]] = row["kind"]
    candidates = pa.array(
        sorted({u for r in found.values() for g in r.values() for s in g.values() for u in s}), pa.string()
    )
    about = engine.query(
        """
        SELECT owner, kind, key FROM unit_keys
        WHERE kind IN ('phone', 'street') AND owner IN (SELECT unit_id FROM c)
        """,
        unit_keys=keys_of_units,
        c=pa.table({"unit_id": pa.array(candidates, pa.string())}),
    )
    traits: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for owner, kind, key in zip(*(about[c].to_pylist() for c in ("owner", "kind", "key")), strict=True):
        traits[owner].add((kind, key))
    info = unit_info.filter(pc.is_in(unit_info["unit_id"], candidates)).to_pylist()
    city_of = {row["unit_id"]: row["city"] for row in info}
    founded = {row["unit_id"]: row["founded"] for row in info if row["founded"]}
    links = []
    for row in people.select(["record_id", "address", "site", "phone", "moment"]).to_pylist():
        if row["record_id"] not in found:
            continue
        person = _person(row)
        record_id = row["record_id"]
        decided = _decide(person, found[record_id], work_kinds[record_id], city_of, founded, traits)
        if decided:
            links.append(
                {
                    "record_id": person.record_id,
                    "unit_id": decided[0],
                    "matched_by": decided[1],
                    "moment": person.moment,
                }
            )
    return pa.Table.from_pylist(links, schema=PERSON_LINK_SCHEMA)


def same_person_links(
    engine: Engine, people: pa.Table, links: pa.Table, keys_of_people: pa.Table, keys_of_units: pa.Table
) -> pa.Table:
    """Test records that name a work unit several units share, decided by the person's other records: when
    the person (the ID-number token) has other records, all attached to one unit, and that unit is among the
    ones the work unit names, the record is that unit's too. Recomputed over all test records each run (a few
    joins), so these links follow the links they rest on."""
    work_kinds = ", ".join(f"'{kind}'" for kind in WORK_KINDS)
    found = engine.query(
        f"""
        WITH linked AS (
            SELECT p.person_id, l.unit_id FROM links l JOIN people p USING (record_id)
            WHERE p.person_id IS NOT NULL
        ),
        one_unit AS (
            SELECT person_id, min(unit_id) AS unit_id FROM linked
            GROUP BY person_id HAVING count(DISTINCT unit_id) = 1
        ),
        proposed AS (
            SELECT p.record_id, o.unit_id, p.moment FROM people p JOIN one_unit o USING (person_id)
            WHERE p.record_id NOT IN (SELECT record_id FROM links)
        ),
        named AS (
            SELECT DISTINCT pr.record_id FROM proposed pr
            JOIN person_keys pk ON pk.owner = pr.record_id AND pk.kind IN ({work_kinds}) AND pk.key <> ''
            JOIN unit_keys uk ON uk.owner = pr.unit_id AND uk.kind = pk.kind AND uk.key = pk.key
        )
        SELECT record_id, unit_id, '{SAME_PERSON}' AS matched_by, moment
        FROM proposed WHERE record_id IN (SELECT record_id FROM named)
        ORDER BY record_id
        """,
        people=people.select(["record_id", "person_id", "moment"]),
        links=links.select(["record_id", "unit_id"]),
        person_keys=keys_of_people,
        unit_keys=keys_of_units,
    )
    return found.cast(PERSON_LINK_SCHEMA)


def people_to_decide(
    engine: Engine,
    changed: pa.Table,
    people: pa.Table,
    keys_of_people: pa.Table,
    previous_links: pa.Table,
    before: tuple[pa.Table, pa.Table],
    after: tuple[pa.Table, pa.Table],
    touched: pa.Array,
    gone: pa.Array,
) -> pa.Table:
    """The test records a run must decide again: changed ones, those attached to units that are ``gone``
    (merged or retired), and those that may name a unit whose keys changed (``before`` and ``after`` are the
    units' keys and info): a key added or lost, or a phone, street, city or founding date a decision between
    namesakes rests on, and those whose phone a unit gained or lost. A person whose candidates all read as
    before decides as before."""
    wanted = engine.query(
        """
        WITH scope AS (SELECT unit_id FROM touched UNION SELECT unit_id FROM gone),
        was AS (SELECT owner, kind, key FROM keys_before WHERE owner IN (SELECT unit_id FROM scope)),
        now AS (SELECT owner, kind, key FROM keys_after WHERE owner IN (SELECT unit_id FROM scope)),
        changed_keys AS (
            (SELECT * FROM was EXCEPT SELECT * FROM now)
            UNION ALL (SELECT * FROM now EXCEPT SELECT * FROM was)
        ),
        info_was AS (SELECT * FROM info_before WHERE unit_id IN (SELECT unit_id FROM scope)),
        info_now AS (SELECT * FROM info_after WHERE unit_id IN (SELECT unit_id FROM scope)),
        reshaped AS (
            SELECT owner AS unit_id FROM changed_keys WHERE kind IN ('phone', 'street')
            UNION SELECT unit_id FROM (SELECT * FROM info_was EXCEPT SELECT * FROM info_now)
            UNION SELECT unit_id FROM (SELECT * FROM info_now EXCEPT SELECT * FROM info_was)
        ),
        lookups AS (
            SELECT kind, key FROM changed_keys WHERE kind NOT IN ('phone', 'street')
            UNION
            SELECT kind, key FROM now
            WHERE owner IN (SELECT unit_id FROM reshaped) AND kind NOT IN ('phone', 'street')
        )
        SELECT record_id FROM changed
        UNION SELECT record_id FROM previous_links WHERE unit_id IN (SELECT unit_id FROM gone)
        UNION SELECT p.owner FROM person_keys p JOIN lookups l ON p.kind = l.kind AND p.key = l.key
        WHERE p.key <> ''
        -- a unit's phone gained or lost, or a legal representative named where none was (a shared phone
        -- counts only where none is): the persons with that phone
        UNION SELECT p.record_id FROM people p JOIN changed_keys c ON c.kind = 'phone' AND c.key = p.phone
        WHERE p.phone <> ''
        UNION SELECT p.record_id FROM people p JOIN now u ON u.kind = 'phone' AND u.key = p.phone
        WHERE p.phone <> '' AND u.owner IN (SELECT owner FROM changed_keys WHERE kind = 'rep_name')
        """,
        people=people.select(["record_id", "phone"]),
        changed=changed.select(["record_id"]),
        previous_links=previous_links.select(["record_id", "unit_id"]),
        person_keys=keys_of_people,
        keys_before=before[0],
        info_before=before[1],
        keys_after=after[0],
        info_after=after[1],
        touched=pa.table({"unit_id": pa.array(touched, pa.string())}),
        gone=pa.table({"unit_id": pa.array(gone, pa.string())}),
    )
    return people.filter(pc.is_in(people["record_id"], wanted["record_id"]))
