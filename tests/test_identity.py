"""Unit ids stay put across runs; merges and splits follow the documented rule and land in lineage."""

from pipelines.resolve.identity import LineageEvent, assign_unit_ids, new_unit_id


def test_first_run_ids_come_from_anchors_and_repeat():
    clusters = {0: ["registration/R1", "tax/T1"], 1: ["waybill/W9"]}
    anchors = {0: "uscc:91330106MA2H00001X", 1: "waybill/W9"}
    ids, events = assign_unit_ids(clusters, anchors, previous={})
    assert ids == {0: new_unit_id(anchors[0]), 1: new_unit_id(anchors[1])}
    assert events == []
    assert assign_unit_ids(clusters, anchors, previous={})[0] == ids


def test_new_records_join_an_existing_unit_without_changing_its_id():
    previous = {"registration/R1": "UOLD1", "tax/T1": "UOLD1"}
    clusters = {"c": ["registration/R1", "tax/T1", "tax/T2", "utility/E1"]}
    ids, events = assign_unit_ids(clusters, {"c": "uscc:X"}, previous)
    assert ids == {"c": "UOLD1"} and events == []


def test_merge_keeps_the_larger_unit_id_and_records_the_other():
    previous = {"r1": "UA", "t1": "UA", "t2": "UA", "w1": "UB"}
    ids, events = assign_unit_ids({"c": ["r1", "t1", "t2", "w1"]}, {"c": "r1"}, previous)
    assert ids == {"c": "UA"}
    assert events == [LineageEvent("merged", "UB", "UA", 1)]


def test_split_keeps_the_id_with_the_larger_part_and_gives_the_rest_a_new_one():
    previous = {"r1": "UA", "t1": "UA", "w1": "UA"}
    ids, events = assign_unit_ids(
        {"big": ["r1", "t1"], "small": ["w1"]}, {"big": "r1", "small": "w1"}, previous
    )
    assert ids == {"big": "UA", "small": new_unit_id("w1")}
    assert events == [LineageEvent("split", "UA", new_unit_id("w1"), 1)]
