"""Department vocabularies, read from reviewed data files in ``schemas/vocabularies/``: the national industry
classification (GB/T 4754-2017), registration and taxpayer statuses, entity types and electricity customer
classes.

Departments spell the same thing many ways (F5199 / 5199 / ５１９９; 吊销，未注销 / 吊销未注销; （） / ()).
The spellings live in data people can review and extend; the code only folds text and looks it up. A value
that matches nothing is never guessed at: it comes out as unknown and ``unknown_values`` counts it, so the
file can be extended. Lookups run once per distinct value and are then taken back to the rows, because a
city's feeds repeat a few hundred values millions of times.
"""

from __future__ import annotations

import csv
import re
import tomllib
import unicodedata
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import cache, lru_cache

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.resources import VOCABULARIES
from pipelines.standardise.text import fold

UNKNOWN = "unknown"
LEVELS = ("section", "division", "group", "class")
OTHER_KIND = "other"
VOCABULARY_NAMES = ("industry", "registration", "taxpayer", "entity_type", "customer_class")
HOUSEHOLD = "household"  # the customer kind of a household account: a person's, not a unit's

# A section letter, then a division (2 digits), group (3) or class (4); either part may be missing.
_INDUSTRY_CODE_RE = re.compile(r"([A-Z]?)([0-9]{2,4})?")
_SPACES_RE = re.compile(r"\s+")
# A voltage level in a tariff name, after punctuation is gone: 不满1千伏, 110千伏 (from 1-10千伏), 35KV及以上.
_VOLTAGE_RE = re.compile(r"(?:不满|低于|小于|高于)?[0-9]+(?:千伏|KV|伏|V)(?:及以上|以上|及以下|以下)?")
_STATUS_DIMENSION = pa.schema(
    [
        ("vocabulary", pa.string()),
        ("code", pa.string()),
        ("label", pa.string()),
        ("source_values", pa.list_(pa.string())),
    ]
)
_INDUSTRY_DIMENSION = pa.schema(
    [
        (name, pa.string())
        for name in ("code", "level", "name", "parent_code", "section", "section_name", "division",
                     "division_name", "group", "group_name")
    ]
)  # fmt: skip


@dataclass(frozen=True)
class IndustryPath:
    """One code of the classification with the codes and names above it (None where the level is higher)."""

    code: str  # as in industries.csv: the section letter, or 2-4 digits without the letter
    level: str  # section / division / group / class
    name: str
    section: str
    section_name: str
    division: str | None
    division_name: str | None
    group: str | None
    group_name: str | None


# ---------------------------------------------------------------- industries


@cache
def _industry_rows() -> dict[str, dict[str, str]]:
    with open(VOCABULARIES / "industries.csv", encoding="utf-8", newline="") as file:
        return {row["code"]: row for row in csv.DictReader(file)}


@cache
def _industry_paths() -> dict[str, IndustryPath]:
    """Every code with the codes and names above it, each built from its parent's (the csv lists parents
    first)."""
    paths: dict[str, IndustryPath] = {}
    for code, row in _industry_rows().items():
        level, name, parent_code = row["level"], row["name"], row["parent_code"]
        if level == "section":
            paths[code] = IndustryPath(code, level, name, code, name, None, None, None, None)
            continue
        if parent_code not in paths:
            raise ValueError(f"industries.csv: {code} comes before its parent {parent_code!r}")
        own = {level: code, f"{level}_name": name} if level in ("division", "group") else {}
        paths[code] = replace(paths[parent_code], code=code, level=level, name=name, **own)
    return paths


def _industry_key(text: str) -> str:
    """Full-width → half-width, no spaces, upper case: ' f ５１９９' → 'F5199'."""
    return _SPACES_RE.sub("", unicodedata.normalize("NFKC", text)).upper()


def industry_path(code: str | None) -> IndustryPath | None:
    """The classification entry of a code written with or without its section letter ('F5199', '5199',
    'f 5199', '519', 'F51', 'F'). None when unknown, or when the letter is not the division's section."""
    if code is None:
        return None
    match = _INDUSTRY_CODE_RE.fullmatch(_industry_key(code))
    if match is None:
        return None
    letter, digits = match.groups()
    path = _industry_paths().get(digits or letter)
    if path is None or (letter and path.section != letter):
        return None
    return path


def industry_dimension() -> pa.Table:
    """The classification as a BI dimension: one row per code, with its section, division and group."""
    rows = _industry_rows()
    records = [
        {**asdict(path), "parent_code": rows[code]["parent_code"] or None}
        for code, path in _industry_paths().items()
    ]
    return pa.Table.from_pylist(records, schema=_INDUSTRY_DIMENSION)


def normalise_industries(codes: pa.Array | pa.ChunkedArray) -> pa.Table:
    """Industry columns for each row's code. A blank or null code gives nulls throughout (industry_known
    null: nothing was stated); a code the classification lacks gives industry_known false."""
    distinct, indices = _distinct(codes)
    paths = [industry_path(text) for text in distinct]
    known = [
        None if not _industry_key(text) else path is not None
        for text, path in zip(distinct, paths, strict=True)
    ]

    def column(field: str) -> pa.Array:
        return pa.array([getattr(path, field) if path else None for path in paths], pa.string()).take(indices)

    return pa.table(
        {
            "industry_code": column("code"),
            "industry_level": column("level"),
            "industry_name": column("name"),
            "industry_section": column("section"),
            "industry_section_name": column("section_name"),
            "industry_division": column("division"),
            "industry_division_name": column("division_name"),
            "industry_known": pa.array(known, pa.bool_()).take(indices),
        }
    )


# ---------------------------------------------------------------- statuses


def _status_key(text: str) -> str:
    """fold() (width, script, spaces) and no punctuation: '吊销，未注销' and '吊销 未注销' are one key."""
    return "".join(char for char in fold(text) if not unicodedata.category(char).startswith(("P", "S", "Z")))


@cache
def _status_file() -> dict:
    with open(VOCABULARIES / "statuses.toml", "rb") as file:
        return tomllib.load(file)


@cache
def _status_lookup() -> dict[str, dict[str, tuple[str, str]]]:
    """Vocabulary → folded source value → (code, label). Refuses a file where two codes share a key."""
    lookup: dict[str, dict[str, tuple[str, str]]] = {}
    for vocabulary, codes in _status_file().items():
        if not isinstance(codes, dict):
            continue
        keys = lookup.setdefault(vocabulary, {})
        for code, entry in codes.items():
            for value in entry["values"]:
                key = _status_key(value)
                if keys.get(key, (code,))[0] != code:
                    raise ValueError(
                        f"statuses.toml: {vocabulary} {value!r} is both {keys[key][0]} and {code}"
                    )
                keys[key] = (code, entry["label"])
    return lookup


def _status_vocabulary(vocabulary: str) -> dict[str, tuple[str, str]]:
    lookup = _status_lookup()
    if vocabulary not in lookup:
        raise ValueError(f"no status vocabulary {vocabulary!r}; there are {sorted(lookup)}")
    return lookup[vocabulary]


def _status_of(vocabulary: dict[str, tuple[str, str]], text: str) -> tuple[str, str] | None:
    """(code, label); None for a blank value; the unknown code for a value the file does not list."""
    key = _status_key(text)
    if not key:
        return None
    return vocabulary.get(key, (UNKNOWN, _status_file()["unknown_label"]))


def normalise_statuses(vocabulary: str, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    """Status code and Chinese label per row, for the "registration" or "taxpayer" vocabulary."""
    lookup = _status_vocabulary(vocabulary)
    distinct, indices = _distinct(values)
    found = [_status_of(lookup, text) for text in distinct]
    return pa.table(
        {
            "status": pa.array([pair and pair[0] for pair in found], pa.string()).take(indices),
            "status_label": pa.array([pair and pair[1] for pair in found], pa.string()).take(indices),
        }
    )


def _status_row(vocabulary: str, code: str, label: str, source_values: list[str]) -> dict:
    return {"vocabulary": vocabulary, "code": code, "label": label, "source_values": list(source_values)}


def status_dimension() -> pa.Table:
    """Every status code per vocabulary with its label and the source spellings it gathers (plus the
    unknown code, so that BI joins find every status a mart holds)."""
    rows = []
    for vocabulary, codes in _status_file().items():
        if not isinstance(codes, dict):
            continue
        _status_vocabulary(vocabulary)  # the file is checked before anyone reads it
        rows += [
            _status_row(vocabulary, code, entry["label"], entry["values"]) for code, entry in codes.items()
        ]
        rows.append(_status_row(vocabulary, UNKNOWN, _status_file()["unknown_label"], []))
    return pa.Table.from_pylist(rows, schema=_STATUS_DIMENSION)


# ---------------------------------------------------------------- entity types


@cache
def _entity_rules() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(kind, folded words) in the file's order; refuses kinds the file does not declare."""
    with open(VOCABULARIES / "entity_types.toml", "rb") as file:
        document = tomllib.load(file)
    rules = []
    for rule in document["rules"]:
        if rule["kind"] not in document["kinds"]:
            raise ValueError(f"entity_types.toml: kind {rule['kind']!r} is not among {document['kinds']}")
        rules.append((rule["kind"], tuple(fold(word) for word in rule["contains"])))
    return tuple(rules)


def entity_type_text(text: str) -> str:
    """The type as shown: full-width → half-width ('（）' → '()'), no whitespace. Repeated until nothing
    changes, because removing a space can leave two characters that NFKC combines."""
    while (tidied := _SPACES_RE.sub("", unicodedata.normalize("NFKC", text))) != text:
        text = tidied
    return text


def _entity_kind(text: str) -> str | None:
    """The first rule's kind whose word the type contains; None when no rule matches."""
    folded = fold(text)
    return next((kind for kind, words in _entity_rules() if any(word in folded for word in words)), None)


def normalise_entity_types(values: pa.Array | pa.ChunkedArray) -> pa.Table:
    """Tidied entity type text and its coarse kind ("other" when no rule matches; blank → null)."""
    distinct, indices = _distinct(values)
    texts = [entity_type_text(text) or None for text in distinct]
    kinds = [text and (_entity_kind(text) or OTHER_KIND) for text in texts]
    return pa.table(
        {
            "entity_type": pa.array(texts, pa.string()).take(indices),
            "entity_kind": pa.array(kinds, pa.string()).take(indices),
        }
    )


# ---------------------------------------------------------------- electricity customer classes


def _customer_class_key(text: str) -> str:
    """The status key without a voltage level: '工商业用电（不满1千伏）' → '工商业用电'. A voltage
    alone stays: it states something, just no class."""
    key = _status_key(text)
    return _VOLTAGE_RE.sub("", key) or key


@cache
def _customer_class_file() -> dict:
    with open(VOCABULARIES / "customer_classes.toml", "rb") as file:
        return tomllib.load(file)


@cache
def _customer_class_lookup() -> dict[str, str]:
    """Folded spelling → customer kind. Refuses undeclared kinds and a spelling under two kinds."""
    document = _customer_class_file()
    lookup: dict[str, str] = {}
    for kind, entry in document.items():
        if not isinstance(entry, dict):
            continue
        if kind not in document["kinds"]:
            raise ValueError(f"customer_classes.toml: kind {kind!r} is not among {document['kinds']}")
        for value in entry["values"]:
            key = _customer_class_key(value)
            if lookup.get(key, kind) != kind:
                raise ValueError(f"customer_classes.toml: {value!r} is both {lookup[key]} and {kind}")
            lookup[key] = kind
    return lookup


@lru_cache(maxsize=4096)  # the resolver asks per account; a city's power company has a few dozen classes
def customer_kind(text: str | None) -> str | None:
    """business / household / agriculture for a tariff class name, "unknown" for one the file does not list,
    None when nothing is stated."""
    key = _customer_class_key(text or "")
    if not key:
        return None
    return _customer_class_lookup().get(key, UNKNOWN)


def customer_class_spellings() -> dict[str, list[str]]:
    """Kind → the spellings the file lists for it, in the file's order (the expectation's value set)."""
    _customer_class_lookup()  # the file is checked before anyone reads it
    return {
        kind: list(entry["values"])
        for kind, entry in _customer_class_file().items()
        if isinstance(entry, dict)
    }


def normalise_customer_classes(values: pa.Array | pa.ChunkedArray) -> pa.Table:
    """The customer kind per row (business / household / agriculture / unknown; blank → null) and its
    Chinese label."""
    document = _customer_class_file()
    distinct, indices = _distinct(values)
    kinds = [customer_kind(text) for text in distinct]
    names = [
        kind and (document[kind]["label"] if kind != UNKNOWN else document["unknown_label"]) for kind in kinds
    ]
    return pa.table(
        {
            "customer_kind": pa.array(kinds, pa.string()).take(indices),
            "customer_kind_label": pa.array(names, pa.string()).take(indices),
        }
    )


# ---------------------------------------------------------------- unknown values


def _unmatched(vocabulary: str) -> Callable[[str], bool]:
    """Whether a source value states something that the vocabulary cannot read."""
    if vocabulary == "industry":
        return lambda text: bool(_industry_key(text)) and industry_path(text) is None
    if vocabulary == "entity_type":
        return lambda text: bool(tidied := entity_type_text(text)) and _entity_kind(tidied) is None
    if vocabulary in ("registration", "taxpayer"):
        lookup = _status_vocabulary(vocabulary)
        return lambda text: (_status_of(lookup, text) or ("",))[0] == UNKNOWN
    if vocabulary == "customer_class":
        return lambda text: customer_kind(text) == UNKNOWN
    raise ValueError(f"no vocabulary {vocabulary!r}; there are {VOCABULARY_NAMES}")


def unknown_values(vocabulary: str, values: pa.Array | pa.ChunkedArray) -> dict[str, int]:
    """The non-null source values that map to nothing, with how many rows carry each (most first): what to
    add to the vocabulary file next."""
    unmatched = _unmatched(vocabulary)
    counts = pc.value_counts(_as_strings(values)).to_pylist()
    found = [(row["values"], row["counts"]) for row in counts if row["values"] is not None]
    return dict(
        sorted(((text, count) for text, count in found if unmatched(text)), key=lambda item: -item[1])
    )


# ---------------------------------------------------------------- helpers


def _as_strings(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values if values.type == pa.string() else values.cast(pa.string())


def _distinct(values: pa.Array | pa.ChunkedArray) -> tuple[list[str], pa.Array]:
    """The distinct non-null values and, per row, the index of its value (null for a null row): look each
    value up once, then take the answers back to the rows."""
    encoded = pc.dictionary_encode(_as_strings(values))
    return encoded.dictionary.to_pylist(), encoded.indices


@cache
def labels(kind: str) -> dict[str, str]:
    """The Chinese labels of one kind of code (``labels.toml``: rules, severities, review_reasons,
    decisions, matched_by, flags, lineage_events, lockon_lists), in the file's order."""
    table = tomllib.loads((VOCABULARIES / "labels.toml").read_text(encoding="utf-8"))
    if kind not in table:
        raise KeyError(f"labels.toml has no [{kind}]; it has {sorted(table)}")
    return dict(table[kind])
