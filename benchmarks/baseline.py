"""The baseline the resolver must beat: a textbook Splink dedupe of the naively unioned feeds.

Every record of every feed becomes a row with the same four columns (name, address, phone, code); Splink's
library comparisons (byte-level Jaro-Winkler and Levenshtein, as DuckDB provides them) and plain blocking
rules; u by random sampling, m by EM; connected components at 0.95.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from pipelines.mappings import load_mappings
from pipelines.staging import latest_records
from pipelines.store import RunStore

# The four columns, and the roles of the feed mappings they come from (first given): a person names the
# unit they work for.
ROLES = {
    "name": ("name", "work_unit"),
    "address": ("address",),
    "phone": ("phone",),
    "code": ("uscc", "taxpayer_id"),
}


def columns_of(feed: str) -> dict[str, str | None]:
    roles = load_mappings()[feed].roles
    return {column: next((roles[r] for r in wanted if r in roles), None) for column, wanted in ROLES.items()}


def unioned(store: RunStore) -> pd.DataFrame:
    frames = []
    for feed in load_mappings():
        columns = columns_of(feed)
        table = latest_records(store, feed).to_pandas()
        frame = pd.DataFrame({"unique_id": feed + "/" + table["record_id"]})
        for target, source in columns.items():
            frame[target] = table[source] if source else None
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def baseline_clusters(store: RunStore) -> dict[str, str]:
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    records = unioned(store)
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            cl.JaroWinklerAtThresholds("name", [0.9, 0.7]),
            cl.LevenshteinAtThresholds("address", [2, 5]),
            cl.ExactMatch("phone"),
            cl.ExactMatch("code"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("name"),
            block_on("phone"),
            block_on("code"),
            block_on("address"),
        ],
    )
    linker = Linker(DuckDBAPI(connection=duckdb.connect()).register(records), settings)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=1)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("phone"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("name"))
    pairs = linker.inference.predict(threshold_match_probability=0.5)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(pairs, 0.95).as_pandas_dataframe()
    return dict(zip(clusters["unique_id"], clusters["cluster_id"].astype(str), strict=True))
