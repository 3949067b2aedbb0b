"""The resolver's input: the latest version of every staged record, read from committed runs only."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from pipelines.contracts import contract, load_contracts
from pipelines.store import RunStore

# The newest version of a record wins: by source update time where the feed has one, else by arrival.
_ORDER = "ORDER BY {updated} _run_id DESC, _partition DESC, _offset DESC"


def latest_records(
    store: RunStore, feed: str, connection: duckdb.DuckDBPyConnection | None = None
) -> pa.Table:
    files = [str(f) for f in store.committed_files(feed)]
    if not files:
        return contract(feed).staging_schema().empty_table()
    con = connection or duckdb.connect()
    updated = "updated_at DESC NULLS LAST," if "updated_at" in contract(feed).field_names else ""
    query = f"""
        SELECT * FROM read_parquet($files, union_by_name = true)
        QUALIFY row_number() OVER (PARTITION BY record_id {_ORDER.format(updated=updated)}) = 1
        ORDER BY record_id
    """
    return con.sql(query, params={"files": files}).to_arrow_table()


def all_latest_records(store: RunStore) -> dict[str, pa.Table]:
    """``latest_records`` of every feed: what one register run is built from (resolution and warnings)."""
    con = duckdb.connect()
    return {feed: latest_records(store, feed, con) for feed in load_contracts()}
