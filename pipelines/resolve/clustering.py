"""Clustering scored pairs into units under hard constraints.

Edges are taken strongest first (deterministic links, then model links by probability) and two clusters are
joined only if that breaks no constraint: a cluster never holds two different valid USCCs (sibling
companies and branches stay apart however alike they look), and never holds two records a township verdict
said are different units. Plain connected components cannot promise that: one record that looks like both
siblings would chain them together.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field


@dataclass
class _Cluster:
    members: list[Hashable]
    uscc: str | None
    forbidden: set[Hashable] = field(default_factory=set)  # records this cluster may never join


class ConstrainedClusters:
    def __init__(self, nodes: Iterable[Hashable], uscc_of: dict[Hashable, str]) -> None:
        self._parent: dict[Hashable, Hashable] = {}
        self._clusters: dict[Hashable, _Cluster] = {}
        for node in nodes:
            self._parent[node] = node
            self._clusters[node] = _Cluster([node], uscc_of.get(node))
        self.refused = 0

    def find(self, node: Hashable) -> Hashable:
        root = node
        while self._parent[root] != root:
            root = self._parent[root]
        while self._parent[node] != root:  # path compression
            self._parent[node], node = root, self._parent[node]
        return root

    def forbid(self, a: Hashable, b: Hashable) -> None:
        """A verdict says ``a`` and ``b`` are different units."""
        self._clusters[self.find(a)].forbidden.add(b)
        self._clusters[self.find(b)].forbidden.add(a)

    def can_join(self, a: Hashable, b: Hashable) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return True
        first, second = self._clusters[ra], self._clusters[rb]
        if first.uscc and second.uscc and first.uscc != second.uscc:
            return False
        # Verdicts are recorded on both sides, so looking through the smaller set is enough.
        if len(first.forbidden) > len(second.forbidden):
            first, rb = second, ra
        return not any(self.find(x) == rb for x in first.forbidden)

    def join(self, a: Hashable, b: Hashable) -> bool:
        """Join the clusters of ``a`` and ``b`` unless a constraint forbids it; True if they are one now."""
        if not self.can_join(a, b):
            self.refused += 1
            return False
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return True
        if len(self._clusters[ra].members) < len(self._clusters[rb].members):
            ra, rb = rb, ra
        kept, gone = self._clusters[ra], self._clusters.pop(rb)
        self._parent[rb] = ra
        kept.members += gone.members
        kept.uscc = kept.uscc or gone.uscc
        kept.forbidden |= gone.forbidden
        return True

    def clusters(self) -> dict[Hashable, list[Hashable]]:
        return {root: cluster.members for root, cluster in self._clusters.items()}


def cluster_edges(
    nodes: Iterable[Hashable],
    edges: Iterable[tuple[Hashable, Hashable, float]],
    uscc_of: dict[Hashable, str],
    threshold: float,
    cannot_link: Iterable[tuple[Hashable, Hashable]] = (),
) -> tuple[dict[Hashable, list[Hashable]], int]:
    """Clusters (root → members) from edges at or above ``threshold``; also how many joins were refused."""
    clusters = ConstrainedClusters(nodes, uscc_of)
    for a, b in cannot_link:
        clusters.forbid(a, b)
    # equal probabilities in node order, so the result never depends on the order edges arrive in
    for a, b, probability in sorted(edges, key=lambda e: (-e[2], str(e[0]), str(e[1]))):
        if probability >= threshold:
            clusters.join(a, b)
    return clusters.clusters(), clusters.refused
