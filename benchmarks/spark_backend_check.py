"""The saved linkage model on Splink's Spark backend gives the same scores as on DuckDB.

Needs pyspark (not part of the pinned environment; it runs Spark locally on Java 17):

    python3 -m uv venv /tmp/sparkenv && python3 -m uv pip install -p /tmp/sparkenv/bin/python \\
        pyspark splink==5.0.0 rapidfuzz pandas pyarrow sqlglot duckdb
    .venv/bin/python benchmarks/spark_backend_check.py export CHECK_DIR --out STORE
    PYSPARK_PYTHON=/tmp/sparkenv/bin/python PYTHONPATH=. /tmp/sparkenv/bin/python \\
        benchmarks/spark_backend_check.py compare CHECK_DIR

``export`` takes the standardised entities and the frozen term-frequency tables a register run keeps
(``register/latest/state/``) and scores every entity against every other with the DuckDB engine, as a
rebuild does. ``compare`` scores the same entities with the same model and term frequencies on Spark and
prints the pair counts on both backends and the largest difference in match probability.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

THRESHOLD = 0.5


def export(check_dir: Path, store_dir: Path) -> None:
    import pyarrow.parquet as pq

    from pipelines.resolve.engine import DuckDBEngine
    from pipelines.resolve.model import model_frame, score_new
    from pipelines.store import RunStore

    latest = RunStore(store_dir).register_latest()
    if latest is None or not (latest / "state").is_dir():
        raise SystemExit(f"{store_dir}: no published register run with its state")
    entities = pq.read_table(latest / "state" / "entities.parquet")
    kept = latest / "state" / "term_frequencies"
    frequencies = {path.stem: pq.read_table(path) for path in kept.glob("*.parquet")}
    engine = DuckDBEngine()
    check_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(model_frame(engine, entities), check_dir / "entities.parquet")
    for column, table in frequencies.items():
        pq.write_table(table, check_dir / f"tf_{column}.parquet")
    begun = time.monotonic()
    edges = score_new(engine, entities, entities["entity_id"], frequencies, THRESHOLD)
    pq.write_table(edges.select(["a", "b", "probability"]), check_dir / "scores.parquet")
    print(json.dumps({"entities": entities.num_rows, "duckdb_pairs": edges.num_rows,
                      "duckdb_seconds": round(time.monotonic() - begun, 1)}))  # fmt: skip


def compare(check_dir: Path) -> None:
    from pyspark.sql import SparkSession
    from splink import Linker, SparkAPI

    from pipelines.resolve.model import model_settings_for
    from pipelines.resolve.udfs import register_spark

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setCheckpointDir(str(Path("/tmp") / "unitfusion-spark-checkpoints"))
    register_spark(spark)
    begun = time.monotonic()
    api = SparkAPI(spark_session=spark)
    frame = spark.createDataFrame(pd.read_parquet(check_dir / "entities.parquet"))
    linker = Linker(api.register(frame), model_settings_for("spark"))
    for path in sorted(check_dir.glob("tf_*.parquet")):
        table = spark.createDataFrame(pd.read_parquet(path))
        linker.table_management.register_term_frequency_lookup(api.register(table), path.stem[3:])
    spark_scores = linker.inference.predict(threshold_match_probability=THRESHOLD).as_pandas_dataframe()

    def by_pair(left: pd.Series, right: pd.Series, probability: pd.Series) -> dict[tuple[str, str], float]:
        return {(min(a, b), max(a, b)): p for a, b, p in zip(left, right, probability, strict=True)}

    on_spark = by_pair(spark_scores.entity_id_l, spark_scores.entity_id_r, spark_scores.match_probability)
    duckdb_scores = pd.read_parquet(check_dir / "scores.parquet")
    on_duckdb = by_pair(duckdb_scores.a, duckdb_scores.b, duckdb_scores.probability)
    common = on_spark.keys() & on_duckdb.keys()
    print(
        json.dumps(
            {
                "spark_pairs": len(on_spark),
                "duckdb_pairs": len(on_duckdb),
                "common_pairs": len(common),
                "max_abs_probability_difference": max(
                    (abs(on_spark[k] - on_duckdb[k]) for k in common), default=0
                ),
                "spark_seconds": round(time.monotonic() - begun, 1),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["export", "compare"])
    parser.add_argument("check_dir", type=Path, help="where export writes and compare reads")
    parser.add_argument("--out", type=Path, help="run store with a published register (export)")
    args = parser.parse_args()
    if args.step == "export":
        export(args.check_dir, args.out)
    else:
        compare(args.check_dir)


if __name__ == "__main__":
    main()
