"""Feed contracts: the one place where feed fields and their types are defined.

Each feed has a JSON file in ``schemas/feeds/``. Parsing, the staging Parquet schema, the quarantine check and
the docs all derive from it. A field may carry a ``kind`` (what the value means: ``uscc``, ``id_number``,
``phone``, ``person_name``, ``taxpayer_id``, or ``code`` for other identifiers kept as written) and
``personal: true`` (replaced by a keyed token at import). String fields without a kind are free text: import
scrubs ID numbers and mobiles typed into them (``pipelines.pii``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc

from pipelines import resources

# Months and days as the departments and townships count them (China Standard Time, no daylight saving).
CHINA_TIME_ZONE = "Asia/Shanghai"
CHINA = ZoneInfo(CHINA_TIME_ZONE)

SCHEMAS_DIR = resources.FEED_CONTRACTS

FIELD_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "number": pa.float64(),
    "integer": pa.int64(),
    "period": pa.string(),
}

# Kinds whose validity is checked (and recorded as ``<name>_valid``) before the value may be tokenised.
CHECKED_KINDS = frozenset({"uscc", "id_number", "taxpayer_id"})

# Columns every staged row carries besides its contract fields: where it came from and what was extra.
STAGING_META_FIELDS: tuple[pa.Field, ...] = (
    pa.field("_topic", pa.string(), nullable=False),
    pa.field("_partition", pa.int32(), nullable=False),
    pa.field("_offset", pa.int64(), nullable=False),
    pa.field("_kafka_timestamp", pa.timestamp("ms", tz="UTC")),
    pa.field("_run_id", pa.string(), nullable=False),
    pa.field("_extra", pa.string()),
)

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("feed", pa.string(), nullable=False),
        pa.field("topic", pa.string(), nullable=False),
        pa.field("partition", pa.int32(), nullable=False),
        pa.field("offset", pa.int64(), nullable=False),
        pa.field("kafka_timestamp", pa.timestamp("ms", tz="UTC")),
        pa.field("key", pa.binary()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string(), nullable=False),
        pa.field("raw_payload", pa.binary(), nullable=False),
        pa.field("payload_bytes", pa.int64(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
    ]
)


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str
    doc: str = ""
    kind: str | None = None
    personal: bool = False
    required: bool = False
    max_length: int | None = None

    @property
    def arrow_type(self) -> pa.DataType:
        return FIELD_TYPES[self.type]

    @property
    def validity_column(self) -> str | None:
        return f"{self.name}_valid" if self.kind in CHECKED_KINDS else None


@dataclass(frozen=True)
class FeedContract:
    feed: str
    title: str
    topic: str
    key_field: str
    max_message_bytes: int
    fields: tuple[FieldSpec, ...] = field(default_factory=tuple)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field_spec(self, name: str) -> FieldSpec:
        return next(f for f in self.fields if f.name == name)

    @property
    def department(self) -> str:
        """The Chinese name in the title's brackets (``Tax filings (税务)`` → ``税务``), for staff-facing
        files; the feed name when the title has none."""
        found = re.search(r"[(（]([^()（）]+)[)）]", self.title)
        return found.group(1) if found else self.feed

    @property
    def personal_fields(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if f.personal)

    @property
    def period_field(self) -> str:
        """The field that says which month a record is about: the ``period`` field, else the first timestamp
        (a registration's last change, a waybill's shipping time)."""
        return next((f.name for f in self.fields if f.type == "period"), None) or next(
            f.name for f in self.fields if f.type == "timestamp"
        )

    def record_periods(self, table: pa.Table) -> pa.Array:
        """The month (``YYYY-MM``, China time for timestamps) each staged record in ``table`` is about."""
        column = table[self.period_field]
        if pa.types.is_timestamp(column.type):
            column = pc.strftime(column.cast(pa.timestamp("us", tz=CHINA_TIME_ZONE)), format="%Y-%m")
        return column

    def staging_schema(self) -> pa.Schema:
        """Typed staging schema: contract fields, validity flags of checked codes, then Kafka metadata."""
        columns = [pa.field(f.name, f.arrow_type, nullable=not f.required) for f in self.fields]
        columns += [pa.field(f.validity_column, pa.bool_()) for f in self.fields if f.validity_column]
        return pa.schema(columns + list(STAGING_META_FIELDS))


def _load(path: Path) -> FeedContract:
    raw = json.loads(path.read_text(encoding="utf-8"))
    fields = tuple(FieldSpec(**spec) for spec in raw.pop("fields"))
    for spec in fields:
        if spec.type not in FIELD_TYPES:
            raise ValueError(f"{path.name}: field {spec.name!r} has unknown type {spec.type!r}")
    return FeedContract(fields=fields, **raw)


@cache
def load_contracts(schemas_dir: Path = SCHEMAS_DIR) -> dict[str, FeedContract]:
    """All feed contracts by feed name, in a stable order."""
    contracts = [_load(p) for p in sorted(schemas_dir.glob("*.json")) if not p.name.startswith("_")]
    return {c.feed: c for c in contracts}


def feed_names() -> tuple[str, ...]:
    return tuple(load_contracts())


def contract(feed: str) -> FeedContract:
    try:
        return load_contracts()[feed]
    except KeyError:
        raise KeyError(f"unknown feed {feed!r}; known feeds: {', '.join(load_contracts())}") from None


# -- Output tables and the verdict file: documented in schemas/outputs/ and schemas/verdict.json ----------

_TABLE_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "list<string>": pa.list_(pa.string()),
    "list<float64>": pa.list_(pa.float64()),
}


def expand_per(
    fields: list[dict[str, Any]], members: Mapping[str, Iterable[str]]
) -> list[tuple[str, dict[str, Any]]]:
    """(name, field) of a schema file's documented fields. A field marked ``"per": KIND`` is a template
    (``{feed}_records``) standing for every member of that kind (``members``: each feed contract, figure,
    activity flag) not documented by name, so a new department's feed needs no schema edit."""
    named = {f["name"] for f in fields if "per" not in f}
    expanded = []
    for f in fields:
        kind = f.get("per")
        names = [f["name"]] if kind is None else [f["name"].format(**{kind: m}) for m in members[kind]]
        expanded += [(name, f) for name in names if kind is None or name not in named]
    return expanded


def _table_schema(path: Path, resolved_only: bool = False) -> pa.Schema:
    """A table's columns; a field marked ``"per": "feed"`` is one column per feed contract."""
    spec = json.loads(path.read_text(encoding="utf-8"))
    fields = [f for f in spec["fields"] if not (resolved_only and f.get("added_by"))]
    return pa.schema(
        [pa.field(name, _TABLE_TYPES[f["type"]]) for name, f in expand_per(fields, {"feed": feed_names()})]
    )


@cache
def output_schema(table: str) -> pa.Schema:
    """Arrow schema of a register table (register, links, review, lineage) as published."""
    return _table_schema(resources.OUTPUT_SCHEMAS / f"{table}.json")


@cache
def resolver_schema(table: str) -> pa.Schema:
    """The columns of a register table the resolver writes: without those a later step adds (the fields
    marked ``added_by``, such as the register's tier from the marts)."""
    return _table_schema(resources.OUTPUT_SCHEMAS / f"{table}.json", resolved_only=True)


@cache
def verdict_schema() -> pa.Schema:
    return _table_schema(resources.VERDICT_SCHEMA)
