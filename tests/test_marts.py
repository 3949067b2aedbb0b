"""The BI marts: figures that agree with the records they sum, demography and lock-on lists that find the
situations planted in hand-made histories, tiers that follow the score rules of marts.toml, and tables that
DuckDB, pandas, Polars and pyarrow all read alike from folders of their own."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pipelines import resources
from pipelines.marts import activity, facts
from pipelines.marts import tables as mart_tables
from pipelines.marts.build import PARTITIONED
from pipelines.marts.config import documented_columns, load_config
from pipelines.marts.quality import name_keys
from pipelines.store import RunStore
from tests.shared_stores import BatchedRegister, SharedRegister
from tests.staging import read_jsonl, true_units

CONFIG = load_config()
MEASURES = [m.name for m in CONFIG.measures]
FLAGS = {f.name: f for f in CONFIG.activity_flags}


# -- hand-made histories --------------------------------------------------------------------------------


def _months(first: str, count: int) -> list[str]:
    year, month = int(first[:4]), int(first[5:])
    out = []
    for _ in range(count):
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def _unit_month(history: dict[str, dict[str, dict[str, float]]]) -> pa.Table:
    """unit -> month -> figures; flags set by the thresholds of marts.toml."""
    rows = []
    for unit, months in history.items():
        for period, figures in months.items():
            row = {"unit_id": unit, "period": period, **{m: figures.get(m) for m in MEASURES}}
            for name, flag in FLAGS.items():
                row[name] = (figures.get(flag.measure) or 0) > flag.above
            row["active"] = any(row[name] for name in FLAGS)
            rows.append(row)
    return pa.Table.from_pylist(rows)


def _units(rows: list[dict]) -> pa.Table:
    defaults = {
        "name": "某公司", "division_code": "330106", "township": "西溪街道", "industry_section": "F",
        "status": "active", "tier": "B", "activity_score": 50.0,
    }  # fmt: skip
    return pa.Table.from_pylist([{**defaults, **row} for row in rows])


def _registration(rows: list[dict]) -> pa.Table:
    schema = pa.schema(
        [("unit_id", pa.string()), ("established_month", pa.string()), ("changed_month", pa.string()),
         ("abnormal", pa.bool_())]
    )  # fmt: skip
    defaults = {"established_month": None, "changed_month": None, "abnormal": False}
    return pa.Table.from_pylist([{**defaults, **row} for row in rows], schema=schema)


def test_a_unit_going_dormant_and_reviving_is_counted_in_the_months_it_happens():
    months = _months("2025-01", 18)  # 2025-01 … 2026-06
    dormant = CONFIG.dormant_months
    active = months[:3] + months[3 + dormant + 1 :]  # idle for dormant + 1 months after March 2025
    history = {
        "U1": {m: {"kwh": 500.0} for m in active},
        "U2": {m: {"kwh": 500.0} for m in months},  # never idle
        "U3": {months[0]: {"tax_paid": 0.0}},  # files, pays nothing: never active, never dormant
    }
    units = _units([{"unit_id": "U1"}, {"unit_id": "U2"}, {"unit_id": "U3", "status": "cancelled"}])
    registration = _registration(
        [{"unit_id": "U1", "established_month": "2024-05"}, {"unit_id": "U3", "changed_month": "2025-06"}]
    )
    table = activity.demography(_unit_month(history), units, registration, CONFIG, months[-1])
    by_period = table.to_pandas().groupby("period").sum(numeric_only=True)

    went = months[2 + dormant]  # the month the idle run reaches dormant_months
    assert by_period.loc[went, "went_dormant"] == 1
    assert by_period["went_dormant"].sum() == 1
    assert by_period.loc[months[3 + dormant + 1], "revivals"] == 1 and by_period["revivals"].sum() == 1
    assert by_period.loc["2024-05", "births"] == 1  # established before its first record
    assert by_period.loc[months[0], "births"] == 2  # U2 and U3: first seen
    assert by_period.loc["2025-06", "closures"] == 1 and by_period["closures"].sum() == 1
    assert by_period.loc[months[5], "active_units"] == 1  # U1 idle, U2 active


def _expected_score(months_since, active_months, sources, recent_change, abnormal, warnings) -> float:
    """marts.toml's tier rules, spelled out in the words of its comments."""
    tier = CONFIG.tier
    recency = next(
        (p for upto, p in tier["recency"]["points"] if months_since is not None and months_since <= upto), 0
    )
    score = recency + tier["volume"]["points"] * active_months / CONFIG.look_back_months
    score += tier["breadth"]["per_source"] * sources + (
        tier["registration"]["recent_change"] if recent_change else 0
    )
    score -= tier["penalties"]["abnormal_listing"] if abnormal else 0
    score -= tier["penalties"]["per_warning"] * min(warnings, tier["penalties"]["max_warnings"])
    return round(max(0.0, min(100.0, score)), 1)


def _expected_grade(score: float, status: str) -> str:
    if status in CONFIG.tier["cap"]["grade_d_statuses"]:
        return "D"
    for grade, low in sorted(CONFIG.tier["grades"].items(), key=lambda g: -g[1]):
        if score >= low:
            return grade
    return "D"


def test_tiers_follow_the_score_rules():
    months = _months("2025-11", 12)  # reference 2026-10
    reference = months[-1]
    history = {
        "busy": {m: {"tax_paid": 1000.0, "kwh": 800.0, "parcels": 5} for m in months},
        "quiet": {m: {"kwh": 80.0} for m in months[:4]},  # last active 8 months ago
        "listed": {m: {"tax_paid": 50.0} for m in months[-3:]},
        "closed": {m: {"tax_paid": 1000.0, "kwh": 800.0, "parcels": 5} for m in months},
        "silent": {months[0]: {"tax_paid": 0.0}},
    }
    units = _units([{"unit_id": u, "status": "cancelled" if u == "closed" else "active"} for u in history])
    registration = _registration(
        [{"unit_id": "busy", "changed_month": months[3]}, {"unit_id": "listed", "abnormal": True}]
    )
    warnings = pa.table({"unit_id": ["listed"] * 6 + ["quiet"]})
    scored = activity.tiers(_unit_month(history), units, registration, warnings, CONFIG, reference)
    got = {row["unit_id"]: (row["activity_score"], row["tier"]) for row in scored.to_pylist()}

    expected = {
        "busy": _expected_score(0, 12, 3, True, False, 0),
        "quiet": _expected_score(8, 4, 1, False, False, 1),
        "listed": _expected_score(0, 3, 1, False, True, 6),
        "closed": _expected_score(0, 12, 3, False, False, 0),
        "silent": _expected_score(None, 0, 0, False, False, 0),
    }
    statuses = {row["unit_id"]: row["status"] for row in units.to_pylist()}
    assert got == {u: (s, _expected_grade(s, statuses[u])) for u, s in expected.items()}
    assert got["busy"][1] == "A" and got["closed"][1] == "D"  # the rules mean something


def test_lock_on_lists_find_dormant_falling_and_pillar_units():
    months = _months("2025-11", 12)
    reference = months[-1]
    rules = CONFIG.lockon
    falls = rules["falling_months"]
    steady = {m: {"kwh": 1000.0, "sales": 10_000.0} for m in months}
    history = {f"steady{i}": steady for i in range(rules["pillar_top"] + 5)}
    history["dormant"] = {m: {"kwh": 700.0} for m in months[:3]}
    history["cancelled"] = {m: {"kwh": 700.0} for m in months[:3]}  # dormant, but its registration ended
    start = len(months) - falls - 1
    history["falling"] = {m: {"tax_paid": 1000.0 * 0.7**i} for i, m in enumerate(months[start:])}
    history["wobbly"] = {
        m: {"tax_paid": v} for m, v in zip(months[start:], [1000, 600, 700, 300], strict=False)
    }
    history["pillar"] = {m: {"kwh": 1_000_000.0} for m in months[:-1]} | {reference: {"kwh": 500_000.0}}
    units = _units([{"unit_id": u, "status": "cancelled" if u == "cancelled" else "active"} for u in history])
    table = activity.lockon(_unit_month(history), units, CONFIG, reference)
    listed = defaultdict(dict)
    for row in table.to_pylist():
        listed[row["list"]][(row["unit_id"], row["measure"])] = row

    assert set(listed["dormant"]) == {("dormant", "activity")}
    assert listed["dormant"][("dormant", "activity")]["value"] == len(months) - 3
    assert set(listed["falling"]) == {("falling", "tax_paid")}
    fell = listed["falling"][("falling", "tax_paid")]
    assert fell["change"] == pytest.approx(0.7**falls - 1)
    assert fell["reason"].endswith(f"降幅{round(100 * (1 - 0.7**falls))}%")
    assert set(listed["pillar_change"]) == {("pillar", "kwh")}
    assert listed["pillar_change"][("pillar", "kwh")]["change"] == pytest.approx(-0.5)
    assert [r["rank"] for r in table.to_pylist() if r["list"] == "dormant"] == [1]


# -- a real register run's marts -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated(shared_register: SharedRegister) -> tuple[Path, RunStore]:
    """A generated city with planted situations (anomalies.jsonl) and its register: a first run on half of
    its records, then an incremental run on the rest (the session's shared register; read only). Built
    through the real broker: the tests that read it are marked integration."""
    return shared_register.sample, shared_register.store


@pytest.fixture(scope="module")
def store(generated) -> RunStore:
    return generated[1]


def _marts(store: RunStore) -> list[str]:
    return sorted(p.name for p in store.marts_link.iterdir())


def _china_month(moment: datetime | None) -> str | None:
    return None if moment is None else (moment.astimezone(UTC) + timedelta(hours=8)).strftime("%Y-%m")


@pytest.mark.integration
def test_unit_month_sums_the_records_linked_to_each_unit(store):
    """An independent count, record by record, in plain Python."""
    latest = store.register_latest()
    links = ds.dataset(latest / "links.parquet").to_table().to_pylist()
    unit_of = {(r["feed"], r["record_id"]): r["unit_id"] for r in links}
    expected: dict[tuple[str, str, str], float] = defaultdict(float)
    for measure in CONFIG.measures:
        for feed, field in measure.fields:
            records = ds.dataset(latest / "state" / "records" / f"{feed}.parquet").to_table().to_pylist()
            for record in records:
                unit = unit_of.get((feed, record["record_id"]))
                month = record.get("period") or _china_month(record.get("shipped_at"))
                if unit and month and record[field] is not None:
                    expected[(unit, month, measure.name)] += record[field]
    rows = ds.dataset(store.marts_link / "unit_month", partitioning="hive").to_table().to_pylist()
    got = {(r["unit_id"], r["period"], m): r[m] for r in rows for m in MEASURES if r[m] is not None}
    assert got == pytest.approx(dict(expected))
    assert sum(r["tax_records"] for r in rows) == sum(
        1 for r in links if r["feed"] == "tax"
    )  # every tax filing has a month
    assert all(r["active"] == any(r[flag] for flag in FLAGS) for r in rows)
    assert {"tax_active", "power_active", "shipping_active", "platform_active"} <= set(FLAGS)


@pytest.mark.integration
def test_every_mart_has_a_folder_and_a_documented_schema(store):
    marts = _marts(store)
    assert set(marts) == {p.stem for p in resources.MART_SCHEMAS.glob("*.json")}
    for name in marts:
        fields = json.loads((resources.MART_SCHEMAS / f"{name}.json").read_text())["fields"]
        documented = documented_columns(fields, CONFIG)
        written = ds.dataset(store.marts_link / name, partitioning="hive").schema.names
        assert sorted(written) == sorted(documented), name
    assert all(p.is_dir() for p in store.marts_link.iterdir())  # a directory read never mixes tables


@pytest.mark.integration
def test_every_mart_reads_alike_in_duckdb_pandas_polars_and_pyarrow(store):
    database = duckdb.connect(str(store.analysis_database), read_only=True)
    for name in _marts(store):
        folder = store.marts_link / name
        partitioned = name in PARTITIONED
        arrow = ds.dataset(folder, partitioning="hive").to_table()
        frame = pd.read_parquet(folder)
        polars = (
            pl.scan_parquet(f"{folder}/**/*.parquet", hive_partitioning=True).collect()
            if partitioned
            else pl.read_parquet(f"{folder}/*.parquet")
        )
        view = database.sql(f"SELECT count(*) FROM {name}").fetchall()[0][0]
        assert arrow.num_rows == len(frame) == polars.height == view, name
        assert arrow.num_rows > 0, name
        for field in arrow.schema:  # nested values are structs and lists, not JSON text
            if pa.types.is_string(field.type):
                texts = [v for v in arrow[field.name].to_pylist()[:2000] if v]
                assert not any(v.lstrip().startswith(("{", "[")) for v in texts), (name, field.name)


@pytest.mark.integration
def test_the_units_mart_normalises_codes_and_names_the_phone_token_for_what_it_is(store):
    units = ds.dataset(store.marts_link / "units").to_table().to_pylist()
    source_statuses = {u["status_source"]: u["status"] for u in units if u["status_source"]}
    active_spellings = {s for s, code in source_statuses.items() if code == "active"}
    assert len(active_spellings) >= 2  # 存续 / 在业 / 在营 … one code
    assert {u["status_label"] for u in units if u["status"] == "active"} == {"存续"}
    assert "unknown" not in source_statuses.values()
    assert "phone" not in units[0]  # a token is not a number to dial: it is named for what it is
    assert all(u["phone_token"].startswith("t1_") for u in units if u["phone_token"])
    assert all("（" not in (u["entity_type"] or "") for u in units)
    named = [u for u in units if u["industry_code"]]
    assert named and all(u["industry_section_name"] and u["industry_name"] for u in named)
    register = ds.dataset(store.register_latest() / "register.parquet").to_table().to_pylist()
    assert {r["unit_id"]: r["tier"] for r in register} == {u["unit_id"]: u["tier"] for u in units}
    assert {r["tier"] for r in register} <= {"A", "B", "C", "D"} and len({r["tier"] for r in register}) > 1


@pytest.mark.integration
def test_the_quality_of_the_run_is_in_its_meta_and_in_the_mart(store):
    meta = store.register_meta(store.register_latest())
    rows = ds.dataset(store.marts_link / "register_quality").to_table().to_pylist()
    assert [row["run_id"] for row in rows] == store.register_runs()  # the earlier run's row carried over
    assert rows[-1]["run_id"] == meta["run_id"]
    assert rows[-1]["units"] == meta["quality"]["units"] == meta["counts"]["register"]
    assert meta["timings_s"]["marts"] >= 0 and meta["marts"]["unit_month"] > 0
    assert date.fromisoformat(meta["created_at"][:10]) <= date.today()


def test_an_incremental_run_gives_the_marts_a_full_recount_gives(batched_register: BatchedRegister):
    """Batches recompute only the touched units' months; the result is what counting everything gives."""
    store, landed = batched_register.store, batched_register.runs[-1]
    assert len(batched_register.runs) > 2 and landed.meta["mode"] == "incremental"
    latest = store.register_latest()
    assert latest == landed.path
    tables = store.register_tables(latest, ["register", "links"])
    records = {p.stem: pq.read_table(p) for p in (latest / "state" / "records").glob("*.parquet")}
    recount = facts.unit_month(mart_tables.units(tables["register"]), tables["links"], records, CONFIG)
    stored = store.register_marts(latest, ["unit_month"])["unit_month"]

    def rows(table: pa.Table) -> set[tuple]:
        return {tuple(row[c] for c in recount.column_names) for row in table.to_pylist()}

    assert stored.num_rows == recount.num_rows and rows(stored) == rows(recount)
    converted = mart_tables.links(tables["links"])  # every link converted again
    kept_links = store.register_marts(latest, ["links"])["links"]

    def link_rows(table: pa.Table) -> set[tuple]:
        return {
            (r["feed"], r["record_id"], r["unit_id"], repr(r["field_weights"])) for r in table.to_pylist()
        }

    assert kept_links.num_rows == converted.num_rows and link_rows(kept_links) == link_rows(converted)
    units = store.register_marts(latest, ["units"])["units"]  # name cores carried over, new ones parsed
    parsed = {
        (r["name"], r["division_code"]): r["name_key"] for r in name_keys(tables["register"]).to_pylist()
    }
    assert {u["unit_id"]: u["name_core"] for u in units.to_pylist()} == {
        r["unit_id"]: parsed.get((r["name"], r["division_code"])) for r in tables["register"].to_pylist()
    }
    qualities = ds.dataset(store.marts_link / "register_quality").to_table()
    assert qualities["run_id"].to_pylist() == store.register_runs()  # one row per run, all runs


@pytest.mark.integration
def test_the_lock_on_lists_find_the_situations_the_generator_planted(generated):
    """Units the generator made go dormant, pay less tax filing after filing, or (a pillar) halve its power."""
    sample, store = generated
    links = ds.dataset(store.register_latest() / "links.parquet").to_table().to_pylist()
    unit_of_record = {(r["feed"], r["record_id"]): r["unit_id"] for r in links}
    votes: dict[str, Counter] = defaultdict(Counter)
    for key, true_unit in true_units(sample).items():
        if true_unit and key in unit_of_record:
            votes[true_unit][unit_of_record[key]] += 1
    register_unit = {true_unit: counts.most_common(1)[0][0] for true_unit, counts in votes.items()}
    listed = defaultdict(dict)
    for row in ds.dataset(store.marts_link / "lockon").to_table().to_pylist():
        listed[row["list"]][(row["unit_id"], row["measure"])] = row
    planted = defaultdict(list)
    for row in read_jsonl(sample / "anomalies.jsonl"):
        planted[row["kind"]].append(row)
    assert {"goes_dormant", "tax_falling", "pillar_power_halves"} <= set(planted)

    active_months = defaultdict(set)
    for row in ds.dataset(store.marts_link / "unit_month", partitioning="hive").to_table().to_pylist():
        if row["active"]:
            active_months[row["unit_id"]].add(row["period"])
    judged = 0
    for row in planted["goes_dormant"]:
        unit = register_unit[row["unit_id"]]
        if not active_months[unit]:
            continue  # the register saw none of its activity (e.g. its waybills stayed unattached)
        assert max(active_months[unit]) == row["period"], row  # the generator's last active month
        found = listed["dormant"].get((unit, "activity"))
        if row["quiet_months"] >= CONFIG.dormant_months:
            assert found is not None and found["value"] == row["quiet_months"], row
            judged += 1
        else:
            assert found is None, row  # quiet, but not yet for long enough
    assert judged >= 1
    for row in planted["tax_falling"]:
        found = listed["falling"].get((register_unit[row["unit_id"]], "tax_paid"))
        assert found is not None and found["value"] == pytest.approx(row["tax_paid"][-1]), row
    for row in planted["pillar_power_halves"]:
        found = listed["pillar_change"].get((register_unit[row["unit_id"]], "kwh"))
        assert found is not None and -0.6 < found["change"] < -0.4, row
