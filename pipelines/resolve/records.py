"""The current version of every record, and what a batch changes in it.

The resolver keeps, per feed, the newest version of every staged record with the entity it belongs to. A
batch's record is new, a newer version with other content (an updated registration), or nothing at all (the
same message delivered again, or an older version arriving late): only the first two reach the later stages.
Which version is newest follows the staging reader: the source's update time, then arrival.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.contracts import contract, load_contracts
from pipelines.resolve.engine import Engine
from pipelines.resolve.entities import SOURCES
from pipelines.resolve.frames import without

ENTITY_ID = pa.field("entity_id", pa.string())
CONTENT_HASH = pa.field("content_hash", pa.string())


def record_schema(feed: str) -> pa.Schema:
    """A feed's staged columns, plus the entity the record belongs to and a hash of its content."""
    return contract(feed).staging_schema().append(ENTITY_ID).append(CONTENT_HASH)


def empty_records() -> dict[str, pa.Table]:
    return {feed: record_schema(feed).empty_table() for feed in load_contracts()}


@dataclass(frozen=True)
class RecordChanges:
    records: dict[str, pa.Table]  # per feed, every current record after the batch
    changed: dict[str, pa.Table]  # per feed, records the batch added or changed
    left: dict[str, pa.Array]  # per feed, entities that lost a record to another entity

    @property
    def count(self) -> int:
        return sum(table.num_rows for table in self.changed.values())


def _content_hash_sql(feed: str) -> str:
    """A hash of a record's contract fields (not where or when it arrived)."""
    parts = [f"coalesce(CAST(b.{name} AS VARCHAR), chr(0))" for name in contract(feed).field_names]
    return f"md5(concat_ws(chr(31), {', '.join(parts)}))"


def _newer_sql(feed: str) -> str:
    """Whether the batch's version ``b`` beats the stored one ``p``, in the staging reader's order."""
    arrival = "b._run_id, b._partition, b._offset", "p._run_id, p._partition, p._offset"
    if "updated_at" not in contract(feed).field_names:
        return f"({arrival[0]}) > ({arrival[1]})"
    floor = "TIMESTAMPTZ '0001-01-01 00:00:00+00'"

    def key(side: str, rest: str) -> str:
        return f"{side}.updated_at IS NOT NULL, coalesce({side}.updated_at, {floor}), {rest}"

    return f"({key('b', arrival[0])}) > ({key('p', arrival[1])})"


def merge_records(engine: Engine, previous: dict[str, pa.Table], batch: dict[str, pa.Table]) -> RecordChanges:
    """Fold a batch (the latest version of each of its records, per feed) into the current records."""
    records, changed, left = {}, {}, {}
    for feed in load_contracts():
        schema = record_schema(feed)
        incoming = batch.get(feed)
        if incoming is None or not incoming.num_rows:
            records[feed], changed[feed] = previous[feed], schema.empty_table()
            left[feed] = pa.array([], pa.string())
            continue
        compared = engine.query(
            f"""
            SELECT b.*, {_content_hash_sql(feed)} AS content_hash, p.entity_id AS previous_entity
            FROM batch b LEFT JOIN previous p USING (record_id)
            WHERE p.record_id IS NULL OR ({_newer_sql(feed)} AND p.content_hash <> {_content_hash_sql(feed)})
            ORDER BY b.record_id
            """,
            batch=incoming,
            previous=previous[feed].select(
                ["record_id", "entity_id", "content_hash", "_run_id", "_partition", "_offset"]
                + (["updated_at"] if "updated_at" in previous[feed].column_names else [])
            ),
        )
        source = SOURCES.get(feed)
        entity_ids = source.entity_ids(compared) if source else pa.nulls(compared.num_rows, pa.string())
        rows = compared.drop_columns(["previous_entity"]).append_column(ENTITY_ID, entity_ids)
        rows = rows.select(schema.names).cast(schema)
        moved = pc.and_(
            pc.is_valid(compared["previous_entity"]), pc.not_equal(compared["previous_entity"], entity_ids)
        )
        left[feed] = pc.unique(compared["previous_entity"].filter(pc.fill_null(moved, False)))
        records[feed] = pa.concat_tables([without(previous[feed], "record_id", rows["record_id"]), rows])
        changed[feed] = rows
    return RecordChanges(records, changed, left)
