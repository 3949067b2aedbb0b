"""Unit ids stay put across runs, are never given twice, never come back once retired, and every change of
a record's id is in lineage."""

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.resolve.identity import LineageEvent, assign_unit_ids, new_unit_id


def test_first_run_ids_come_from_anchors_and_repeat():
    anchors = {0: "uscc:91330106MA2H00001X", 1: "waybill/W9"}
    ids, events = assign_unit_ids({}, anchors, issued=())
    assert ids == {0: new_unit_id(anchors[0]), 1: new_unit_id(anchors[1])}
    assert events == []
    assert assign_unit_ids({}, anchors, issued=())[0] == ids


def test_new_records_join_an_existing_unit_without_changing_its_id():
    ids, events = assign_unit_ids(
        {"c": {"UOLD1": 2}}, {"c": "uscc:X"}, issued={"UOLD1"}, previous_ids={"UOLD1"}
    )
    assert ids == {"c": "UOLD1"} and events == []


def test_merge_keeps_the_larger_unit_id_and_records_the_other():
    ids, events = assign_unit_ids({"c": {"UA": 3, "UB": 1}}, {"c": "r1"}, {"UA", "UB"}, {"UA", "UB"})
    assert ids == {"c": "UA"}
    assert events == [LineageEvent("merged", "UB", "UA", 1)]


def test_split_keeps_the_id_with_the_larger_part_and_gives_the_rest_a_new_one():
    held = {"big": {"UA": 2}, "small": {"UA": 1}}
    ids, events = assign_unit_ids(held, {"big": "r1", "small": "w1"}, {"UA"}, {"UA"})
    assert ids == {"big": "UA", "small": new_unit_id("w1")}
    assert events == [LineageEvent("split", "UA", new_unit_id("w1"), 1)]


def test_the_part_with_the_units_uscc_keeps_its_id_even_if_a_split_off_part_has_more_records():
    """A township says a meter (12 bills) is not the registered shop's: the shop keeps its id."""
    held = {"shop": {"UA": 2}, "meter": {"UA": 12}}
    anchors = {"shop": "uscc:91330106MA2H00001X", "meter": "utility/E1"}
    ids, events = assign_unit_ids(held, anchors, {"UA"}, {"UA"}, {"UA": "uscc:91330106MA2H00001X"})
    assert ids["shop"] == "UA" and ids["meter"] != "UA"
    assert events == [LineageEvent("split", "UA", ids["meter"], 12)]


def test_a_minted_id_never_equals_one_another_cluster_inherits():
    """The collision a batch once caused: unit U was minted from record r's key; a later batch splits it, the
    part keeping most records inherits U, and the part now anchored on r would mint U again."""
    old = new_unit_id("registration/r")
    held = {"most": {old: 5}, "rest": {old: 1}}
    ids, _ = assign_unit_ids(
        held, {"most": "uscc:91330106MA2H00001X", "rest": "registration/r"}, {old}, {old}
    )
    assert ids["most"] == old
    assert ids["rest"] != old
    assert len(set(ids.values())) == 2


def test_a_retired_id_is_not_minted_again_and_a_vanished_unit_is_retired():
    retired = new_unit_id("tax/T1")
    ids, events = assign_unit_ids({}, {"c": "tax/T1"}, issued={retired})
    assert ids["c"] != retired
    _, events = assign_unit_ids({}, {}, issued={"UGONE"}, previous_ids={"UGONE"})
    assert events == [LineageEvent("retired", "UGONE", None, 0)]


# -- many runs of random merges and splits -----------------------------------------------------------------

RECORDS = [f"r{i}" for i in range(12)]


def _run(partition: list[int], previous: dict[str, str], issued: set[str]) -> tuple[dict[str, str], list]:
    """One run: records in the clusters ``partition`` gives them (-1: in no unit), ids by the rule."""
    clusters: dict[int, list[str]] = {}
    for record, cluster in zip(RECORDS, partition, strict=True):
        if cluster >= 0:
            clusters.setdefault(cluster, []).append(record)
    held = {c: Counter(previous[r] for r in rs if r in previous) for c, rs in clusters.items()}
    anchors = {c: min(rs) for c, rs in clusters.items()}
    ids, events = assign_unit_ids(held, anchors, issued, set(previous.values()))
    return {r: ids[c] for c, rs in clusters.items() for r in rs}, events


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.lists(st.integers(min_value=-1, max_value=5), min_size=12, max_size=12), min_size=1, max_size=8
    )
)
def test_ids_over_random_merges_and_splits(runs):
    previous: dict[str, str] = {}
    issued: set[str] = set()
    retired: set[str] = set()
    for partition in runs:
        current, events = _run(partition, previous, issued)
        by_cluster = {}
        for record, cluster in zip(RECORDS, partition, strict=True):
            if cluster >= 0:
                by_cluster.setdefault(cluster, set()).add(current[record])
        assert all(len(ids) == 1 for ids in by_cluster.values())  # one id per unit
        assert len({next(iter(i)) for i in by_cluster.values()}) == len(by_cluster)  # unique in the run
        assert not (set(current.values()) & retired)  # a retired id never comes back
        moves = {(e.from_unit_id, e.to_unit_id) for e in events if e.event in ("merged", "split")}
        for record, old in previous.items():
            new = current.get(record)
            if new is not None and new != old:
                assert (old, new) in moves, (record, old, new, events)  # every id change is in lineage
        gone = set(previous.values()) - set(current.values())
        logged = {e.from_unit_id for e in events if e.event in ("merged", "retired")}
        assert gone <= logged  # an id that disappears is said to be merged or retired
        retired |= gone
        issued |= set(current.values())
        previous = current
