"""Warning rules over the register and the period figures, routed to the unit's division and township.

The rules, their thresholds, look-back windows and severities are data: ``warning_rules.toml`` beside this
module (or the file named by ``UNITFUSION_WARNING_RULES``). Period rules look at every period (YYYY-MM) of
the look-back window, so a backfill of one period is a filter on ``period``; state rules look at the
reference period, the latest period in the tax and electricity figures. A warning's id hashes its rule, unit
and period, so a warning raised again by a later run is the same warning (``first_raised_run`` says since
when). Evidence holds business figures and statuses only: never a person's name, phone or ID token.

Each rule is a handful of table operations over all units at once (group, join, filter), so its cost grows
with the rows of figures; only the warnings it raises are turned into messages one by one. Warnings can be
computed for some units only (``compute_warnings(..., units=...)``): the facts about all the figures (the
reference period, the periods that have tax figures) stay those of all the figures.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines import resources
from pipelines.contracts import contract, output_schema
from pipelines.mappings import anchor_feeds, feeds_with, mapping

RULES_PATH = resources.WARNING_RULES
RULES_ENV = "UNITFUSION_WARNING_RULES"
_LOCAL_TIME = pd.Timedelta(
    hours=8
)  # China Standard Time, no daylight saving: months as the departments see them

# What the rules look at, and which feeds give it: the feeds whose mapping has the marking figure (the
# registration: the anchor feeds), read as these roles and figures, besides ``unit_id``.
ANCHOR = "anchor"
FAMILIES = {
    "tax": ("tax_paid", ("period", "tax_paid", "sales", "taxpayer_status", "moment")),
    "power": ("kwh", ("period", "kwh", "meter")),
    "parcels": ("parcels", ("moment", "parcels")),
    "registration": (ANCHOR, ("status", "abnormal_since", "moment")),
}


def family_feeds(family: str) -> tuple[str, ...]:
    """The feeds that give a family of figures (tax: the feeds with a ``tax_paid`` figure …)."""
    marker = FAMILIES[family][0]
    return anchor_feeds() if marker == ANCHOR else feeds_with(marker)


def _family_frame(records: Mapping[str, pa.Table], family: str) -> pd.DataFrame:
    """One family's figures from per-feed tables that carry ``unit_id``: each feed's fields under the role or
    figure names, the feeds one after the other; records with no unit are left out."""
    columns = FAMILIES[family][1]
    frames = []
    for feed in family_feeds(family):
        table, found = records[feed], mapping(feed)
        named = {c: found.roles.get(c) or found.figures.get(c) for c in columns}
        frames.append(
            pd.DataFrame(
                {
                    "unit_id": table["unit_id"].to_pandas(),
                    **{c: table[f].to_pandas() if f else None for c, f in named.items()},
                }
            )
        )
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["unit_id", *columns])
    return frame.dropna(subset=["unit_id"])


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


def _month_numbers(periods: pd.Series) -> pd.Series:
    """YYYY-MM as a count of months, so that periods shift by arithmetic."""
    return periods.str[:4].astype(int) * 12 + periods.str[5:7].astype(int) - 1


def shift_periods(periods: pd.Series, months: int) -> pd.Series:
    numbers = _month_numbers(periods) + months
    return (numbers // 12).astype(str).str.zfill(4) + "-" + (numbers % 12 + 1).astype(str).str.zfill(2)


def shift_period(period: str, months: int) -> str:
    return shift_periods(pd.Series([period]), months).iloc[0]


def warning_id(rule: str, unit_id: str, period: str) -> str:
    return "W" + hashlib.sha1(f"{rule}|{unit_id}|{period}".encode()).hexdigest()[:12]


def _local_month(moments: pd.Series) -> pd.Series:
    return (moments + _LOCAL_TIME).dt.strftime("%Y-%m")


def _is_set(flags: pd.Series) -> pd.Series:
    return flags.fillna(False).astype(bool)


def _values(frame: pd.DataFrame, *columns: str) -> Iterator[tuple]:
    """The rows of ``columns`` as Python values: the evidence is built from them one warning at a time, and
    ``round`` of a Python float rounds as the figures have always been rounded (numpy's does not)."""
    return zip(*(frame[column].tolist() for column in columns), strict=True)


@dataclass(frozen=True)
class Facts:
    """What rules must know about all the figures, whichever units they look at: the reference period (the
    latest period in the tax and electricity figures), the periods that have tax figures at all, whether there
    are electricity figures at all, and who holds several licences (一户多证: the groups span units)."""

    reference: str | None
    tax_periods: frozenset[str]
    any_power: bool
    licence_holders: pd.DataFrame  # unit_id, legal_rep_name, division_code of the units flagged multi_licence

    @classmethod
    def of(cls, register: pa.Table, tax_periods: Collection[str], power_periods: Collection[str]) -> Facts:
        flagged = register.filter(pc.fill_null(register["multi_licence"], False))
        holders = flagged.select(["unit_id", "legal_rep_name", "division_code"]).to_pandas()
        periods = [p for p in (*tax_periods, *power_periods) if p is not None]
        return cls(
            reference=str(max(periods)) if periods else None,
            tax_periods=frozenset(p for p in tax_periods if p is not None),
            any_power=any(p is not None for p in power_periods),
            licence_holders=holders,
        )


@dataclass(frozen=True)
class Figures:
    """The period figures of units, and the register: what the rules look at.

    ``reference``, ``tax_periods``, ``any_power`` and ``licence_holders`` are facts about all the figures.
    They stay as they are when the figures are narrowed to some units (``about``), so a unit's warnings do
    not depend on which other units are asked about at the same time.
    """

    tax: pd.DataFrame  # unit_id, period, tax_paid, sales, taxpayer_status, moment
    power: pd.DataFrame  # unit_id, period, kwh, meter
    parcels: pd.DataFrame  # unit_id, period, parcels
    registration: pd.DataFrame  # unit_id, status, abnormal_since, changed (YYYY-MM of the last change)
    register: pd.DataFrame  # the register, indexed by unit_id
    reference: str | None  # the latest period in the tax and electricity figures
    tax_periods: frozenset[str]  # the periods that have tax figures at all
    any_power: bool  # whether there are electricity figures at all
    licence_holders: pd.DataFrame  # unit_id, legal_rep_name, division_code of the units flagged multi_licence

    @classmethod
    def from_records(
        cls, register: pa.Table, records: Mapping[str, pa.Table], facts: Facts | None = None
    ) -> Figures:
        """Figures from per-feed tables whose records already carry their ``unit_id``, so the caller decides
        how records join units. Records with no unit are left out. ``facts``: the facts about all the
        figures, when these tables hold only some units' records."""
        tax_frame = _family_frame(records, "tax").dropna(subset=["period"])
        power_frame = _family_frame(records, "power").dropna(subset=["period"])
        shipped = _family_frame(records, "parcels").dropna(subset=["moment"])
        registered = _family_frame(records, "registration")
        registered["changed"] = _local_month(registered["moment"])
        register_frame = register.to_pandas().set_index("unit_id", drop=False)
        facts = facts or Facts.of(register, tax_frame["period"].tolist(), power_frame["period"].tolist())
        return cls(
            tax=tax_frame,
            power=power_frame,
            parcels=shipped.assign(period=_local_month(shipped["moment"]))[["unit_id", "period", "parcels"]],
            registration=registered,
            register=register_frame,
            reference=facts.reference,
            tax_periods=facts.tax_periods,
            any_power=facts.any_power,
            licence_holders=facts.licence_holders,
        )

    @classmethod
    def from_links(
        cls, register: pa.Table, links: pa.Table, records: dict[str, pa.Table], facts: Facts | None = None
    ) -> Figures:
        """Figures from the latest staged records per feed (``latest_records``), joined to units through
        ``links``: only the linked records are read, so links of some units (and ``facts`` about all the
        figures) give those units' figures at the cost of their records."""

        def with_units(feed: str) -> pa.Table:
            table = records.get(feed)
            if table is None:
                table = contract(feed).staging_schema().empty_table()
            feed_links = links.filter(pc.equal(links["feed"], feed))
            found = pc.index_in(table["record_id"], value_set=feed_links["record_id"])
            linked = table.filter(pc.is_valid(found))
            return linked.append_column(
                "unit_id", pc.take(feed_links["unit_id"], found.filter(pc.is_valid(found)))
            )

        feeds = {feed for family in FAMILIES for feed in family_feeds(family)}
        return cls.from_records(register, {feed: with_units(feed) for feed in feeds}, facts=facts)

    def about(self, units: Collection[str]) -> Figures:
        """The figures and register rows of these units only; the facts about all the figures are kept."""
        wanted = pa.array(list(units), pa.string())

        def rows(frame: pd.DataFrame) -> pd.DataFrame:  # Arrow's is_in: pandas' isin is 20x slower here
            return frame[pc.is_in(pa.array(frame["unit_id"]), wanted).to_numpy(zero_copy_only=False)]

        return replace(
            self,
            tax=rows(self.tax),
            power=rows(self.power),
            parcels=rows(self.parcels),
            registration=rows(self.registration),
            register=rows(self.register),
        )


@dataclass(frozen=True)
class Window:
    """The look-back window: ``months`` periods ending at the reference period."""

    reference: str
    months: int

    @cached_property
    def start(self) -> str:
        return shift_period(self.reference, -(self.months - 1))

    def within(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame[(frame["period"] >= self.start) & (frame["period"] <= self.reference)]


def _raised(found: pd.DataFrame, evidence: list[dict], words: list[dict] | None = None) -> pd.DataFrame:
    """What a rule raises, one row per warning: ``found``'s unit_id and period, the figures behind the
    warning (Python numbers, rounded as they are shown) and any words for the message."""
    return pd.DataFrame(
        {
            "unit_id": found["unit_id"].to_numpy(),
            "period": found["period"].to_numpy(),
            "evidence": evidence,
            "words": words if words is not None else [{}] * len(found),
        }
    )


# -- the rules: each returns what it raises (``_raised``) ------------------------------------------------


def _power_without_tax(figures: Figures, window: Window, rule: Rules) -> pd.DataFrame:
    months = int(rule["tax_window_months"])
    kwh = window.within(figures.power).groupby(["unit_id", "period"])["kwh"].sum(min_count=1)
    heavy = kwh[kwh >= rule["min_kwh"]].reset_index()
    paid = figures.tax.groupby(["unit_id", "period"])["tax_paid"].sum()
    heavy["tax_paid"] = 0.0
    heavy["tax_filed"] = False
    for back in range(months):  # the period itself, then each month before it
        period = shift_periods(heavy["period"], -back)
        keys = pd.MultiIndex.from_arrays([heavy["unit_id"], period])
        heavy["tax_paid"] += paid.reindex(keys, fill_value=0.0).to_numpy()
        heavy["tax_filed"] |= period.isin(figures.tax_periods)
    # with no tax figures at all for these months (not filed yet), there is nothing to compare with
    found = heavy[heavy["tax_filed"] & (heavy["tax_paid"] <= rule["max_tax_paid"])]
    found = found.assign(first=shift_periods(found["period"], -(months - 1)))
    evidence = [
        {
            "kwh": round(kwh),
            "tax_paid": round(paid, 2),
            "tax_periods": [start, end],
            "tax_window_months": months,
        }
        for kwh, paid, start, end in _values(found, "kwh", "tax_paid", "first", "period")
    ]
    return _raised(found, evidence)


def _changes(series: pd.Series, window: Window, rule: Rules, unit: str) -> pd.DataFrame:
    """Each period of the window against the median of the unit's own earlier periods (``series`` is
    indexed by unit_id and period, holding only the periods fit to compare)."""
    values = series.rename("value").reset_index()
    values["month"] = _month_numbers(values["period"])
    current = window.within(values)
    earlier = values.rename(columns={"period": "earlier", "month": "earlier_month", "value": "earlier_value"})
    months_back = range(1, int(rule["history_months"]) + 1)
    history = pd.concat(
        [current[["unit_id", "period"]].assign(earlier_month=current["month"] - back) for back in months_back]
    ).merge(earlier, on=["unit_id", "earlier_month"])
    baselines = (
        history.groupby(["unit_id", "period"])["earlier_value"]
        .agg(["size", "median"])
        .rename(columns={"size": "history", "median": "baseline"})
        .reset_index()
    )
    compared = current.merge(baselines, on=["unit_id", "period"])
    compared = compared[
        (compared["history"] >= rule["min_history"]) & (compared["baseline"] >= rule["min_baseline"])
    ]
    compared = compared.assign(ratio=compared["value"] / compared["baseline"])
    found = compared[~((compared["ratio"] > rule["drop_ratio"]) & (compared["ratio"] < rule["jump_ratio"]))]
    found = found.assign(change=np.where(found["ratio"] >= rule["jump_ratio"], "jump", "drop"))
    histories: dict[tuple[str, str], dict[str, float]] = {}
    found_history = history.merge(found[["unit_id", "period"]], on=["unit_id", "period"])
    for unit_id, period, earlier_period, value in _values(
        found_history, "unit_id", "period", "earlier", "earlier_value"
    ):
        histories.setdefault((unit_id, period), {})[earlier_period] = round(value, 2)
    evidence = [
        {
            "value": round(value, 2),
            "baseline": round(baseline, 2),
            "ratio": round(ratio, 3),
            "change": change,
            "unit": unit,
            "history": histories[(unit_id, period)],
        }
        for unit_id, period, value, baseline, ratio, change in _values(
            found, "unit_id", "period", "value", "baseline", "ratio", "change"
        )
    ]
    words = [{"change": "骤增" if change == "jump" else "骤降"} for change in found["change"].tolist()]
    return _raised(found, evidence, words)


def _kwh_change(figures: Figures, window: Window, rule: Rules) -> pd.DataFrame:
    power = figures.power.dropna(subset=["kwh"])
    by_period = power.groupby(["unit_id", "period"]).agg(kwh=("kwh", "sum"), meters=("meter", "nunique"))
    usual = by_period.groupby(level="unit_id")["meters"].transform("max")
    return _changes(by_period.loc[by_period["meters"] >= usual, "kwh"], window, rule, "kWh")


def _tax_change(figures: Figures, window: Window, rule: Rules) -> pd.DataFrame:
    figure = rule["figure"]
    values = figures.tax.dropna(subset=[figure]).groupby(["unit_id", "period"])[figure].sum()
    return _changes(values, window, rule, "yuan")


def _tax_without_power(figures: Figures, window: Window, rule: Rules) -> pd.DataFrame:
    if not figures.any_power:
        return _raised(pd.DataFrame(columns=["unit_id", "period"]), [])  # nothing to say about accounts
    tax = window.within(figures.tax)
    by_unit = tax.groupby("unit_id").agg(tax_paid=("tax_paid", "sum"), filings=("tax_paid", "size"))
    found = by_unit[
        (by_unit["tax_paid"] >= rule["min_tax_paid"]) & ~by_unit.index.isin(figures.power["unit_id"])
    ]
    evidence = [
        {
            "tax_paid": round(paid, 2),
            "tax_filings": filings,
            "utility_accounts": 0,
            "lookback_months": window.months,
        }
        for paid, filings in _values(found, "tax_paid", "filings")
    ]
    return _raised(found.reset_index().assign(period=window.reference), evidence)


ACTIVITY_WORDS = (
    ("kwh", "用电 {:,.0f} 千瓦时"),
    ("tax_paid", "纳税 {:,.0f} 元"),
    ("parcels", "寄件 {:,.0f} 件"),
)


def _inactive_but_active(figures: Figures, window: Window, rule: Rules) -> pd.DataFrame:
    closed = tuple(rule["closed_statuses"])
    kwh = window.within(figures.power).groupby(["unit_id", "period"])["kwh"].sum()
    kwh = kwh[kwh >= rule["min_kwh"]]
    parcels = window.within(figures.parcels).groupby(["unit_id", "period"])["parcels"].sum()
    tax = window.within(figures.tax)
    paying = tax[(tax["tax_paid"] > 0) & ~tax["taxpayer_status"].fillna("").str.startswith(closed)]
    paid = paying.groupby(["unit_id", "period"])["tax_paid"].sum()
    latest_tax_status = tax.sort_values(["period", "moment"]).groupby("unit_id")["taxpayer_status"].last()
    changed = figures.registration.groupby("unit_id")["changed"].max()
    recent = shift_period(window.reference, -int(rule["activity_months"]))

    units = figures.register[["unit_id", "status"]].reset_index(drop=True)
    units["status"] = units["status"].fillna("")
    units["closed"] = units["status"].str.startswith(closed)
    units["has_tax"] = units["unit_id"].isin(latest_tax_status.index)
    units["tax_status"] = units["unit_id"].map(latest_tax_status)
    abnormal = units["tax_status"].isin(rule["abnormal_taxpayer_statuses"])
    units = units[units["closed"] | abnormal].reset_index(drop=True)
    # closed: activity after the month of the registration's last change; 非正常: in the recent months
    registration_changed = units["unit_id"].map(changed).where(units["unit_id"].isin(changed.index), recent)
    units["since"] = registration_changed.where(units["closed"], recent)

    def after(series: pd.Series) -> pd.Series:
        """Per unit, ``series`` (indexed by unit_id and period) summed over the periods after its since."""
        values = series.rename("value").reset_index().merge(units[["unit_id", "since"]], on="unit_id")
        later = values[values["period"] > values["since"]]
        return later.groupby("unit_id")["value"].sum().reindex(units["unit_id"], fill_value=0).to_numpy()

    units["kwh"] = after(kwh).astype(float)
    units["tax_paid"] = after(paid).astype(float)
    units["parcels"] = after(parcels).astype(float)
    active = (
        (units["kwh"] > 0)
        | (units["closed"] & (units["tax_paid"] > 0))
        | (units["parcels"] >= rule["min_parcels"])
    )
    found = units[active].assign(period=window.reference)
    evidence, words = [], []
    for status, closed_now, has_tax, tax_status, since, kwh_after, paid_after, parcels_after in _values(
        found, "status", "closed", "has_tax", "tax_status", "since", "kwh", "tax_paid", "parcels"
    ):
        activity = {"kwh": kwh_after, "tax_paid": paid_after, "parcels": parcels_after}
        if not closed_now:
            del activity["tax_paid"]  # a 非正常 taxpayer's own tax is no sign of activity
        done = "、".join(text.format(activity[key]) for key, text in ACTIVITY_WORDS if activity.get(key))
        evidence.append(
            {
                "registration_status": status or None,
                "taxpayer_status": tax_status if has_tax else None,
                "since": since,
                **{f"{key}_after": round(value, 2) for key, value in activity.items()},
            }
        )
        if closed_now:
            words.append({"status": f"登记状态为{status}（{since}）", "activity": "此后仍" + done})
        else:
            words.append(
                {
                    "status": f"纳税人状态为{tax_status}",
                    "activity": f"近 {rule['activity_months']} 个月仍" + done,
                }
            )
    return _raised(found, evidence, words)


def _zombie(figures: Figures, window: Window, rule: Rules) -> pd.DataFrame:
    listed = figures.registration.dropna(subset=["abnormal_since"]).groupby("unit_id")["abnormal_since"].min()
    kwh = window.within(figures.power).groupby("unit_id")["kwh"].sum()
    zombies = figures.register.loc[_is_set(figures.register["zombie_candidate"]), ["unit_id"]]
    zombies = zombies.assign(
        since=listed.reindex(zombies.index),
        kwh=kwh.reindex(zombies.index, fill_value=0.0),
        period=window.reference,
    )
    evidence = [
        {
            "abnormal_since": since.isoformat() if pd.notna(since) else None,
            "tax_paid": 0.0,
            "kwh": round(power),
            "lookback_months": window.months,
        }
        for since, power in _values(zombies, "since", "kwh")
    ]
    return _raised(zombies, evidence)


def _multi_licence(figures: Figures, window: Window, rule: Rules) -> pd.DataFrame:
    # the resolver groups by operator and site; the operator is not written into the evidence
    site = ["legal_rep_name", "division_code"]
    flagged = figures.register.loc[_is_set(figures.register["multi_licence"]), ["unit_id", *site]]
    holders = figures.licence_holders.rename(columns={"unit_id": "holder"})
    groups = (
        flagged.reset_index(drop=True)
        .merge(holders, on=site)
        .sort_values(["unit_id", "holder"])
        .groupby("unit_id")["holder"]
        .agg(list)
    )
    evidence = [
        {"licences": len(members), "other_units": [member for member in members if member != unit_id]}
        for unit_id, members in groups.items()
    ]
    return _raised(groups.reset_index().assign(period=window.reference), evidence)


def _multi_meter(figures: Figures, window: Window, rule: Rules) -> pd.DataFrame:
    power = window.within(figures.power)
    by_unit = power.groupby("unit_id").agg(meters=("meter", "nunique"), kwh=("kwh", "sum"))
    found = by_unit[by_unit["meters"] >= rule["min_meters"]]
    evidence = [
        {"meters": meters, "kwh": round(kwh), "lookback_months": window.months}
        for meters, kwh in _values(found, "meters", "kwh")
    ]
    return _raised(found.reset_index().assign(period=window.reference), evidence)


def _unregistered_ecommerce(figures: Figures, window: Window, rule: Rules) -> pd.DataFrame:
    unregistered = figures.register.index[_is_set(figures.register["unregistered"])]
    parcels = window.within(figures.parcels)
    parcels = parcels[parcels["unit_id"].isin(unregistered)]
    by_unit = parcels.groupby("unit_id").agg(parcels=("parcels", "sum"), months=("period", "nunique"))
    found = by_unit[(by_unit["parcels"] >= rule["min_parcels"]) & (by_unit["months"] >= rule["min_months"])]
    evidence = [
        {"parcels": int(count), "months": months, "lookback_months": window.months}
        for count, months in _values(found, "parcels", "months")
    ]
    return _raised(found.reset_index().assign(period=window.reference), evidence)


RULES: dict[str, Callable[[Figures, Window, Rules], pd.DataFrame]] = {
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


def _warning_rows(name: str, rule: Rules, raised: pd.DataFrame, register: pd.DataFrame) -> pd.DataFrame:
    """The table rows of what one rule raised: id, routing from the register, message and evidence."""
    units = register.loc[raised["unit_id"]]  # a unit missing from the register is an error
    unit_names = units["name"].to_numpy(dtype=object, na_value=None)
    messages = [
        # words in Chinese over the evidence's codes
        rule["message"].format_map({"name": unit_name, "period": period, **evidence, **words})
        for unit_name, period, evidence, words in zip(
            unit_names, raised["period"].tolist(), raised["evidence"], raised["words"], strict=True
        )
    ]
    return pd.DataFrame(
        {
            "warning_id": [
                warning_id(name, unit_id, period) for unit_id, period in _values(raised, "unit_id", "period")
            ],
            "rule": name,
            "severity": rule["severity"],
            "unit_id": raised["unit_id"].to_numpy(),
            "unit_name": unit_names,
            "uscc": units["uscc"].to_numpy(),
            "period": raised["period"].to_numpy(),
            "message": messages,
            "evidence": [
                json.dumps(evidence, ensure_ascii=False, sort_keys=True, default=str)
                for evidence in raised["evidence"]
            ],
            "division_code": units["division_code"].to_numpy(),
            "township": units["township"].to_numpy(),
        }
    )


def compute_warnings(
    figures: Figures,
    run_id: str,
    rules: Rules | None = None,
    previous: pa.Table | None = None,
    units: Collection[str] | None = None,
) -> pa.Table:
    """The warnings of a register run, as a table with exactly ``output_schema("warnings")``.

    ``previous`` holds the warnings of the previous published register, whose ``first_raised_run`` carries
    over to warnings raised again. With ``units``, only the warnings about those units: the same rows as
    the warnings of all units that are about them, at a cost that follows those units' figures.
    """
    rules = rules or load_rules()
    schema = output_schema("warnings")
    if units is not None:
        figures = figures.about(units)
    if figures.reference is None or figures.register.empty:
        return schema.empty_table()
    window = Window(figures.reference, int(rules["lookback_months"]))
    found = [
        _warning_rows(name, rule, RULES[name](figures, window, rule), figures.register).assign(
            priority=int(rules["priority"][rule["severity"]])
        )
        for name, rule in rules["rules"].items()
        if rule.get("enabled", True)
    ]
    warnings = pd.concat(found, ignore_index=True) if found else pd.DataFrame()
    if warnings.empty:
        return schema.empty_table()
    first_raised = {}
    if previous is not None and previous.num_rows:
        ids, runs = previous["warning_id"].to_pylist(), previous["first_raised_run"].to_pylist()
        first_raised = dict(zip(ids, runs, strict=True))
    warnings["first_raised_run"] = [
        first_raised.get(identifier, run_id) for identifier in warnings["warning_id"]
    ]
    warnings["run_id"] = run_id
    # most urgent first, then by where the warning goes
    order = warnings.assign(
        division=warnings["division_code"].fillna(""), town=warnings["township"].fillna("")
    ).sort_values(["priority", "division", "town", "warning_id"], kind="stable")
    table = pa.Table.from_pandas(warnings.loc[order.index, schema.names], schema=schema, preserve_index=False)
    return table.replace_schema_metadata(schema.metadata)
