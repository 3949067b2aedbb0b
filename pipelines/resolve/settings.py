"""The linkage model's settings, as declarative data: comparisons from Splink's library, blocking rules.

Text comparisons use character-level functions (``udfs.py``) because the backends' own ones count bytes.
Blocking rules stay on fields that few records share; ``unitfusion train --analyse-blocking`` prints their
pair counts.
"""

from __future__ import annotations

import splink.comparison_level_library as cll
import splink.comparison_library as cl
from splink import SettingsCreator, block_on

from pipelines.resolve.udfs import CHAR_JARO_WINKLER, CHAR_LEVENSHTEIN

UNIQUE_ID = "entity_id"

# Columns the model reads; ``branch_key`` is '' for a head office so that "head office vs branch" is a
# disagreement rather than a missing value.
MODEL_COLUMNS = (
    UNIQUE_ID,
    "name_core",
    "trade_name",
    "trade_pinyin",
    "branch_key",
    "district_code",
    "street_key",
    "road",
    "address_rest",
    "phone",
    "legal_rep_name",
)

BLOCKING_RULES = [
    block_on("trade_name", "district_code"),
    block_on("trade_pinyin", "district_code"),
    block_on("street_key", "district_code"),
    block_on("phone"),
    block_on("legal_rep_name", "district_code"),
    # a district several cities have (通州区) leaves the code unknown: the trade name at one street number
    block_on("trade_name", "street_key"),
]

TRAINING_BLOCKING_RULES = [
    block_on("phone"),
    block_on("trade_name", "district_code"),
    block_on("street_key", "district_code"),
]


def _trade_name() -> cl.CustomComparison:
    return cl.CustomComparison(
        output_column_name="trade_name",
        comparison_levels=[
            cll.NullLevel("trade_name"),
            cll.ExactMatchLevel("trade_name").configure(tf_adjustment_column="trade_name"),
            cll.ExactMatchLevel("trade_pinyin"),
            cll.DistanceFunctionLevel("trade_name", CHAR_LEVENSHTEIN, 1, higher_is_more_similar=False),
            cll.ElseLevel(),
        ],
        comparison_description="Trade name (字号): same, sounds the same, one character apart",
    )


def _street() -> cl.CustomComparison:
    return cl.CustomComparison(
        output_column_name="street",
        comparison_levels=[
            cll.NullLevel("road"),
            cll.ExactMatchLevel("street_key"),
            cll.ExactMatchLevel("road"),
            cll.ElseLevel(),
        ],
        comparison_description="Road and number",
    )


def unit_settings() -> SettingsCreator:
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name=UNIQUE_ID,
        probability_two_random_records_match=1e-4,
        blocking_rules_to_generate_predictions=BLOCKING_RULES,
        comparisons=[
            cl.DistanceFunctionAtThresholds(
                "name_core", CHAR_JARO_WINKLER, [0.95, 0.88], higher_is_more_similar=True
            ),
            _trade_name(),
            cl.ExactMatch("branch_key"),
            cl.ExactMatch("district_code"),
            _street(),
            cl.DistanceFunctionAtThresholds(
                "address_rest", CHAR_LEVENSHTEIN, [1], higher_is_more_similar=False
            ),
            cl.ExactMatch("phone"),
            cl.ExactMatch("legal_rep_name"),
        ],
        retain_intermediate_calculation_columns=True,
        retain_matching_columns=True,
        max_iterations=20,
    )
