"""Keeping and dropping rows of large Arrow tables at the cost of the rows concerned.

A run drops a batch's rows from tables that hold the whole register (records, entities, links). A plain
filter copies every row it keeps; here a chunk none of whose rows is dropped is kept as it is, zero-copy, so
the old and the new version of a table share their memory and a run's memory follows its batch.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc


def drop_where(table: pa.Table, condition: Callable[[pa.RecordBatch], pa.Array]) -> pa.Table:
    """``table`` less the rows of each chunk for which ``condition(chunk)`` is true."""
    kept, dropped = [], False
    for batch in table.to_batches():
        hit = pc.fill_null(condition(batch), False)
        if pc.any(hit).as_py():
            kept.append(batch.filter(pc.invert(hit)))
            dropped = True
        else:
            kept.append(batch)
    return pa.Table.from_batches(kept, schema=table.schema) if dropped else table


def without(table: pa.Table, column: str, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    """``table`` less the rows whose ``column`` is one of ``values``."""
    if not len(values):
        return table
    return drop_where(table, lambda batch: pc.is_in(batch[column], values))


def only(table: pa.Table, column: str, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    """The rows of ``table`` whose ``column`` is one of ``values``."""
    return table.filter(pc.is_in(table[column], values))
