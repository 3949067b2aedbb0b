import pytest

from pipelines.resolve.evaluation import bcubed, pairwise


def test_perfect_clustering_scores_one():
    truth = {"a": 1, "b": 1, "c": 2, "d": None}
    assert bcubed(truth, truth).f1 == pairwise(truth, truth).f1 == 1.0


def test_false_merge_costs_precision_and_a_missed_link_costs_recall():
    truth = {"a": 1, "b": 1, "c": 2}
    merged = {"a": "x", "b": "x", "c": "x"}
    scores = pairwise(truth, merged)
    assert scores.precision == pytest.approx(1 / 3) and scores.recall == 1.0
    assert bcubed(truth, merged).precision == pytest.approx((2 / 3 + 2 / 3 + 1 / 3) / 3)
    split = {"a": "x", "b": None, "c": "y"}
    assert pairwise(truth, split).recall == 0.0 and bcubed(truth, split).recall == pytest.approx(2 / 3)
