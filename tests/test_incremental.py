"""Incremental register runs: a batch changes only the units it touches, several batches give the register a
rebuild gives, verdicts apply between batches, a changed model rebuilds, and a pass killed with -9 is
finished by the next one."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.generate.batches import BatchSplit
from pipelines.landing import Landed, resolve_and_land
from pipelines.resolve.evaluation import bcubed
from pipelines.store import RunStore
from tests.conftest import TEST_KEY, TOKEN_KEY
from tests.shared_stores import BatchedRegister
from tests.staging import stage_sample, true_units

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def parts(batched_register: BatchedRegister) -> BatchSplit:
    return batched_register.parts


def _land(store: RunStore, **options):
    return resolve_and_land(store, **options, key=TOKEN_KEY)


@pytest.fixture(scope="module")
def keys_of_runs(batched_register: BatchedRegister) -> Path:
    """Where ``incremental`` keeps each run's person and unit keys (the store prunes older runs' state)."""
    return batched_register.keys_of_runs


@pytest.fixture(scope="module")
def incremental(batched_register: BatchedRegister) -> tuple[RunStore, list[Landed]]:
    """A store fed the first load, then each batch, with a register run after each (the session's batched
    register, read only: tests that land more runs copy it)."""
    return batched_register.store, batched_register.runs


def _table(path: Path, name: str) -> list[dict]:
    return pq.read_table(path / f"{name}.parquet").to_pylist()


def _records_by_unit(links: list[dict]) -> dict[str, set[tuple[str, str]]]:
    units = defaultdict(set)
    for row in links:
        units[row["unit_id"]].add((row["feed"], row["record_id"]))
    return units


def _batch_records(part: Path) -> set[tuple[str, str]]:
    return set(true_units(part))


def _people_sharing_a_key_with(keys: Path, units: set[str]) -> set[str]:
    """Test records that name one of ``units`` by a key (a second licence of their legal representative, a
    namesake): the batch gave them a rival candidate, so their unit is decided again."""
    shared = {(r["kind"], r["key"]) for r in _table(keys, "unit_keys") if r["owner"] in units and r["key"]}
    return {r["owner"] for r in _table(keys, "person_keys") if (r["kind"], r["key"]) in shared}


def test_each_batch_runs_incrementally_and_leaves_untouched_units_as_they_were(
    incremental, parts, keys_of_runs
):
    """A unit is untouched by a batch when none of its records is in the batch, no record of the batch ends up
    in a unit with one of its records, and no unit of the batch is a candidate for one of its test records:
    it keeps its id, every record, and its row to the byte."""
    _, runs = incremental
    assert runs[0].meta["mode"] == "rebuild" and runs[0].meta["rebuild_reason"] == "first register"
    for before, after, part in zip(runs, runs[1:], parts.batches, strict=False):
        assert after.meta["mode"] == "incremental"
        assert after.meta["state"]["reference"] == before.meta["state"]["reference"]  # the months stay put
        arrived = set(true_units(part))
        stats = after.meta["stats"]
        assert stats["records_in"] == len(arrived)
        assert 0 < stats["units_touched"] < stats["units"] / 4  # a batch of 300 records touches few units
        old_units = _records_by_unit(_table(before.path, "links"))
        new_links = {(r["feed"], r["record_id"]): r["unit_id"] for r in _table(after.path, "links")}
        units_of_batch = {new_links[k] for k in arrived if k in new_links}
        rivalled = _people_sharing_a_key_with(keys_of_runs / after.path.name, units_of_batch)
        untouched = [
            unit
            for unit, records in old_units.items()
            if not records & arrived
            and not {new_links.get(k) for k in records} & units_of_batch
            and not {k[1] for k in records} & rivalled
        ]
        assert len(untouched) > 0.75 * len(old_units)
        old_rows = {r["unit_id"]: r for r in _table(before.path, "register")}
        new_rows = {r["unit_id"]: r for r in _table(after.path, "register")}
        assert [u for u in untouched if any(new_links.get(k) != u for k in old_units[u])] == []
        # 一户多证 is a relation between units: a licence of the same operator at the same address arriving
        # (or moving away) flips its partners' flag; nothing else about an untouched unit may change
        changed = {u: {k for k, v in old_rows[u].items() if new_rows[u][k] != v} for u in untouched}
        # the tier counts warnings in force, so it follows a flipped 一户多证 (and nothing else here)
        assert {
            u: c
            for u, c in changed.items()
            if c
            - {"multi_licence", "run_id"}
            - ({"activity_score", "tier"} if "multi_licence" in c else set())
        } == {}
        flipped = [u for u, c in changed.items() if c]
        for unit in flipped:
            partners = [
                r for r in new_rows.values()
                if r["unit_id"] != unit and r["legal_rep_name"] == new_rows[unit]["legal_rep_name"]
                and r["division_code"] == new_rows[unit]["division_code"]
            ]  # fmt: skip
            assert any(p["unit_id"] in units_of_batch or p["unit_id"] not in old_rows for p in partners) or (
                not new_rows[unit]["multi_licence"]
            )


def test_ids_are_unique_and_every_retired_id_stays_retired(incremental):
    _, runs = incremental
    retired: set[str] = set()
    for landed in runs:
        register = _table(landed.path, "register")
        ids = [row["unit_id"] for row in register]
        assert len(ids) == len(set(ids))
        assert not set(ids) & retired
        retired |= {
            r["from_unit_id"] for r in _table(landed.path, "lineage") if r["event"] in ("merged", "retired")
        }
    issued = pq.read_table(runs[-1].path / "state" / "issued.parquet").to_pylist()
    assert {row["unit_id"] for row in issued} >= {
        row["unit_id"] for row in _table(runs[-1].path, "register")
    } | retired


# What a rebuild may change: it recomputes the term frequencies (how common each trade name is) over every
# entity, where incremental runs keep those of the last rebuild, so model probabilities move in their last
# digits and a review item on the edge of its band may come or go. Units, ids and every other value agree.
SCORES = {"confidence", "match_probability", "field_weights", "candidate_scores", "run_id"}


def _without_scores(rows: list[dict]) -> list[dict]:
    return sorted(({k: v for k, v in row.items() if k not in SCORES} for row in rows), key=repr)


def test_batches_give_the_register_a_rebuild_gives(incremental, parts, tmp_path):
    store, runs = incremental
    copy = RunStore(tmp_path / "copy")
    shutil.copytree(store.root, copy.root, symlinks=True)
    rebuilt = _land(copy, rebuild=True)
    assert rebuilt.meta["mode"] == "rebuild" and rebuilt.meta["rebuild_reason"] == "asked to"
    # ids carry over through a rebuild: the same units with the same ids and the same values
    assert _without_scores(_table(rebuilt.path, "register")) == _without_scores(
        _table(runs[-1].path, "register")
    )
    assert _without_scores(_table(rebuilt.path, "links")) == _without_scores(_table(runs[-1].path, "links"))
    assert _table(rebuilt.path, "lineage") == []
    # warnings computed for the touched units only, run after run, are those computed for all units at once
    raised = {"run_id", "first_raised_run"}
    assert sorted(
        repr({k: v for k, v in w.items() if k not in raised}) for w in _table(rebuilt.path, "warnings")
    ) == sorted(
        repr({k: v for k, v in w.items() if k not in raised}) for w in _table(runs[-1].path, "warnings")
    )
    review = {r["review_id"] for r in _table(runs[-1].path, "review")}
    assert len(review ^ {r["review_id"] for r in _table(rebuilt.path, "review")}) <= 0.05 * len(review)
    # and a store fed everything at once clusters the records the same way
    everything = RunStore(tmp_path / "everything")
    for part in [parts.first_load, *parts.batches]:
        stage_sample(everything, part, TEST_KEY.encode())
    once = _land(everything)
    incremental_units = {frozenset(r) for r in _records_by_unit(_table(runs[-1].path, "links")).values()}
    once_units = {frozenset(r) for r in _records_by_unit(_table(once.path, "links")).values()}
    assert incremental_units == once_units


def test_accuracy_after_batches_is_that_of_a_rebuild(incremental, parts):
    _, runs = incremental
    truth = {}
    for part in [parts.first_load, *parts.batches]:
        truth.update(true_units(part))
    predicted = {(r["feed"], r["record_id"]): r["unit_id"] for r in _table(runs[-1].path, "links")}
    assert bcubed(truth, {k: predicted.get(k) for k in truth}).f1 >= 0.97


def _verdict_file(path: Path, record: tuple[str, str], unit: str) -> Path:
    path.write_text(
        "verdict_id,feed,record_id,unit_id_a,unit_id_b,decision,decided_by,decided_at,note\n"
        f"V1,{record[0]},{record[1]},,{unit},different_units,文新街道办,2026-11-05T10:00:00+08:00,现场核查为另一家\n",
        encoding="utf-8",
    )
    return path


def test_a_verdict_given_between_batches_applies_incrementally(parts, tmp_path):
    from pipelines.townships.verdict_files import add_verdict_file

    store = RunStore(tmp_path / "store")
    stage_sample(store, parts.first_load, TEST_KEY.encode())
    first = _land(store)
    placed = next(
        r for r in _table(first.path, "links") if r["feed"] == "utility" and r["matched_by"] == "model"
    )
    add_verdict_file(
        _verdict_file(tmp_path / "v.csv", (placed["feed"], placed["record_id"]), placed["unit_id"]),
        store.verdicts_dir,
    )
    stage_sample(store, parts.batches[0], TEST_KEY.encode())
    second = _land(store)
    assert second.meta["mode"] == "incremental"
    links = {(r["feed"], r["record_id"]): r for r in _table(second.path, "links")}
    assert links.get(("utility", placed["record_id"]), {}).get("unit_id") != placed["unit_id"]
    # as a rebuild would have it
    rebuilt = _land(store, rebuild=True)
    assert _records_by_unit(_table(rebuilt.path, "links")) == _records_by_unit(list(links.values()))


def test_a_changed_model_rebuilds(parts, tmp_path):
    from pipelines.resolve.model import MODEL_PATH

    store = RunStore(tmp_path / "store")
    stage_sample(store, parts.first_load, TEST_KEY.encode())
    _land(store)
    assert _land(store) is None  # nothing new
    model = json.loads(MODEL_PATH.read_text(encoding="utf-8"))
    model["probability_two_random_records_match"] *= 1.5
    retrained = tmp_path / "model.json"
    retrained.write_text(json.dumps(model), encoding="utf-8")
    landed = _land(store, model_path=retrained)
    assert landed.meta["mode"] == "rebuild" and landed.meta["rebuild_reason"] == "model version changed"


# -- a pass killed with -9, and the next pass ---------------------------------------------------------------

KILLER = """
import os, signal, sys
import pyarrow.parquet as pq
from pipelines.store import RunStore
from pipelines import landing, store as store_module
from pipelines.pii import load_key

point, root = sys.argv[1], sys.argv[2]
die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
if point == "writing":
    real, written = pq.write_table, []
    def write_table(*args, **kwargs):
        written.append(1)
        if len(written) == 4:
            die()
        return real(*args, **kwargs)
    pq.write_table = write_table
elif point == "before_publishing":
    landing.publish_pending = die
elif point == "publishing":
    store_module.RunStore._point_latest_at = die
landing.resolve_and_land(RunStore(__import__("pathlib").Path(root)), key=load_key(os.environ))
"""


@pytest.mark.parametrize("point", ["writing", "before_publishing", "publishing"])
def test_a_pass_killed_with_sigkill_is_finished_by_the_next(parts, tmp_path_factory, point):
    base = tmp_path_factory.mktemp("base")
    store = RunStore(base / "store")
    stage_sample(store, parts.first_load, TEST_KEY.encode())
    _land(store)
    stage_sample(store, parts.batches[0], TEST_KEY.encode())
    calm, killed = RunStore(base / "calm"), RunStore(base / "killed")
    shutil.copytree(store.root, calm.root, symlinks=True)
    shutil.copytree(store.root, killed.root, symlinks=True)
    uninterrupted = _land(calm)
    env = {**os.environ, "UNITFUSION_HMAC_KEY": TEST_KEY, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", KILLER, point, str(killed.root)], env=env, cwd=ROOT, check=False
    )
    assert done.returncode == -signal.SIGKILL
    _land(killed)  # the rerun
    latest = killed.register_latest()
    assert latest is not None and latest.name == uninterrupted.path.name
    for table in ("register", "links", "review", "lineage", "warnings"):
        assert _table(latest, table) == _table(uninterrupted.path, table), table
    assert not killed.pending_registers()


def test_a_new_month_of_known_taxpayers_costs_no_standardisation_and_no_scoring(parts, tmp_path):
    """Filings that read like the taxpayer's earlier ones (same name, address, phone, office) only add
    records: no entity is standardised or scored again and no cluster is formed again."""
    from tests.staging import commit_rows

    store = RunStore(tmp_path / "store")
    stage_sample(store, parts.first_load, TEST_KEY.encode())
    first = _land(store)
    entities = _table(first.path / "state", "entities")
    speaking = {e["rep_record_id"] for e in entities if e["feed"] == "tax"}  # each taxpayer's newest filing
    tax = [row for row in _table(first.path / "state" / "records", "tax") if row["record_id"] in speaking]
    again = [  # filed again, for its month, under a new record id
        {**{k: v for k, v in row.items() if not k.startswith("_") and k not in ("entity_id", "content_hash")},
         "record_id": f"AGAIN-{row['record_id']}"}
        for row in sorted(tax, key=lambda r: r["record_id"])[:50]
    ]  # fmt: skip
    commit_rows(store, {"tax": again})
    second = _land(store)
    stats = second.meta["stats"]
    assert stats["records_changed"] == 50
    assert stats["entities_rescored"] == 0 and stats["predicted_pairs"] == 0
    assert stats["entities_grown"] > 0 and stats["entities_reclustered"] == 0
    links = {(r["feed"], r["record_id"]): r["unit_id"] for r in _table(second.path, "links")}
    for row in again:  # each new filing joined its taxpayer's unit
        original = row["record_id"].removeprefix("AGAIN-")
        assert links.get(("tax", row["record_id"])) == links.get(("tax", original))
