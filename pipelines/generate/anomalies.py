"""Anomalies planted in the period figures of a few units, for the warning rules to find.

The planter sits between the feed maker and the writer: it sees every record of a family as it is emitted and
changes only figures and statuses (kWh, tax paid, sales, taxpayer or registration status) of the units it
chose. Its choices come from its own ``random.Random`` derived from the seed, so the main generator draws
exactly what it drew before: every record keeps its identity fields and record id, byte for byte. A planted
anomaly is written to ``anomalies.jsonl`` only where the figures show it (a unit chosen for "heavy power, no
tax" that has no electricity account shows nothing).
"""

from __future__ import annotations

import random
import statistics
from collections import defaultdict
from collections.abc import Callable
from typing import IO, Any

from pipelines.generate.units import AS_OF, Unit

Emit = Callable[[str, dict[str, Any], str | None], None]

# Share of units chosen per kind (about half of them show it: the rest lack the figures it needs).
SHARES = {
    "power_without_tax": 0.012,
    "tax_without_power": 0.02,
    "kwh_change": 0.012,
    "tax_change": 0.012,
    "inactive_but_active": 0.015,
}
REFERENCE = AS_OF.strftime("%Y-%m")  # the latest period of the figures: where state anomalies are dated
KWH_PERIOD = REFERENCE  # the last billing month
TAX_PERIOD = "2026-09"  # the last tax period (monthly and quarterly filers)
HEAVY_KWH = 60_000  # per month, at least, for "heavy power"
BIG_TAX = 150_000  # yuan per paying filing, for "tax but no electricity account"
ACTIVE = ("存续", "在业", "在营")


class AnomalyPlanter:
    """Wraps ``emit``: call ``begin(family)`` before a family's records and ``end(handle)`` after them."""

    def __init__(self, seed: int, emit: Emit) -> None:
        self.rng = random.Random(f"unitfusion-anomalies-{seed}")  # str seeds are stable across processes
        self.forward = emit
        self.chosen: dict[str, tuple[str, dict[str, Any]]] = {}
        self.seen: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self.planted = 0

    def begin(self, family: list[Unit]) -> None:
        self.chosen, self.seen = {}, {}
        for unit in family:
            roll, cumulative = self.rng.random(), 0.0
            for kind, share in SHARES.items():
                cumulative += share
                if roll < cumulative:
                    self._choose(unit, kind)
                    break

    def _choose(self, unit: Unit, kind: str) -> None:
        rng = self.rng
        if not unit.registered or unit.closed_on:
            return
        if unit.abnormal_since and kind != "inactive_but_active":
            return  # would also change who is a zombie
        plan: dict[str, Any] = {}
        if kind in ("kwh_change", "tax_change"):
            jump = rng.random() < 0.5
            plan["factor"] = round(rng.uniform(8, 12) if jump else rng.uniform(0.03, 0.1), 3)
        elif kind == "inactive_but_active":
            if unit.status in ACTIVE and rng.random() < 0.6:
                plan["registration_status"] = rng.choice(("吊销", "注销"))
            else:
                plan["taxpayer_status"] = "非正常"
        elif kind == "power_without_tax":
            plan["target_kwh"] = HEAVY_KWH * rng.uniform(2.5, 5)
        else:
            plan["target_tax"] = BIG_TAX * rng.uniform(1, 2)
        self.chosen[unit.unit_id] = (kind, plan)
        self.seen[unit.unit_id] = defaultdict(list)

    def emit(self, feed: str, record: dict[str, Any], unit_id: str | None) -> None:
        if unit_id in self.chosen:
            kind, plan = self.chosen[unit_id]
            self._change(feed, record, kind, plan)
            self.seen[unit_id][feed].append(record)
        self.forward(feed, record, unit_id)

    def _change(self, feed: str, record: dict[str, Any], kind: str, plan: dict[str, Any]) -> None:
        """Change the figures of one record in place, before the writer takes it."""
        kwh, paid = record.get("kwh"), record.get("tax_paid")
        if kind == "power_without_tax":
            if feed == "tax" and paid is not None:
                record["tax_paid"] = 0.0
            elif feed == "utility" and kwh is not None:
                plan.setdefault("factor", plan["target_kwh"] / max(kwh, 1.0))
                record["kwh"] = round(kwh * plan["factor"])
        elif kind == "tax_without_power" and feed == "tax" and paid:
            plan.setdefault("factor", plan["target_tax"] / paid)
            record["tax_paid"] = round(paid * plan["factor"], 2)
            if record.get("sales") is not None:
                record["sales"] = round(record["sales"] * plan["factor"], 2)
        elif (
            kind == "kwh_change" and feed == "utility" and record["period"] == KWH_PERIOD and kwh is not None
        ):
            record["kwh"] = round(kwh * plan["factor"], 1)
        elif kind == "tax_change" and feed == "tax" and record["period"] == TAX_PERIOD:
            for name in ("sales", "tax_paid"):
                if record.get(name) is not None:
                    record[name] = round(record[name] * plan["factor"], 2)
        elif kind == "inactive_but_active":
            if feed == "registration" and "registration_status" in plan:
                record["status"] = plan["registration_status"]
            elif feed == "tax" and "taxpayer_status" in plan:
                record["taxpayer_status"] = plan["taxpayer_status"]

    def end(self, handle: IO[str], write: Callable[[IO[str], dict[str, Any]], None]) -> None:
        """Write the anomalies of the family that the figures show."""
        for unit_id, (kind, plan) in self.chosen.items():
            for period, detail in _shown(kind, plan, self.seen[unit_id]):
                write(handle, {"unit_id": unit_id, "kind": kind, "period": period, **detail})
                self.planted += 1


def _monthly(records: list[dict[str, Any]], field: str) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for record in records:
        if record.get(field) is not None and record.get("period"):
            totals[record["period"]] += record[field]
    return dict(totals)


def _complete_kwh(records: list[dict[str, Any]]) -> dict[str, float]:
    """kWh per month, only months in which every meter of the unit reported."""
    meters = {r.get("meter_no") for r in records}
    readings: dict[str, set] = defaultdict(set)
    for record in records:
        if record.get("kwh") is not None:
            readings[record["period"]].add(record.get("meter_no"))
    totals = _monthly(records, "kwh")
    return {p: v for p, v in totals.items() if readings[p] == meters}


def _shown(kind: str, plan: dict[str, Any], seen: dict[str, list[dict[str, Any]]]) -> list[tuple[str, dict]]:
    """(period, detail) of each anomaly the unit's records now show."""
    power, tax = seen.get("utility", []), seen.get("tax", [])
    if kind == "power_without_tax":
        return [(p, {"kwh": round(v)}) for p, v in sorted(_monthly(power, "kwh").items()) if v >= HEAVY_KWH]
    if kind == "tax_without_power":
        paid = sum(r.get("tax_paid") or 0.0 for r in tax)
        return [(REFERENCE, {"tax_paid": round(paid, 2)})] if not power and paid >= 2 * BIG_TAX else []
    if kind == "kwh_change":
        kwh = _complete_kwh(power)
        history = [v for p, v in kwh.items() if p < KWH_PERIOD]
        if KWH_PERIOD in kwh and len(history) >= 2 and statistics.median(history) >= 1000:
            return [(KWH_PERIOD, {"factor": plan["factor"]})]
        return []
    if kind == "tax_change":
        sales = _monthly(tax, "sales")
        history = [v for p, v in sales.items() if p < TAX_PERIOD]
        if sales.get(TAX_PERIOD, 0) > 0 and len(history) >= 3 and statistics.median(history) >= 20_000:
            return [(TAX_PERIOD, {"factor": plan["factor"]})]
        return []
    return _inactive_shown(plan, seen)


def _inactive_shown(plan: dict[str, Any], seen: dict[str, list[dict[str, Any]]]) -> list[tuple[str, dict]]:
    """A closed registration with power, tax or parcels after its last change; a 非正常 taxpayer with power
    or parcels in the last three months."""
    kwh = _monthly(seen.get("utility", []), "kwh")
    parcels: dict[str, float] = defaultdict(float)
    for record in seen.get("waybill", []):
        if record.get("shipped_at") and record.get("parcel_count"):
            parcels[record["shipped_at"][:7]] += record["parcel_count"]
    if "registration_status" in plan:
        changed = max(
            (r["updated_at"][:7] for r in seen.get("registration", []) if r.get("updated_at")), default=None
        )
        if changed is None:
            return []
        paid = _monthly([r for r in seen.get("tax", []) if r.get("taxpayer_status") != "注销"], "tax_paid")
        active = (
            any(v >= 1000 for p, v in kwh.items() if p > changed)
            or any(v > 0 for p, v in paid.items() if p > changed)
            or sum(v for p, v in parcels.items() if p > changed) >= 20
        )
        detail = {"registration_status": plan["registration_status"], "since": changed}
    else:
        if not seen.get("tax"):
            return []
        recent = ("2026-08", "2026-09", "2026-10")
        active = any(kwh.get(p, 0) >= 1000 for p in recent) or sum(parcels.get(p, 0) for p in recent) >= 20
        detail = {"taxpayer_status": plan["taxpayer_status"]}
    return [(REFERENCE, detail)] if active else []
