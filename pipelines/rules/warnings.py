"""Warning rules over the register and the period figures, routed to the unit's division and township.

The rules, their thresholds, look-back windows and severities are data: ``warning_rules.toml`` beside this
module (or the file named by ``UNITFUSION_WARNING_RULES``). Period rules look at every period (YYYY-MM) of
the look-back window, so a backfill of one period is a filter on ``period``; state rules look at the
reference period, the latest period in the tax and electricity figures. A warning's id hashes its rule, unit
and period, so a warning raised again by a later run is the same warning (``first_raised_run`` says since
when). Evidence holds business figures and statuses only: never a person's name, phone or ID token.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import tomllib
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.contracts import output_schema
from pipelines.staging import latest_records
from pipelines.store import RunStore

RULES_PATH = Path(__file__).with_name("warning_rules.toml")
RULES_ENV = "UNITFUSION_WARNING_RULES"
FIGURE_FEEDS = ("registration", "tax", "utility", "waybill")
_LOCAL_TIME = pd.Timedelta(
    hours=8
)  # China Standard Time, no daylight saving: months as the departments see them

Rules = dict[str, Any]


def load_rules(path: Path | str | None = None) -> Rules:
    """The rules file: ``path``, else ``$UNITFUSION_WARNING_RULES``, else the one shipped with the package."""
    path = Path(path or os.environ.get(RULES_ENV) or RULES_PATH)
    rules = tomllib.loads(path.read_text(encoding="utf-8"))
    unknown = sorted(set(rules.get("rules", {})) - set(RULES))
    if unknown:
        raise ValueError(f"{path}: unknown warning rule(s) {unknown}; known: {sorted(RULES)}")
    for name, rule in rules.get("rules", {}).items():
        if rule.get("severity") not in rules.get("priority", {}):
            raise ValueError(
                f"{path}: rule {name!r} has severity {rule.get('severity')!r}, not in [priority]"
            )
    return rules


def shift_period(period: str, months: int) -> str:
    index = int(period[:4]) * 12 + int(period[5:7]) - 1 + months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def warning_id(rule: str, unit_id: str, period: str) -> str:
    return "W" + hashlib.sha1(f"{rule}|{unit_id}|{period}".encode()).hexdigest()[:12]


@dataclass
class Raised:
    """One rule firing: the unit, the period, the figures behind it and any words for the message."""

    unit_id: str
    period: str
    evidence: dict[str, Any]
    words: dict[str, str] | None = None


@dataclass
class Figures:
    """The period figures joined to units through the links: what the rules look at."""

    tax: pd.DataFrame  # unit_id, period, tax_paid, sales, taxpayer_status, updated_at
    power: pd.DataFrame  # unit_id, period, kwh, meter_no
    parcels: pd.DataFrame  # unit_id, period, parcel_count
    registration: pd.DataFrame  # unit_id, status, abnormal_since, changed (YYYY-MM of the last change)
    register: pd.DataFrame  # the register, indexed by unit_id
    reference: str | None
    lookback_months: int

    @property
    def window_start(self) -> str:
        assert self.reference is not None
        return shift_period(self.reference, -(self.lookback_months - 1))

    def in_window(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame[(frame["period"] >= self.window_start) & (frame["period"] <= self.reference)]

    @classmethod
    def build(
        cls, register: pa.Table, links: pa.Table, records: dict[str, pa.Table], lookback_months: int
    ) -> Figures:
        link_frame = links.select(["feed", "record_id", "unit_id"]).to_pandas()

        def joined(feed: str, columns: list[str]) -> pd.DataFrame:
            table = records.get(feed)
            if table is None or not table.num_rows:
                return pd.DataFrame(columns=["unit_id", *columns])
            frame = table.select(["record_id", *columns]).to_pandas()
            units = link_frame[link_frame["feed"] == feed][["record_id", "unit_id"]]
            return frame.merge(units, on="record_id").dropna(subset=["unit_id"])

        def month(moments: pd.Series) -> pd.Series:
            return (moments + _LOCAL_TIME).dt.strftime("%Y-%m") if len(moments) else moments

        tax = joined("tax", ["period", "tax_paid", "sales", "taxpayer_status", "updated_at"])
        power = joined("utility", ["period", "kwh", "meter_no"])
        waybill = joined("waybill", ["shipped_at", "parcel_count"]).dropna(subset=["shipped_at"])
        waybill["period"] = month(waybill["shipped_at"])
        registration = joined("registration", ["status", "abnormal_since", "updated_at"])
        registration["changed"] = month(registration["updated_at"])
        periods = pd.concat([tax["period"], power["period"]]).dropna()
        return cls(
            tax=tax.dropna(subset=["period"]),
            power=power.dropna(subset=["period"]),
            parcels=waybill[["unit_id", "period", "parcel_count"]],
            registration=registration,
            register=register.to_pandas().set_index("unit_id", drop=False),
            reference=str(periods.max()) if len(periods) else None,
            lookback_months=lookback_months,
        )


# -- the rules: each yields what it raises ---------------------------------------------------------------


def _power_without_tax(figures: Figures, rule: Rules) -> Iterator[Raised]:
    months = int(rule["tax_window_months"])
    tax_periods = set(figures.tax["period"])
    kwh = figures.in_window(figures.power).groupby(["unit_id", "period"])["kwh"].sum(min_count=1)
    paid = figures.tax.groupby(["unit_id", "period"])["tax_paid"].sum()
    for (unit_id, period), value in kwh[kwh >= rule["min_kwh"]].items():
        window = [shift_period(period, -i) for i in range(months)]
        if not tax_periods & set(window):
            continue  # no tax figures for these months yet: nothing to compare with
        tax_paid = float(sum(paid.get((unit_id, p), 0.0) for p in window))
        if tax_paid <= rule["max_tax_paid"]:
            evidence = {
                "kwh": round(float(value)),
                "tax_paid": round(tax_paid, 2),
                "tax_periods": [window[-1], window[0]],
                "tax_window_months": months,
            }
            yield Raised(unit_id, period, evidence)


def _changes(figures: Figures, series: pd.Series, rule: Rules, unit: str) -> Iterator[Raised]:
    """Each period of the window against the median of the unit's own earlier periods (``series`` is
    indexed by unit_id and period, holding only the periods fit to compare)."""
    by_unit: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for (unit_id, period), value in series.sort_index().items():
        by_unit[unit_id].append((period, float(value)))
    for unit_id, values in by_unit.items():
        for period, value in values:
            if period < figures.window_start or period > figures.reference:
                continue
            earliest = shift_period(period, -int(rule["history_months"]))
            history = {p: v for p, v in values if earliest <= p < period}
            if len(history) < rule["min_history"]:
                continue
            baseline = statistics.median(history.values())
            if baseline < rule["min_baseline"]:
                continue
            ratio = value / baseline
            if rule["drop_ratio"] < ratio < rule["jump_ratio"]:
                continue
            change = "jump" if ratio >= rule["jump_ratio"] else "drop"
            evidence = {
                "value": round(value, 2),
                "baseline": round(baseline, 2),
                "ratio": round(ratio, 3),
                "change": change,
                "unit": unit,
                "history": {p: round(v, 2) for p, v in history.items()},
            }
            yield Raised(
                str(unit_id), str(period), evidence, {"change": "骤增" if change == "jump" else "骤降"}
            )


def _kwh_change(figures: Figures, rule: Rules) -> Iterator[Raised]:
    power = figures.power.dropna(subset=["kwh"])
    by_period = power.groupby(["unit_id", "period"]).agg(kwh=("kwh", "sum"), meters=("meter_no", "nunique"))
    usual = by_period.groupby(level="unit_id")["meters"].transform("max")
    yield from _changes(figures, by_period.loc[by_period["meters"] >= usual, "kwh"], rule, "kWh")


def _tax_change(figures: Figures, rule: Rules) -> Iterator[Raised]:
    figure = rule["figure"]
    values = figures.tax.dropna(subset=[figure]).groupby(["unit_id", "period"])[figure].sum()
    yield from _changes(figures, values, rule, "yuan")


def _tax_without_power(figures: Figures, rule: Rules) -> Iterator[Raised]:
    if not len(figures.power):
        return  # no electricity figures at all: nothing to say about accounts
    with_power = set(figures.power["unit_id"])
    tax = figures.in_window(figures.tax)
    paid = tax.groupby("unit_id")["tax_paid"].sum()
    filings = tax.groupby("unit_id").size()
    for unit_id, value in paid[paid >= rule["min_tax_paid"]].items():
        if unit_id not in with_power:
            evidence = {
                "tax_paid": round(float(value), 2),
                "tax_filings": int(filings[unit_id]),
                "utility_accounts": 0,
                "lookback_months": figures.lookback_months,
            }
            yield Raised(unit_id, figures.reference, evidence)


ACTIVITY_WORDS = (
    ("kwh", "用电 {:,.0f} 千瓦时"),
    ("tax_paid", "纳税 {:,.0f} 元"),
    ("parcels", "寄件 {:,.0f} 件"),
)


def _inactive_but_active(figures: Figures, rule: Rules) -> Iterator[Raised]:
    closed = tuple(rule["closed_statuses"])
    abnormal = set(rule["abnormal_taxpayer_statuses"])
    kwh = figures.in_window(figures.power).groupby(["unit_id", "period"])["kwh"].sum()
    kwh = kwh[kwh >= rule["min_kwh"]]
    parcels = figures.in_window(figures.parcels).groupby(["unit_id", "period"])["parcel_count"].sum()
    tax = figures.in_window(figures.tax)
    paying = tax[(tax["tax_paid"] > 0) & ~tax["taxpayer_status"].fillna("").str.startswith(closed)]
    paid = paying.groupby(["unit_id", "period"])["tax_paid"].sum()
    latest_tax = tax.sort_values(["period", "updated_at"]).groupby("unit_id").last()
    changed = figures.registration.groupby("unit_id")["changed"].max()
    recent = shift_period(figures.reference, -int(rule["activity_months"]))

    def after(series: pd.Series, unit_id: str, since: str) -> float:
        if unit_id not in series.index.get_level_values(0):
            return 0.0
        values = series.loc[unit_id]
        return float(values[values.index > since].sum())

    status_of = figures.register["status"].fillna("")
    tax_status_of = latest_tax["taxpayer_status"]
    candidates = set(status_of.index[status_of.str.startswith(closed)])
    candidates |= set(tax_status_of.index[tax_status_of.isin(abnormal)])
    for unit_id in sorted(candidates & set(figures.register.index)):
        status, tax_status = status_of[unit_id], tax_status_of.get(unit_id)
        if status.startswith(closed):
            since = changed.get(unit_id) or recent
            activity = {
                "kwh": after(kwh, unit_id, since),
                "tax_paid": after(paid, unit_id, since),
                "parcels": after(parcels, unit_id, since),
            }
            words = {"status": f"登记状态为{status}（{since}）", "since_words": "此后仍"}
            active = activity["kwh"] > 0 or activity["tax_paid"] > 0
        elif tax_status in abnormal:
            since = recent
            activity = {"kwh": after(kwh, unit_id, since), "parcels": after(parcels, unit_id, since)}
            words = {
                "status": f"纳税人状态为{tax_status}",
                "since_words": f"近 {rule['activity_months']} 个月仍",
            }
            active = activity["kwh"] > 0
        else:
            continue
        active = active or activity["parcels"] >= rule["min_parcels"]
        if not active:
            continue
        done = [text.format(activity[key]) for key, text in ACTIVITY_WORDS if activity.get(key)]
        evidence = {
            "registration_status": status or None,
            "taxpayer_status": tax_status,
            "since": since,
            **{f"{key}_after": round(value, 2) for key, value in activity.items()},
        }
        words["activity"] = words.pop("since_words") + "、".join(done)
        yield Raised(unit_id, figures.reference, evidence, words)


def _zombie(figures: Figures, rule: Rules) -> Iterator[Raised]:
    listed = figures.registration.dropna(subset=["abnormal_since"]).groupby("unit_id")["abnormal_since"].min()
    kwh = figures.in_window(figures.power).groupby("unit_id")["kwh"].sum()
    for unit_id in figures.register.index[figures.register["zombie_candidate"].fillna(False).astype(bool)]:
        since = listed.get(unit_id)
        evidence = {
            "abnormal_since": since.isoformat() if since is not None else None,
            "tax_paid": 0.0,
            "kwh": round(float(kwh.get(unit_id, 0.0))),
            "lookback_months": figures.lookback_months,
        }
        yield Raised(unit_id, figures.reference, evidence)


def _multi_licence(figures: Figures, rule: Rules) -> Iterator[Raised]:
    flagged = figures.register[figures.register["multi_licence"].fillna(False).astype(bool)]
    # the resolver groups by operator and site; the operator is not written into the evidence
    for _, group in flagged.groupby(["legal_rep_name", "division_code"], dropna=False):
        for unit_id in group.index:
            others = sorted(u for u in group.index if u != unit_id)
            yield Raised(unit_id, figures.reference, {"licences": len(group), "other_units": others})


def _multi_meter(figures: Figures, rule: Rules) -> Iterator[Raised]:
    power = figures.in_window(figures.power)
    meters = power.groupby("unit_id")["meter_no"].nunique()
    kwh = power.groupby("unit_id")["kwh"].sum()
    for unit_id, count in meters[meters >= rule["min_meters"]].items():
        evidence = {
            "meters": int(count),
            "kwh": round(float(kwh[unit_id])),
            "lookback_months": figures.lookback_months,
        }
        yield Raised(unit_id, figures.reference, evidence)


def _unregistered_ecommerce(figures: Figures, rule: Rules) -> Iterator[Raised]:
    unregistered = set(figures.register.index[figures.register["unregistered"].fillna(False).astype(bool)])
    parcels = figures.in_window(figures.parcels)
    parcels = parcels[parcels["unit_id"].isin(unregistered)]
    total = parcels.groupby("unit_id")["parcel_count"].sum()
    months = parcels.groupby("unit_id")["period"].nunique()
    for unit_id, count in total[total >= rule["min_parcels"]].items():
        if months[unit_id] >= rule["min_months"]:
            evidence = {
                "parcels": int(count),
                "months": int(months[unit_id]),
                "lookback_months": figures.lookback_months,
            }
            yield Raised(unit_id, figures.reference, evidence)


RULES: dict[str, Callable[[Figures, Rules], Iterator[Raised]]] = {
    "power_without_tax": _power_without_tax,
    "kwh_change": _kwh_change,
    "tax_change": _tax_change,
    "tax_without_power": _tax_without_power,
    "inactive_but_active": _inactive_but_active,
    "zombie": _zombie,
    "multi_licence": _multi_licence,
    "multi_meter": _multi_meter,
    "unregistered_ecommerce": _unregistered_ecommerce,
}


# -- assembling the table --------------------------------------------------------------------------------


def compute_warnings(
    register: pa.Table,
    links: pa.Table,
    records: dict[str, pa.Table],
    run_id: str,
    rules: Rules | None = None,
    previous: pa.Table | None = None,
) -> pa.Table:
    """All warnings of a register run, as a table with exactly ``output_schema("warnings")``.

    ``records`` holds the latest staged records per feed (``latest_records``); ``previous`` the warnings of
    the previous published register, whose ``first_raised_run`` carries over to warnings raised again.
    """
    rules = rules or load_rules()
    schema = output_schema("warnings")
    figures = Figures.build(register, links, records, int(rules["lookback_months"]))
    if figures.reference is None or not register.num_rows:
        return schema.empty_table()
    first_raised = {}
    if previous is not None and previous.num_rows:
        ids, runs = previous["warning_id"].to_pylist(), previous["first_raised_run"].to_pylist()
        first_raised = dict(zip(ids, runs, strict=True))
    units = {row["unit_id"]: row for row in register.to_pylist()}
    rows = []
    for name, rule in rules["rules"].items():
        if not rule.get("enabled", True):
            continue
        for raised in RULES[name](figures, rule):
            unit = units[raised.unit_id]
            fields = {**raised.evidence, **(raised.words or {})}  # words in Chinese over the evidence's codes
            message = rule["message"].format_map({"name": unit["name"], "period": raised.period, **fields})
            identifier = warning_id(name, raised.unit_id, raised.period)
            rows.append(
                {
                    "warning_id": identifier,
                    "rule": name,
                    "severity": rule["severity"],
                    "unit_id": raised.unit_id,
                    "unit_name": unit["name"],
                    "uscc": unit["uscc"],
                    "period": raised.period,
                    "message": message,
                    "evidence": json.dumps(raised.evidence, ensure_ascii=False, sort_keys=True, default=str),
                    "division_code": unit["division_code"],
                    "township": unit["township"],
                    "priority": int(rules["priority"][rule["severity"]]),
                    "first_raised_run": first_raised.get(identifier, run_id),
                    "run_id": run_id,
                }
            )
    rows.sort(key=lambda r: (r["priority"], r["division_code"] or "", r["township"] or "", r["warning_id"]))
    return pa.Table.from_pylist(rows, schema=schema)


def previous_warnings(store: RunStore) -> pa.Table | None:
    """The warnings of the published register, if it has any."""
    latest = store.register_latest()
    path = latest / "warnings.parquet" if latest else None
    return pq.read_table(path) if path and path.exists() else None


def warnings_for_register(
    store: RunStore,
    tables: dict[str, pa.Table],
    run_id: str,
    rules: Rules | None = None,
    records: dict[str, pa.Table] | None = None,
) -> pa.Table:
    """Warnings of a register run about to be written: figures from the committed staging (``records``,
    when the caller has read them for the resolver), ids carried over from the published register."""
    if records is None:
        records = {feed: latest_records(store, feed) for feed in FIGURE_FEEDS}
    return compute_warnings(
        tables["register"], tables["links"], records, run_id, rules, previous_warnings(store)
    )
