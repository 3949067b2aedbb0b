"""Verdicts as labels: the pairs each decision labels, training m from them, and every run's labelled
precision and recall."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines import verdicts as vd
from pipelines.landing import resolve_and_land
from pipelines.resolve import DuckDBEngine
from pipelines.resolve.evidence import CONSTRAINT_SCHEMA
from pipelines.resolve.labels import LABEL_SCHEMA, LEFT, RIGHT, verdict_labels
from pipelines.resolve.model import MIN_LABELLED_MATCHES, MODEL_PATH, train
from pipelines.townships.verdict_files import add_verdict_file
from tests.conftest import TEST_KEY, TOKEN_KEY
from tests.staging import generated_store, true_units

DAY = "2026-11-05T10:00:00+08:00"

# A tiny state: U1 = registration R1 (founder), tax T1 (by USCC), utility E1 (by the model);
# U2 = registration R2 (founder), utility E2 (by the model), utility E9 (by a verdict);
# utility E3 alone (a new unit), scored like R1 (0.995) and E2 (0.5).
MEMBERS = [
    ("registration:R1", "U1", None, None),
    ("tax:T1", "U1", "uscc", 1.0),
    ("utility:E1", "U1", "model", 0.995),
    ("registration:R2", "U2", None, None),
    ("utility:E2", "U2", "model", 0.992),
    ("utility:E9", "U2", "verdict", 1.0),
    ("utility:E3", "U3", None, None),
]
EDGES = [
    ("registration:R1", "utility:E3", 0.995),
    ("utility:E2", "utility:E3", 0.5),
    ("registration:R1", "utility:E1", 0.995),
]


def _state() -> tuple[dict[str, pa.Table], pa.Table, pa.Table]:
    def records(feed: str) -> pa.Table:
        ids = sorted(e.split(":")[1] for e, *_ in MEMBERS if e.startswith(f"{feed}:"))
        return pa.table({"record_id": ids, "entity_id": [f"{feed}:{i}" for i in ids]})

    members = pa.Table.from_pylist(
        [dict(zip(["entity_id", "unit_id", "matched_by", "probability"], m, strict=True)) for m in MEMBERS]
    )
    edges = pa.Table.from_pylist([{"a": a, "b": b, "probability": p} for a, b, p in EDGES])
    return {feed: records(feed) for feed in ("registration", "tax", "utility")}, members, edges


def _verdict(verdict_id: str, decision: str, record: str | None = None, a=None, b=None, when=DAY):
    feed, record_id = record.split(":") if record else (None, None)
    return vd.Verdict(verdict_id, decision, "文新街道办", when, feed, record_id, a, b)


def _labels(*verdicts: vd.Verdict, per_side: int = 3, constraints=()) -> dict[tuple[str, str], float]:
    records, members, edges = _state()
    kept = pa.Table.from_pylist(
        [{"verdict_id": v, "verdict_hash": "h", "kind": k, "a": a, "b": b} for v, k, a, b in constraints],
        schema=CONSTRAINT_SCHEMA,
    )
    table = verdict_labels(DuckDBEngine(), list(verdicts), records, members, edges, kept, per_side)
    assert table.schema == LABEL_SCHEMA
    return {(r[LEFT], r[RIGHT]): r["clerical_match_score"] for r in table.to_pylist()}


def test_same_unit_labels_the_record_a_match_with_the_units_main_entities_not_itself():
    labels = _labels(_verdict("V1", vd.SAME_UNIT, "utility:E9", b="U2"))
    assert labels == {("registration:R2", "utility:E9"): 1.0, ("utility:E2", "utility:E9"): 1.0}


@pytest.mark.parametrize("decision", [vd.DIFFERENT_UNITS, vd.SAME_OPERATOR])
def test_different_units_and_same_operator_label_non_matches_capped_per_side(decision):
    labels = _labels(_verdict("V2", decision, a="U1", b="U2"), per_side=2)
    # each side's founder first, then what codes or verdicts joined, then the model's
    assert labels == {
        ("registration:R1", "registration:R2"): 0.0,
        ("registration:R1", "utility:E9"): 0.0,
        ("registration:R2", "tax:T1"): 0.0,
        ("tax:T1", "utility:E9"): 0.0,
    }


@pytest.mark.parametrize("decision", [vd.NEW_UNIT, vd.NOT_A_BUSINESS])
def test_a_record_taken_out_of_units_is_a_non_match_with_what_it_was_scored_like(decision):
    assert _labels(_verdict("V3", decision, "utility:E3")) == {
        ("registration:R1", "utility:E3"): 0.0,
        ("utility:E2", "utility:E3"): 0.0,
    }
    named = _labels(_verdict("V3", decision, "utility:E3", b="U1"), per_side=1)
    assert named == {("registration:R1", "utility:E3"): 0.0}  # the unit it names, not its edges


def test_a_verdict_labels_the_pairs_it_meant_when_first_applied_though_the_unit_id_moved():
    """A different_units verdict took E3 out of U3 with R1 and T1 in it; U3's id went with E3, so "E3
    against U3" names nothing now: the pairs the verdict meant when first applied still label it."""
    split = _verdict("V7", vd.DIFFERENT_UNITS, "utility:E3", b="U3")
    meant = [("V7", "cannot", "utility:E3", "registration:R1"), ("V7", "cannot", "utility:E3", "tax:T1")]
    assert _labels(split) == {}
    assert _labels(split, constraints=meant) == {
        ("registration:R1", "utility:E3"): 0.0,
        ("tax:T1", "utility:E3"): 0.0,
    }
    joined = _verdict("V8", vd.SAME_UNIT, "utility:E3", b="U3")
    assert _labels(joined, constraints=[("V8", "must", "utility:E3", "registration:R2")]) == {
        ("registration:R2", "utility:E3"): 1.0
    }
    assert (
        _labels(split, constraints=[("V0", "cannot", "utility:E3", "registration:R1")]) == {}
    )  # not in force


def test_verdicts_about_unknown_records_or_units_label_nothing():
    assert (
        _labels(
            _verdict("V4", vd.NOT_A_BUSINESS, "utility:NOPE"),
            _verdict("V5", vd.SAME_UNIT, "utility:E1", b="U404"),
            _verdict("V6", vd.DIFFERENT_UNITS, a="U404", b="U1"),
        )
        == {}
    )
    assert _labels() == {}


def test_a_pair_two_verdicts_label_takes_the_later_verdicts_label():
    earlier = _verdict("V9", vd.SAME_UNIT, "utility:E1", b="U2", when="2026-11-05T10:00:00+08:00")
    later = _verdict("V1", vd.DIFFERENT_UNITS, "utility:E1", b="U2", when="2026-11-05T03:00:00+00:00")
    assert set(_labels(earlier, later).values()) == {0.0}  # 03:00 UTC is after 10:00 in Beijing
    assert set(_labels(earlier).values()) == {1.0}


UNITS = ["U1", "U2", "U3", "U404"]
RECORDS = [e for e, *_ in MEMBERS] + ["utility:NOPE"]


@st.composite
def _verdicts(draw) -> list[vd.Verdict]:
    found = []
    for n in range(draw(st.integers(0, 6))):
        decision = draw(st.sampled_from(vd.DECISIONS))
        b = (
            draw(st.sampled_from(UNITS))
            if decision in vd.NEEDS_UNIT_B
            else draw(st.none() | st.sampled_from(UNITS))
        )
        if draw(st.booleans()):
            found.append(_verdict(f"V{n}", decision, draw(st.sampled_from(RECORDS)), b=b))
        else:
            found.append(_verdict(f"V{n}", decision, a=draw(st.sampled_from(UNITS)), b=b or "U1"))
    return found


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_verdicts(), st.integers(1, 3))
def test_labels_are_distinct_ordered_pairs_of_known_entities_few_per_verdict(verdicts, per_side):
    records, members, edges = _state()
    table = verdict_labels(DuckDBEngine(), verdicts, records, members, edges, per_side=per_side).to_pylist()
    known = {e for e, *_ in MEMBERS}
    by_id = {v.verdict_id: v for v in verdicts}
    pairs = [(r[LEFT], r[RIGHT]) for r in table]
    assert len(pairs) == len(set(pairs))
    for row in table:
        assert row[LEFT] < row[RIGHT] and {row[LEFT], row[RIGHT]} <= known
        decision = by_id[row["verdict_id"]].decision
        assert row["clerical_match_score"] == (1.0 if decision == vd.SAME_UNIT else 0.0)
    for verdict_id in by_id:
        assert sum(r["verdict_id"] == verdict_id for r in table) <= per_side * per_side


# -- on a generated sample: training from labels, and labelled accuracy in every run's meta -------------


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """A generated sample staged in a store, and its first register run (no verdicts yet)."""
    folder, store = generated_store(tmp_path_factory, units=300, seed=7, key=TEST_KEY)
    return folder, store, resolve_and_land(store, key=TOKEN_KEY)


def _m(path, comparison: str) -> dict[str, float]:
    """m of each non-null level of a comparison in a saved model, by its label."""
    model = json.loads(path.read_text(encoding="utf-8"))
    levels = next(c for c in model["comparisons"] if c["output_column_name"] == comparison)
    return {
        level["label_for_charts"]: level["m_probability"]
        for level in levels["comparison_levels"]
        if not level.get("is_null_level")
    }


def _parameters(path) -> dict:
    """A saved model less the id Splink gives each linker."""
    return {k: v for k, v in json.loads(path.read_text(encoding="utf-8")).items() if k != "linker_uid"}


def test_labelled_matches_whose_phones_differ_raise_m_of_phones_that_differ(sample, tmp_path):
    """Townships saying "one unit" of pairs with different phones: a different phone says less against
    a match, so m of that level rises; fewer matches than the minimum leave the model as EM has it."""
    folder, _, landed = sample
    state, engine = landed.result.state, DuckDBEngine()
    truth = true_units(folder)
    unit_of = {
        row["entity_id"]: truth.get((row["feed"], row["rep_record_id"]))
        for row in state.entities.select(["entity_id", "feed", "rep_record_id"]).to_pylist()
    }
    phones = pa.table({"entity_id": list(unit_of), "unit": list(unit_of.values())})
    pairs = engine.query(
        f"""
        SELECT a.entity_id AS {LEFT}, b.entity_id AS {RIGHT}, 1.0 AS clerical_match_score, 'T' AS verdict_id
        FROM entities a JOIN truth ta USING (entity_id), entities b JOIN truth tb USING (entity_id)
        WHERE a.entity_id < b.entity_id AND ta.unit = tb.unit AND a.phone <> b.phone
        ORDER BY 1, 2
        """,
        entities=state.entities.select(["entity_id", "phone"]),
        truth=phones,
    ).cast(LABEL_SCHEMA)
    assert pairs.num_rows >= MIN_LABELLED_MATCHES, pairs.num_rows
    plain = train(engine, state.entities, tmp_path / "plain.json", max_pairs=2e5)
    taught = train(engine, state.entities, tmp_path / "taught.json", max_pairs=2e5, labels=pairs)
    few = train(engine, state.entities, tmp_path / "few.json", max_pairs=2e5, labels=pairs.slice(0, 3))
    before, after = _m(plain, "phone"), _m(taught, "phone")
    differ = next(label for label in before if label.lower().startswith("all other"))
    assert after[differ] > before[differ]
    assert _parameters(few) == _parameters(plain)
    assert MODEL_PATH.resolve() not in {p.resolve() for p in (plain, taught, few)}


def _verdict_rows(rows: list[tuple[str, str, str, str]]) -> str:
    header = "verdict_id,feed,record_id,unit_id_a,unit_id_b,decision,decided_by,decided_at,note\n"
    return header + "".join(
        f"{v},{feed},{record},,{unit},{decision},文新街道办,{DAY},\n"
        for v, feed, record, unit, decision in rows
    )


def test_each_run_reports_labelled_precision_and_recall_that_follow_the_verdicts(sample, tmp_path):
    """No verdicts: no pairs, no figures. Verdicts agreeing with the model's links give figures; a verdict
    saying a pair the model links is two units lowers precision."""
    _, store, first = sample
    assert first.meta["accuracy"]["labelled"] == {
        "pairs": 0, "matches": 0, "precision": None, "recall": None, "f1": None, "threshold": 0.99,
    }  # fmt: skip
    state = first.result.state
    records = {
        row["entity_id"]: (feed, row["record_id"])
        for feed, table in state.records.items()
        if "entity_id" in table.column_names
        for row in table.select(["record_id", "entity_id"]).to_pylist()
    }
    members = state.members.to_pylist()
    sizes = Counter(m["unit_id"] for m in members if m["unit_id"])
    by_model = [
        m for m in members if m["matched_by"] == "model" and m["probability"] >= 0.99 and m["unit_id"]
    ]
    agree = [m for m in by_model if sizes[m["unit_id"]] > 2][:8]
    pairs = {m["unit_id"]: m for m in by_model if sizes[m["unit_id"]] == 2}  # one record of each
    contradict = list(pairs.values())[:3]
    assert len(agree) == 8 and len(contradict) == 3
    rows = [(f"A{n}", *records[m["entity_id"]], m["unit_id"], "same_unit") for n, m in enumerate(agree)]
    path = tmp_path / "agree.csv"
    path.write_text(_verdict_rows(rows), encoding="utf-8")
    add_verdict_file(path, store.verdicts_dir)
    agreed = resolve_and_land(store, key=TOKEN_KEY).meta["accuracy"]["labelled"]
    assert agreed["pairs"] == agreed["matches"] >= len(agree)
    assert agreed["precision"] == 1.0 and agreed["recall"] is not None and agreed["f1"] is not None
    rows = [
        (f"B{n}", *records[m["entity_id"]], m["unit_id"], "different_units") for n, m in enumerate(contradict)
    ]
    path = tmp_path / "contradict.csv"
    path.write_text(_verdict_rows(rows), encoding="utf-8")
    add_verdict_file(path, store.verdicts_dir)
    contradicted = resolve_and_land(store, key=TOKEN_KEY).meta["accuracy"]["labelled"]
    assert contradicted["pairs"] > agreed["pairs"] and contradicted["matches"] == agreed["matches"]
    assert contradicted["precision"] < agreed["precision"]
    # each split pair is one the model links: a false positive at the threshold
    true_positives = agreed["recall"] * agreed["matches"]
    assert contradicted["precision"] == pytest.approx(true_positives / (true_positives + len(contradict)))
    assert contradicted["recall"] == agreed["recall"]
