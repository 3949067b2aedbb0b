"""DuckDB over Arrow for the marts: tables are scanned in place, results come back as Arrow."""

from __future__ import annotations

import duckdb
import pyarrow as pa


def query(sql: str, **tables: pa.Table) -> pa.Table:
    """Run ``sql`` with each keyword table visible under its name, on a connection of its own."""
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")  # timestamps come back as the register has them
        for name, table in tables.items():
            con.register(name, table)
        return con.sql(sql).to_arrow_table()


def month_index(column: str) -> str:
    """SQL for the month number of a ``YYYY-MM`` column (months since year 0), so months subtract."""
    return f"(CAST(substr({column}, 1, 4) AS INTEGER) * 12 + CAST(substr({column}, 6, 2) AS INTEGER) - 1)"


def month_text(column: str) -> str:
    """SQL turning a month number back into ``YYYY-MM``."""
    return f"printf('%04d-%02d', ({column}) // 12, ({column}) % 12 + 1)"
