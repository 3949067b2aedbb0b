"""A unit's best contact: every phone its sources give, ranked by the reviewed source priority, and confirmed
where two independent sources give the same number.

A source (``schemas/contacts/sources.toml``) is a department's record of the unit (the entity's phone, by
feed) or a test record attached to the unit (its mapping's phone, by how the person is linked:
the legal representative's own record, an employee naming the work unit). Numbers are compared as tokens.
The register carries the chosen token, its masked form (``138****0006``), its source and grade and how many
numbers were offered; never a clear value. Masked forms come from the vault (persons' phones, read without
the vault key) or, for business phones, which stay clear in staging, from the record the entity speaks with.

Pure: tables in, tables out, SQL through the resolver's engine (``query``), so the register pass can compute
it for just the units it touches.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pipelines import resources
from pipelines.contacts.vault import mask
from pipelines.contracts import resolver_schema
from pipelines.mappings import mapping
from pipelines.pii import TOKEN_PREFIX, Tokeniser
from pipelines.standardise.phones import area_code_of, parse_phone

SOURCES_PATH = resources.CONTACT_SOURCES
CONTACT_COLUMNS = ("contact_token", "contact_masked", "contact_source", "contact_grade", "contact_candidates")
# Entity phones worth calling: a parsed mobile or landline, or a token from a personal field (a sender's
# mobile); an ``unknown`` number (too short, a typo) is no candidate.
PHONE_KINDS = ("mobile", "landline", "token")
CLEAR_KINDS = ("mobile", "landline")  # phones kept clear in staging: their masked form comes from the record

Query = Callable[..., pa.Table]  # ``Engine.query``: SQL over Arrow tables passed by name
MASK_SCHEMA = pa.schema([pa.field("token", pa.string()), pa.field("masked", pa.string())])
CANDIDATE_SCHEMA = pa.schema(
    [
        pa.field("unit_id", pa.string()),
        pa.field("token", pa.string()),
        pa.field("source", pa.string()),
        pa.field("origin", pa.string()),
        pa.field("priority", pa.int64()),
    ]
)


@dataclass(frozen=True)
class Source:
    """Where a candidate number comes from (one ``[[sources]]`` entry)."""

    name: str
    feed: str
    origin: str
    linked_by: tuple[str, ...] = ()  # test records: the person links' matched_by values


@dataclass(frozen=True)
class ContactSources:
    """The reviewed source priority (best first), the grade names, and whether agreement comes first."""

    sources: tuple[Source, ...]
    confirmed: str = "confirmed"
    single: str = "single"
    prefer_confirmed: bool = True

    def table(self) -> pa.Table:
        """One row per source and way of being linked: name, feed, linked_by (null for a department's
        record), origin, priority (0 = best)."""
        rows = [
            {"name": s.name, "feed": s.feed, "linked_by": how, "origin": s.origin, "priority": i}
            for i, s in enumerate(self.sources)
            for how in (s.linked_by or (None,))
        ]
        names = [(name, pa.string()) for name in ("name", "feed", "linked_by", "origin")]
        schema = pa.schema([*names, ("priority", pa.int64())])
        return pa.Table.from_pylist(rows, schema=schema)


def parse_sources(text: str) -> ContactSources:
    """The sources file's content; a source without name, feed or origin, or named twice, is refused."""
    raw = tomllib.loads(text)
    sources = []
    for entry in raw.get("sources", []):
        missing = [key for key in ("name", "feed", "origin") if not entry.get(key)]
        if missing:
            raise ValueError(f"a contact source lacks {', '.join(missing)}: {entry}")
        linked_by = tuple(entry.get("linked_by", ()))
        sources.append(Source(entry["name"], entry["feed"], entry["origin"], linked_by))
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"contact sources named twice: {sorted({n for n in names if names.count(n) > 1})}")
    grades = raw.get("grades", {})
    return ContactSources(
        tuple(sources),
        grades.get("confirmed", "confirmed"),
        grades.get("single", "single"),
        bool(raw.get("prefer_confirmed", True)),
    )


@cache
def load_sources(path: Path = SOURCES_PATH) -> ContactSources:
    return parse_sources(path.read_text(encoding="utf-8"))


def _literal(text: str) -> str:
    """A SQL string literal of a configured name (the engine takes tables, not parameters)."""
    return "'" + text.replace("'", "''") + "'"


# -- candidates ----------------------------------------------------------------------------------------


def person_phones(people: pa.Table) -> pa.Table:
    """record_id, token of the test records' phones: ``people`` carries the person feed's fields under their
    role names (``phone``: a token from import)."""
    found = people.select(["record_id", "phone"]).rename_columns(["record_id", "token"])
    found = found.cast(pa.schema([("record_id", pa.string()), ("token", pa.string())]))
    return found.filter(pc.fill_null(pc.starts_with(found["token"], TOKEN_PREFIX), False))


def candidates(
    query: Query,
    members: pa.Table,
    entities: pa.Table,
    person_links: pa.Table,
    people: pa.Table,
    person_feed: str,
    sources: ContactSources,
) -> pa.Table:
    """Every (unit, number, source) the units of ``members`` have (CANDIDATE_SCHEMA): their entities' phones
    from the feeds a source names, and the phones of the test records ``person_links`` attach to them, by
    how they are linked. Sources the file does not name give no candidate."""
    kinds = ", ".join(f"'{kind}'" for kind in PHONE_KINDS)
    found = query(
        f"""
        SELECT m.unit_id, e.phone AS token, s.name AS source, s.origin, s.priority
        FROM members m JOIN entities e USING (entity_id)
        JOIN sources s ON s.feed = e.feed AND s.linked_by IS NULL
        WHERE m.unit_id IS NOT NULL AND e.phone IS NOT NULL AND e.phone_kind IN ({kinds})
        UNION ALL
        SELECT l.unit_id, p.token, s.name, s.origin, s.priority
        FROM person_links l JOIN phones p USING (record_id)
        JOIN sources s ON s.feed = {_literal(person_feed)} AND s.linked_by = l.matched_by
        """,
        members=members.select(["entity_id", "unit_id"]),
        entities=entities.select(["entity_id", "feed", "phone", "phone_kind"]),
        person_links=person_links.select(["record_id", "unit_id", "matched_by"]),
        phones=person_phones(people),
        sources=sources.table(),
    )
    return found.cast(CANDIDATE_SCHEMA)


def best_contacts(query: Query, found: pa.Table, sources: ContactSources) -> pa.Table:
    """Per unit with a candidate: contact_token, contact_source (the best source giving it), contact_grade
    and contact_candidates (distinct numbers offered). A number is confirmed when sources of two origins give
    it; the best is the confirmed one first (``prefer_confirmed``), then the one of the best source, then the
    one most sources give, then the smallest token (so a run decides as the last did)."""
    confirmed_first = "(origins >= 2) DESC," if sources.prefer_confirmed else ""
    confirmed, single = _literal(sources.confirmed), _literal(sources.single)
    return query(
        f"""
        WITH per_number AS (
            SELECT unit_id, token, min(priority) AS priority, arg_min(source, priority) AS source,
                   count(DISTINCT origin) AS origins, count(*) AS given
            FROM found GROUP BY unit_id, token
        ),
        ranked AS (
            SELECT *, row_number() OVER (
                       PARTITION BY unit_id ORDER BY {confirmed_first} priority, given DESC, token) AS n,
                   count(*) OVER (PARTITION BY unit_id) AS numbers
            FROM per_number
        )
        SELECT unit_id, token AS contact_token, source AS contact_source,
               CASE WHEN origins >= 2 THEN {confirmed} ELSE {single} END AS contact_grade,
               numbers AS contact_candidates
        FROM ranked WHERE n = 1 ORDER BY unit_id
        """,
        found=found,
    )


# -- masked forms --------------------------------------------------------------------------------------


def vault_masks(vault: pa.Table) -> pa.Table:
    """token, masked of the vault's phones (its token, kind and masked columns: no key needed)."""
    phones = vault.filter(pc.equal(vault["kind"], "phone")).select(["token", "masked"])
    return phones.group_by("token").aggregate([("masked", "min")]).rename_columns(["token", "masked"])


def empty_masks() -> pa.Table:
    return MASK_SCHEMA.empty_table()


@lru_cache(maxsize=100_000)
def _masked_if(value: str, area: str | None, token: str, tokens: Tokeniser) -> str | None:
    """The masked form of a phone as written, if it is the number ``token`` stands for."""
    phone = parse_phone(value, area)
    if phone is None or tokens.token("phone", phone.number) != token:
        return None
    return mask("phone", phone.number)


def business_masks(
    query: Query,
    tokens_wanted: pa.Array,
    members: pa.Table,
    entities: pa.Table,
    records: dict[str, pa.Table],
    tokens: Tokeniser,
) -> pa.Table:
    """token, masked of the wanted tokens that are business phones (clear in staging): read from the record
    each member entity giving the number speaks with, one per token. One parse per such number."""
    kinds = ", ".join(f"'{kind}'" for kind in CLEAR_KINDS)
    speaking = query(
        f"""
        SELECT phone AS token, arg_min(feed, entity_id) AS feed,
               arg_min(rep_record_id, entity_id) AS record_id, arg_min(district_code, entity_id) AS district
        FROM entities
        WHERE phone IN (SELECT token FROM wanted) AND phone_kind IN ({kinds})
          AND entity_id IN (SELECT entity_id FROM members WHERE unit_id IS NOT NULL)
        GROUP BY phone
        """,
        entities=entities.select(
            ["entity_id", "feed", "phone", "phone_kind", "rep_record_id", "district_code"]
        ),
        wanted=pa.table({"token": pa.array(tokens_wanted, pa.string())}),
        members=members.select(["entity_id", "unit_id"]),
    )
    masks = []
    for feed in pc.unique(speaking["feed"]).to_pylist():
        field = mapping(feed).field("phone")  # the field the entity's phone was read from
        written = query(
            f"SELECT m.token, m.district, r.{field} AS written FROM mine m JOIN recs r USING (record_id)",
            mine=speaking.filter(pc.equal(speaking["feed"], feed)),
            recs=records[feed].select(["record_id", field]),
        )
        masks += _masks_of(written.to_pylist(), tokens)
    return pa.Table.from_pylist(masks, schema=MASK_SCHEMA)


def _masks_of(rows: Iterable[dict], tokens: Tokeniser) -> list[dict[str, str]]:
    """Each row's phone as written, masked, where it is the token's number."""
    found = []
    for row in rows:
        masked = row["written"] and _masked_if(
            row["written"], area_code_of(row["district"]), row["token"], tokens
        )
        if masked:
            found.append({"token": row["token"], "masked": masked})
    return found


# -- the register's columns ----------------------------------------------------------------------------


def with_best_contacts(
    query: Query,
    rows: pa.Table,
    members: pa.Table,
    entities: pa.Table,
    records: dict[str, pa.Table],
    person_links: pa.Table,
    people: pa.Table,
    person_feed: str,
    masks: pa.Table,
    tokens: Tokeniser,
    sources: ContactSources | None = None,
) -> pa.Table:
    """Register ``rows`` with their units' best contact (``CONTACT_COLUMNS``), in the register's schema.
    ``members`` and ``person_links``: those of the rows' units; ``people``: the person feed's records under
    their role names; ``masks``: token, masked from the vault."""
    sources = sources or load_sources()
    found = candidates(query, members, entities, person_links, people, person_feed, sources)
    best = best_contacts(query, found, sources)
    sealed = masks["token"].combine_chunks()
    unmasked = pc.filter(best["contact_token"], pc.invert(pc.is_in(best["contact_token"], sealed)))
    known = pa.concat_tables(
        [masks.select(["token", "masked"]).cast(MASK_SCHEMA),
         business_masks(query, unmasked, members, entities, records, tokens)]
    )  # fmt: skip
    schema = resolver_schema("register")
    joined = query(
        """
        SELECT r.* EXCLUDE (run_id), b.contact_token, k.masked AS contact_masked, b.contact_source,
               b.contact_grade, coalesce(b.contact_candidates, 0) AS contact_candidates, r.run_id
        FROM rows r LEFT JOIN best b USING (unit_id)
        LEFT JOIN (SELECT token, min(masked) AS masked FROM known GROUP BY token) k
            ON k.token = b.contact_token
        ORDER BY r.unit_id
        """,
        rows=rows,
        best=best,
        known=known,
    )
    return joined.select(schema.names).cast(schema)


def stale_units(register: pa.Table, person_links: pa.Table, changed_people: pa.Array) -> set[str]:
    """Units whose best contact must be computed again besides those whose records or links changed: those a
    changed test record is attached to (its phone may be new), and rows of a register from before contacts
    were kept (``contact_candidates`` null)."""
    linked = person_links.filter(pc.is_in(person_links["record_id"], changed_people))["unit_id"]
    unknown = (
        register.filter(pc.is_null(register["contact_candidates"]))["unit_id"]
        if "contact_candidates" in register.column_names
        else register["unit_id"]
    )
    return set(linked.to_pylist()) | set(unknown.to_pylist())
