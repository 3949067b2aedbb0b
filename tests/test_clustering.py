"""Hard constraints of clustering: distinct USCCs never merge, verdicts keep units apart."""

from pipelines.resolve.clustering import cluster_edges


def _groups(clusters):
    return sorted(sorted(members) for members in clusters.values())


def test_a_lookalike_record_cannot_chain_two_uscc_siblings():
    uscc = {"parent": "91330106MA2H00001X", "branch": "91330106MA2H00002Y"}
    edges = [("x", "parent", 0.99), ("x", "branch", 0.98), ("parent", "branch", 0.97)]
    clusters, refused = cluster_edges(["parent", "branch", "x"], edges, uscc, threshold=0.9)
    assert _groups(clusters) == [["branch"], ["parent", "x"]]
    assert refused == 2


def test_cannot_link_verdict_overrides_a_strong_edge_even_through_others():
    edges = [("a", "b", 0.999), ("b", "c", 0.95), ("a", "c", 0.95)]
    clusters, _ = cluster_edges(["a", "b", "c"], edges, {}, threshold=0.9, cannot_link=[("a", "c")])
    assert _groups(clusters) == [["a", "b"], ["c"]]


def test_threshold_and_same_uscc():
    uscc = {"r1": "U1", "t1": "U1"}
    edges = [("r1", "t1", 1.0), ("t1", "e1", 0.5), ("e1", "e2", 0.95)]
    clusters, refused = cluster_edges(["r1", "t1", "e1", "e2"], edges, uscc, threshold=0.9)
    assert _groups(clusters) == [["e1", "e2"], ["r1", "t1"]]
    assert refused == 0


def test_a_record_tied_between_two_siblings_goes_the_same_way_whatever_the_edge_order():
    uscc = {"parent": "91330106MA2H00001X", "sibling": "91330106MA2H00002Y"}
    edges = [("meter", "parent", 0.97), ("meter", "sibling", 0.97)]
    results = {
        str(_groups(cluster_edges(["parent", "sibling", "meter"], order, uscc, threshold=0.9)[0]))
        for order in (edges, edges[::-1])
    }
    assert results == {str([["meter", "parent"], ["sibling"]])}
