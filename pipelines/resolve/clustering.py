"""Clustering scored edges into units under hard constraints: the one implementation every run uses.

Edges are taken strongest first (township verdicts, codes, model links by falling probability, then the
registered name) and two clusters are joined only if that breaks no constraint: a cluster never holds two
different valid USCCs (sibling companies and branches stay apart however alike they look) nor two different
registration numbers (two licences of one operator, one of them without a readable USCC), and never holds two
entities a township verdict said are different units. Plain connected components cannot promise that: one
record that looks like both siblings would chain them together.

An incremental run clusters only the part of the graph a batch touched (see ``region``): the clusters of the
entities it changed, with their one-hop neighbourhood, so that everything else keeps its unit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pyarrow as pa

from pipelines.resolve.engine import Engine
from pipelines.resolve.types import Edge


@dataclass(frozen=True)
class Constraints:
    """What township verdicts impose on clustering, in entity ids."""

    must: tuple[Edge, ...] = ()  # same unit: joined before any other evidence
    cannot: tuple[tuple[str, str], ...] = ()  # different units, whatever the evidence
    alone: frozenset[str] = frozenset()  # a new unit of its own: joins nothing but by verdict
    not_business: frozenset[str] = frozenset()  # no business: joins nothing but by verdict

    def entities(self) -> set[str]:
        found = {e for edge in self.must for e in (edge.a, edge.b)}
        found |= {e for pair in self.cannot for e in pair}
        return found | self.alone | self.not_business


class ConstrainedClusters:
    """Union-find whose joins can be refused. A node that never joined anything costs nothing."""

    def __init__(self, nodes: Iterable[str], codes: Mapping[str, Mapping[str, str]]) -> None:
        self._nodes = list(nodes)
        self._parent: dict[str, str] = {}
        self._members: dict[str, list[str]] = {}  # of roots that took others in
        self._codes = {kind: dict(of) for kind, of in codes.items()}  # per kind of code, of roots
        self._forbidden: dict[str, set[str]] = {}  # of roots: entities they may never join
        self.refused = 0

    def find(self, node: str) -> str:
        root = node
        while (parent := self._parent.get(root, root)) != root:
            root = parent
        while (parent := self._parent.get(node, node)) != root:  # path compression
            self._parent[node], node = root, parent
        return root

    def forbid(self, a: str, b: str) -> None:
        """A verdict says ``a`` and ``b`` are different units."""
        self._forbidden.setdefault(self.find(a), set()).add(b)
        self._forbidden.setdefault(self.find(b), set()).add(a)

    def can_join(self, a: str, b: str) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return True
        for of in self._codes.values():
            first, second = of.get(ra), of.get(rb)
            if first and second and first != second:
                return False
        # Verdicts are recorded on both sides, so looking through the smaller set is enough.
        forbidden_a, forbidden_b = self._forbidden.get(ra, set()), self._forbidden.get(rb, set())
        if len(forbidden_a) > len(forbidden_b):
            forbidden_a, rb = forbidden_b, ra
        return not any(self.find(x) == rb for x in forbidden_a)

    def _size(self, root: str) -> int:
        return len(self._members.get(root, (root,)))

    def join(self, a: str, b: str) -> bool:
        """Join the clusters of ``a`` and ``b`` unless a constraint forbids it; True if they are one now."""
        if not self.can_join(a, b):
            self.refused += 1
            return False
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return True
        if self._size(ra) < self._size(rb):
            ra, rb = rb, ra
        self._parent[rb] = ra
        self._members.setdefault(ra, [ra]).extend(self._members.pop(rb, [rb]))
        for of in self._codes.values():
            if ra not in of and rb in of:
                of[ra] = of[rb]
        if rb in self._forbidden:
            self._forbidden.setdefault(ra, set()).update(self._forbidden.pop(rb))
        return True

    def clusters(self) -> list[list[str]]:
        """Members of each cluster, sorted, in the order of their first member."""
        found = [sorted(members) for members in self._members.values()]
        found += [[node] for node in self._nodes if node not in self._parent and node not in self._members]
        return sorted(found)


@dataclass(frozen=True)
class Clustering:
    clusters: list[list[str]]
    joined_by: dict[str, Edge]  # the edge that brought each joined entity in (for the links table)
    refused: int  # joins a constraint refused


def cluster(
    nodes: Iterable[str],
    edges: Iterable[Edge],
    uscc_of: Mapping[str, str],
    link_threshold: float,
    constraints: Constraints = Constraints(),
    registration_numbers: Mapping[str, str] | None = None,
) -> Clustering:
    """Clusters of ``nodes`` from ``edges`` (model edges at or above ``link_threshold``) and verdicts;
    ``uscc_of`` and ``registration_numbers``: the codes of which a cluster holds at most one each.

    Edges are taken in ``Edge.order``: equal evidence in entity-id order, so the result never depends on
    the order an engine returned the pairs in."""
    clusters = ConstrainedClusters(nodes, {"uscc": uscc_of, "reg_no": registration_numbers or {}})
    for a, b in constraints.cannot:
        clusters.forbid(a, b)
    held_back = constraints.alone | constraints.not_business
    joined_by: dict[str, Edge] = {}
    for edge in sorted([*constraints.must, *edges], key=lambda e: e.order):
        if edge.matched_by == "model" and edge.probability < link_threshold:
            continue
        if edge.matched_by != "verdict" and (edge.a in held_back or edge.b in held_back):
            continue
        if clusters.find(edge.a) != clusters.find(edge.b) and clusters.join(edge.a, edge.b):
            for node in (edge.b, edge.a):
                joined_by.setdefault(node, edge)
    return Clustering(clusters.clusters(), joined_by, clusters.refused)


def region(
    engine: Engine,
    touched: pa.Array,
    members: pa.Table,
    edges: pa.Table,
    constraints: pa.Table,
    threshold: float,
) -> set[str]:
    """The entities to cluster again: ``touched`` ones, those of every cluster a touched entity is in, and
    of every cluster one strong link away from those (the one-hop neighbourhood). Strong links are the ones
    that could join: codes, model edges at or above ``threshold``, same-unit verdicts."""
    found = engine.query(
        f"""
        WITH inside AS (
            SELECT entity_id FROM touched
            UNION
            SELECT entity_id FROM members WHERE cluster IN (
                SELECT cluster FROM members WHERE entity_id IN (SELECT entity_id FROM touched))
        ),
        strong AS (
            SELECT a, b FROM edges WHERE matched_by <> 'model' OR probability >= {threshold}
            UNION ALL
            SELECT a, b FROM constraints WHERE kind = 'must'
        ),
        crossing AS (
            SELECT b AS outside FROM strong
            WHERE a IN (SELECT entity_id FROM inside) AND b NOT IN (SELECT entity_id FROM inside)
            UNION
            SELECT a FROM strong
            WHERE b IN (SELECT entity_id FROM inside) AND a NOT IN (SELECT entity_id FROM inside)
        )
        SELECT entity_id FROM inside
        UNION
        SELECT entity_id FROM members WHERE cluster IN (
            SELECT cluster FROM members WHERE entity_id IN (SELECT outside FROM crossing))
        """,
        touched=pa.table({"entity_id": touched}),
        members=members.select(["entity_id", "cluster"]),
        edges=edges.select(["a", "b", "probability", "matched_by"]),
        constraints=constraints.select(["kind", "a", "b"]),
    )
    return set(found["entity_id"].to_pylist())
