"""Resolution on a generated sample with ground truth: accuracy, the USCC constraint and planted flags."""

from __future__ import annotations

from collections import defaultdict

import pytest

from pipelines.landing import resolve_and_land
from pipelines.resolve.evaluation import bcubed, pairwise
from pipelines.standardise.codes import is_valid_uscc
from tests.conftest import TEST_KEY, TOKEN_KEY
from tests.staging import generated_store, read_jsonl, true_units


@pytest.fixture(scope="module")
def resolved(tmp_path_factory):
    sample, store = generated_store(tmp_path_factory, units=600, seed=5, key=TEST_KEY)
    landed = resolve_and_land(store, key=TOKEN_KEY)
    return landed.result.tables, true_units(sample), read_jsonl(sample / "units.jsonl")


def test_accuracy_against_ground_truth(resolved):
    tables, truth, _ = resolved
    predicted = {(r["feed"], r["record_id"]): r["unit_id"] for r in tables["links"].to_pylist()}
    clusters = {record: predicted.get(record) for record in truth}
    assert bcubed(truth, clusters).f1 >= 0.97
    assert pairwise(truth, clusters).precision >= 0.98


def test_no_unit_holds_two_valid_usccs(resolved):
    tables, _, _ = resolved
    usccs = defaultdict(set)
    registration = {r["record_id"]: r for r in tables["links"].to_pylist() if r["feed"] == "registration"}
    for row in tables["register"].to_pylist():
        if row["uscc"]:
            assert is_valid_uscc(row["uscc"])
            usccs[row["unit_id"]].add(row["uscc"])
    assert registration and all(len(codes) == 1 for codes in usccs.values())
    assert len({r["uscc"] for r in tables["register"].to_pylist() if r["uscc"]}) == sum(
        1 for r in tables["register"].to_pylist() if r["uscc"]
    )  # one unit per USCC


@pytest.mark.parametrize("flag", ["multi_meter", "zombie_candidate", "ecommerce_candidate", "multi_licence"])
def test_planted_flags_are_found(resolved, flag):
    tables, truth, units = resolved
    planted_key = {"zombie_candidate": "zombie", "ecommerce_candidate": "ecommerce"}.get(flag, flag)
    planted = {u["unit_id"] for u in units if u.get(planted_key)}
    links = tables["links"].to_pylist()
    true_unit_of = defaultdict(set)  # register unit → true units of its records
    for row in links:
        if truth.get((row["feed"], row["record_id"])):
            true_unit_of[row["unit_id"]].add(truth[(row["feed"], row["record_id"])])
    flagged = {u for row in tables["register"].to_pylist() if row[flag] for u in true_unit_of[row["unit_id"]]}
    assert planted, f"the sample plants no {flag}"
    found = len(planted & flagged) / len(planted)
    precision = len(planted & flagged) / max(1, len(flagged))
    assert found >= 0.8 and precision >= 0.6, (flag, found, precision)
