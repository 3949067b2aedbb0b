"""The activity trends the sample generator plants for the BI marts, checked against the feeds themselves.

Every unit that ``anomalies.jsonl`` names must show its situation in the records a department would send
(read back from the JSONL feeds and the ground truth, not from the planter), and planting the trends must
leave every record's identity, and the warning kinds, as they were.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.generate import anomalies as planting
from pipelines.generate import generate
from tests.staging import read_jsonl, true_units

TRENDS = ("goes_dormant", "tax_falling", "pillar_power_halves")
OPERATING = {"存续", "在业", "在营"}
LAST_MONTH = "2026-10"  # the last month of the power and waybill figures
LAST_TAX_MONTH = "2026-09"


@dataclass
class Figures:
    """One unit's monthly figures as the departments report them."""

    tax_paid: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    kwh: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    waybill_months: set[str] = field(default_factory=set)
    statuses: set[str] = field(default_factory=set)
    records: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))

    def active_months(self) -> set[str]:
        return (
            {p for p, v in self.tax_paid.items() if v > 0}
            | {p for p, v in self.kwh.items() if v > 0}
            | self.waybill_months
        )


def _month_index(period: str) -> int:
    return int(period[:4]) * 12 + int(period[5:7]) - 1


def read_figures(sample: Path) -> dict[str, Figures]:
    owner = true_units(sample)
    figures: dict[str, Figures] = defaultdict(Figures)
    for feed in ("registration", "tax", "utility", "waybill"):
        for record in read_jsonl(sample / f"{feed}.jsonl"):
            unit = owner[(feed, record["record_id"])]
            if unit is None:
                continue
            unit_figures = figures[unit]
            unit_figures.records[feed].append(record)
            if feed == "registration" and record.get("status"):
                unit_figures.statuses.add(record["status"])
            elif feed == "tax":
                unit_figures.tax_paid[record["period"]] += record.get("tax_paid") or 0.0
            elif feed == "utility" and record.get("kwh") is not None:
                unit_figures.kwh[record["period"]] += record["kwh"]
            elif feed == "waybill" and record.get("shipped_at"):
                unit_figures.waybill_months.add(record["shipped_at"][:7])
    return figures


@dataclass
class Sample:
    path: Path
    figures: dict[str, Figures]
    anomalies: list[dict]

    def planted(self, kind: str) -> list[dict]:
        return [a for a in self.anomalies if a["kind"] == kind]


def load(path: Path) -> Sample:
    return Sample(path, read_figures(path), read_jsonl(path / "anomalies.jsonl"))


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Sample:
    out = tmp_path_factory.mktemp("planted")
    generate(units=800, seed=3, out_dir=out)
    return load(out)


# -- what each trend must look like in the figures -------------------------------------------------------


def check_goes_dormant(figures: Figures, anomaly: dict) -> None:
    assert figures.records["registration"] and figures.statuses <= OPERATING, figures.statuses  # operating
    active = figures.active_months()
    last = max(active)  # it was active before
    assert anomaly["period"] == last
    assert _month_index(LAST_MONTH) - _month_index(last) >= 4
    # the departments still report it: returns paying nothing and meters read at zero, no waybills
    later_tax = [r for r in figures.records["tax"] if r["period"] > last]
    later_power = [r for r in figures.records["utility"] if r["period"] > last]
    assert later_tax or later_power
    assert all(not r.get("tax_paid") for r in later_tax)
    assert all(not r.get("kwh") for r in later_power)
    assert not {m for m in figures.waybill_months if m > last}


def check_tax_falling(figures: Figures, anomaly: dict) -> None:
    paid = figures.tax_paid
    run = [LAST_TAX_MONTH]
    while True:
        earlier = f"{(_month_index(run[0]) - 1) // 12:04d}-{(_month_index(run[0]) - 1) % 12 + 1:02d}"
        if paid.get(earlier, 0) <= 0 or paid[run[0]] > 0.8 * paid[earlier]:
            break
        run.insert(0, earlier)  # a fall of at least 20 % from the month before
    assert paid[LAST_TAX_MONTH] > 0 and len(run) - 1 >= 3, {p: paid[p] for p in sorted(paid)}
    assert paid[run[-1]] <= 0.5 * paid[run[0]]
    assert (anomaly["period"], anomaly["from_period"], anomaly["falls"]) == (run[-1], run[0], len(run) - 1)


def check_pillar_power_halves(figures: Figures, anomaly: dict, city: dict[str, Figures]) -> None:
    totals = sorted((sum(f.kwh.values()) for f in city.values()), reverse=True)
    total = sum(figures.kwh.values())
    rank = 1 + sum(other > total for other in totals)
    assert rank <= 10 and anomaly["rank"] == rank
    earlier = [v for p, v in figures.kwh.items() if p < LAST_MONTH]
    assert len(earlier) >= 2
    assert 0.4 <= figures.kwh[LAST_MONTH] / statistics.mean(earlier) <= 0.6
    assert anomaly["period"] == LAST_MONTH


def check(sample: Sample, anomaly: dict) -> None:
    figures = sample.figures[anomaly["unit_id"]]
    if anomaly["kind"] == "goes_dormant":
        check_goes_dormant(figures, anomaly)
    elif anomaly["kind"] == "tax_falling":
        check_tax_falling(figures, anomaly)
    elif anomaly["kind"] == "pillar_power_halves":
        check_pillar_power_halves(figures, anomaly, sample.figures)


@pytest.mark.parametrize("kind", TRENDS)
def test_each_trend_is_planted_and_shows_in_the_figures(sample, kind):
    planted = sample.planted(kind)
    assert len(planted) >= 3, f"the sample plants too few {kind}"
    assert len({a["unit_id"] for a in planted}) == len(planted)
    for anomaly in planted:
        check(sample, anomaly)


def test_the_warning_kinds_still_appear(sample):
    assert {a["kind"] for a in sample.anomalies} >= set(planting.SHARES)


def test_a_unit_carries_one_planted_kind(sample):
    kinds = defaultdict(set)
    for anomaly in sample.anomalies:
        kinds[anomaly["unit_id"]].add(anomaly["kind"])
    assert all(len(k) == 1 for k in kinds.values())


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(units=st.integers(min_value=40, max_value=300), seed=st.integers(min_value=0, max_value=10_000))
def test_every_planted_trend_shows_in_any_city(tmp_path_factory, units, seed):
    """Whatever the size and seed, a listed trend is in the figures (a small city may hold few)."""
    out = tmp_path_factory.mktemp("city")
    generate(units=units, seed=seed, out_dir=out)
    city = load(out)
    for anomaly in city.anomalies:
        check(city, anomaly)


def test_a_small_city_holds_each_trend(tmp_path):
    generate(units=300, seed=1, out_dir=tmp_path)
    kinds = {a["kind"] for a in read_jsonl(tmp_path / "anomalies.jsonl")}
    assert kinds >= set(TRENDS)


# -- planting the trends leaves the records and the warning kinds alone ----------------------------------


def test_trends_change_only_figures_of_their_units(tmp_path, monkeypatch):
    with_trends, without = tmp_path / "with", tmp_path / "without"
    generate(units=500, seed=4, out_dir=with_trends)
    monkeypatch.setattr(planting, "TREND_SHARES", dict.fromkeys(planting.TREND_SHARES, 0.0))
    generate(units=500, seed=4, out_dir=without)

    planted = read_jsonl(with_trends / "anomalies.jsonl")
    trend_units = {a["unit_id"] for a in planted if a["kind"] in TRENDS}
    assert trend_units
    # the warning kinds keep their units, periods and figures
    assert [a for a in planted if a["kind"] not in TRENDS] == read_jsonl(without / "anomalies.jsonl")
    owner = true_units(without)
    changed = set()
    for name in ("registration", "tax", "utility", "waybill", "nucleic_contact", "truth", "units"):
        rows, plain_rows = read_jsonl(with_trends / f"{name}.jsonl"), read_jsonl(without / f"{name}.jsonl")
        assert len(rows) == len(plain_rows), name  # nothing dropped: a dormant unit files zeros
        for row, plain in zip(rows, plain_rows, strict=True):
            differing = {k for k in row.keys() | plain.keys() if row.get(k) != plain.get(k)}
            assert differing <= {"kwh", "tax_paid", "sales"}, (name, differing)
            if differing:
                changed.add(owner[(name, row["record_id"])])
    assert trend_units <= changed
