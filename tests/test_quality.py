"""Data-quality suites and their outcomes: healthy feeds pass, broken ones block, personal values never leak.

Great Expectations takes 5-15 s to import, so every test that validates shares one module-scoped set of
results; the suite-file checks run without GE.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.contracts import contract, feed_names
from pipelines.quality import (
    BlockingQualityError,
    FeedQuality,
    QualityWorker,
    check_suite,
    load_suite,
    raise_if_blocking,
    validate_feed,
    write_quality_reports,
)
from pipelines.quality.suites import EXPECTATIONS_DIR, suite_path
from pipelines.standardise import codes
from pipelines.standardise.vocabularies import customer_class_spellings, industry_dimension

FEEDS = feed_names()
ROWS = 1000
NOW = datetime(2024, 6, 1, tzinfo=UTC)
CLEAR_PHONE = "13812345678"  # a clear value in a personal field: must block and never be written out

_VALUES: dict[str, Any] = {
    "uscc": lambda i: codes.make_uscc("9", "1", "330106", f"{i:08d}"),
    "taxpayer_id": lambda i: codes.make_uscc("9", "1", "330106", f"{i:08d}"),
    "reg_no": lambda i: f"{330106000000000 + i}",
    "name": lambda i: f"杭州测试{i}科技有限公司",
    "taxpayer_name": lambda i: f"杭州测试{i}科技有限公司",
    "account_name": lambda i: f"杭州测试{i}科技有限公司",
    "sender_company": lambda i: f"测试{i}网店",
    "work_unit": lambda i: f"杭州测试{i}科技有限公司",
    "entity_type": lambda i: "有限责任公司",
    "legal_rep_name": lambda i: "张三",
    "sender_name": lambda i: "李四",
    "industry_code": lambda i: "C3011",
    "division_code": lambda i: "330106",
    "address": lambda i: f"浙江省杭州市西湖区文三路{i}号",
    "sender_address": lambda i: f"浙江省杭州市西湖区文三路{i}号",
    "phone": lambda i: f"0571-8{i:07d}",
    "status": lambda i: ("存续", "在业", "注销", "吊销")[i % 4],
    "taxpayer_status": lambda i: ("正常", "非正常", "注销")[i % 3],
    "customer_class": lambda i: ("一般工商业", "大工业", "居民")[i % 3],
    "established_on": lambda i: date(2010, 1, 1) + timedelta(days=i),
    "abnormal_since": lambda i: date(2023, 3, 1) if i % 50 == 0 else None,
    "registered_capital": lambda i: 100.0 + i,
    "tax_office": lambda i: "国家税务总局杭州市西湖区税务局",
    "period": lambda i: f"2024-{1 + i % 5:02d}",
    "tax_paid": lambda i: float(i % 997),
    "sales": lambda i: float(i * 10),
    "account_no": lambda i: f"33{i:08d}",
    "meter_no": lambda i: f"M{i:010d}",
    "kwh": lambda i: float(i % 5000),
    "carrier": lambda i: "顺丰速运",
    "parcel_count": lambda i: 1 + i % 20,
    "site": lambda i: "西湖区文三路采样点",
}
_BY_TYPE: dict[str, Any] = {
    "string": lambda i: f"x{i}",
    "number": lambda i: 1.0,
    "integer": lambda i: 1,
    "date": lambda i: date(2020, 1, 1),
    "timestamp": lambda i: datetime(2024, 5, 1, 8, tzinfo=UTC) + timedelta(minutes=i),
    "period": lambda i: "2024-05",
}


def _token(name: str, i: int) -> str:
    return "t1_" + hashlib.md5(f"{name}{i}".encode()).hexdigest()


def healthy_rows(feed: str, n: int = ROWS, messy: bool = True) -> list[dict[str, Any]]:
    """Staged rows as ingest writes them; ``messy`` blanks 3% of each optional field and makes 3% of the
    checked codes fail their check digit, as real feeds do."""
    c = contract(feed)
    rows = []
    for i in range(n):
        row: dict[str, Any] = {}
        for k, spec in enumerate(c.fields):
            if spec.name == c.key_field:
                value: Any = f"{feed}-{i}"
            elif spec.personal:
                value = _token(spec.name, i)
            else:
                value = _VALUES.get(spec.name, _BY_TYPE[spec.type])(i)
            if messy and spec.name != c.key_field and (i * 7 + k * 13) % 100 < 3:
                value = None
            row[spec.name] = value
            if spec.validity_column:
                bad = messy and (i * 11 + k) % 100 < 3
                row[spec.validity_column] = None if value is None else not bad
        row.update(
            _topic=c.topic,
            _partition=0,
            _offset=i,
            _kafka_timestamp=datetime(2024, 5, 1, tzinfo=UTC),
            _run_id="run-000002",
            _extra=None,
        )
        rows.append(row)
    return rows


def staged(feed: str, rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=contract(feed).staging_schema())


def _with(rows: list[dict[str, Any]], every: int, **changes: Any) -> list[dict[str, Any]]:
    """A copy of rows with ``changes`` applied to every ``every``-th row."""
    return [{**row, **changes} if i % every == 0 else dict(row) for i, row in enumerate(rows)]


def _failed(quality: FeedQuality, expectation_type: str, column: str, severity: str) -> bool:
    return any(
        o.expectation_type == expectation_type and o.column == column and o.severity == severity
        for o in quality.failures
    )


# -- suite files, without GE ---------------------------------------------------------------------------


@pytest.mark.parametrize("feed", FEEDS)
def test_suite_fits_contract_and_every_expectation_has_a_severity_and_reason(feed: str) -> None:
    assert suite_path(feed).is_file()
    assert check_suite(feed) == []
    suite = load_suite(feed)
    assert all(e["meta"]["severity"] in ("block", "warn") and e["meta"]["why"] for e in suite["expectations"])
    types = {(e["type"], e["kwargs"].get("column"), e["meta"]["severity"]) for e in suite["expectations"]}
    assert ("expect_column_values_to_not_be_null", "record_id", "block") in types
    volume = [e for e in suite["expectations"] if e["type"] == "expect_table_row_count_to_be_between"]
    assert volume and volume[0]["kwargs"]["min_value"] == {"$PARAMETER": "min_rows"}
    for spec in contract(feed).personal_fields:  # tokenisation is checked for every personal field
        assert ("expect_column_values_to_match_regex", spec.name, "block") in types


def test_every_feed_has_a_suite_and_no_suite_lacks_a_feed() -> None:
    assert sorted(p.stem for p in EXPECTATIONS_DIR.glob("*.json")) == sorted(FEEDS)


def _expectation(feed: str, column: str) -> dict[str, Any]:
    [expectation] = [e for e in load_suite(feed)["expectations"] if e["kwargs"].get("column") == column]
    return expectation


CLASS_SPELLINGS = [value for values in customer_class_spellings().values() for value in values]


def test_the_customer_class_value_set_is_the_vocabularys_list_of_spellings() -> None:
    """The suite and the resolver read one reviewed list (schemas/vocabularies/customer_classes.toml): a
    spelling added to the file and not to the suite, or the other way round, fails here."""
    value_set = _expectation("utility", "customer_class")["kwargs"]["value_set"]
    assert len(value_set) == len(set(value_set))
    assert sorted(value_set) == sorted(CLASS_SPELLINGS)


def test_the_industry_code_expectation_accepts_every_code_with_or_without_its_letter() -> None:
    pattern = re.compile(_expectation("registration", "industry_code")["kwargs"]["regex"])
    for row in industry_dimension().to_pylist():
        spellings = (
            [row["code"]] if row["level"] == "section" else [row["code"], row["section"] + row["code"]]
        )
        assert all(pattern.search(spelling) for spelling in spellings), row["code"]
    for wrong in ("", "U", "00", "98", "F99", "F5199X", "F519999", "5", "FF51", "F 5199", "F-5199"):
        assert not pattern.search(wrong), wrong


def test_importing_the_package_does_not_import_great_expectations() -> None:
    code = "import sys, pipelines.quality; assert 'great_expectations' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_blocking_error_names_feed_expectation_and_column() -> None:
    from pipelines.quality import ExpectationOutcome

    failed = ExpectationOutcome(
        feed="utility",
        expectation_type="expect_column_values_to_be_between",
        column="kwh",
        severity="block",
        success=False,
        why="w",
        message="utility: expect_column_values_to_be_between(kwh) FAILED [block]",
    )
    warned = ExpectationOutcome(**{**failed.__dict__, "severity": "warn", "feed": "tax"})
    raise_if_blocking([FeedQuality("tax", 10, [warned])])  # warnings never raise
    with pytest.raises(BlockingQualityError) as caught:
        raise_if_blocking([FeedQuality("utility", 10, [failed]), FeedQuality("tax", 10, [warned])])
    assert caught.value.feeds == ["utility"]
    assert "utility" in str(caught.value) and "expect_column_values_to_be_between(kwh)" in str(caught.value)


# -- validation with GE: one import, shared results --------------------------------------------------


@pytest.fixture(scope="module")
def gx_suites() -> dict[str, Any]:
    """The suite files loaded the documented way, which imports GE once for the module."""
    import great_expectations as gx

    suites = {}
    for feed in FEEDS:
        with suite_path(feed).open(encoding="utf-8") as f:
            suites[feed] = gx.ExpectationSuite(**json.load(f))
    return suites


@pytest.fixture(scope="module")
def healthy(gx_suites: dict[str, Any]) -> dict[str, FeedQuality]:
    return {feed: validate_feed(feed, staged(feed, healthy_rows(feed)), ROWS, now=NOW) for feed in FEEDS}


@pytest.fixture(scope="module")
def broken() -> dict[str, FeedQuality]:
    registration = _with(healthy_rows("registration"), 3, name=None)  # a third of the names gone
    utility = _with(healthy_rows("utility"), 4, kwh=-120.0)  # a quarter negative: a sign error
    nucleic = _with(healthy_rows("nucleic_contact"), 100, phone=CLEAR_PHONE)  # tokenisation skipped
    return {
        "registration": validate_feed("registration", staged("registration", registration), ROWS, now=NOW),
        "utility": validate_feed("utility", pd.DataFrame(utility), ROWS, now=NOW),  # pandas is accepted too
        "nucleic_contact": validate_feed("nucleic_contact", staged("nucleic_contact", nucleic), None),
    }


def test_suite_files_load_as_ge_suites(gx_suites: dict[str, Any]) -> None:
    for feed, suite in gx_suites.items():
        assert suite.name == feed
        assert len(suite.expectations) == len(load_suite(feed)["expectations"])


def test_healthy_messy_feeds_pass_every_block_expectation(healthy: dict[str, FeedQuality]) -> None:
    for feed, quality in healthy.items():
        assert quality.rows == ROWS
        assert quality.ok, [o.message for o in quality.blocking_failures]
        assert len(quality.outcomes) == len(load_suite(feed)["expectations"])
        assert all(o.exception is None for o in quality.outcomes), feed
    raise_if_blocking(healthy.values())


def test_broken_feeds_block_and_the_error_names_feed_and_expectation(broken: dict[str, FeedQuality]) -> None:
    assert _failed(broken["registration"], "expect_column_values_to_not_be_null", "name", "block")
    assert _failed(broken["utility"], "expect_column_values_to_be_between", "kwh", "block")
    assert _failed(broken["nucleic_contact"], "expect_column_values_to_match_regex", "phone", "block")
    with pytest.raises(BlockingQualityError) as caught:
        raise_if_blocking(broken.values())
    message = str(caught.value)
    assert caught.value.feeds == ["nucleic_contact", "registration", "utility"]
    assert "registration: expect_column_values_to_not_be_null(name) FAILED [block]" in message
    assert "utility: expect_column_values_to_be_between(kwh) FAILED [block]" in message
    assert CLEAR_PHONE not in message


def test_a_warn_failure_is_recorded_but_does_not_block() -> None:
    rows = _with(healthy_rows("registration"), 10, status="营业中")  # 10% unknown status
    quality = validate_feed("registration", staged("registration", rows), ROWS, now=NOW)
    assert quality.ok
    assert _failed(quality, "expect_column_values_to_be_in_set", "status", "warn")
    warning = next(o for o in quality.warnings if o.column == "status")
    assert warning.unexpected_count == 100
    assert warning.sample_unexpected[0]["value"] == "营业中"  # not personal: a sample helps the data owner
    assert "registration" in warning.message and "status" in warning.message
    raise_if_blocking([quality])


def test_codes_without_the_section_letter_and_other_grids_tariff_names_pass(
    gx_suites: dict[str, Any],
) -> None:
    """What departments really send: class codes without the letter (3011), another grid's tariff names."""
    industry_codes = ("3011", "C3011", "5199", "F51", "51", "F")
    registration = [
        {**row, "industry_code": industry_codes[i % len(industry_codes)]}
        for i, row in enumerate(healthy_rows("registration"))
    ]
    utility = [
        {**row, "customer_class": CLASS_SPELLINGS[i % len(CLASS_SPELLINGS)]}
        for i, row in enumerate(healthy_rows("utility"))
    ]
    for feed, rows, column in (
        ("registration", registration, "industry_code"),
        ("utility", utility, "customer_class"),
    ):
        quality = validate_feed(feed, staged(feed, rows), ROWS, now=NOW)
        assert [o.message for o in quality.failures if o.column == column] == [], feed
    unknown = _with(utility, 10, customer_class="其他")  # a class that could be either kind: the check warns
    quality = validate_feed("utility", staged("utility", unknown), ROWS, now=NOW)
    assert _failed(quality, "expect_column_values_to_be_in_set", "customer_class", "warn")


def test_volume_floor_comes_from_the_previous_run(healthy: dict[str, FeedQuality]) -> None:
    table = staged("tax", healthy_rows("tax"))
    shrunk = validate_feed("tax", table, previous_rows=20 * ROWS, now=NOW)
    volume = next(o for o in shrunk.failures if o.expectation_type == "expect_table_row_count_to_be_between")
    assert volume.severity == "warn" and volume.observed_value == ROWS
    assert volume.kwargs["min_value"] == 4 * ROWS  # 20% of the previous run
    assert shrunk.ok
    for previous in (None, 0, 5 * ROWS):
        quality = validate_feed("tax", table, previous_rows=previous, now=NOW)
        assert not any(o.expectation_type == "expect_table_row_count_to_be_between" for o in quality.failures)


def test_empty_and_malformed_tables_do_not_crash() -> None:
    empty = validate_feed("waybill", contract("waybill").staging_schema().empty_table(), 100, now=NOW)
    assert empty.rows == 0 and empty.ok
    assert [o.expectation_type for o in empty.failures] == ["expect_table_row_count_to_be_between"]
    frame = pd.DataFrame(healthy_rows("registration", 50)).drop(columns=["name"])
    missing = validate_feed("registration", frame, None, now=NOW)
    assert not missing.ok
    columns = next(o for o in missing.blocking_failures if o.expectation_type.endswith("match_set"))
    assert "name" in columns.message
    assert any(o.column == "name" and o.exception for o in missing.blocking_failures)


def test_share_checks_on_a_handful_of_rows_only_warn_but_absolute_rules_still_block() -> None:
    c = contract("tax")
    late = {name: None for name in c.staging_schema().names}  # one late filing with little filled in
    late.update(record_id="T-late", tax_paid=1.0, _topic=c.topic, _partition=0, _offset=7, _run_id="run-3")
    quality = validate_feed("tax", staged("tax", [late]), previous_rows=300, now=NOW)
    assert quality.ok
    names = [o for o in quality.warnings if o.column == "taxpayer_name" and o.note]
    assert names and "too few rows" in names[0].message
    leaked = _with(healthy_rows("nucleic_contact", 3), 1, id_number="110101199003077777")
    assert not validate_feed("nucleic_contact", staged("nucleic_contact", leaked), None, now=NOW).ok


def test_future_timestamps_warn() -> None:
    rows = _with(healthy_rows("waybill", 200), 1, shipped_at=NOW + timedelta(days=30))
    quality = validate_feed("waybill", staged("waybill", rows), None, now=NOW)
    assert quality.ok and _failed(quality, "expect_column_values_to_be_between", "shipped_at", "warn")


def test_reports_are_written_self_contained_and_without_personal_values(
    healthy: dict[str, FeedQuality], broken: dict[str, FeedQuality], tmp_path: Path
) -> None:
    results = [healthy["tax"], healthy["waybill"], broken["nucleic_contact"], broken["utility"]]
    json_path, html_path = write_quality_reports(results, tmp_path / "dq", "run-000002")
    document = json.loads(json_path.read_text(encoding="utf-8"))
    assert document["run_id"] == "run-000002" and document["ok"] is False
    assert [f["feed"] for f in document["feeds"]] == ["tax", "waybill", "nucleic_contact", "utility"]
    assert sum(len(f["outcomes"]) for f in document["feeds"]) == sum(len(q.outcomes) for q in results)
    html = html_path.read_text(encoding="utf-8")
    for quality in results:
        assert quality.feed in html
        assert (tmp_path / "dq" / f"ge_{quality.feed}.json").is_file()
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert "<link" not in html
    written = "".join(p.read_text(encoding="utf-8") for p in (tmp_path / "dq").iterdir())
    assert CLEAR_PHONE not in written
    assert "-120" in written  # unexpected values of ordinary fields are kept as examples
    ge = json.loads((tmp_path / "dq" / "ge_nucleic_contact.json").read_text(encoding="utf-8"))
    assert ge["suite_name"] == "nucleic_contact" and ge["success"] is False
    for outcome in broken["nucleic_contact"].outcomes:
        json.dumps(outcome.to_dict(), allow_nan=False)  # alerts get strict JSON


# -- validation in a child process --------------------------------------------------------------------


def _essence(quality: FeedQuality) -> list[tuple[Any, ...]]:
    """What a validation found, without the run-time parameters (the clock) it was held to."""
    return [(o.expectation_type, o.column, o.success, o.unexpected_count) for o in quality.outcomes]


def test_a_quality_worker_validates_staged_files_as_validate_feed_does(tmp_path: Path) -> None:
    broken_tax = staged("tax", _with(healthy_rows("tax"), 4, tax_paid=-5.0))
    pq.write_table(broken_tax.slice(0, 600), tmp_path / "part-0.parquet")
    pq.write_table(broken_tax.slice(600), tmp_path / "part-1.parquet")
    with QualityWorker() as worker:
        remote = worker.validate("tax", [tmp_path / "part-0.parquet", tmp_path / "part-1.parquet"], ROWS)
    local = validate_feed("tax", broken_tax, ROWS)
    assert remote.rows == ROWS and _essence(remote) == _essence(local)
    assert remote.failures


def test_without_a_child_process_the_worker_validates_in_this_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, healthy: dict[str, FeedQuality]
) -> None:
    def no_children(method: str) -> None:
        raise RuntimeError("daemonic processes are not allowed to have children")

    monkeypatch.setattr("pipelines.quality.worker.multiprocessing.get_context", no_children)
    pq.write_table(staged("waybill", healthy_rows("waybill")), tmp_path / "part-0.parquet")
    with QualityWorker() as worker:
        quality = worker.validate("waybill", [tmp_path / "part-0.parquet"], ROWS)
    assert _essence(quality) == _essence(healthy["waybill"])
