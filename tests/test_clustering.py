"""Hard constraints of clustering: distinct USCCs never merge, verdicts keep units apart; the incremental
region reaches exactly the clusters a change can affect."""

import pyarrow as pa

from pipelines.resolve.clustering import Constraints, cluster, region
from pipelines.resolve.engine import DuckDBEngine
from pipelines.resolve.model import EDGE_SCHEMA
from pipelines.resolve.tables import MEMBER_SCHEMA
from pipelines.resolve.types import Edge


def _model(a, b, p):
    return Edge(a, b, p, "model")


def _groups(result):
    return sorted(sorted(members) for members in result.clusters)


def test_a_lookalike_record_cannot_chain_two_uscc_siblings():
    uscc = {"parent": "91330106MA2H00001X", "branch": "91330106MA2H00002Y"}
    edges = [_model("x", "parent", 0.99), _model("x", "branch", 0.98), _model("parent", "branch", 0.97)]
    result = cluster(["parent", "branch", "x"], edges, uscc, link_threshold=0.9)
    assert _groups(result) == [["branch"], ["parent", "x"]]
    assert result.refused == 2
    assert result.joined_by["x"] == edges[0]


def test_cannot_link_verdict_overrides_a_strong_edge_even_through_others():
    edges = [_model("a", "b", 0.999), _model("b", "c", 0.95), _model("a", "c", 0.95)]
    result = cluster(["a", "b", "c"], edges, {}, 0.9, Constraints(cannot=(("a", "c"),)))
    assert _groups(result) == [["a", "b"], ["c"]]


def test_threshold_and_same_uscc():
    uscc = {"r1": "U1", "t1": "U1"}
    edges = [Edge("r1", "t1", 1.0, "uscc"), _model("t1", "e1", 0.5), _model("e1", "e2", 0.95)]
    result = cluster(["r1", "t1", "e1", "e2"], edges, uscc, link_threshold=0.9)
    assert _groups(result) == [["e1", "e2"], ["r1", "t1"]]
    assert result.refused == 0


def test_verdicts_come_first_and_held_back_entities_join_nothing_else():
    edges = [_model("a", "b", 0.999), _model("c", "d", 0.999)]
    verdicts = Constraints(
        must=(Edge("a", "d", 1.0, "verdict"),), alone=frozenset({"b"}), not_business=frozenset({"c"})
    )
    result = cluster(["a", "b", "c", "d"], edges, {}, 0.9, verdicts)
    assert _groups(result) == [["a", "d"], ["b"], ["c"]]
    assert result.joined_by["a"].matched_by == "verdict"


def test_a_record_tied_between_two_siblings_goes_the_same_way_whatever_the_edge_order():
    uscc = {"parent": "91330106MA2H00001X", "sibling": "91330106MA2H00002Y"}
    edges = [_model("meter", "parent", 0.97), _model("meter", "sibling", 0.97)]
    results = {
        str(_groups(cluster(["parent", "sibling", "meter"], order, uscc, link_threshold=0.9)))
        for order in (edges, edges[::-1])
    }
    assert results == {str([["meter", "parent"], ["sibling"]])}


def test_the_region_holds_the_touched_clusters_and_their_strong_neighbours_only():
    members = pa.Table.from_pylist(
        [{"entity_id": e, "cluster": c} for c, es in {"A": "a1 a2", "B": "b1", "C": "c1", "D": "d1"}.items() for e in es.split()],
        schema=MEMBER_SCHEMA,
    )  # fmt: skip
    edges = pa.Table.from_pylist(
        [
            {"a": "a2", "b": "b1", "probability": 0.995, "matched_by": "model"},  # strong: B is a neighbour
            {"a": "a1", "b": "c1", "probability": 0.5, "matched_by": "model"},  # weak: C is not
            {"a": "b1", "b": "d1", "probability": 1.0, "matched_by": "uscc"},  # two hops away: D is not
            {"a": "new", "b": "d1", "probability": 0.2, "matched_by": "model"},
        ],
        schema=EDGE_SCHEMA,
    )
    constraints = pa.table({"kind": ["must"], "a": ["new"], "b": ["c1"]})
    touched = pa.array(["a1", "new"])
    found = region(DuckDBEngine(), touched, members, edges, constraints, threshold=0.99)
    assert found == {"a1", "a2", "b1", "new", "c1"}
