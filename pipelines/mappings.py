"""Feed mappings: which of a feed's fields plays which role the pass knows.

A department's feed is configuration: its contract (``schemas/feeds/``) says what its fields are, its mapping
(``schemas/mappings/<feed>.toml``) says what they mean to the pass (unit name, address, phone, codes, the
person, period figures, activity), and its suite (``expectations/``) what good data looks like. Resolution,
warnings, the register, the marts and the pages ask the mapping for a role's field and never name a feed's
fields. Roles and options are explained in ``schemas/mappings/README.md``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from pipelines import resources
from pipelines.contracts import load_contracts

UNIT, PERSON = "unit", "person"  # records describing a business; persons naming where they work

# The roles the pass reads to compare records, in the order their values are hashed (an entity whose
# fields in these roles read the same needs no new standardisation).
IDENTITY_ROLES = (
    "uscc",  # a unified social credit code as written
    "taxpayer_id",  # a USCC or a legacy taxpayer number (6-digit division + organisation code)
    "name",  # the business's name
    "person_name",  # a person's name that names the record when it has no business name
    "address",
    "phone",
    "legal_rep_name",  # the operator or legal representative
    "legal_rep_id",  # the operator's ID-number token
    "entity_type",
    "division_code",  # a division code the department filed the record under
    "reg_no",  # a registration number (注册号)
    "office",  # an office whose name says the region (主管税务机关)
    "customer_class",  # a tariff class (read through the reviewed customer-class vocabulary)
)
# Roles the register, the warnings and the pages read.
FACT_ROLES = (
    "moment",  # when the record was true (update time, shipping time, sampling time)
    "period",  # the YYYY-MM its figures are for
    "meter",  # a meter number: 一户多表
    "industry_code",
    "status",  # a registration status (存续, 吊销, 注销 …)
    "abnormal_since",  # listed as abnormal (经营异常) since
    "established_on",
    "taxpayer_status",
)
PERSON_ROLES = ("person_id", "work_unit", "site")  # a person's ID-number token, employer as named, test site
ROLES = frozenset(IDENTITY_ROLES + FACT_ROLES + PERSON_ROLES)

KEY_RULES = ("as_is", "first_else_record", "code_else_text", "digest", "all_else_record")
PERSON_NAMED = ("any", "two_characters")


class MappingError(ValueError):
    """A mapping that names an unknown role, option or field: refused at load, before any record is read."""


@dataclass(frozen=True)
class EntityRule:
    """Which records of a unit feed are one entity, and how to read them."""

    key: tuple[str | tuple[str, ...], ...]  # the department's own key; a tuple inside: the first non-empty
    key_rule: str  # how the key's fields make the entity's key (schemas/mappings/README.md)
    time: str  # the newest (by this field) of the most complete records speaks for the entity
    code_from_any_record: bool = False  # a valid USCC on any record belongs to the entity
    person_named: str | None = None  # a business name that is a person's compares as that person
    household_class: str | None = None  # this field's household class (and no USCC): a person's record
    person_without_name: bool = False  # no business name: a private person
    joins_at_premises: bool = False  # in a person's name at exactly one registered unit's site: that unit's
    private_at_shopfront: bool = False  # a private person's at one registered unit's shopfront: that unit's
    namesakes_apart: bool = False  # two of its entities sharing only a name are not linked (online shops)
    alone_needs_volume: str | None = None  # seen only here, a unit only with steady volume of this figure

    @property
    def key_fields(self) -> tuple[str, ...]:
        return tuple(f for part in self.key for f in ((part,) if isinstance(part, str) else part))


@dataclass(frozen=True)
class Figure:
    """How a period figure is named and whether it makes its unit active in a month (``unit_month``)."""

    label: str  # how pages and lock-on reasons name it
    active: str | None = None  # the activity flag it sets (``power_active``) …
    above: float = 0.0  # … in a month its sum is above this


@dataclass(frozen=True)
class FeedMapping:
    feed: str
    title: str  # the department, as reports and pages name it
    kind: str  # UNIT or PERSON
    roles: dict[str, str]  # role -> field
    figures: dict[str, str] = field(default_factory=dict)  # figure -> field: period figures the register sums
    figure_info: dict[str, Figure] = field(default_factory=dict)  # figure -> its label and activity flag
    profile: tuple[tuple[str, str], ...] = ()  # (field, label) shown on a unit's page
    anchor: bool = False  # its entity speaks for its unit (a registration)
    ask_when_unregistered: bool = False  # its records in a unit with no registration go to the townships
    online: bool = False  # its records are signs of selling online (the e-commerce flag counts them)
    entity: EntityRule | None = None  # unit feeds only

    def field(self, role: str) -> str | None:
        return self.roles.get(role)

    @property
    def identity_fields(self) -> tuple[str, ...]:
        """The fields standardisation reads, in ``IDENTITY_ROLES`` order."""
        return tuple(self.roles[role] for role in IDENTITY_ROLES if role in self.roles)


def _refuse(path: Path, message: str) -> MappingError:
    return MappingError(f"{path}: {message}")


def _entity_rule(path: Path, raw: dict) -> EntityRule:
    known = {f for f in EntityRule.__dataclass_fields__}
    if unknown := sorted(set(raw) - known):
        raise _refuse(path, f"unknown [entity] option(s) {unknown}; known: {sorted(known)}")
    if raw.get("key_rule") not in KEY_RULES:
        raise _refuse(path, f"[entity] key_rule must be one of {KEY_RULES}, not {raw.get('key_rule')!r}")
    if raw.get("person_named") not in (None, *PERSON_NAMED):
        raise _refuse(path, f"[entity] person_named must be one of {PERSON_NAMED}")
    key = tuple(part if isinstance(part, str) else tuple(part) for part in raw["key"])
    return EntityRule(**{**raw, "key": key})


def _figure(path: Path, name: str, spec: str | dict) -> tuple[str, Figure]:
    """A ``[figures]`` entry: ``name = "field"`` or ``name = { field, label, active, above }``."""
    if isinstance(spec, str):
        return spec, Figure(label=name)
    if unknown := sorted(set(spec) - {"field", "label", "active", "above"}):
        raise _refuse(path, f"figure {name!r} has unknown key(s) {unknown}")
    return spec["field"], Figure(spec.get("label", name), spec.get("active"), float(spec.get("above", 0.0)))


def parse_mapping(
    feed: str, text: str, fields: frozenset[str], path: Path = Path("<mapping>")
) -> FeedMapping:
    """A feed's mapping, checked against its contract's ``fields``."""
    raw = tomllib.loads(text)
    known = {
        "title",
        "kind",
        "anchor",
        "ask_when_unregistered",
        "online",
        "entity",
        "roles",
        "figures",
        "profile",
    }
    if unknown := sorted(set(raw) - known):
        raise _refuse(path, f"unknown key(s) {unknown}; known: {sorted(known)}")
    kind = raw.get("kind")
    if kind not in (UNIT, PERSON):
        raise _refuse(path, f"kind must be {UNIT!r} or {PERSON!r}, not {kind!r}")
    roles = dict(raw.get("roles", {}))
    if unknown := sorted(set(roles) - ROLES):
        raise _refuse(path, f"unknown role(s) {unknown}; known: {sorted(ROLES)}")
    entity = None
    if kind == UNIT:
        if "entity" not in raw:
            raise _refuse(path, "a unit feed needs an [entity] table (its key and time)")
        entity = _entity_rule(path, raw["entity"])
    figures = {name: _figure(path, name, spec) for name, spec in raw.get("figures", {}).items()}
    mapping = FeedMapping(
        feed=feed,
        title=raw.get("title", feed),
        kind=kind,
        roles=roles,
        figures={name: found for name, (found, _) in figures.items()},
        figure_info={name: info for name, (_, info) in figures.items()},
        profile=tuple(raw.get("profile", {}).items()),
        anchor=bool(raw.get("anchor", False)),
        ask_when_unregistered=bool(raw.get("ask_when_unregistered", False)),
        online=bool(raw.get("online", False)),
        entity=entity,
    )
    named = [*roles.values(), *mapping.figures.values(), *(f for f, _ in mapping.profile)]
    if entity:
        named += [*entity.key_fields, entity.time, *filter(None, [entity.household_class])]
    if missing := sorted(set(named) - fields):
        raise _refuse(path, f"field(s) {missing} are not in the {feed} contract")
    return mapping


@cache
def load_mappings(directory: Path = resources.FEED_MAPPINGS) -> dict[str, FeedMapping]:
    """Every feed's mapping, in the contracts' order; a feed without one is refused."""
    contracts = load_contracts()
    found = {}
    for feed, contract in contracts.items():
        path = directory / f"{feed}.toml"
        if not path.is_file():
            raise MappingError(f"feed {feed!r} has a contract but no mapping: add {path}")
        found[feed] = parse_mapping(
            feed, path.read_text(encoding="utf-8"), frozenset(contract.field_names), path
        )
    return found


def mapping(feed: str) -> FeedMapping:
    return load_mappings()[feed]


def unit_feeds() -> tuple[str, ...]:
    """Feeds whose records describe businesses (they become entities and units)."""
    return tuple(f for f, m in load_mappings().items() if m.kind == UNIT)


def person_feeds() -> tuple[str, ...]:
    """Feeds of persons naming where they work (attached to units, never units themselves)."""
    return tuple(f for f, m in load_mappings().items() if m.kind == PERSON)


def anchor_feeds() -> tuple[str, ...]:
    return tuple(f for f, m in load_mappings().items() if m.anchor)


def feeds_where(option: str) -> tuple[str, ...]:
    """Unit feeds whose mapping sets this option (of the feed, or of its [entity] table)."""
    return tuple(
        f
        for f, m in load_mappings().items()
        if getattr(m, option, False) or (m.entity is not None and getattr(m.entity, option, False))
    )


def volume_feeds() -> dict[str, str]:
    """Unit feeds whose clusters, seen nowhere else, are units only with steady volume: feed -> figure."""
    return {
        f: m.entity.alone_needs_volume
        for f, m in load_mappings().items()
        if m.entity is not None and m.entity.alone_needs_volume
    }


def feeds_with(role: str) -> tuple[str, ...]:
    """Feeds that have a field in this role or figure."""
    return tuple(f for f, m in load_mappings().items() if role in m.roles or role in m.figures)


def sql_list(feeds: tuple[str, ...] | list[str]) -> str:
    """Feed names as a SQL list (``('tax', 'utility')``), for ``feed IN …``; an empty list matches nothing."""
    return "(" + ", ".join(f"'{feed}'" for feed in feeds or ("",)) + ")"
