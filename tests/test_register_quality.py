"""The register's own quality figures: each one on hand-built tables with a known situation, the mart table
read back by the usual readers, and the figures of a register built through the real broker checked against
the register's own files."""

from __future__ import annotations

import datetime
import itertools
import json
import statistics
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.contracts import contract, load_contracts, output_schema
from pipelines.marts.quality import (
    DUPLICATE_REVIEW_REASONS,
    quality_schema,
    quality_table,
    register_quality,
)
from pipelines.resources import MART_SCHEMAS
from pipelines.standardise import parse_company_name
from pipelines.store import RunStore
from tests.shared_stores import SharedRegister

UTC = datetime.UTC
FIGURES = [
    "run_id",
    "created_at",
    "units",
    "units_without_uscc",
    "units_without_uscc_share",
    "duplicate_candidates",
    "coverage",
    "review_open",
    "review_age_median_days",
    "review_age_max_days",
    "registration_lag_median_days",
    "id_churn",
    "contacts",
]


def _table(schema: pa.Schema, rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(
        [{name: row.get(name) for name in schema.names} for row in rows], schema=schema
    )


def _output(name: str, rows: list[dict[str, Any]]) -> pa.Table:
    return _table(output_schema(name), rows)


def _records(feed: str, rows: list[dict[str, Any]]) -> pa.Table:
    """The resolver's current records of a feed: staging columns plus entity_id and content_hash."""
    schema = contract(feed).staging_schema()
    schema = schema.append(pa.field("entity_id", pa.string())).append(pa.field("content_hash", pa.string()))
    return _table(
        schema,
        [{"_topic": f"feeds.{feed}", "_partition": 0, "_offset": 0, "_run_id": "run-1", **r} for r in rows],
    )


def _moment(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).astimezone(UTC)


def _unit(unit_id: str, name: str, division: str, uscc: str | None, first_seen: str) -> dict[str, Any]:
    return {
        "unit_id": unit_id,
        "uscc": uscc,
        "name": name,
        "aliases": [],
        "division_code": division,
        "first_seen": _moment(first_seen),
        "last_seen": _moment(first_seen),
        "run_id": "reg-000003",
    }


RUN_TIMES = {
    "reg-000001": "2026-03-01T02:00:00+00:00",
    "reg-000002": "2026-03-08T02:00:00+00:00",
}
THIS_RUN = ("reg-000003", "2026-03-15T02:00:00+00:00")
TODAY = datetime.date(2026, 3, 15)


@pytest.fixture
def planted() -> tuple[dict[str, pa.Table], dict[str, pa.Table]]:
    """A small register with one of each situation the figures are about.

    - U1 and U2: one name (a region prefix and a traditional spelling apart) in one division: a duplicate
      pair; U6 has the name too, in another division: no pair. U2 has no USCC.
    - U4 was paid tax on (first seen) 2025-01-10 and registered 2025-03-01: 50 days late. U5 registered
      2025-05-01 and was first seen after it: no lag. U1 was seen 2025-02-01 and registered 2025-02-21.
    - a tax record (TAX2) of four linked to no unit; no waybill record at all.
    - review: an uncertain link between U4 and U5 raised two runs ago (a duplicate pair), a rival unit item
      between U2 and U1 raised the run before (the same pair as the names: counted once), a tax record with
      no registration match raised by this run (not a duplicate kind).
    - lineage: this run merged U9 into U1 and split U1; an earlier run's retirement does not count.
    """
    register = _output(
        "register",
        [
            _unit(
                "U1", "杭州润泽餐饮管理有限公司", "330114", "91330114MA00000001", "2025-02-01T09:00:00+08:00"
            ),
            _unit("U2", "潤澤餐飲管理有限公司", "330114", None, "2025-03-01T09:00:00+08:00"),
            _unit("U4", "杭州启明科技有限公司", "330114", "91330114MA00000004", "2025-01-10T09:00:00+08:00"),
            _unit("U5", "杭州明启贸易有限公司", "330114", "91330114MA00000005", "2025-06-01T09:00:00+08:00"),
            _unit("U6", "润泽餐饮管理有限公司", "110101", "91110101MA00000006", "2025-06-01T09:00:00+08:00"),
        ],
    )
    registration = _records(
        "registration",
        [
            {"record_id": "REG1", "established_on": datetime.date(2025, 2, 21)},
            {"record_id": "REG4", "established_on": datetime.date(2025, 3, 1)},
            {"record_id": "REG4b", "established_on": datetime.date(2025, 4, 1)},  # a later licence: not it
            {"record_id": "REG5", "established_on": datetime.date(2025, 5, 1)},
            {"record_id": "REG6", "established_on": datetime.date(2025, 6, 1)},
        ],
    )
    tax = _records(
        "tax",
        [
            {"record_id": "TAX1", "_kafka_timestamp": _moment("2026-01-20T10:00:00+08:00")},
            {"record_id": "TAX2", "_kafka_timestamp": _moment("2026-02-20T10:00:00+08:00")},
            {"record_id": "TAX3", "_kafka_timestamp": _moment("2026-03-14T23:00:00+08:00")},
            {"record_id": "TAX4", "_kafka_timestamp": _moment("2026-01-20T10:00:00+08:00")},
        ],
    )
    links = _output(
        "links",
        [
            {"feed": "registration", "record_id": rid, "unit_id": unit}
            for rid, unit in [("REG1", "U1"), ("REG4", "U4"), ("REG4b", "U4"), ("REG5", "U5"), ("REG6", "U6")]
        ]
        + [
            {"feed": "tax", "record_id": rid, "unit_id": unit}
            for rid, unit in [("TAX1", "U4"), ("TAX3", "U2"), ("TAX4", "U1")]
        ],
    )
    review = _output(
        "review",
        [
            {
                "review_id": "registration/REG5",
                "feed": "registration",
                "record_id": "REG5",
                "reason": "uncertain_link",
                "candidate_unit_ids": ["U4"],
                "current_unit_id": "U5",
                "run_id": "reg-000001",
            },
            {
                "review_id": "tax/TAX4",
                "feed": "tax",
                "record_id": "TAX4",
                "reason": "rival_unit",
                "candidate_unit_ids": ["U2"],
                "current_unit_id": "U1",
                "run_id": "reg-000002",
            },
            {
                "review_id": "tax/TAX3",
                "feed": "tax",
                "record_id": "TAX3",
                "reason": "no_registration_match",
                "candidate_unit_ids": ["U6"],
                "current_unit_id": "U2",
                "run_id": "reg-000003",
            },
        ],
    )
    lineage = _output(
        "lineage",
        [
            {
                "event": "merged",
                "from_unit_id": "U9",
                "to_unit_id": "U1",
                "records": 2,
                "run_id": "reg-000003",
            },
            {
                "event": "split",
                "from_unit_id": "U1",
                "to_unit_id": "U4",
                "records": 1,
                "run_id": "reg-000003",
            },
            {
                "event": "retired",
                "from_unit_id": "U8",
                "to_unit_id": None,
                "records": 1,
                "run_id": "reg-000002",
            },
        ],
    )
    tables = {"register": register, "links": links, "review": review, "lineage": lineage}
    tables["warnings"] = _output("warnings", [])
    records = {"registration": registration, "tax": tax, "waybill": _records("waybill", [])}
    return tables, records


def _figures(planted, **kwargs: Any) -> dict[str, Any]:
    tables, records = planted
    return register_quality(tables, records, *THIS_RUN, TODAY, **({"run_times": RUN_TIMES} | kwargs))


def test_the_figures_are_the_documented_keys_and_plain_json(planted):
    figures = _figures(planted)
    assert list(figures) == FIGURES
    assert json.loads(json.dumps(figures, allow_nan=False)) == figures
    assert (figures["run_id"], figures["created_at"]) == THIS_RUN
    assert [f.name for f in quality_schema()] == FIGURES


def test_units_without_a_uscc_and_their_share(planted):
    figures = _figures(planted)
    assert (figures["units"], figures["units_without_uscc"]) == (5, 1)
    assert figures["units_without_uscc_share"] == pytest.approx(0.2)


def test_a_blank_uscc_counts_as_none(planted):
    tables, records = planted
    register = tables["register"]
    blank = pa.array(["  ", *register["uscc"].to_pylist()[1:]], pa.string())
    tables = {**tables, "register": register.set_column(1, "uscc", blank)}
    assert register_quality(tables, records, *THIS_RUN, TODAY)["units_without_uscc"] == 2


def test_duplicate_candidates_are_same_name_pairs_in_a_division_and_review_questions_counted_once(planted):
    assert _figures(planted)["duplicate_candidates"] == 2  # U1–U2 (name and rival item), U4–U5 (uncertain)
    tables, records = planted
    only_names = {**tables, "review": tables["review"].slice(0, 0)}
    assert register_quality(only_names, records, *THIS_RUN, TODAY)["duplicate_candidates"] == 1
    assert set(DUPLICATE_REVIEW_REASONS) == {"uncertain_link", "rival_unit"}


def test_coverage_is_the_share_of_each_feeds_records_in_a_unit(planted):
    assert _figures(planted)["coverage"] == {"registration": 1.0, "tax": 0.75, "waybill": None}


def test_review_items_are_aged_from_the_run_that_raised_them(planted):
    figures = _figures(planted)
    assert figures["review_open"] == 3
    # 14 days (two runs ago), 7 days (the run before), 0 days (this run)
    assert (figures["review_age_median_days"], figures["review_age_max_days"]) == (7.0, 14)
    as_read_back = {run: datetime.datetime.fromisoformat(created) for run, created in RUN_TIMES.items()}
    assert _figures(planted, run_times=as_read_back) == figures  # the mart's rows give datetimes


def test_review_items_of_unknown_runs_are_aged_from_their_records_arrival(planted):
    figures = _figures(planted, run_times=None)
    # REG5 has no arrival time recorded and is left out; TAX4 arrived 2026-01-20 (54 days); TAX3 is this run's
    assert (figures["review_age_median_days"], figures["review_age_max_days"]) == (27.0, 54)


def test_registration_lag_is_the_median_over_units_seen_before_they_registered(planted):
    # U4: 2025-01-10 → 2025-03-01 (its earliest licence) = 50 days; U1: 2025-02-01 → 2025-02-21 = 20 days;
    # U5 and U6 registered before they were seen, U2 never registered
    assert _figures(planted)["registration_lag_median_days"] == 35.0


def test_first_seen_counts_in_china_time():
    """A unit first seen 2025-02-20 at 20:00 UTC was seen on the 21st in China: no lag before 2025-02-21."""
    register = _output("register", [_unit("U1", "甲乙有限公司", "330114", None, "2025-02-20T20:00:00+00:00")])
    registration = _records(
        "registration", [{"record_id": "R", "established_on": datetime.date(2025, 2, 21)}]
    )
    links = _output("links", [{"feed": "registration", "record_id": "R", "unit_id": "U1"}])
    tables = {
        "register": register,
        "links": links,
        "review": _output("review", []),
        "lineage": _output("lineage", []),
        "warnings": _output("warnings", []),
    }
    figures = register_quality(tables, {"registration": registration}, *THIS_RUN, TODAY)
    assert figures["registration_lag_median_days"] is None
    assert figures["review_age_median_days"] is None and figures["review_age_max_days"] is None


def test_id_churn_counts_this_runs_lineage_events(planted):
    # U9 merged, U1 split in this run (U8 retired in an earlier run): 2 ids of 5 units
    assert _figures(planted)["id_churn"] == {
        "merged": 1,
        "split": 1,
        "retired": 0,
        "share": pytest.approx(0.4),
    }


def test_an_empty_register_has_no_shares():
    tables = {name: _output(name, []) for name in ("register", "links", "review", "lineage", "warnings")}
    figures = register_quality(tables, {"tax": _records("tax", [])}, *THIS_RUN, TODAY)
    assert figures["units"] == 0 and figures["units_without_uscc_share"] is None
    assert figures["coverage"] == {"tax": None} and figures["id_churn"]["share"] is None
    assert figures["duplicate_candidates"] == 0


NAMES = [
    "杭州润泽餐饮管理有限公司",
    "润泽餐饮管理有限公司",
    "潤澤餐飲管理有限責任公司",
    "启明科技有限公司",
    "明启贸易有限公司",
]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(NAMES), st.sampled_from(["330114", "110101", None]), st.booleans()),
        max_size=12,
    )
)
def test_name_pairs_are_every_pair_of_units_sharing_a_core_name_and_division(units):
    rows = [
        _unit(
            f"U{i:02d}", name, division, "91330114MA00000001" if coded else None, "2025-01-01T00:00:00+00:00"
        )
        for i, (name, division, coded) in enumerate(units)
    ]
    tables = {name: _output(name, []) for name in ("links", "review", "lineage", "warnings")}
    tables["register"] = _output("register", rows)
    figures = register_quality(tables, {}, *THIS_RUN, TODAY)
    key = lambda row: (row["division_code"], parse_company_name(row["name"], row["division_code"]).core)  # noqa: E731
    expected = sum(
        1 for a, b in itertools.combinations(rows, 2) if a["division_code"] is not None and key(a) == key(b)
    )
    assert figures["duplicate_candidates"] == expected
    assert figures["units_without_uscc"] == sum(1 for *_, coded in units if not coded)


def test_the_mart_holds_one_row_per_run_with_nested_figures_as_structs(planted, tmp_path):
    later = _figures(planted)
    earlier = register_quality(*planted, "reg-000002", RUN_TIMES["reg-000002"], datetime.date(2026, 3, 8))
    table = quality_table([later, earlier])
    assert table.schema == quality_schema()
    assert pa.types.is_struct(table.schema.field("coverage").type)
    assert pa.types.is_struct(table.schema.field("id_churn").type)
    assert table["run_id"].to_pylist() == ["reg-000002", "reg-000003"]  # oldest first
    assert quality_table(table.to_pylist()).equals(table)  # the previous run's rows, read back, carry over
    path = tmp_path / "register_quality" / "part-0.parquet"
    path.parent.mkdir()
    pq.write_table(table, path)
    coverage_tax = duckdb.sql(
        f"SELECT run_id, coverage.tax, coverage.waybill, id_churn.split FROM read_parquet('{path}') ORDER BY run_id"
    ).fetchall()
    assert coverage_tax == [("reg-000002", 0.75, None, 0), ("reg-000003", 0.75, None, 1)]
    frame = ds.dataset(path.parent).to_table().to_pandas()
    assert frame["coverage"].iloc[1]["registration"] == 1.0
    assert frame["coverage"].iloc[1]["utility"] is None  # a feed the run had no records of: null
    assert frame["created_at"].iloc[1] == datetime.datetime(2026, 3, 15, 2, tzinfo=UTC)


def test_the_schema_documents_every_field_and_covers_every_feed():
    spec = json.loads((MART_SCHEMAS / "register_quality.json").read_text("utf-8"))
    fields = [spec, *spec["fields"], *(f for field in spec["fields"] for f in field.get("fields", []))]
    assert all(field.get("doc") for field in fields)
    assert sorted(f.name for f in quality_schema().field("coverage").type) == sorted(load_contracts())


def test_coverage_of_an_undocumented_feed_is_refused_not_dropped(planted):
    figures = _figures(planted)
    with pytest.raises(ValueError, match="parcels"):
        quality_table([{**figures, "coverage": {**figures["coverage"], "parcels": 0.5}}])


# -- a register built through the real broker --------------------------------------------------------------


@pytest.fixture(scope="module")
def store(shared_register: SharedRegister) -> RunStore:
    """Two ingest runs through the real broker, a register after each (a rebuild, then incremental): the
    session's shared register, read only."""
    assert shared_register.store.register_runs() == ["reg-000001", "reg-000002"]
    return shared_register.store


def _china_date(created_at: str) -> datetime.date:
    return (
        datetime.datetime.fromisoformat(created_at)
        .astimezone(datetime.timezone(datetime.timedelta(hours=8)))
        .date()
    )


def _run(store: RunStore, run: str) -> tuple[dict[str, pa.Table], dict[str, pa.Table], dict[str, Any]]:
    run_dir = store.register_run_dir(run)
    tables = {
        name: pq.read_table(run_dir / f"{name}.parquet")
        for name in ("register", "links", "review", "lineage", "warnings")
    }
    records = {
        path.stem: pq.read_table(path) for path in sorted((run_dir / "state" / "records").glob("*.parquet"))
    }
    return tables, records, store.register_meta(run_dir)


@pytest.mark.integration  # the store is ingested through the real broker
def test_the_figures_of_a_real_register_agree_with_its_files(store):
    first_tables, first_records, first_meta = _run(store, "reg-000001")
    tables, records, meta = _run(store, "reg-000002")
    # as if the first register had been built ten days before the second: its items are ten days old
    ten_days_before = datetime.datetime.fromisoformat(meta["created_at"]) - datetime.timedelta(days=10)
    run_times = {"reg-000001": ten_days_before.isoformat()}
    today = _china_date(meta["created_at"])
    figures = register_quality(tables, records, "reg-000002", meta["created_at"], today, run_times=run_times)
    assert list(figures) == FIGURES
    assert json.loads(json.dumps(figures, allow_nan=False)) == figures

    register = tables["register"].to_pylist()
    assert figures["units"] == len(register) > 0
    assert figures["units_without_uscc"] == sum(1 for unit in register if not unit["uscc"])
    linked = {(link["feed"], link["record_id"]) for link in tables["links"].to_pylist() if link["unit_id"]}
    assert set(figures["coverage"]) == set(load_contracts())
    for feed, share in figures["coverage"].items():
        ids = set(records[feed]["record_id"].to_pylist())
        assert share == pytest.approx(len({(feed, i) for i in ids} & linked) / len(ids))
    review = tables["review"].to_pylist()
    assert figures["review_open"] == len(review)
    raised_on = {
        run: _china_date(created) for run, created in [*run_times.items(), ("reg-000002", meta["created_at"])]
    }
    ages = [(today - raised_on[item["run_id"]]).days for item in review]
    assert figures["review_age_max_days"] == (max(ages) if ages else None)
    asked = {
        tuple(sorted((item["current_unit_id"], other)))
        for item in review
        if item["reason"] in DUPLICATE_REVIEW_REASONS
        for other in item["candidate_unit_ids"]
    }
    core = {u["unit_id"]: parse_company_name(u["name"], u["division_code"]).core for u in register}
    same_name = {
        (a["unit_id"], b["unit_id"])
        for a, b in itertools.combinations(sorted(register, key=lambda u: u["unit_id"]), 2)
        if a["division_code"]
        and a["division_code"] == b["division_code"]
        and core[a["unit_id"]] == core[b["unit_id"]]
    }
    assert figures["duplicate_candidates"] == len(asked | same_name)
    established: dict[str, datetime.date] = {}
    registration = {r["record_id"]: r["established_on"] for r in records["registration"].to_pylist()}
    for link in tables["links"].to_pylist():
        day = registration.get(link["record_id"]) if link["feed"] == "registration" else None
        if day and link["unit_id"]:
            established[link["unit_id"]] = min(day, established.get(link["unit_id"], day))
    lags = [
        (established[u["unit_id"]] - _china_date(u["first_seen"].isoformat())).days
        for u in register
        if u["unit_id"] in established
    ]
    late = [lag for lag in lags if lag > 0]
    assert figures["registration_lag_median_days"] == (statistics.median(late) if late else None)
    this_run = [e for e in tables["lineage"].to_pylist() if e["run_id"] == "reg-000002"]
    churn = figures["id_churn"]
    assert [churn[event] for event in ("merged", "split", "retired")] == [
        sum(1 for e in this_run if e["event"] == event) for event in ("merged", "split", "retired")
    ]

    before = register_quality(first_tables, first_records, "reg-000001", first_meta["created_at"], today)
    mart = quality_table([before, figures])
    assert mart.num_rows == 2 and mart.schema == quality_schema()
    assert mart["coverage"].to_pylist()[1] == figures["coverage"]
