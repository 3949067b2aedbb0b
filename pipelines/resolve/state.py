"""What a register run keeps for the next one, so that the next run costs what its batch costs.

``ResolutionState`` is kept with each register run (immutable, published with it): the current version of
every record with its entity, the standardised entity table, the scored edges, every entity's cluster and
unit, the frozen term frequencies, the keys test records are attached by and each unit's licence key. A
rebuild starts from an empty one. ``History`` is what the register has said, which even a rebuild continues:
every unit id ever issued, the last register's tables (so a row nobody changed keeps its run, and records keep
their units' ids) and what each verdict in force meant in entity ids when it was first applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import pyarrow as pa

from pipelines.contracts import output_schema, resolver_schema
from pipelines.resolve.entities import ENTITY_SCHEMA
from pipelines.resolve.evidence import CONSTRAINT_SCHEMA
from pipelines.resolve.model import EDGE_SCHEMA
from pipelines.resolve.persons import KEY_SCHEMA, UNIT_INFO_SCHEMA
from pipelines.resolve.records import empty_records
from pipelines.resolve.tables import MEMBER_SCHEMA

# Bump when what the state holds changes meaning: a register kept in an older format is rebuilt. 4: names
# split by name_words.toml, bare work-unit names keyed alike, townships named after roads.
STATE_VERSION = 4

LICENCE_SCHEMA = pa.schema([pa.field("unit_id", pa.string()), pa.field("licence_key", pa.string())])
ISSUED_SCHEMA = pa.schema(
    [
        pa.field("unit_id", pa.string()),
        pa.field("issued_run", pa.string()),
        pa.field("retired_run", pa.string()),  # null while the unit exists
    ]
)


@dataclass(frozen=True)
class ResolutionState:
    records: dict[str, pa.Table]
    entities: pa.Table
    edges: pa.Table
    members: pa.Table
    unit_keys: pa.Table
    unit_info: pa.Table
    person_keys: pa.Table
    licences: pa.Table
    term_frequencies: dict[str, pa.Table] = field(default_factory=dict)
    reference: str | None = None  # the latest period of the tax and electricity figures

    @classmethod
    def empty(cls) -> ResolutionState:
        return cls(
            records=empty_records(),
            entities=ENTITY_SCHEMA.empty_table(),
            edges=EDGE_SCHEMA.empty_table(),
            members=MEMBER_SCHEMA.empty_table(),
            unit_keys=KEY_SCHEMA.empty_table(),
            unit_info=UNIT_INFO_SCHEMA.empty_table(),
            person_keys=KEY_SCHEMA.empty_table(),
            licences=LICENCE_SCHEMA.empty_table(),
        )

    def tables(self) -> dict[str, pa.Table]:
        """Every table by the name it is kept under (records and term frequencies under folders)."""
        named = {
            f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), pa.Table)
        }
        named |= {f"records/{feed}": table for feed, table in self.records.items()}
        named |= {f"term_frequencies/{column}": table for column, table in self.term_frequencies.items()}
        return named

    @classmethod
    def from_tables(cls, tables: dict[str, pa.Table], reference: str | None) -> ResolutionState:
        """The state from what ``tables`` wrote."""
        records = {name.split("/", 1)[1]: t for name, t in tables.items() if name.startswith("records/")}
        frequencies = {
            name.split("/", 1)[1]: t for name, t in tables.items() if name.startswith("term_frequencies/")
        }
        names = {f.name for f in fields(cls)}
        plain = {name: t for name, t in tables.items() if name in names}
        return cls(
            records=records,
            term_frequencies=frequencies,
            reference=reference,
            **plain,
        )


@dataclass(frozen=True)
class History:
    """What the register has said so far, which every run (a rebuild too) continues."""

    issued: pa.Table  # ISSUED_SCHEMA: every unit id ever issued, retired ones too
    register: pa.Table  # the last register's tables
    links: pa.Table
    review: pa.Table
    constraints: pa.Table  # the verdicts in force, in entity ids, as first applied
    warnings: pa.Table | None = None  # the last register's warnings (when each was first raised)

    @classmethod
    def empty(cls) -> History:
        return cls(
            issued=ISSUED_SCHEMA.empty_table(),
            register=resolver_schema("register").empty_table(),
            links=output_schema("links").empty_table(),
            review=output_schema("review").empty_table(),
            constraints=CONSTRAINT_SCHEMA.empty_table(),
        )
