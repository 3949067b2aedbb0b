"""From staged records to comparable *entities*: one row per thing a department knows as one business.

Tax filings repeat per period and electricity bills per month, so records are grouped where the department's
own key says they are one (a taxpayer id, a power account, a sender with one name, address and phone). The
newest of its most complete records speaks for it and is standardised once; a later record that reads the
same (same name, address, phone …) changes nothing, so a new month of filings costs no standardisation.
Entity ids come from the department's key, so the same entity has the same id in every run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.contracts import contract
from pipelines.mappings import EntityRule, FeedMapping, mapping, unit_feeds
from pipelines.pii import TOKEN_PREFIX, Tokeniser, is_token
from pipelines.resolve.engine import Engine
from pipelines.resolve.frames import without
from pipelines.standardise.addresses import Address, parse_address
from pipelines.standardise.codes import clean_code, is_valid_uscc, org_code_of
from pipelines.standardise.names import CompanyName, is_personal_name, parse_company_name
from pipelines.standardise.phones import area_code_of, parse_phone
from pipelines.standardise.regions import match_region
from pipelines.standardise.text import fold
from pipelines.standardise.vocabularies import HOUSEHOLD, customer_kind


@dataclass
class Entity:
    entity_id: str
    feed: str
    uscc: str | None = None  # only when its check character is right
    org_code: str | None = None
    reg_no: str | None = None  # a registration's number (注册号): one licence, one number
    name: str | None = None
    name_core: str | None = None
    trade_name: str | None = None
    trade_pinyin: str | None = None
    industry: str | None = None
    organisation_form: str | None = None
    branch: str | None = None
    name_key: str | None = None  # the name with its region: a registration authority registers it once
    full_name_key: str | None = None  # region (however spelt) and core: how people name their employer
    district_code: str | None = None
    township: str | None = None
    road: str | None = None
    street_key: str | None = None
    address_rest: str | None = None
    address: str | None = None
    phone: str | None = None  # keyed token of the normalised number: comparable with tokenised feeds
    phone_kind: str | None = None
    legal_rep_name: str | None = None
    legal_rep_name_token: str | None = None  # the name as test records carry it (a keyed token)
    legal_rep_token: str | None = None
    entity_type: str | None = None
    is_person: bool = False  # a private sender or residential account rather than a business

    def as_row(self) -> dict[str, Any]:
        return dict(vars(self))

    def attributes_hash(self) -> str:
        """Changes exactly when something the model, the codes or the unit's row read has changed."""
        return digest(vars(self).values())


def digest(values: Iterable[Any]) -> str:
    """A short hash of a sequence of plain values (strings, numbers, dates, None), in order."""
    return hashlib.blake2b(repr(tuple(values)).encode(), digest_size=12).hexdigest()


_STRING = pa.string()
ENTITY_SCHEMA = pa.schema(
    [pa.field(f.name, pa.bool_() if f.name == "is_person" else _STRING) for f in fields(Entity)]
    + [
        pa.field(
            "rep_record_id", _STRING
        ),  # the record that speaks for the entity (newest of the most complete)
        pa.field("rep_time", pa.timestamp("us", tz="UTC")),
        pa.field("source_hash", _STRING),  # of the representative's fields that standardisation reads
        pa.field("attributes_hash", _STRING),
    ]
)


@lru_cache(maxsize=200_000)
def _name(text: str, hint: str) -> CompanyName:
    return parse_company_name(text, hint or None)


@lru_cache(maxsize=200_000)
def _address(text: str, hint: str) -> Address:
    """The address read with the record's own division as hint; where that hint rules out the city the
    address itself names in full (an account of a firm registered elsewhere: 杭州市上城区… under a Beijing
    code), the address is read on its own."""
    parsed = parse_address(text, hint or None)
    if hint and parsed.district is None and (alone := parse_address(text)).district is not None:
        return alone
    return parsed


def _district_hint(*codes: str | None) -> str:
    """The first usable 6-digit division code among the given ones (division codes, USCC parts, …)."""
    for code in codes:
        if code and len(code) >= 6 and code[:6].isdigit() and not code[:6].endswith("0000"):
            return code[:6]
    return ""


@lru_cache(maxsize=200_000)
def region_hint(name: str | None) -> str:
    """The city a company name starts with (北京…, 杭州…): tells which 通州区 or 鼓楼区 an address without a
    city means."""
    if not name:
        return ""
    region = _name(name, "").region
    return (match_region(region).division_code or "") if region else ""


def full_name_key(name: CompanyName) -> str:
    """The name with its region, however the region is spelt (杭州 / 杭州市 / 浙江省杭州市 → one code)."""
    return "|".join((match_region(name.region).division_code or name.region, name.core))


def _name_key(name: str | None) -> str | None:
    """A name with its region spelt out (北京… / 杭州市西湖区…) and any organisation form."""
    if not name:
        return None
    region, parsed = region_hint(name), _name(name, "")
    if not region or not parsed.trade_name:
        return None
    return "|".join((region, parsed.trade_name, parsed.industry, parsed.branch))


def _fill(
    entity: Entity,
    name: str | None,
    address: str | None,
    phone: str | None,
    hint: str,
    tokens: Tokeniser,
    person_named: bool = False,
) -> Entity:
    if name and person_named and not is_token(name):
        # A business account in a person's name (a landlord's, the owner's): the person, as on a licence,
        # compares with the legal representative; the name is never kept in clear.
        entity.legal_rep_name = fold(name)
        entity.name = tokens.token("person_name", entity.legal_rep_name)
    elif name and entity.is_person:
        # A private sender's name comes tokenised from import: it is its own name token. A household
        # account's holder comes in clear: only its token is kept.
        entity.legal_rep_name = entity.legal_rep_name or (name if is_token(name) else fold(name)) or None
        entity.name = name if is_token(name) else tokens.token("person_name", fold(name))
    elif name:
        parsed = _name(name, hint)
        entity.name = name
        entity.name_core = parsed.core or None
        entity.trade_name = parsed.trade_name or None
        entity.trade_pinyin = parsed.trade_name_phonetic or None
        entity.industry = parsed.industry or None
        entity.organisation_form = parsed.organisation_form or None
        entity.branch = parsed.branch or None
        entity.name_key = _name_key(name)
        entity.full_name_key = full_name_key(_name(name, ""))
    if address:
        city_hint = "" if hint or entity.is_person else region_hint(entity.name)
        parsed_address = _address(address, hint or city_hint)
        entity.address = address
        entity.district_code = parsed_address.division_code if parsed_address.district else None
        entity.township = parsed_address.township
        entity.road = parsed_address.road
        entity.street_key = parsed_address.street_key
        entity.address_rest = parsed_address.rest or None
    if entity.district_code is None and hint:
        entity.district_code = hint
    if phone and not phone.startswith(TOKEN_PREFIX):
        parsed_phone = parse_phone(phone, area_code_of(entity.district_code))
        if parsed_phone:
            entity.phone = tokens.token("phone", parsed_phone.number)
            entity.phone_kind = parsed_phone.kind
    elif phone:
        entity.phone, entity.phone_kind = phone, "token"
    if entity.legal_rep_name:
        entity.legal_rep_name_token = (
            entity.legal_rep_name
            if is_token(entity.legal_rep_name)
            else tokens.token("person_name", entity.legal_rep_name)
        )
    return entity


def _valid_uscc(code: str | None) -> str | None:
    return clean_code(code) if is_valid_uscc(code) else None


# -- what a department's records say, read through its mapping ------------------------------------------


def _value(row: dict[str, Any], mapping: FeedMapping, role: str) -> Any:
    name = mapping.field(role)
    return row[name] if name else None


def build_entity(mapping: FeedMapping, entity_id: str, row: dict[str, Any], tokens: Tokeniser) -> Entity:
    """The entity a record speaks for, from the fields in the roles its feed's mapping gives.

    A USCC counts only when its check character is right; a taxpayer number also gives a legacy organisation
    code and its division. A household class without a USCC, or (where the mapping says so) a record with no
    business name, is a private person's; a business name that is a person's compares as that person."""
    rule = mapping.entity
    assert rule is not None, f"{mapping.feed} is not a unit feed"
    taxpayer_id = clean_code(_value(row, mapping, "taxpayer_id")) or None
    uscc = _valid_uscc(_value(row, mapping, "uscc") or taxpayer_id)
    office = _value(row, mapping, "office")
    hint = _district_hint(
        _value(row, mapping, "division_code"),
        uscc[2:8] if uscc else None,
        taxpayer_id[:6] if taxpayer_id and not uscc else None,
        match_region(fold(office).removeprefix("国家税务总局")).division_code if office else None,
    )
    household = rule.household_class and customer_kind(row[rule.household_class]) == HOUSEHOLD
    name = _value(row, mapping, "name")
    entity = Entity(
        entity_id=entity_id,
        feed=mapping.feed,
        uscc=uscc,
        org_code=org_code_of(taxpayer_id or uscc),
        reg_no=clean_code(_value(row, mapping, "reg_no")) or None,
        legal_rep_name=fold(_value(row, mapping, "legal_rep_name")) or None,
        legal_rep_token=_value(row, mapping, "legal_rep_id"),
        entity_type=_value(row, mapping, "entity_type"),
        is_person=bool(household and not uscc) or (rule.person_without_name and not name),
    )
    person_named = (
        rule.person_named is not None
        and not entity.is_person
        and is_personal_name(name, two_characters=rule.person_named == "two_characters")
    )
    if rule.person_without_name:
        hint = ""  # a sender's address says where it is; nothing else in the record does
    name = name or _value(row, mapping, "person_name")
    return _fill(
        entity,
        name,
        _value(row, mapping, "address"),
        _value(row, mapping, "phone"),
        hint,
        tokens,
        person_named,
    )


def _digest_key(*values: str | None) -> str:
    return hashlib.blake2b("|".join(v or "" for v in values).encode(), digest_size=10).hexdigest()


def entity_key(rule: EntityRule, kinds: dict[str, str | None], values: dict[str, Any]) -> str:
    """The department's own key of a record (``schemas/mappings/README.md``: key rules). ``kinds``: the
    contract's kind of each key field (phones are hashed as imported, other text folded)."""

    def text(part: str | tuple[str, ...]) -> str:
        names = (part,) if isinstance(part, str) else part
        for name in names:
            value = values[name] if kinds[name] == "phone" else fold(values[name])
            if value:
                return value
        return ""

    first = rule.key[0]
    if rule.key_rule == "as_is":
        return values[first]
    if rule.key_rule == "first_else_record":
        return values[first] or f"~{values[rule.key[1]]}"
    if rule.key_rule == "code_else_text":
        return clean_code(values[first]) or "~" + "|".join(text(part) for part in rule.key[1:])
    if rule.key_rule == "all_else_record":
        parts = [text(part) for part in rule.key[:-1]]
        return _digest_key(*parts) if all(parts) else f"~{values[rule.key[-1]]}"
    return _digest_key(*(text(part) for part in rule.key))


@dataclass(frozen=True)
class EntitySource:
    """How one department's records become entities: its mapping, read once."""

    mapping: FeedMapping

    @property
    def feed(self) -> str:
        return self.mapping.feed

    @property
    def rule(self) -> EntityRule:
        assert self.mapping.entity is not None
        return self.mapping.entity

    @property
    def time_field(self) -> str:
        return self.rule.time

    @property
    def inputs(self) -> tuple[str, ...]:
        """The fields standardisation reads."""
        return self.mapping.identity_fields

    @property
    def uscc_field(self) -> str | None:
        return self.mapping.field("uscc") if self.rule.code_from_any_record else None

    def entity_ids(self, table: pa.Table) -> pa.Array:
        fields_ = self.rule.key_fields
        kinds = {name: contract(self.feed).field_spec(name).kind for name in fields_}
        rows = table.select(list(fields_)).to_pylist()
        return pa.array([f"{self.feed}:{entity_key(self.rule, kinds, row)}" for row in rows], pa.string())

    def source_hash(self, row: dict[str, Any]) -> str:
        return digest(row[name] for name in self.inputs)

    def build(self, entity_id: str, row: dict[str, Any], tokens: Tokeniser) -> Entity:
        return build_entity(self.mapping, entity_id, row, tokens)


SOURCES: dict[str, EntitySource] = {feed: EntitySource(mapping(feed)) for feed in unit_feeds()}
ENTITY_FEEDS = tuple(SOURCES)


# -- keeping the entity table up to date ------------------------------------------------------------------


@dataclass(frozen=True)
class EntityChanges:
    """The entity table after a batch, and what the batch did to it."""

    table: pa.Table
    rescored: frozenset[str]  # new, or something the model or the codes read has changed
    grown: frozenset[str]  # same attributes, but records came, went or changed
    removed: frozenset[str]  # no records left


def _representatives(
    engine: Engine,
    source: EntitySource,
    previous: pa.Table,
    records: pa.Table,
    changed: pa.Table,
    left: pa.Array,
) -> pa.Table:
    """entity_id, rep_record_id, rep_time of every entity the batch touched: the newest of the most complete
    among its stored representative and its changed records, or among all its records where the stored one
    was replaced. Most complete first: a month's bill that lost its address in transit must not speak for
    an account whose other bills give it."""
    time = source.time_field
    filled = " + ".join(f"({name} IS NOT NULL)::INT" for name in source.inputs)
    return engine.query(
        f"""
        WITH affected AS (SELECT DISTINCT entity_id FROM changed UNION SELECT entity_id FROM left_entities),
        stored AS (
            SELECT p.entity_id, p.rep_record_id, p.rep_time FROM previous p JOIN affected USING (entity_id)
        ),
        replaced AS (SELECT entity_id FROM stored WHERE rep_record_id IN (SELECT record_id FROM changed)),
        candidates AS (
            SELECT entity_id, record_id, {time} AS t FROM changed
            UNION ALL
            SELECT entity_id, rep_record_id, rep_time FROM stored
            WHERE entity_id NOT IN (SELECT entity_id FROM replaced)
            UNION ALL
            SELECT r.entity_id, r.record_id, r.{time} FROM records r JOIN replaced USING (entity_id)
        )
        SELECT entity_id, record_id AS rep_record_id, t AS rep_time FROM (
            SELECT c.*, row_number() OVER (
                PARTITION BY c.entity_id ORDER BY f.filled DESC, c.t DESC NULLS LAST, c.record_id DESC) AS n
            FROM candidates c JOIN (SELECT record_id, {filled} AS filled FROM records) f USING (record_id)
        ) WHERE n = 1
        """,
        previous=previous.select(["entity_id", "rep_record_id", "rep_time"]),
        records=records.select(["entity_id", "record_id", time, *source.inputs]),
        changed=changed.select(["entity_id", "record_id", time]),
        left_entities=pa.table({"entity_id": left}),
    )


def update_entities(
    engine: Engine,
    previous: pa.Table,
    records: dict[str, pa.Table],
    changed: dict[str, pa.Table],
    left: dict[str, pa.Array],
    tokens: Tokeniser,
) -> EntityChanges:
    """The entity table after a batch. ``records``: every current record per feed (with ``entity_id``);
    ``changed``: the records the batch added or changed; ``left``: entities that lost a record to another.
    Only entities whose newest record reads differently are standardised again."""
    dropped: list[pa.Array] = []
    updated: list[dict[str, Any]] = []
    rescored: set[str] = set()
    grown: set[str] = set()
    removed: set[str] = set()
    for feed, source in SOURCES.items():
        touched = set(changed[feed]["entity_id"].to_pylist()) | set(left[feed].to_pylist())
        if not touched:
            continue
        gone = pa.array(sorted(touched), pa.string())
        previous_by_id = {row["entity_id"]: row for row in _rows_in(previous, "entity_id", gone)}
        reps = _representatives(engine, source, previous, records[feed], changed[feed], left[feed])
        removed |= touched - set(reps["entity_id"].to_pylist())
        rep_rows = _rows_by_record(records[feed], reps["rep_record_id"])
        first_codes = _first_valid_codes(changed[feed], source.uscc_field) if source.uscc_field else {}
        for rep in reps.to_pylist():
            row = rep_rows[rep["rep_record_id"]]
            before = previous_by_id.get(rep["entity_id"])
            source_hash = source.source_hash(row)
            if before is not None and before["source_hash"] == source_hash:
                entity_row = {**before, **rep}  # reads the same: keep the standardised attributes
            else:
                entity = source.build(rep["entity_id"], row, tokens)
                if source.uscc_field and entity.uscc is None:
                    code = (before or {}).get("uscc") or first_codes.get(rep["entity_id"])
                    entity.uscc, entity.org_code = code, org_code_of(code)
                entity_row = {
                    **entity.as_row(),
                    **rep,
                    "source_hash": source_hash,
                    "attributes_hash": entity.attributes_hash(),
                }
            updated.append(entity_row)
            if before is None or before["attributes_hash"] != entity_row["attributes_hash"]:
                rescored.add(rep["entity_id"])
            else:
                grown.add(rep["entity_id"])
        dropped.append(gone)
    kept = without(previous, "entity_id", pa.concat_arrays(dropped)) if dropped else previous
    table = pa.concat_tables([kept, pa.Table.from_pylist(updated, schema=ENTITY_SCHEMA)])
    return EntityChanges(table, frozenset(rescored), frozenset(grown), frozenset(removed))


def _rows_in(table: pa.Table, column: str, values: pa.Array) -> list[dict[str, Any]]:
    """The rows whose ``column`` is one of ``values``, as Python values (only these few rows)."""
    return table.filter(pc.is_in(table[column], values)).to_pylist()


def _rows_by_record(table: pa.Table, record_ids: pa.Array) -> dict[str, dict[str, Any]]:
    return {row["record_id"]: row for row in _rows_in(table, "record_id", record_ids)}


def _first_valid_codes(changed: pa.Table, uscc_field: str) -> dict[str, str]:
    """Per entity, the first valid USCC among its changed records, in record order."""
    found: dict[str, str] = {}
    ordered = changed.select(["entity_id", "record_id", uscc_field]).sort_by("record_id").to_pylist()
    for row in ordered:
        if row["entity_id"] not in found and (code := _valid_uscc(row[uscc_field])):
            found[row["entity_id"]] = code
    return found


def empty_entities() -> pa.Table:
    return ENTITY_SCHEMA.empty_table()
