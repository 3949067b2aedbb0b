"""Township work queues: export per township, fill in like staff do, hand back as verdicts, next run applies."""

from __future__ import annotations

import csv
import re
from datetime import date
from pathlib import Path

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.contracts import output_schema
from pipelines.landing import resolve_and_land
from pipelines.standardise.codes import make_uscc
from pipelines.store import RunStore
from pipelines.townships.verdict_files import add_verdict_file, read_verdict_file
from pipelines.townships.workqueue import (
    REVIEW_COLUMNS,
    REVIEW_SHEET,
    WARNING_COLUMNS,
    WARNING_SHEET,
    export_work_queues,
    read_filled_workbook,
)
from pipelines.verdicts import VerdictError
from tests.conftest import TOKEN_KEY
from tests.staging import commit_rows
from tests.test_resolve import WHEN, _staging

HEADER = {c.field: c.header for c in REVIEW_COLUMNS}
CJK = re.compile(r"[\u4e00-\u9fff]")


def _account(record_id: str, name: str, address: str) -> dict:
    return {"record_id": record_id, "account_no": f"3309{record_id}", "account_name": name, "meter_no": f"M{record_id}",
            "address": address, "customer_class": "一般工商业", "period": "2026-09", "kwh": 500.0, "updated_at": WHEN}  # fmt: skip


def _taxpayer(record_id: str, code: str, name: str, address: str, district: str) -> dict:
    return {"record_id": record_id, "taxpayer_id": make_uscc("9", "2", district, code), "taxpayer_name": name,
            "address": address, "period": "2026-09", "tax_paid": 300.0, "taxpayer_status": "正常",
            "tax_office": "国家税务总局杭州市税务局", "updated_at": WHEN}  # fmt: skip


@pytest.fixture
def store(tmp_path) -> RunStore:
    """The resolve tests' units plus records the resolver cannot settle: unregistered taxpayers and power
    accounts that look like registered units (review items in 米市巷街道, 文新街道, 转塘街道 and two districts)."""
    staging = _staging()
    staging["tax"] += [
        _taxpayer("T8", "MA2H9008", "杭州运河五金店", "杭州市拱墅区米市巷街道湖墅南路200号", "330105"),
        _taxpayer("T9", "MA2H9009", "杭州云栖茶叶商行", "杭州市西湖区转塘街道云栖路8号", "330106"),
    ]
    staging["utility"] += [
        _account("X0", "杭州明辉餐饮店", "杭州市拱墅区米市巷街道湖墅南路100号"),
        _account("X1", "明辉餐饮", "杭州市拱墅区湖墅南路102号"),
        _account("X5", "汇丰科技公司", "杭州市西湖区文新街道文三路92号"),
    ]
    store = RunStore(tmp_path / "out")
    commit_rows(store, staging)
    return store


def _links(path: Path) -> dict[tuple[str, str], str]:
    return {
        (r["feed"], r["record_id"]): r["unit_id"] for r in pq.read_table(path / "links.parquet").to_pylist()
    }


def _queue(paths: list[Path], stem: str, suffix: str) -> Path:
    return next(p for p in paths if p.name == f"{stem}{suffix}")


def _fill_workbook(path: Path, fills: dict[str, dict[str, object]]) -> None:
    """Fill rows by record id, the way staff type into the sheet (the record id column is hidden to them)."""
    book = openpyxl.load_workbook(path)
    sheet = book[REVIEW_SHEET]
    headers = [cell.value for cell in sheet[1]]
    for row in sheet.iter_rows(min_row=2):
        fill = fills.get(row[headers.index(HEADER["record_id"])].value)
        for field, value in (fill or {}).items():
            row[headers.index(HEADER[field])].value = value
    book.save(path)


def read_sheet(path: Path, sheet: str = REVIEW_SHEET) -> list[dict[str, object]]:
    book = openpyxl.load_workbook(path)
    rows = list(book[sheet].iter_rows(values_only=True))
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def test_round_trip_through_the_workbook_attaches_splits_and_drops_records(store, tmp_path):
    first = resolve_and_land(store, key=TOKEN_KEY).path
    before = _links(first)
    assert before[("utility", "X0")] == before[("utility", "X1")]  # the model put the two together
    paths = export_work_queues(store)

    # one file per township; a record routed to a district only goes to that district's file
    review = pq.read_table(first / "review.parquet").to_pylist()
    warnings = pq.read_table(first / "warnings.parquet").to_pylist()
    expected = {
        f"{r['division_code'] or '未分区县'}_{r['township'] or '未分乡镇'}" for r in review + warnings
    }
    assert {p.stem for p in paths if p.suffix == ".xlsx"} == expected
    assert {"330105_米市巷街道", "330106_文新街道", "330106_转塘街道", "330105_未分乡镇"} <= expected
    folder = store.queues_dir(first.name)
    assert all(p.parent in (folder, folder / "compare") for p in paths)  # comparison pages in compare/

    mishi = _queue(paths, "330105_米市巷街道", ".xlsx")
    wenxin = _queue(paths, "330106_文新街道", ".xlsx")
    wenxin_rows = read_sheet(wenxin)
    x5 = next(r for r in wenxin_rows if r[HEADER["record_id"]] == "X5")
    assert x5[HEADER["unit_id"]] == before[("registration", "R1")]  # prefilled with the best candidate
    assert "杭州汇丰科技有限公司" in x5[HEADER["candidates"]]

    _fill_workbook(
        mishi,
        {
            "X0": {"decision": "新单位", "decided_by": "米市巷街道 王敏", "decided_at": date(2026, 11, 5)},
            "T8": {"decision": "非经营主体", "decided_by": "米市巷街道 王敏", "decided_at": "2026/11/5",
                   "note": "个人经营部，已停业"},
        },
    )  # fmt: skip
    _fill_workbook(
        wenxin, {"X5": {"decision": "同一单位", "decided_by": "文新街道 李强", "decided_at": "2026-11-06"}}
    )
    assert add_verdict_file(mishi, store.verdicts_dir).count == 2
    assert add_verdict_file(wenxin, store.verdicts_dir).count == 1

    after = _links(resolve_and_land(store, key=TOKEN_KEY).path)
    assert after[("utility", "X5")] == before[("registration", "R1")]  # attached to the chosen unit
    assert after[("utility", "X5")] != before[("utility", "X5")]
    assert after[("utility", "X0")] != after[("utility", "X1")]  # a unit of its own
    assert [k for k, unit in after.items() if unit == after[("utility", "X0")]] == [("utility", "X0")]
    assert ("tax", "T8") not in after  # not a business: out of the register
    assert ("tax", "T9") in after  # its row was left empty in the queue: nothing changed
    assert after[("registration", "R1")] == before[("registration", "R1")]


def test_round_trip_through_the_csv_saved_by_excel(store):
    """The CSV opened in Excel and saved again on Chinese Windows comes back in GB18030, dates as 2026/11/5."""
    first = resolve_and_land(store, key=TOKEN_KEY).path
    before = _links(first)
    paths = export_work_queues(store)
    csv_path = _queue(paths, "330106_文新街道", ".csv")
    assert csv_path.read_bytes().startswith(b"\xef\xbb\xbf")  # BOM: Excel reads it as UTF-8
    with csv_path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        if row[HEADER["record_id"]] == "X5":
            row.update({HEADER["decision"]: "同一单位", HEADER["decided_by"]: "文新街道 李强",
                        HEADER["decided_at"]: "2026/11/6"})  # fmt: skip
    filled = csv_path.with_name("文新街道-已核查.csv")
    with filled.open("w", encoding="gb18030", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    verdicts = read_verdict_file(filled)
    assert [(v.record_id, v.decision, v.unit_id_b, v.decided_at) for v in verdicts] == [
        ("X5", "same_unit", before[("registration", "R1")], "2026-11-06T00:00:00+08:00")
    ]
    add_verdict_file(filled, store.verdicts_dir)
    after = _links(resolve_and_land(store, key=TOKEN_KEY).path)
    assert after[("utility", "X5")] == before[("registration", "R1")]


# -- files of a hand-made register run: routing, headers, sorting, warnings ------------------------------


def _review_item(record_id: str, priority: int, division: str | None, township: str | None, **extra) -> dict:
    return {"review_id": f"utility/{record_id}", "feed": "utility", "record_id": record_id,
            "reason": "uncertain_link" if priority == 2 else "no_registration_match", "name": f"单位{record_id}",
            "address": "某路1号", "division_code": division, "township": township,
            "candidate_unit_ids": ["U00000000000A"], "candidate_scores": [0.8],
            "current_unit_id": "U00000000000B", "priority": priority, "run_id": "reg-000001", **extra}  # fmt: skip


def _warning(warning_id: str, period: str, priority: int, township: str | None) -> dict:
    return {"warning_id": warning_id, "rule": "power_without_tax", "severity": "high", "unit_id": "U00000000000A",
            "unit_name": "甲单位", "uscc": None, "period": period, "message": "用电高但未纳税",
            "evidence": '{"kwh": 90000, "tax_paid": 0}', "division_code": "330105", "township": township,
            "priority": priority, "first_raised_run": "reg-000001", "run_id": "reg-000001"}  # fmt: skip


def _publish(
    store: RunStore, review: list[dict], warnings: list[dict] | None, tiers: dict[str, str] | None = None
) -> str:
    names = {"U00000000000A": "甲单位", "U00000000000B": "乙单位", "U00000000000C": "丙单位"}
    units = [{"unit_id": u, "name": n, "tier": (tiers or {}).get(u)} for u, n in names.items()]
    tables = {
        "register": pa.Table.from_pylist(units, schema=output_schema("register")),
        "review": pa.Table.from_pylist(review, schema=output_schema("review")),
    }
    if warnings is not None:
        tables["warnings"] = pa.Table.from_pylist(warnings, schema=output_schema("warnings"))
    run_id = "reg-000001"
    store.write_register(run_id, tables, {})
    store.publish_register(run_id)
    return run_id


@pytest.fixture
def small(tmp_path) -> RunStore:
    store = RunStore(tmp_path / "out")
    review = [  # stored out of priority order on purpose
        _review_item("E3", 2, "330105", "米市巷街道"),
        _review_item("E1", 1, "330105", "米市巷街道"),
        _review_item("E4", 2, "330105", "米市巷街道"),
        _review_item("E2", 1, "330105", "米市巷街道"),
        _review_item("E5", 1, "330105", None),
        _review_item("E6", 2, None, None),
    ]
    warnings = [
        _warning("W1", "2026-08", 2, "米市巷街道"),
        _warning("W2", "2026-09", 1, "米市巷街道"),
        _warning("W3", "2026-09", 3, "湖墅街道"),
    ]
    _publish(store, review, warnings)
    return store


def test_one_file_per_township_with_chinese_headers_sorted_by_priority(small):
    paths = export_work_queues(small)
    assert sorted(p.name for p in paths if p.suffix == ".xlsx") == [
        "330105_未分乡镇.xlsx",  # routed to the district only
        "330105_湖墅街道.xlsx",  # warnings only
        "330105_米市巷街道.xlsx",
        "未分区县_未分乡镇.xlsx",
    ]
    mishi = _queue(paths, "330105_米市巷街道", ".xlsx")
    book = openpyxl.load_workbook(mishi)
    assert book.sheetnames[:2] == [REVIEW_SHEET, WARNING_SHEET]
    sheet = book[REVIEW_SHEET]
    headers = [cell.value for cell in sheet[1]]
    assert headers == [c.header for c in REVIEW_COLUMNS] and all(CJK.search(h) for h in headers)
    rows = read_sheet(mishi)
    assert [(r[HEADER["priority"]], r[HEADER["record_id"]]) for r in rows] == [
        (1, "E1"), (1, "E2"), (2, "E3"), (2, "E4")
    ]  # fmt: skip
    assert rows[0][HEADER["reason"]] != "no_registration_match" and CJK.search(rows[0][HEADER["reason"]])
    # the technical columns are hidden and locked; the decision column offers the five choices
    for column in REVIEW_COLUMNS:
        letter = openpyxl.utils.get_column_letter(headers.index(column.header) + 1)
        assert sheet.column_dimensions[letter].hidden == (column.kind == "tech")
        assert sheet[f"{letter}2"].protection.locked == (column.kind != "fill")
    assert sheet.protection.sheet
    decision = openpyxl.utils.get_column_letter(headers.index(HEADER["decision"]) + 1)
    [choices] = [dv for dv in sheet.data_validations.dataValidation if f"{decision}2" in dv.sqref]
    assert (
        choices.type == "list"
        and choices.formula1 == '"同一单位,不同单位,新单位,非经营主体,同一经营者（一户多证）"'
    )
    warned = read_sheet(mishi, WARNING_SHEET)
    assert list(warned[0]) == [c.header for c in WARNING_COLUMNS]
    assert [w["预警编号"] for w in warned] == ["W2", "W1"]
    # the CSV holds the same rows under the same headers
    with _queue(paths, "330105_米市巷街道", ".csv").open(encoding="utf-8-sig", newline="") as handle:
        csv_rows = list(csv.reader(handle))
    assert csv_rows[0] == headers and [r[headers.index(HEADER["record_id"])] for r in csv_rows[1:]] == [
        "E1", "E2", "E3", "E4"
    ]  # fmt: skip


def test_warnings_of_one_period_and_no_warning_sheet_without_warnings(small, tmp_path):
    assert small.queues_dir("reg-000001").joinpath("330105_湖墅街道.xlsx") in export_work_queues(small)
    paths = export_work_queues(small, period="2026-08")
    assert [
        w["预警编号"] for w in read_sheet(_queue(paths, "330105_米市巷街道", ".xlsx"), WARNING_SHEET)
    ] == ["W1"]
    assert not any(p.stem.startswith("330105_湖墅街道") for p in paths)  # its only warning is of 2026-09
    assert not small.queues_dir("reg-000001").joinpath("330105_湖墅街道.xlsx").exists()  # replaced as a whole

    bare = RunStore(tmp_path / "bare")
    _publish(bare, [_review_item("E1", 1, "330105", "米市巷街道")], None)
    [book_path] = [p for p in export_work_queues(bare) if p.suffix == ".xlsx"]
    assert WARNING_SHEET not in openpyxl.load_workbook(book_path).sheetnames


def test_unfilled_rows_are_ignored_and_dates_are_beijing_time(small):
    path = _queue(export_work_queues(small), "330105_米市巷街道", ".xlsx")
    assert read_filled_workbook(path) == []
    _fill_workbook(path, {"E2": {"decision": "不同单位", "decided_by": "王敏", "decided_at": date(2026, 11, 5),
                                 "unit_id": "u00000000000a"}})  # fmt: skip
    [row] = read_filled_workbook(path)
    assert row["record_id"] == "E2" and row["feed"] == "utility"
    assert row["decision"] == "different_units" and row["unit_id_b"] == "U00000000000A"
    assert row["decided_at"] == "2026-11-05T00:00:00+08:00"
    assert row["verdict_id"] and set(row) == {
        "verdict_id", "feed", "record_id", "unit_id_a", "unit_id_b", "decision", "decided_by", "decided_at", "note"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("fill", "message"),
    [
        (
            {"decision": "同意"},
            r"row 3: 核查结论 '同意' is not one of 同一单位 / 不同单位 / 新单位 / 非经营主体",
        ),
        ({"decision": "同一单位", "unit_id": None}, r"row 3: 核查结论 同一单位 needs 所属单位编号"),
        (
            {"decision": "同一单位", "unit_id": "杭州甲单位"},
            r"row 3: 所属单位编号 '杭州甲单位' is not a unit id",
        ),
        ({"decision": "新单位", "decided_by": None}, r"row 3: 核查人 is empty"),
        ({"decision": "新单位", "decided_at": "上周五"}, r"row 3: 核查日期 '上周五' is not a date"),
    ],
    ids=["unknown decision", "same unit without unit", "not a unit id", "no checker", "not a date"],
)
def test_bad_fills_say_file_row_and_what_is_wrong(small, fill, message):
    path = _queue(export_work_queues(small), "330105_米市巷街道", ".xlsx")
    _fill_workbook(path, {"E2": {"decided_by": "王敏", "decided_at": "2026-11-05", **fill}})  # E2 is row 3
    with pytest.raises(VerdictError, match=rf"^330105_米市巷街道\.xlsx 待核查 {message}"):
        add_verdict_file(path, small.verdicts_dir)
    assert not small.verdicts_dir.exists()  # nothing kept from a bad file


NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
FORMULAS = ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)", "\t=1+1", "\r=1+1"]


def test_cells_a_spreadsheet_would_evaluate_are_text_in_xlsx_and_quoted_in_csv(tmp_path):
    """Names, addresses, record ids and warning texts that start like a formula are never formulas: text
    cells in the workbook (with Excel's quote prefix, so editing keeps them text), a leading ``'`` in the CSV
    (OWASP), read back unchanged as verdicts; a negative number stays a number."""
    store = RunStore(tmp_path / "out")
    review = [
        _review_item(f"@E{i}", 1, "330105", "米市巷街道", name=formula, address=formula)
        for i, formula in enumerate(FORMULAS)
    ] + [_review_item("E9", -1, "330105", "米市巷街道")]  # fmt: skip
    warning = {**_warning("W1", "2026-09", 1, "米市巷街道"), "message": "=1+1", "evidence": "-5"}
    _publish(store, review, [warning])
    paths = export_work_queues(store)

    book = openpyxl.load_workbook(_queue(paths, "330105_米市巷街道", ".xlsx"))
    cells = [cell for sheet in book.worksheets for row in sheet.iter_rows() for cell in row]
    assert not [cell.coordinate for cell in cells if cell.data_type == "f"]  # no formula anywhere
    rows = read_sheet(_queue(paths, "330105_米市巷街道", ".xlsx"))
    # readable, unchanged (XML stores a carriage return as a line feed)
    assert [r[HEADER["name"]] for r in rows[1:]] == [f.replace("\r", "\n") for f in FORMULAS]
    assert rows[0][HEADER["priority"]] == -1 and [r[HEADER["record_id"]] for r in rows[1:]] == [
        f"@E{i}" for i in range(len(FORMULAS))
    ]
    quoted = [c for c in cells if isinstance(c.value, str) and c.value.startswith(("=", "+", "-", "@", "\t"))]
    assert quoted and all(c.data_type == "s" and c.quotePrefix for c in quoted)
    warned = read_sheet(_queue(paths, "330105_米市巷街道", ".xlsx"), WARNING_SHEET)
    assert (warned[0]["预警内容"], warned[0]["依据数据"]) == ("=1+1", "-5")

    for path in [p for p in paths if p.suffix == ".csv"]:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            for row in list(csv.reader(handle))[1:]:
                live = [
                    c for c in row if c.startswith(("=", "+", "-", "@", "\t", "\r")) and not NUMBER.match(c)
                ]
                assert not live, path
    with _queue(paths, "330105_米市巷街道", ".csv").open(encoding="utf-8-sig", newline="") as handle:
        csv_rows = list(csv.DictReader(handle))
    assert csv_rows[0][HEADER["priority"]] == "-1"  # a number, not text: left alone
    assert [r[HEADER["name"]] for r in csv_rows[1:]] == [f"'{f}" for f in FORMULAS]
    with _queue(paths, "330105_米市巷街道_预警", ".csv").open(encoding="utf-8-sig", newline="") as handle:
        assert next(csv.DictReader(handle))["预警内容"] == "'=1+1"

    # handed back as CSV, the verdicts name the records as they are
    filled = tmp_path / "filled.csv"
    text = _queue(paths, "330105_米市巷街道", ".csv").read_text(encoding="utf-8-sig")
    lines = text.splitlines()
    header = next(csv.reader([lines[0]]))
    rows_out = [header]
    for row in csv.reader(lines[1:]):
        row[header.index(HEADER["decision"])] = "新单位"
        row[header.index(HEADER["decided_by"])] = "王敏"
        row[header.index(HEADER["decided_at"])] = "2026-11-05"
        rows_out.append(row)
    with filled.open("w", encoding="utf-8-sig", newline="") as handle:
        csv.writer(handle).writerows(rows_out)
    verdicts = read_verdict_file(filled)
    assert sorted(v.record_id for v in verdicts) == sorted(["E9", *(f"@E{i}" for i in range(len(FORMULAS)))])


def test_within_a_priority_the_units_of_the_higher_tier_come_first(tmp_path):
    """Field staff look first where the register's activity tier says units matter most (A before D)."""
    store = RunStore(tmp_path / "out")
    review = [
        _review_item("R1", 2, "330105", "米市巷街道", candidate_unit_ids=["U00000000000A"]),
        _review_item("R2", 2, "330105", "米市巷街道", candidate_unit_ids=["U00000000000C"]),
        _review_item("R3", 1, "330105", "米市巷街道", candidate_unit_ids=["U00000000000A"]),
    ]
    warnings = [
        _warning("W1", "2026-09", 2, "米市巷街道") | {"unit_id": "U00000000000A"},
        _warning("W2", "2026-09", 2, "米市巷街道") | {"unit_id": "U00000000000C"},
    ]
    _publish(store, review, warnings, tiers={"U00000000000A": "D", "U00000000000C": "A"})
    mishi = _queue(export_work_queues(store), "330105_米市巷街道", ".xlsx")
    assert [r[HEADER["record_id"]] for r in read_sheet(mishi)] == ["R3", "R2", "R1"]
    assert [w["预警编号"] for w in read_sheet(mishi, WARNING_SHEET)] == ["W2", "W1"]
