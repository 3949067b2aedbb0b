"""The saved linkage model on Splink's Spark backend gives the same scores as on DuckDB.

Needs pyspark (not part of the pinned environment; it runs Spark locally on Java 17):

    python3 -m uv venv /tmp/sparkenv && python3 -m uv pip install -p /tmp/sparkenv/bin/python \\
        pyspark splink==5.0.0 rapidfuzz pandas pyarrow sqlglot duckdb
    .venv/bin/python benchmarks/spark_backend_check.py export ENTITIES.parquet SCORES.parquet --out STORE
    PYSPARK_PYTHON=/tmp/sparkenv/bin/python PYTHONPATH=. /tmp/sparkenv/bin/python \\
        benchmarks/spark_backend_check.py compare ENTITIES.parquet SCORES.parquet

Prints the pair counts on both backends and the largest difference in match probability.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd


def export(entities_path: Path, scores_path: Path, store_dir: Path) -> None:
    from pipelines.pii import Tokeniser, load_key
    from pipelines.resolve.entities import entity_frame
    from pipelines.resolve.model import model_frame, predict
    from pipelines.store import RunStore

    entities = entity_frame(RunStore(store_dir), Tokeniser(load_key()))
    model_frame(entities).to_parquet(entities_path)
    scores, _ = predict(entities, threshold=0.5)
    scores[["entity_id_l", "entity_id_r", "match_probability"]].to_parquet(scores_path)


def compare(entities_path: Path, scores_path: Path) -> None:
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
    frame = spark.createDataFrame(pd.read_parquet(entities_path))
    linker = Linker(SparkAPI(spark_session=spark).register(frame), model_settings_for("spark"))
    spark_scores = linker.inference.predict(threshold_match_probability=0.5).as_pandas_dataframe()

    def by_pair(df: pd.DataFrame) -> dict[tuple[str, str], float]:
        return {
            (min(a, b), max(a, b)): p
            for a, b, p in zip(df.entity_id_l, df.entity_id_r, df.match_probability, strict=True)
        }

    on_spark, on_duckdb = by_pair(spark_scores), by_pair(pd.read_parquet(scores_path))
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
    parser.add_argument("entities", type=Path)
    parser.add_argument("scores", type=Path)
    parser.add_argument("--out", type=Path, help="run store to read staging from (export)")
    args = parser.parse_args()
    if args.step == "export":
        export(args.entities, args.scores, args.out)
    else:
        compare(args.entities, args.scores)


if __name__ == "__main__":
    main()
