"""Reading committed staging: the latest version of every staged record, from committed runs only."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from pipelines.contracts import contract, load_contracts
from pipelines.store import RunStore

# The newest version of a record wins: by source update time where the feed has one, else by arrival.
_ORDER = "ORDER BY {updated} _run_id DESC, _partition DESC, _offset DESC"


def latest_records(
    store: RunStore,
    feed: str,
    connection: duckdb.DuckDBPyConnection | None = None,
    after_run: str | None = None,
) -> pa.Table:
    """The latest version of each record of ``feed`` staged by committed runs (only by those committed
    after ``after_run``, when given: what arrived since)."""
    files = [str(f) for f in store.committed_files(feed, after_run=after_run)]
    if not files:
        return contract(feed).staging_schema().empty_table()
    con = connection or duckdb.connect()
    updated = "updated_at DESC NULLS LAST," if "updated_at" in contract(feed).field_names else ""
    query = f"""
        SELECT * FROM read_parquet($files, union_by_name = true)
        QUALIFY row_number() OVER (PARTITION BY record_id {_ORDER.format(updated=updated)}) = 1
        ORDER BY record_id
    """
    table = con.sql(query, params={"files": files}).to_arrow_table()
    return table.select(contract(feed).staging_schema().names).cast(contract(feed).staging_schema())


def all_latest_records(store: RunStore, after_run: str | None = None) -> dict[str, pa.Table]:
    """``latest_records`` of every feed: what one register run is built from (resolution and warnings)."""
    con = duckdb.connect()
    return {feed: latest_records(store, feed, con, after_run) for feed in load_contracts()}
