"""Where the resolver's set-based stages run: tables in, tables out.

The shape follows Splink's ``DatabaseAPI``: one small abstract class, one implementation per backend. Stages
write their joins and aggregates as SQL over named Arrow tables and never touch a connection themselves, so
the same stages can run on another engine (Spark, where Splink scores the saved model identically) by adding
an implementation of ``query`` and ``splink_api``. DuckDB in-process is the default.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import pyarrow as pa


class Engine(ABC):
    """Runs SQL over Arrow tables passed by name, and hands Splink the same database."""

    @abstractmethod
    def query(self, sql: str, **tables: pa.Table) -> pa.Table:
        """The result of ``sql``, in which each keyword names a table (``FROM entities`` …)."""

    @abstractmethod
    def splink_api(self) -> Any:
        """Splink's ``DatabaseAPI`` over this engine, with the project's string functions registered."""


class DuckDBEngine(Engine):
    """DuckDB in this process: Arrow tables are scanned in place, results come back as Arrow."""

    def __init__(self, threads: int | None = None, memory_limit: str | None = None) -> None:
        self._config = {"threads": threads, "memory_limit": memory_limit}
        self.connection = self._connect()

    def _connect(self):  # type: ignore[no-untyped-def]
        import duckdb

        from pipelines.resolve.udfs import register_duckdb

        connection = duckdb.connect(config={k: v for k, v in self._config.items() if v})
        connection.execute("SET TimeZone = 'UTC'")  # timestamps print the same wherever it runs
        import os

        for setting in filter(None, os.environ.get("UF_DUCK", "").split(";")):
            connection.execute(setting)
        register_duckdb(connection)
        return connection

    def query(self, sql: str, **tables: pa.Table) -> pa.Table:
        for name, table in tables.items():
            self.connection.register(name, table)
        try:
            return self.connection.sql(sql).to_arrow_table()
        finally:
            for name in tables:
                self.connection.unregister(name)

    def splink_api(self) -> Any:
        """On a connection of its own: the tables Splink materialises while scoring go when it is done."""
        from splink import DuckDBAPI

        return DuckDBAPI(connection=self._connect())
