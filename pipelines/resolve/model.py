"""Training and scoring the linkage model with Splink (DuckDB in-process by default).

The trained model is a reviewed JSON file under version control (``MODEL_PATH``); runs score with it and
record its version. ``unitfusion train`` re-estimates it: u by random sampling, m by EM over a few blocking
rules.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import duckdb
import pandas as pd

from pipelines.resolve.settings import MODEL_COLUMNS, TRAINING_BLOCKING_RULES, UNIQUE_ID, unit_settings
from pipelines.resolve.udfs import register_duckdb

MODEL_PATH = Path(__file__).resolve().parent / "unit_model.json"
log = logging.getLogger(__name__)


def model_version(path: Path = MODEL_PATH) -> str:
    """Content hash of the saved model: two runs that name the same version scored alike."""
    return "m-" + hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def model_settings_for(dialect: str, path: Path = MODEL_PATH) -> dict:
    """The saved model for another Splink backend: the same parameters, its SQL transpiled (sqlglot) from
    DuckDB's dialect. The character-level functions must be registered there too (``udfs.register_spark``)."""
    import sqlglot

    model = json.loads(path.read_text(encoding="utf-8"))
    source = model.get("sql_dialect", "duckdb")

    def convert(sql: str) -> str:
        return sqlglot.transpile(sql, read=source, write=dialect)[0]

    model["sql_dialect"] = dialect
    for rule in model["blocking_rules_to_generate_predictions"]:
        rule["blocking_rule"] = convert(rule["blocking_rule"])
        rule["sql_dialect"] = dialect
    for comparison in model["comparisons"]:
        for level in comparison["comparison_levels"]:
            if level["sql_condition"] != "ELSE":
                level["sql_condition"] = convert(level["sql_condition"])
    return model


def model_frame(entities: pd.DataFrame) -> pd.DataFrame:
    frame = entities.copy()
    frame["branch_key"] = frame["branch"].fillna("")
    return frame[list(MODEL_COLUMNS)]


def _linker(frame: pd.DataFrame, settings, connection: duckdb.DuckDBPyConnection):  # type: ignore[no-untyped-def]
    from splink import DuckDBAPI, Linker

    register_duckdb(connection)
    api = DuckDBAPI(connection=connection)
    return Linker(api.register(frame), settings, log_level=logging.WARNING)


def train(entities: pd.DataFrame, out_path: Path = MODEL_PATH, max_pairs: float = 5e6, seed: int = 1) -> Path:
    """Estimate the model on (unlabelled) entities and save it as JSON."""
    linker = _linker(model_frame(entities), unit_settings(), duckdb.connect())
    linker.training.estimate_u_using_random_sampling(max_pairs=max_pairs, seed=seed)
    for rule in TRAINING_BLOCKING_RULES:
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
    model = linker.misc.save_model_to_json(None)
    out_path.write_text(json.dumps(model, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return out_path


def predict(
    entities: pd.DataFrame, threshold: float, model_path: Path = MODEL_PATH
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Scored entity pairs at or above ``threshold``, with per-comparison match weights; and the pair count
    of each blocking rule."""
    connection = duckdb.connect()
    frame = model_frame(entities)
    linker = _linker(frame, str(model_path), connection)
    pairs = linker.inference.predict(threshold_match_probability=threshold).as_pandas_dataframe()
    return pairs, {}


def blocking_pair_counts(entities: pd.DataFrame) -> dict[str, int]:
    """Comparisons each prediction blocking rule adds (Splink's blocking analysis, exact counts)."""
    from splink import DuckDBAPI
    from splink.blocking_analysis import count_comparisons_from_blocking_rules

    connection = duckdb.connect()
    register_duckdb(connection)
    records = count_comparisons_from_blocking_rules(
        DuckDBAPI(connection=connection).register(model_frame(entities)),
        blocking_rules=unit_settings().blocking_rules_to_generate_predictions,
        link_type="dedupe_only",
        unique_id_column_name=UNIQUE_ID,
        record_sample_proportion=1.0,
    )
    return {r["blocking_rule"]: r["marginal_comparison_count"] for r in records}
