"""Character-level string similarity for SQL backends.

DuckDB's built-in ``levenshtein`` and ``jaro_winkler`` compare UTF-8 *bytes*
(``levenshtein('北京','北景')`` is 3), which is wrong for Chinese. These functions compare characters
(rapidfuzz), vectorised over Arrow batches, and are registered under the same names on every backend the
model runs on, so one Splink settings file serves DuckDB and Spark alike.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
from rapidfuzz.distance import JaroWinkler, Levenshtein

CHAR_LEVENSHTEIN = "uf_char_levenshtein"
CHAR_JARO_WINKLER = "uf_char_jaro_winkler"


def _pairwise(scorer, left: pa.Array, right: pa.Array, out_type: pa.DataType, missing) -> pa.Array:
    values = [
        missing if a is None or b is None else scorer(a, b)
        for a, b in zip(left.to_pylist(), right.to_pylist(), strict=True)
    ]
    return pa.array(values, type=out_type)


def char_levenshtein(left: pa.Array, right: pa.Array) -> pa.Array:
    return _pairwise(Levenshtein.distance, left, right, pa.int64(), None)


def char_jaro_winkler(left: pa.Array, right: pa.Array) -> pa.Array:
    return _pairwise(JaroWinkler.similarity, left, right, pa.float64(), None)


def register_duckdb(connection) -> None:  # type: ignore[no-untyped-def]
    """Register the functions on a DuckDB connection (idempotent)."""
    import duckdb
    from duckdb.sqltypes import BIGINT, DOUBLE, VARCHAR

    for name, function, returns in (
        (CHAR_LEVENSHTEIN, char_levenshtein, BIGINT),
        (CHAR_JARO_WINKLER, char_jaro_winkler, DOUBLE),
    ):
        try:
            connection.remove_function(name)
        except (duckdb.InvalidInputException, duckdb.CatalogException):
            pass
        connection.create_function(
            name, function, [VARCHAR, VARCHAR], returns, type="arrow", null_handling="special"
        )


def register_spark(spark) -> None:  # type: ignore[no-untyped-def]
    """Register the same functions on a Spark session (pandas UDFs), for Splink's Spark backend."""
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("long")  # type: ignore[misc]
    def levenshtein_udf(left: pd.Series, right: pd.Series) -> pd.Series:
        return pd.Series(char_levenshtein(pa.array(left), pa.array(right)).to_pandas())

    @pandas_udf("double")  # type: ignore[misc]
    def jaro_winkler_udf(left: pd.Series, right: pd.Series) -> pd.Series:
        return pd.Series(char_jaro_winkler(pa.array(left), pa.array(right)).to_pandas())

    spark.udf.register(CHAR_LEVENSHTEIN, levenshtein_udf)
    spark.udf.register(CHAR_JARO_WINKLER, jaro_winkler_udf)
