"""What a register run keeps for the next one, so that the next run costs what its batch costs.

Kept with each register run (immutable, published with it): the current version of every record with its
entity, the standardised entity table, the scored edges, every entity's cluster and unit, the verdicts in
entity ids, the frozen term frequencies, the keys test records are attached by, and the published tables
themselves (carried over row by row). ``Identity`` is what outlives even a rebuild: every unit id ever issued,
which unit each record was in, and what the verdicts in force mean in entity ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import pyarrow as pa

from pipelines.contracts import output_schema
from pipelines.resolve.entities import ENTITY_SCHEMA
from pipelines.resolve.evidence import CONSTRAINT_SCHEMA
from pipelines.resolve.model import EDGE_SCHEMA
from pipelines.resolve.persons import KEY_SCHEMA, UNIT_INFO_SCHEMA
from pipelines.resolve.records import empty_records
from pipelines.resolve.tables import MEMBER_SCHEMA

# Bump when what the state holds changes meaning: a register kept in an older format is rebuilt.
STATE_VERSION = 1

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
    constraints: pa.Table
    unit_keys: pa.Table
    unit_info: pa.Table
    person_keys: pa.Table
    licences: pa.Table
    register: pa.Table
    links: pa.Table
    review: pa.Table
    term_frequencies: dict[str, pa.Table] = field(default_factory=dict)
    reference: str | None = None  # the latest period of the tax and electricity figures

    @classmethod
    def empty(cls) -> ResolutionState:
        return cls(
            records=empty_records(),
            entities=ENTITY_SCHEMA.empty_table(),
            edges=EDGE_SCHEMA.empty_table(),
            members=MEMBER_SCHEMA.empty_table(),
            constraints=CONSTRAINT_SCHEMA.empty_table(),
            unit_keys=KEY_SCHEMA.empty_table(),
            unit_info=UNIT_INFO_SCHEMA.empty_table(),
            person_keys=KEY_SCHEMA.empty_table(),
            licences=LICENCE_SCHEMA.empty_table(),
            register=output_schema("register").empty_table(),
            links=output_schema("links").empty_table(),
            review=output_schema("review").empty_table(),
        )

    def tables(self) -> dict[str, pa.Table]:
        """Every table by the name it is kept under (records and term frequencies under folders)."""
        named = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if isinstance(getattr(self, f.name), pa.Table) and f.name not in ("register", "links", "review")
        }
        named |= {f"records/{feed}": table for feed, table in self.records.items()}
        named |= {f"term_frequencies/{column}": table for column, table in self.term_frequencies.items()}
        return named

    @classmethod
    def from_tables(
        cls, tables: dict[str, pa.Table], published: dict[str, pa.Table], reference: str | None
    ) -> ResolutionState:
        """The state from what ``tables`` wrote (and the published register, links and review)."""
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
            register=published["register"],
            links=published["links"],
            review=published["review"],
            **plain,
        )


@dataclass(frozen=True)
class Identity:
    """What outlives a rebuild: the ids issued so far, and each record's unit in the last register."""

    issued: pa.Table  # ISSUED_SCHEMA
    links: pa.Table  # the last register's links (feed, record_id, unit_id …)
    constraints: pa.Table  # the verdicts in force, in entity ids, as first applied

    @classmethod
    def empty(cls) -> Identity:
        return cls(
            ISSUED_SCHEMA.empty_table(), output_schema("links").empty_table(), CONSTRAINT_SCHEMA.empty_table()
        )
