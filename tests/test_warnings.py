"""Warning rules: each rule against a unit that should raise it and a control twin that should not, planted
anomalies found through the full resolve, stable ids across runs, and the rules file steering the result."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from datetime import UTC, date, datetime

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipelines.contracts import contract, output_schema
from pipelines.generate import anomalies as planting
from pipelines.generate import generate
from pipelines.landing import resolve_and_land
from pipelines.rules.warnings import (
    RULES,
    RULES_PATH,
    Figures,
    compute_warnings,
    load_rules,
)
from pipelines.staging import all_latest_records
from tests.conftest import TEST_KEY, TOKEN_KEY
from tests.staging import generated_store, read_jsonl, true_units

# -- each rule on hand-made units: the one that raises it and its control twin -----------------------------


def _unit(unit_id: str, **fields) -> dict:
    base = {name: None for name in output_schema("register").names}
    flags = ("unregistered", "multi_licence", "multi_meter", "ecommerce_candidate", "zombie_candidate")
    return {
        **base,
        **dict.fromkeys(flags, False),
        "unit_id": unit_id,
        "name": f"测试单位{unit_id}",
        "division_code": "330106",
        "township": "西溪街道",
        "status": "存续",
        "run_id": "reg-000001",
        **fields,
    }


def _power(unit_id: str, kwh: dict[str, float], meter: str = "M1") -> list[dict]:
    return [
        {"unit_id": unit_id, "period": p, "kwh": v, "meter_no": f"{unit_id}-{meter}"} for p, v in kwh.items()
    ]


def _tax(unit_id: str, paid: dict[str, float], sales: float = 100_000.0, status: str = "正常") -> list[dict]:
    return [
        {"unit_id": unit_id, "period": p, "tax_paid": v, "sales": sales, "taxpayer_status": status}
        for p, v in paid.items()
    ]


def _parcels(unit_id: str, months: list[str], each: int) -> list[dict]:
    return [
        {
            "unit_id": unit_id,
            "shipped_at": datetime.fromisoformat(f"{m}-15T03:00:00+00:00"),
            "parcel_count": each,
        }
        for m in months
    ]


def _registration(unit_id: str, updated: str, abnormal_since: date | None = None) -> list[dict]:
    moment = datetime.fromisoformat(f"{updated}-10T02:00:00+00:00").astimezone(UTC)
    return [{"unit_id": unit_id, "status": None, "abnormal_since": abnormal_since, "updated_at": moment}]


STEADY = {"2026-07": 1000.0, "2026-08": 1100.0, "2026-09": 900.0}
MONTHS = ["2026-05", "2026-06", "2026-07", "2026-08"]

UNITS = [
    _unit("PWT"),  # heavy power, no tax
    _unit("PWT-CONTROL"),  # heavy power, tax paid within the three months
    _unit("TWP"),  # big tax, no electricity account
    _unit("TWP-CONTROL"),  # big tax and an account
    _unit("KWH"),  # kWh jumps in 2026-10
    _unit("KWH-CONTROL"),  # steady; its second meter missed 2026-10, which is no drop
    _unit("TAX"),  # sales drop in 2026-09
    _unit("TAX-CONTROL"),
    _unit("REVOKED", status="吊销，未注销"),  # revoked in 2026-03, power in 2026-09
    _unit("REVOKED-CONTROL", status="注销"),  # deregistered in 2026-09: earlier power is fine
    _unit("ABNORMAL"),  # 非正常 taxpayer, still using power
    _unit("ABNORMAL-CONTROL"),  # 非正常, a dormant meter's trickle only
    _unit("ZOMBIE", zombie_candidate=True),
    _unit("LICENCE-A", multi_licence=True, legal_rep_name="某甲"),
    _unit("LICENCE-B", multi_licence=True, legal_rep_name="某甲"),
    _unit("METERS", multi_meter=True),
    _unit("METERS-CONTROL", multi_meter=True),
    _unit("SHOP", unregistered=True),
    _unit("SHOP-CONTROL", unregistered=True),  # one busy month is no e-commerce business
    _unit("SELLER"),  # registered: not this rule's business
]

RECORDS = {
    "utility": [
        *_power("PWT", {"2026-09": 50_000.0}),
        *_power("PWT-CONTROL", {"2026-09": 50_000.0}),
        *_power("TWP-CONTROL", {"2026-09": 200.0}),
        *_power("KWH", {**STEADY, "2026-10": 9_000.0}),
        *_power("KWH-CONTROL", {**STEADY, "2026-10": 1_000.0}),
        *_power("KWH-CONTROL", {"2026-07": 5000.0, "2026-08": 5000.0, "2026-09": 5000.0}, "M2"),
        *_power("REVOKED", {"2026-09": 5_000.0}),
        *_power("REVOKED-CONTROL", {"2026-08": 5_000.0, "2026-09": 5_000.0}),
        *_power("ABNORMAL", {"2026-10": 5_000.0}),
        *_power("ABNORMAL-CONTROL", {"2026-10": 20.0}),
        *_power("ZOMBIE", {"2026-10": 15.0}),
        *[row for m in ("A", "B", "C") for row in _power("METERS", {"2026-10": 800.0}, m)],
        *[row for m in ("A", "B") for row in _power("METERS-CONTROL", {"2026-10": 800.0}, m)],
    ],
    "tax": [
        *_tax("PWT", {"2026-09": 0.0}),
        *_tax("PWT-CONTROL", {"2026-07": 5_000.0}),
        *_tax("TWP", {"2026-03": 200_000.0, "2026-06": 200_000.0}),
        *_tax("TWP-CONTROL", {"2026-03": 200_000.0, "2026-06": 200_000.0}),
        *_tax("TAX", dict.fromkeys(MONTHS, 3_000.0)),
        *_tax("TAX", {"2026-09": 100.0}, sales=4_000.0),
        *_tax("TAX-CONTROL", dict.fromkeys([*MONTHS, "2026-09"], 3_000.0)),
        *_tax("ABNORMAL", {"2026-06": 1_000.0}, status="非正常"),
        *_tax("ABNORMAL-CONTROL", {"2026-06": 1_000.0}, status="非正常"),
    ],
    "waybill": [
        *_parcels("SHOP", MONTHS, 40),
        *_parcels("SHOP-CONTROL", ["2026-08"], 160),
        *_parcels("SELLER", MONTHS, 40),
    ],
    "registration": [
        *_registration("REVOKED", "2026-03"),
        *_registration("REVOKED-CONTROL", "2026-09"),
        *_registration("ZOMBIE", "2024-01", abnormal_since=date(2023, 5, 1)),
    ],
}

EXPECTED = {
    "power_without_tax": {("PWT", "2026-09")},
    "tax_without_power": {("TWP", "2026-10")},
    "kwh_change": {("KWH", "2026-10")},
    "tax_change": {("TAX", "2026-09")},
    "inactive_but_active": {("REVOKED", "2026-10"), ("ABNORMAL", "2026-10")},
    "zombie": {("ZOMBIE", "2026-10")},
    "multi_licence": {("LICENCE-A", "2026-10"), ("LICENCE-B", "2026-10")},
    "multi_meter": {("METERS", "2026-10")},
    "unregistered_ecommerce": {("SHOP", "2026-10")},
}


def _staged(feed: str, rows: list[dict]) -> pa.Table:
    schema = contract(feed).staging_schema()
    meta = {"_topic": f"feeds.{feed}", "_partition": 0, "_run_id": "run-000001"}
    full = [
        {**dict.fromkeys(schema.names), **{k: v for k, v in row.items() if k != "unit_id"}, **meta,
         "record_id": f"{feed}-{i}", "_offset": i}
        for i, row in enumerate(rows)
    ]  # fmt: skip
    return pa.Table.from_pylist(full, schema=schema)


def _hand_made(rules=None, previous=None, run_id="reg-000001") -> pa.Table:
    register = pa.Table.from_pylist(UNITS, schema=output_schema("register"))
    links = [
        {"feed": feed, "record_id": f"{feed}-{i}", "unit_id": row["unit_id"], "run_id": run_id}
        for feed, rows in RECORDS.items()
        for i, row in enumerate(rows)
    ]
    records = {feed: _staged(feed, rows) for feed, rows in RECORDS.items()}
    figures = Figures.from_links(
        register, pa.Table.from_pylist(links, schema=output_schema("links")), records
    )
    return compute_warnings(figures, run_id, rules, previous)


@pytest.mark.parametrize("rule", sorted(EXPECTED))
def test_each_rule_warns_on_its_case_and_not_on_the_control(rule):
    warnings = _hand_made().to_pylist()
    raised = {(w["unit_id"], w["period"]) for w in warnings if w["rule"] == rule}
    assert raised == EXPECTED[rule]


def test_warnings_follow_the_contract_and_carry_routing_and_evidence():
    table = _hand_made()
    assert table.schema == output_schema("warnings")
    rows = table.to_pylist()
    assert {w["rule"] for w in rows} == set(EXPECTED)
    assert [w["priority"] for w in rows] == sorted(w["priority"] for w in rows)  # most urgent first
    for w in rows:
        assert w["division_code"] == "330106" and w["township"] == "西溪街道"
        assert isinstance(json.loads(w["evidence"]), dict) and w["message"]
        assert "某甲" not in w["evidence"] + w["message"]  # the operator's name stays out
    jump = next(w for w in rows if w["rule"] == "kwh_change")
    assert "骤增" in jump["message"] and json.loads(jump["evidence"])["value"] == 9000.0


def test_the_rules_file_sets_thresholds(tmp_path, monkeypatch):
    text = RULES_PATH.read_text(encoding="utf-8")
    assert "min_kwh = 30000\n" in text
    lowered = tmp_path / "rules.toml"
    lowered.write_text(text.replace("min_kwh = 30000\n", "min_kwh = 8000\n"), encoding="utf-8")
    monkeypatch.setenv("UNITFUSION_WARNING_RULES", str(lowered))
    raised = {
        (w["unit_id"], w["period"])
        for w in _hand_made(load_rules()).to_pylist()
        if w["rule"] == "power_without_tax"
    }
    # KWH's jump to 9,000 kWh (it pays no tax) is now heavy; PWT-CONTROL paid tax
    assert raised == {("PWT", "2026-09"), ("KWH", "2026-10")}
    off = tmp_path / "off.toml"
    off.write_text(text.replace("[rules.zombie]\n", "[rules.zombie]\nenabled = false\n"), encoding="utf-8")
    assert "zombie" not in {w["rule"] for w in _hand_made(load_rules(off)).to_pylist()}


def test_figures_from_records_that_carry_their_unit_give_the_same_warnings():
    register = pa.Table.from_pylist(UNITS, schema=output_schema("register"))

    def carrying_units(feed: str) -> pa.Table:
        rows = RECORDS[feed]
        return _staged(feed, rows).append_column("unit_id", pa.array([row["unit_id"] for row in rows]))

    figures = Figures.from_records(
        register, {feed: carrying_units(feed) for feed in ("tax", "utility", "waybill", "registration")}
    )
    assert compute_warnings(figures, "reg-000001").equals(_hand_made())


def test_a_warning_raised_again_keeps_its_id_and_first_run():
    first = _hand_made(run_id="reg-000001")
    second = _hand_made(previous=first, run_id="reg-000002").to_pylist()
    assert {w["warning_id"] for w in second} == set(first["warning_id"].to_pylist())
    assert {w["first_raised_run"] for w in second} == {"reg-000001"}
    assert {w["run_id"] for w in second} == {"reg-000002"}


# -- planted anomalies of the sample generator, through the full resolve ---------------------------------


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    sample, store = generated_store(tmp_path_factory, units=1500, seed=7, key=TEST_KEY)
    first = resolve_and_land(store, key=TOKEN_KEY)
    second = resolve_and_land(store, rebuild=True, key=TOKEN_KEY)  # everything again: the same warnings
    truth = true_units(sample)
    units_of = defaultdict(set)  # register unit → true units of its records
    for row in first.result.tables["links"].to_pylist():
        if truth.get((row["feed"], row["record_id"])):
            units_of[row["unit_id"]].add(truth[(row["feed"], row["record_id"])])
    return sample, store, first, second, units_of


@pytest.mark.parametrize("kind", sorted(planting.SHARES))
def test_planted_anomalies_are_found(sample_run, kind):
    sample, _, first, _, true_units = sample_run
    planted = {
        (a["unit_id"], a["period"]) for a in read_jsonl(sample / "anomalies.jsonl") if a["kind"] == kind
    }
    warnings = first.result.tables["warnings"].to_pylist()
    raised = {(u, w["period"]) for w in warnings if w["rule"] == kind for u in true_units[w["unit_id"]]}
    assert len(planted) >= 2, f"the sample plants too few {kind}"
    assert len(planted & raised) / len(planted) >= 0.9, (kind, sorted(planted - raised))


@pytest.mark.parametrize(
    ("rule", "planted_key"),
    [("zombie", "zombie"), ("multi_licence", "multi_licence"), ("unregistered_ecommerce", "ecommerce")],
)
def test_flag_rules_find_the_planted_units(sample_run, rule, planted_key):
    sample, _, first, _, true_units = sample_run
    units = read_jsonl(sample / "units.jsonl")
    planted = {u["unit_id"] for u in units if u[planted_key]}
    if rule == "unregistered_ecommerce":
        planted = {u["unit_id"] for u in units if u["ecommerce"] and u["kind"] == "ecommerce_shop"}
    warnings = first.result.tables["warnings"].to_pylist()
    raised = {u for w in warnings if w["rule"] == rule for u in true_units[w["unit_id"]]}
    assert planted and len(planted & raised) / len(planted) >= 0.8
    assert len(planted & raised) / len(raised) >= 0.8


def test_kwh_and_tax_changes_are_warned_only_in_the_changed_period(sample_run):
    sample, _, first, _, true_units = sample_run
    planted = {
        a["unit_id"]: a["period"] for a in read_jsonl(sample / "anomalies.jsonl") if a["kind"] == "kwh_change"
    }
    for w in first.result.tables["warnings"].to_pylist():
        if w["rule"] == "kwh_change" and true_units[w["unit_id"]] & set(planted):
            assert w["period"] == planted[next(iter(true_units[w["unit_id"]] & set(planted)))]


def test_warnings_are_exceptional_and_free_of_personal_data(sample_run):
    _, _, first, _, _ = sample_run
    units = first.result.tables["register"].num_rows
    warnings = first.result.tables["warnings"].to_pylist()
    assert len({w["warning_id"] for w in warnings}) == len(warnings)
    for rule in {w["rule"] for w in warnings}:
        warned = {w["unit_id"] for w in warnings if w["rule"] == rule}
        assert len(warned) <= 0.06 * units, (rule, len(warned), units)
    assert len({w["unit_id"] for w in warnings}) <= 0.25 * units
    text = json.dumps(warnings, ensure_ascii=False, default=str)
    assert "t1_" not in text


def test_warnings_land_with_the_register_and_keep_their_ids(sample_run):
    _, store, first, second, _ = sample_run
    latest = store.register_latest()
    assert latest == second.path
    landed = pq.read_table(latest / "warnings.parquet")
    meta = json.loads((latest / "_meta.json").read_text(encoding="utf-8"))
    assert meta["counts"]["warnings"] == landed.num_rows > 0
    assert set(landed["warning_id"].to_pylist()) == set(
        first.result.tables["warnings"]["warning_id"].to_pylist()
    )
    assert set(landed["first_raised_run"].to_pylist()) == {first.result.run_id}
    assert set(landed["run_id"].to_pylist()) == {second.result.run_id}
    figures = Figures.from_links(
        second.result.tables["register"], second.result.tables["links"], all_latest_records(store)
    )
    again = compute_warnings(figures, "reg-000099", previous=landed)
    assert set(again["first_raised_run"].to_pylist()) == {first.result.run_id}


@pytest.fixture(scope="module")
def sample_figures(sample_run):
    _, store, first, _, _ = sample_run
    tables = first.result.tables
    figures = Figures.from_links(tables["register"], tables["links"], all_latest_records(store))
    return figures, compute_warnings(figures, "reg-000001")


def _some_units(kind: str, figures: Figures, warnings: pa.Table) -> set[str]:
    """Units to ask about. ``random-*``: a twentieth of the register, a few units each rule warns about and
    one unit not in the register. A rule's name: every second unit it warns about (part of a multi-licence
    group; only units without electricity, for tax_without_power). ``figures-end-early``: warned units whose
    own figures end before the reference period. ``no-tax-figures``: units warned of power without tax that
    have no tax figures at all (the periods with tax figures are those of all units)."""
    warned = defaultdict(set)
    for row in warnings.select(["rule", "unit_id"]).to_pylist():
        warned[row["rule"]].add(row["unit_id"])
    if kind.startswith("random-"):
        draw = random.Random(kind)
        register_units = sorted(figures.register.index)
        units = set(draw.sample(register_units, len(register_units) // 20)) | {"U-not-in-the-register"}
        for rule in sorted(warned):
            units |= set(draw.sample(sorted(warned[rule]), min(3, len(warned[rule]))))
        return units
    if kind == "figures-end-early":
        figured = pd.concat([figures.tax[["unit_id", "period"]], figures.power[["unit_id", "period"]]])
        last = figured.groupby("unit_id")["period"].max()
        return {unit for units in warned.values() for unit in units if last.get(unit, "") < figures.reference}
    if kind == "no-tax-figures":
        return warned["power_without_tax"] - set(figures.tax["unit_id"])
    if kind == "none":
        return set()
    return set(sorted(warned[kind])[::2])


@pytest.mark.parametrize(
    "kind",
    ["random-1", "random-2", "random-3", "figures-end-early", "no-tax-figures", "none", *sorted(RULES)],
)
def test_warnings_for_some_units_are_the_warnings_about_them_among_all(sample_figures, kind):
    figures, everyone = sample_figures
    units = _some_units(kind, figures, everyone)
    expected = everyone.filter(pc.is_in(everyone["unit_id"], value_set=pa.array(sorted(units), pa.string())))
    assert expected.num_rows > 0 or kind == "none", f"{kind}: no warnings to compare"
    some = compute_warnings(figures, "reg-000001", units=units)
    assert some.schema == everyone.schema
    assert some.to_pylist() == expected.to_pylist()


# -- planting leaves every record's identity alone -------------------------------------------------------


def test_planting_changes_only_figures_and_statuses_of_planted_units(tmp_path, monkeypatch):
    planted_dir, plain_dir = tmp_path / "planted", tmp_path / "plain"
    summary = generate(units=400, seed=11, out_dir=planted_dir)
    monkeypatch.setattr(planting, "SHARES", dict.fromkeys(planting.SHARES, 0.0))
    monkeypatch.setattr(planting, "TREND_SHARES", dict.fromkeys(planting.TREND_SHARES, 0.0))
    generate(units=400, seed=11, out_dir=plain_dir)
    assert summary.anomalies > 0 and (plain_dir / "anomalies.jsonl").read_text() == ""
    planted_units = {a["unit_id"] for a in read_jsonl(planted_dir / "anomalies.jsonl")}
    mutable = {"kwh", "tax_paid", "sales", "taxpayer_status", "status"}
    changed_units = set()
    truth = true_units(plain_dir)
    for name in ("registration", "tax", "utility", "waybill", "nucleic_contact", "truth", "units"):
        planted_rows, plain_rows = (
            read_jsonl(planted_dir / f"{name}.jsonl"),
            read_jsonl(plain_dir / f"{name}.jsonl"),
        )
        assert len(planted_rows) == len(plain_rows)
        for a, b in zip(planted_rows, plain_rows, strict=True):
            differing = {k for k in a if a[k] != b.get(k)}
            assert differing <= mutable, (name, differing)
            if differing:
                changed_units.add(truth[(name, a["record_id"])])
    assert planted_units <= changed_units  # a unit that shows no anomaly may still have been touched
