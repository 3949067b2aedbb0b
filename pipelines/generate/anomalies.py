"""Anomalies planted in the period figures of a few units, for the warning rules and the BI marts to find.

The planter sits between the feed maker and the writer: it sees every record of a family as it is emitted and
changes only figures and statuses (kWh, tax paid, sales, taxpayer or registration status) of the units it
chose. Its choices come from its own ``random.Random`` derived from the seed, so the main generator draws
exactly what it drew before: every record keeps its identity fields and record id, byte for byte. A planted
anomaly is written to ``anomalies.jsonl`` only where the figures show it (a unit chosen for "heavy power, no
tax" that has no electricity account shows nothing).

Two families of kinds. ``SHARES``: what the warning rules look for (pipelines/rules). ``TREND_SHARES``: the
activity trends the marts' lock-on lists and demography look for (pipelines/marts), drawn from a generator of
their own so that the warning kinds keep their units and figures for a seed:

- ``goes_dormant``: a registered, operating unit whose activity stops after a month at least four months
  before the data ends. Its departments keep their records as a real feed would: the tax office still receives
  its filings, now zero returns (sales and tax paid 0); the utility still reads its meters, at 0 kWh. Waybills
  cannot be unsent without changing which records exist, so only units that shipped nothing after the stop
  show it.
- ``tax_falling``: a monthly filer whose tax paid falls month on month over at least the last three
  periods, each month to at most ``FALL_RATIO`` of the one before, the last to at most ``TOTAL_FALL_RATIO`` of
  the first.
- ``pillar_power_halves``: one of the city's ``PILLAR_TOP`` largest electricity users (its consumption is
  raised to a large plant's) whose last month is about half the mean of its earlier months. Its rank is known
  only when the whole city is made: those lines come last, from ``finish``.
"""

from __future__ import annotations

import heapq
import math
import random
import statistics
from collections import defaultdict
from collections.abc import Callable
from typing import IO, Any

from pipelines.generate.feeds import TAX_MONTHS
from pipelines.generate.units import AS_OF, TAX_WINDOW_START, Unit

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

# Share per trend kind of the units that fit it (``_fits``) and were not chosen for a kind above.
TREND_SHARES = {
    "goes_dormant": 0.008,
    "tax_falling": 0.02,
    "pillar_power_halves": 0.02,
}
# Until this many of a kind show, choose it in this share of its fitting units, so that small cities hold it.
EARLY_SHOWN, EARLY_SHARE = 3, 0.3
LAST_MONTH = REFERENCE  # the data's last month (power and waybills; tax ends a month earlier)
QUIET_MONTHS = 4  # goes_dormant: no activity in at least the last four months
DORMANT_STOPS = tuple(p for p in TAX_MONTHS if "2026-01" <= p <= "2026-06")  # last active months to plant
FALL_RATIO = 0.8  # tax_falling: each month at most this share of the month before
TOTAL_FALL_RATIO = 0.5  # ... and the last at most this share of the first
MIN_FALLS = 3
PILLAR_TOP = 10  # a pillar unit: among the city's ten largest users by kWh over the power months
POWER_HUNGRY = ("factory", "logistics", "retail", "farm")  # where a city's largest users are
PILLAR_KWH = (3_000_000, 6_000_000)  # monthly kWh the chosen unit's first reading is scaled to
HALF = (0.4, 0.6)  # "about half": the last month against the mean of the earlier ones


class AnomalyPlanter:
    """Wraps ``emit``: call ``begin(family)`` before a family's records and ``end(handle)`` after them."""

    def __init__(self, seed: int, emit: Emit) -> None:
        self.rng = random.Random(f"unitfusion-anomalies-{seed}")  # str seeds are stable across processes
        self.trend_rng = random.Random(f"unitfusion-trends-{seed}")
        self.forward = emit
        self.chosen: dict[str, tuple[str, dict[str, Any]]] = {}
        self.seen: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self.planted = 0
        self.shown: dict[str, int] = defaultdict(int)  # trend kinds the figures showed so far
        self.family_kwh: dict[str, float] = defaultdict(float)
        self.top_kwh: list[float] = []  # min-heap of the city's PILLAR_TOP largest unit totals so far
        self.pillars: list[tuple[str, float, dict[str, Any]]] = []  # (unit_id, total kWh, detail)

    def begin(self, family: list[Unit]) -> None:
        self.chosen, self.seen, self.family_kwh = {}, {}, defaultdict(float)
        for unit in family:
            roll, cumulative = self.rng.random(), 0.0
            for kind, share in SHARES.items():
                cumulative += share
                if roll < cumulative:
                    self._choose(unit, kind)
                    break
        for unit in family:
            roll, cumulative = self.trend_rng.random(), 0.0
            if unit.unit_id in self.chosen:
                continue
            for kind, share in TREND_SHARES.items():
                if not _fits(unit, kind):
                    continue
                cumulative += EARLY_SHARE if share and self.shown[kind] < EARLY_SHOWN else share
                if roll < cumulative:
                    self._choose_trend(unit, kind)
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

    def _choose_trend(self, unit: Unit, kind: str) -> None:
        rng = self.trend_rng
        plan: dict[str, Any]
        if kind == "goes_dormant":
            plan = {"stop": rng.choice(DORMANT_STOPS)}
        elif kind == "tax_falling":
            falls = rng.choice((3, 3, 4))
            plan = {
                "start": TAX_MONTHS[-falls - 1],
                "ratios": [round(rng.uniform(0.45, 0.75), 3) for _ in range(falls)],
            }
        else:
            plan = {"target_kwh": rng.uniform(*PILLAR_KWH), "half": rng.uniform(0.46, 0.54), "readings": []}
        self.chosen[unit.unit_id] = (kind, plan)
        self.seen[unit.unit_id] = defaultdict(list)

    def emit(self, feed: str, record: dict[str, Any], unit_id: str | None) -> None:
        if unit_id in self.chosen:
            kind, plan = self.chosen[unit_id]
            if kind in TREND_SHARES:
                _change_trend(feed, record, kind, plan)
            else:
                self._change(feed, record, kind, plan)
            self.seen[unit_id][feed].append(record)
        if feed == "utility" and unit_id and record.get("kwh"):
            self.family_kwh[unit_id] += record["kwh"]
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
            if kind in TREND_SHARES and not plan.get("changed"):
                continue  # its own figures already looked so: not planted
            if kind == "pillar_power_halves":
                detail = _halving_shown(self.seen[unit_id])
                if detail:
                    self.pillars.append((unit_id, self.family_kwh[unit_id], detail))
                    self.shown[kind] += 1
                continue
            shown = (
                _trend_shown(kind, self.seen[unit_id])
                if kind in TREND_SHARES
                else _shown(kind, plan, self.seen[unit_id])
            )
            for period, detail in shown:
                write(handle, {"unit_id": unit_id, "kind": kind, "period": period, **detail})
                self.planted += 1
                self.shown[kind] += 1
        for total in self.family_kwh.values():
            if len(self.top_kwh) < PILLAR_TOP:
                heapq.heappush(self.top_kwh, total)
            elif total > self.top_kwh[0]:
                heapq.heapreplace(self.top_kwh, total)

    def finish(self, handle: IO[str], write: Callable[[IO[str], dict[str, Any]], None]) -> None:
        """Write the halving pillar units that are among the city's largest users, now that all are known."""
        for unit_id, total, detail in self.pillars:
            if len(self.top_kwh) == PILLAR_TOP and total < self.top_kwh[0]:
                continue
            rank = 1 + sum(other > total for other in self.top_kwh)
            write(handle, {"unit_id": unit_id, "kind": "pillar_power_halves", **detail, "rank": rank})
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


# -- activity trends, for the marts --------------------------------------------------------------------------


def _fits(unit: Unit, kind: str) -> bool:
    """A registered, operating unit, with the history the kind needs (and not a zombie or closing)."""
    if not unit.registered or unit.closed_on or unit.abnormal_since or unit.status not in ACTIVE:
        return False
    if kind == "goes_dormant":
        return not unit.online and unit.established_on < TAX_WINDOW_START  # online sellers ship on
    if kind == "tax_falling":
        return unit.kind in ("company", "branch")  # the monthly filers
    return (
        unit.kind == "company"
        and unit.industry.sector in POWER_HUNGRY
        and unit.established_on < TAX_WINDOW_START
    )


def _change_trend(feed: str, record: dict[str, Any], kind: str, plan: dict[str, Any]) -> None:
    """Change the figures of one record of a trend unit in place (records of a unit come in period order)."""
    period = record.get("period")
    if kind == "goes_dormant" and period and period > plan["stop"]:
        for name in ("tax_paid", "sales") if feed == "tax" else ("kwh",) if feed == "utility" else ():
            if record.get(name):
                record[name] = 0.0 if feed == "tax" else 0
                plan["changed"] = True
    elif kind == "tax_falling" and feed == "tax" and period:
        if period == plan["start"] and (record.get("tax_paid") or 0) > 0:
            plan["base"] = (record["tax_paid"], record.get("sales"))
        elif period > plan["start"] and "base" in plan:
            steps = TAX_MONTHS.index(period) - TAX_MONTHS.index(plan["start"])
            share = math.prod(plan["ratios"][:steps])
            paid, sales = plan["base"]
            record["tax_paid"] = round(paid * share, 2)
            plan["changed"] = True
            if sales is not None and record.get("sales") is not None:
                record["sales"] = round(sales * share, 2)
    elif kind == "pillar_power_halves" and feed == "utility" and period:
        if period <= plan.get("last_period", ""):
            plan["readings"] = []  # the next meter's readings begin
        plan["last_period"] = period
        kwh = record.get("kwh")
        if kwh is None:
            return
        factor = plan.setdefault("factor", plan["target_kwh"] / max(kwh, 1.0))
        plan["changed"] = True
        if period == LAST_MONTH and plan["readings"]:
            record["kwh"] = round(statistics.mean(plan["readings"]) * plan["half"])
        else:
            record["kwh"] = round(kwh * factor)
            plan["readings"].append(record["kwh"])


def _months_after(period: str, last: str) -> int:
    return (int(last[:4]) * 12 + int(last[5:7])) - (int(period[:4]) * 12 + int(period[5:7]))


def _previous_month(period: str) -> str:
    index = int(period[:4]) * 12 + int(period[5:7]) - 2
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _active_months(seen: dict[str, list[dict[str, Any]]]) -> set[str]:
    """Months with tax paid, electricity used or a waybill sent."""
    months = {p for p, v in _monthly(seen.get("tax", []), "tax_paid").items() if v > 0}
    months |= {p for p, v in _monthly(seen.get("utility", []), "kwh").items() if v > 0}
    months |= {r["shipped_at"][:7] for r in seen.get("waybill", []) if r.get("shipped_at")}
    return months


def _trend_shown(kind: str, seen: dict[str, list[dict[str, Any]]]) -> list[tuple[str, dict]]:
    """(period, detail) of the dormancy or the falling tax the unit's records now show."""
    tax = seen.get("tax", [])
    if kind == "goes_dormant":
        active = _active_months(seen)
        last = max(active, default=None)
        if last is None or _months_after(last, LAST_MONTH) < QUIET_MONTHS:
            return []
        after = [r for feed in ("tax", "utility") for r in seen.get(feed, []) if r["period"] > last]
        return [
            (
                last,
                {
                    "quiet_months": _months_after(last, LAST_MONTH),
                    "active_months": len(active),
                    "zero_records_after": len(after),
                },
            )
        ]
    paid = _monthly(tax, "tax_paid")
    run = [TAX_MONTHS[-1]] if paid.get(TAX_MONTHS[-1], 0) > 0 else []
    while run and paid.get(_previous_month(run[0]), 0) > 0:
        if paid[run[0]] > FALL_RATIO * paid[_previous_month(run[0])]:
            break
        run.insert(0, _previous_month(run[0]))
    if len(run) - 1 < MIN_FALLS or paid[run[-1]] > TOTAL_FALL_RATIO * paid[run[0]]:
        return []
    detail = {
        "falls": len(run) - 1,
        "from_period": run[0],
        "tax_paid": [round(paid[p], 2) for p in run],
        "total_fall": round(1 - paid[run[-1]] / paid[run[0]], 3),
    }
    return [(run[-1], detail)]


def _halving_shown(seen: dict[str, list[dict[str, Any]]]) -> dict[str, Any] | None:
    """The halving in the unit's monthly kWh, if its records show it (its rank is checked in ``finish``)."""
    kwh = _monthly(seen.get("utility", []), "kwh")
    earlier = [v for p, v in kwh.items() if p < LAST_MONTH]
    if LAST_MONTH not in kwh or len(earlier) < 2:
        return None
    ratio = kwh[LAST_MONTH] / statistics.mean(earlier)
    if not HALF[0] <= ratio <= HALF[1]:
        return None
    return {
        "period": LAST_MONTH,
        "kwh": round(kwh[LAST_MONTH]),
        "earlier_mean_kwh": round(statistics.mean(earlier)),
        "ratio": round(ratio, 3),
        "total_kwh": round(sum(kwh.values())),
    }
