"""Stable unit ids across runs, and the lineage of merges and splits.

The rule (documented in README, pinned by tests):
1. A new unit id is ``U`` + 12 hex characters of SHA-1 over the cluster's *anchor*: its valid USCC if it has
   one, else its smallest record key. The same data always gets the same ids.
2. A cluster whose records carried unit ids in the previous run inherits one of them: the previous id that
   most of its records carried (ties: the smaller id). Each previous id goes to one cluster only: the one
   that holds most of its records (ties: the cluster with the smaller anchor).
3. When new evidence joins units, the inherited id survives and each other previous id is written to
   ``lineage`` as ``merged`` into it. When a unit falls apart, the part that inherits keeps the id and each
   other part gets a new id, written as ``split`` from it.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass


@dataclass(frozen=True)
class LineageEvent:
    event: str  # merged / split
    from_unit_id: str
    to_unit_id: str
    records: int  # records of from_unit_id that now belong to to_unit_id


def new_unit_id(anchor: str) -> str:
    return "U" + hashlib.sha1(anchor.encode()).hexdigest()[:12].upper()


def assign_unit_ids(
    clusters: dict[Hashable, list[str]],
    anchors: dict[Hashable, str],
    previous: dict[str, str],
) -> tuple[dict[Hashable, str], list[LineageEvent]]:
    """``clusters``: cluster → record keys; ``anchors``: cluster → anchor; ``previous``: record key → the unit
    id it had in the last run. Returns cluster → unit id, and the lineage events."""
    held: dict[Hashable, Counter[str]] = {
        cluster: Counter(previous[r] for r in records if r in previous)
        for cluster, records in clusters.items()
    }
    # Each previous id goes to the cluster holding most of its records (ties: the smaller anchor).
    holders: dict[str, list[Hashable]] = {}
    for cluster, counts in held.items():
        for old_id in counts:
            holders.setdefault(old_id, []).append(cluster)
    heir_of = {
        old_id: min(candidates, key=lambda c, old_id=old_id: (-held[c][old_id], anchors[c]))
        for old_id, candidates in holders.items()
    }
    assigned: dict[Hashable, str] = {}
    events: list[LineageEvent] = []
    for cluster in sorted(clusters, key=lambda c: anchors[c]):
        inherited = sorted(
            (old_id for old_id in held[cluster] if heir_of[old_id] == cluster),
            key=lambda old_id: (-held[cluster][old_id], old_id),
        )
        unit_id = inherited[0] if inherited else new_unit_id(anchors[cluster])
        assigned[cluster] = unit_id
        events += [LineageEvent("merged", old_id, unit_id, held[cluster][old_id]) for old_id in inherited[1:]]
        events += [
            LineageEvent("split", old_id, unit_id, count)
            for old_id, count in sorted(held[cluster].items())
            if heir_of[old_id] != cluster
        ]
    return assigned, events
