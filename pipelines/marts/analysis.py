"""``analysis.duckdb``: a DuckDB file with one view per mart of the latest register run, so a SQL-speaking BI
tool connects to one file and never needs to know the paths. The views read
``<out>/register/latest/marts/<table>/``: the ``latest`` link switches atomically with each published run,
so the views follow it without being rewritten. The file is written beside and renamed into place."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

# Register tables that stay as the resolver wrote them (no codes to name, no JSON inside): views too.
REGISTER_VIEWS = ("review", "lineage")


def view_sql(name: str, folder: Path, partitioned: bool) -> str:
    source = f"{folder.as_posix()}/**/*.parquet" if partitioned else f"{folder.as_posix()}/*.parquet"
    source = source.replace("'", "''")
    hive = ", hive_partitioning = true" if partitioned else ""
    return f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet('{source}'{hive})"


def write_analysis_database(path: Path, latest: Path, marts: list[str], partitioned: dict[str, str]) -> Path:
    """Write ``path`` with a view per mart (``latest/marts/<name>``) and per register table of
    ``REGISTER_VIEWS`` (prefixed ``register_``). ``latest``: the stable link to the latest run."""
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    with duckdb.connect(str(partial)) as con:
        for name in marts:
            con.execute(view_sql(name, latest / "marts" / name, name in partitioned))
        for name in REGISTER_VIEWS:
            source = (latest / f"{name}.parquet").as_posix().replace("'", "''")
            con.execute(f"CREATE OR REPLACE VIEW register_{name} AS SELECT * FROM read_parquet('{source}')")
    os.replace(partial, path)
    return path
