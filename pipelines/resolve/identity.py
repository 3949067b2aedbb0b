"""Stable unit ids across runs, unique by construction, and the lineage of merges, splits and retirements.

The rule (documented in README, pinned by tests):
1. A cluster whose records carried unit ids in the previous run inherits one of them: the previous id that
   most of its records carried (ties: the smaller id). Each previous id goes to one cluster only: the one
   with the unit's valid USCC, if one has it (a registered business keeps its id when a meter is split off
   it); else the one that holds most of its records (ties: the cluster with the smaller anchor).
2. Any other cluster gets a new id: ``U`` + 12 hex characters of SHA-1 over the cluster's *anchor* (its valid
   USCC if it has one, else its smallest record key). If that id is or ever was in use (the register keeps
   every id it issued, retired ones too), the anchor is salted (``anchor#1``, ``anchor#2`` …) until the id is
   free. So an id is never given to two units, and a retired id never comes back.
3. When new evidence joins units, the inherited id survives and each other previous id is written to
   ``lineage`` as ``merged`` into it. When a unit falls apart, the part that inherits keeps the id and each
   other part gets a new id, written as ``split`` from it. A previous id none of whose records is in a unit
   any more is ``retired``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Hashable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class LineageEvent:
    event: str  # merged / split / retired
    from_unit_id: str
    to_unit_id: str | None
    records: int  # records of from_unit_id that now belong to to_unit_id


def new_unit_id(anchor: str, taken: Collection[str] = ()) -> str:
    """The id minted from ``anchor``: the first of ``anchor``, ``anchor#1``, … whose id is not ``taken``."""
    salt = 0
    while True:
        key = anchor if salt == 0 else f"{anchor}#{salt}"
        unit_id = "U" + hashlib.sha1(key.encode()).hexdigest()[:12].upper()
        if unit_id not in taken:
            return unit_id
        salt += 1


def assign_unit_ids(
    held: Mapping[Hashable, Mapping[str, int]],
    anchors: Mapping[Hashable, str],
    issued: Collection[str],
    previous_ids: Collection[str] = (),
    previous_anchors: Mapping[str, str] | None = None,
) -> tuple[dict[Hashable, str], list[LineageEvent]]:
    """Unit ids for ``anchors``' clusters. ``held[cluster][old_id]``: how many of the cluster's records had
    ``old_id`` in the previous run; ``issued``: every id the register ever issued; ``previous_ids``: the ids
    the clusters' records were in before (those that no cluster holds any more are retired);
    ``previous_anchors``: the USCC anchor (``uscc:…``) of previous ids that had one.
    Returns cluster → unit id, and the lineage events."""
    previous_anchors = previous_anchors or {}
    holders: dict[str, list[Hashable]] = {}
    for cluster in anchors:
        for old_id in held.get(cluster, {}):
            holders.setdefault(old_id, []).append(cluster)
    heir_of = {
        old_id: min(
            candidates,
            key=lambda c, old_id=old_id: (
                anchors[c] != previous_anchors.get(old_id),
                -held[c][old_id],
                anchors[c],
            ),
        )
        for old_id, candidates in holders.items()
    }
    taken = set(issued) | set(holders) | set(previous_ids)
    assigned: dict[Hashable, str] = {}
    events: list[LineageEvent] = []
    for cluster in sorted(anchors, key=lambda c: anchors[c]):
        counts = held.get(cluster, {})
        inherited = sorted(
            (old_id for old_id in counts if heir_of[old_id] == cluster),
            key=lambda old_id: (-counts[old_id], old_id),
        )
        if inherited:
            unit_id = inherited[0]
        else:
            unit_id = new_unit_id(anchors[cluster], taken)
            taken.add(unit_id)
        assigned[cluster] = unit_id
        events += [LineageEvent("merged", old_id, unit_id, counts[old_id]) for old_id in inherited[1:]]
        events += [
            LineageEvent("split", old_id, unit_id, count)
            for old_id, count in sorted(counts.items())
            if heir_of[old_id] != cluster
        ]
    events += [
        LineageEvent("retired", old_id, None, 0) for old_id in sorted(set(previous_ids) - set(holders))
    ]
    return assigned, events
