"""Values the resolver's stages pass to each other: its settings and the scored edges between entities."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import NamedTuple

# Evidence, strongest first: clustering takes edges in this order (model edges by falling probability).
EDGE_ORDER = {
    "verdict": 0, "uscc": 1, "org_code": 1, "model": 2,
    "registered_name": 3, "registered_core": 3, "premises": 3,
}  # fmt: skip
DETERMINISTIC = ("uscc", "org_code", "registered_name", "registered_core", "premises")


@dataclass(frozen=True)
class ResolveSettings:
    # model links at or above join units; chosen on seed 101 at both difficulty levels (docs/resolution.md)
    link_threshold: float = 0.99
    # model links between this and link_threshold go to review. Calibrated with the triage on generated data
    # of seeds 100+ (default and hard): items in 0.3-0.5 still found a wrong or split unit 15-19 % of the
    # time, in 0.1-0.3 9 %; so 0.3 stays
    review_threshold: float = 0.3
    lookback_months: int = 12  # tax_active / power_active / zombie look-back
    zombie_abnormal_years: int = 2
    # over all time, for a sender seen only on waybills (parcels) or a shop only on platforms (orders) to be a
    # unit: the volume of the feed mappings' ``alone_needs_volume``
    ecommerce_min_parcels: int = 60
    ecommerce_min_months: int = 3
    ecommerce_waybill_share: float = 0.5  # of a unit's records, for the e-commerce flag
    # review triage (pipelines/resolve/triage.py), chosen on generated data of seeds 100+ (never 1-3): from 20
    # to 30 bits would add ~100 items per 150k records for 0-14 more useful questions
    settle_margin_bits: float = 20.0  # an uncertain candidate this far below the record's own link: settled
    private_max_kwh: float = 5000.0  # a household account using less (all its records) is no question

    def fingerprint(self) -> str:
        """Changes whenever a setting does: a register kept under other settings is rebuilt, not updated."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


class Edge(NamedTuple):
    """Evidence that entities ``a`` and ``b`` are one unit: how strong and where it comes from. (A named
    tuple: a first load makes hundreds of thousands of them.)"""

    a: str
    b: str
    probability: float
    matched_by: str
    weights: str | None = None  # JSON of the model's per-comparison match weights

    @property
    def order(self) -> tuple:
        """Strongest first; equal evidence in entity-id order, never in the order an engine returned it."""
        return (EDGE_ORDER[self.matched_by], -self.probability, self.a, self.b)
