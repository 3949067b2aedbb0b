"""Training and scoring the linkage model with Splink, on the resolver's engine.

The trained model is a reviewed JSON file under version control (``MODEL_PATH``); runs score with it and
record its version. Scoring is incremental: a batch's new or changed entities are scored among themselves
(``predict_within``) and against the entities already known (``predict_between``), so entities no batch
touched are never compared again. Term frequencies (how common a trade name is) are frozen: computed over
the whole entity table when the register is rebuilt and kept with it, so the same pair scores the same in
every later run. ``unitfusion train`` re-estimates the model: u by random sampling, m by EM, and m from the
townships' verdicts as labelled pairs when there are enough of them (``pipelines.resolve.labels``); every
register run measures the model on those labels (``label_accuracy``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from functools import cache
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pipelines import resources
from pipelines.resolve.engine import Engine
from pipelines.resolve.settings import MODEL_COLUMNS, TRAINING_BLOCKING_RULES, UNIQUE_ID, unit_settings

MODEL_PATH = resources.UNIT_MODEL
# Labelled matches below which training leaves m to EM: a handful of pairs would move m by chance.
MIN_LABELLED_MATCHES = 20
log = logging.getLogger(__name__)
EDGE_SCHEMA = pa.schema(
    [
        pa.field("a", pa.string()),
        pa.field("b", pa.string()),
        pa.field("probability", pa.float64()),
        pa.field("matched_by", pa.string()),
        pa.field("weights", pa.string()),  # JSON of per-comparison match weights (model edges)
    ]
)


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


@cache
def tf_columns(path: Path = MODEL_PATH) -> tuple[str, ...]:
    """The columns whose term frequencies the saved model adjusts for."""
    model = json.loads(path.read_text(encoding="utf-8"))
    return tuple(
        sorted(
            {
                level["tf_adjustment_column"]
                for comparison in model["comparisons"]
                for level in comparison["comparison_levels"]
                if level.get("tf_adjustment_column")
            }
        )
    )


# How the model's columns are read from the entities where the names differ.
FRAME_COLUMNS = {
    # '' for a head office, so that "head office vs branch" is a disagreement rather than a missing value
    "branch_key": "coalesce(branch, '') AS branch_key",
    # the keyed token on every side: a registration reads the name in clear, a waybill only as a token
    "legal_rep_name": "legal_rep_name_token AS legal_rep_name",
}


def model_frame(engine: Engine, entities: pa.Table) -> pa.Table:
    """The columns the model reads (``FRAME_COLUMNS``)."""
    columns = ", ".join(FRAME_COLUMNS.get(column, column) for column in MODEL_COLUMNS)
    return engine.query(f"SELECT {columns} FROM entities ORDER BY {UNIQUE_ID}", entities=entities)


def _linker(engine: Engine, frame: pa.Table, settings):  # type: ignore[no-untyped-def]
    from splink import Linker

    api = engine.splink_api()
    return api, Linker(api.register(frame), settings, log_level=logging.WARNING)


def term_frequencies(
    engine: Engine, entities: pa.Table, model_path: Path = MODEL_PATH
) -> dict[str, pa.Table]:
    """How common each value of the model's term-frequency columns is, over the whole entity table."""
    _, linker = _linker(engine, model_frame(engine, entities), str(model_path))
    return {
        column: linker.table_management.compute_tf_table(column).as_pyarrow_table()
        for column in tf_columns(model_path)
    }


def _edges(pairs: pa.Table) -> pa.Table:
    """Splink's scored pairs as edges, with their per-comparison match weights as JSON."""
    weight_columns = [c for c in pairs.column_names if c.startswith("mw_")]
    names = [c[3:] for c in weight_columns]
    rows = zip(*(pairs[c].to_pylist() for c in weight_columns), strict=True) if names else []
    weights = [
        json.dumps(
            {n: round(float(v), 3) for n, v in zip(names, row, strict=True) if v is not None}, sort_keys=True
        )
        for row in rows
    ] or [None] * pairs.num_rows
    return pa.table(
        {
            "a": pairs[f"{UNIQUE_ID}_l"].cast(pa.string()),
            "b": pairs[f"{UNIQUE_ID}_r"].cast(pa.string()),
            "probability": pairs["match_probability"].cast(pa.float64()),
            "matched_by": pa.array(["model"] * pairs.num_rows, pa.string()),
            "weights": pa.array(weights, pa.string()),
        },
        schema=EDGE_SCHEMA,
    )


def score_new(
    engine: Engine,
    entities: pa.Table,
    new_ids: pa.Array,
    term_frequencies: dict[str, pa.Table],
    threshold: float,
    model_path: Path = MODEL_PATH,
) -> pa.Table:
    """Model edges at or above ``threshold`` of the entities ``new_ids``: among themselves and against every
    other entity of ``entities``. Pairs of two other entities are not scored again."""
    import pyarrow.compute as pc

    frame = model_frame(engine, entities)
    is_new = pc.is_in(frame[UNIQUE_ID], new_ids)
    new, known = frame.filter(is_new), frame.filter(pc.invert(is_new))
    if not new.num_rows:
        return EDGE_SCHEMA.empty_table()
    api, linker = _linker(engine, new, str(model_path))
    for column, table in term_frequencies.items():
        linker.table_management.register_term_frequency_lookup(api.register(table), column)
    found = []
    if new.num_rows > 1:
        within = linker.inference.predict_within(
            api.register(new), threshold_match_probability=threshold, warning_mode="never"
        )
        found.append(_edges(within.as_pyarrow_table()))
    if known.num_rows:
        between = linker.inference.predict_between(
            api.register(new),
            api.register(known),
            threshold_match_probability=threshold,
            warning_mode="never",
        )
        found.append(_edges(between.as_pyarrow_table()))
    return pa.concat_tables(found) if found else EDGE_SCHEMA.empty_table()


def train(
    engine: Engine,
    entities: pa.Table,
    out_path: Path = MODEL_PATH,
    max_pairs: float = 5e6,
    seed: int = 1,
    labels: pa.Table | None = None,
) -> Path:
    """Estimate the model on the entities and save it as JSON: u by random sampling, m by EM; and, given
    ``labels`` (``labels.LABEL_SCHEMA``) with at least ``MIN_LABELLED_MATCHES`` matches, m from the labelled
    matches too. Splink keeps every estimate of a level's m and uses their median, so the townships' pairs
    (chosen from hard cases, not at random) move the model without replacing what the whole table says."""
    api, linker = _linker(engine, model_frame(engine, entities), unit_settings())
    linker.training.estimate_u_using_random_sampling(max_pairs=max_pairs, seed=seed)
    for rule in TRAINING_BLOCKING_RULES:
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
    matches = _labelled_matches(labels, entities)
    if matches.num_rows >= MIN_LABELLED_MATCHES:
        # Splink reads every row as a match (it ignores clerical_match_score): only the matches go in
        linker.training.estimate_m_from_pairwise_labels(api.register(matches))
    elif labels is not None and labels.num_rows:
        log.warning(
            "%d labelled matches, fewer than %d: m is estimated by EM only",
            matches.num_rows,
            MIN_LABELLED_MATCHES,
        )
    model = linker.misc.save_model_to_json(None)
    out_path.write_text(json.dumps(model, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return out_path


def _labelled_matches(labels: pa.Table | None, entities: pa.Table) -> pa.Table:
    """The labelled matches both of whose entities are in ``entities``."""
    pair = [f"{UNIQUE_ID}_l", f"{UNIQUE_ID}_r"]
    if labels is None:
        return pa.table({name: pa.array([], pa.string()) for name in pair})
    matches = _labelled_in(labels, entities)
    return matches.filter(pc.greater_equal(matches["clerical_match_score"], 0.5)).select(pair)


def _labelled_in(labels: pa.Table, entities: pa.Table) -> pa.Table:
    """The labels both of whose entities are in ``entities`` (an entity may have gone since)."""
    known = entities[UNIQUE_ID]
    return labels.filter(
        pc.and_(pc.is_in(labels[f"{UNIQUE_ID}_l"], known), pc.is_in(labels[f"{UNIQUE_ID}_r"], known))
    )


def label_accuracy(
    engine: Engine,
    entities: pa.Table,
    labels: pa.Table,
    model_path: Path = MODEL_PATH,
    term_frequencies: dict[str, pa.Table] | None = None,
    threshold: float = 0.99,
) -> dict[str, float | int | None]:
    """How the model does on the labelled pairs at the run's link ``threshold``: Splink's accuracy analysis
    from a labels table (a pair its blocking rules would never compare counts as scored zero). ``pairs`` and
    ``matches`` count the labels scored; a figure with nothing to divide by is None. No labels: no Splink."""
    figures: dict[str, float | int | None] = {
        "pairs": 0, "matches": 0, "precision": None, "recall": None, "f1": None, "threshold": threshold,
    }  # fmt: skip
    left, right = f"{UNIQUE_ID}_l", f"{UNIQUE_ID}_r"
    labels = _labelled_in(labels, entities)
    if not labels.num_rows:
        return figures
    labelled = pc.unique(pa.concat_arrays([labels[left].combine_chunks(), labels[right].combine_chunks()]))
    frame = model_frame(engine, entities.filter(pc.is_in(entities[UNIQUE_ID], labelled)))
    api, linker = _linker(engine, frame, str(model_path))
    for column, table in (term_frequencies or {}).items():
        linker.table_management.register_term_frequency_lookup(api.register(table), column)
    truth = linker.evaluation.accuracy_analysis_from_labels_table(
        api.register(labels.select([left, right, "clerical_match_score"])),
        output_type="table",
        match_weight_round_to_nearest=None,
    ).as_pyarrow_table()
    positives = int(pc.sum(pc.greater_equal(labels["clerical_match_score"], 0.5)).as_py() or 0)
    # the truth space is one row per score; at the threshold, the row of the lowest score at or above it
    weight = math.log2(threshold / (1 - threshold))
    at = truth.filter(pc.greater_equal(truth["truth_threshold"], weight - 1e-9)).sort_by("truth_threshold")
    tp, fp = (int(at["tp"][0].as_py()), int(at["fp"][0].as_py())) if at.num_rows else (0, 0)
    fn = positives - tp
    figures |= {
        "pairs": labels.num_rows,
        "matches": positives,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / positives if positives else None,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
    }
    return figures


def blocking_pair_counts(engine: Engine, entities: pa.Table) -> dict[str, int]:
    """Comparisons each prediction blocking rule adds (Splink's blocking analysis, exact counts)."""
    from splink.blocking_analysis import count_comparisons_from_blocking_rules

    records = count_comparisons_from_blocking_rules(
        engine.splink_api().register(model_frame(engine, entities)),
        blocking_rules=unit_settings().blocking_rules_to_generate_predictions,
        link_type="dedupe_only",
        unique_id_column_name=UNIQUE_ID,
        record_sample_proportion=1.0,
    )
    return {r["blocking_rule"]: r["marginal_comparison_count"] for r in records}
