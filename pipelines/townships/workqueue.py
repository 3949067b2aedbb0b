"""Township work queues: the review items and warnings of a register run, as files township staff can open.

One Excel workbook (and the same rows as CSV) per township: sheet 待核查 lists the records the resolver
could not settle, with the columns staff fill in (核查结论, 所属单位编号, 核查人, 核查日期, 备注); sheet 预警
lists the warnings for information. The filled file goes back unchanged through ``unitfusion verdicts
add``: hidden technical columns (feed, record_id, verdict_id) map every row to its record, and
``filled_rows`` turns the rows that carry a 核查结论 into rows of the verdict contract
(``schemas/verdict.json``). Beside the workbooks, ``compare/<township>.html`` (``comparisons``) shows every
item's record next to its best candidate's with the model's evidence; the 对比页 column links to the item.

The column tables below are the only definition of the files' columns: both writers and the reader derive
from them. Queues are derived output (rebuildable from the register run), so they carry no manifest; a new
export replaces the run's queue folder as a whole.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipelines import verdicts as vd
from pipelines.contracts import CHINA, load_contracts
from pipelines.marts.pages import write_pack_pages
from pipelines.standardise.vocabularies import labels
from pipelines.store import RunStore
from pipelines.townships.comparisons import PAGE_FOLDER, anchor, page_name, write_comparison_page

REVIEW_SHEET = "待核查"
WARNING_SHEET = "预警"
HELP_SHEET = "填写说明"
NO_TOWNSHIP = "未分乡镇"  # items routed to a district only: one file per district
NO_DIVISION = "未分区县"

INFO, FILL, TECH = "info", "fill", "tech"
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Column:
    field: str  # key in the rows we build, and in the verdict contract where it maps there
    header: str  # Chinese header staff see
    width: int  # Excel column width (characters)
    kind: str = INFO  # info: read only; fill: staff fill it in; tech: hidden, maps the row back


REVIEW_COLUMNS: tuple[Column, ...] = (
    Column("priority", "优先级", 7),
    Column("reason", "核查原因", 22),
    Column("source", "来源部门", 12),
    Column("name", "名称", 30),
    Column("address", "地址", 36),
    Column("township", "乡镇街道", 12),
    Column("current_unit", "当前归属单位", 34),
    Column("candidates", "候选单位（编号 名称 匹配度）", 56),
    Column("why", "核查依据（模型各项证据）", 60),
    Column("importance", "重要度", 8),
    Column("compare", "对比页", 10),
    Column("decision", "核查结论", 12, FILL),
    Column("unit_id", "所属单位编号", 17, FILL),
    Column("decided_by", "核查人", 12, FILL),
    Column("decided_at", "核查日期", 12, FILL),
    Column("note", "备注", 30, FILL),
    Column("feed", "来源代码（勿改）", 12, TECH),
    Column("record_id", "记录编号（勿改）", 18, TECH),
    Column("verdict_id", "核查编号（勿改）", 16, TECH),
)

WARNING_COLUMNS: tuple[Column, ...] = (
    Column("priority", "优先级", 7),
    Column("severity", "等级", 6),
    Column("rule", "预警类型", 20),
    Column("period", "所属期", 9),
    Column("unit_id", "单位编号", 16),
    Column("unit_name", "单位名称", 30),
    Column("uscc", "统一社会信用代码", 21),
    Column("message", "预警内容", 60),
    Column("evidence", "依据数据", 60),
    Column("township", "乡镇街道", 12),
    Column("first_raised_run", "首次预警批次", 14),
    Column("warning_id", "预警编号", 15),
)

# the workbook's dropdown: each decision's label (labels.toml) → the decision
DECISIONS: dict[str, str] = {label: decision for decision, label in labels("decisions").items()}
# the unit the record is, or is not, part of (or, 一户多证, another licence of its operator)
NEEDS_UNIT = (vd.SAME_UNIT, vd.DIFFERENT_UNITS, vd.SAME_OPERATOR)
REASONS = labels("review_reasons")
SEVERITIES = labels("severities")
RULES = labels("rules")
UNIT_ID = re.compile(r"^U[0-9A-F]{12}$")
_LOOSE_DATE = re.compile(
    r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?"  # 2026/11/5, 2026年11月5日
    r"(?:[ T]+(\d{1,2})[:：](\d{2})(?:[:：](\d{2}))?)?$"  # and a time, if any
)
HELP_LINES = (
    "本文件列出本乡镇（街道）需要现场核查的记录（“待核查”）和本期预警（“预警”，仅供参考，无需填写）。",
    "“待核查”按优先级排序（同一优先级内，单位活跃等级 A 级在前，其次有预警的单位、重要度高的在前；"
    "重要度看所涉单位的记录数、纳税额和用电量）：1 最急（有税务或用电却找不到登记单位），"
    "2 次之（疑似同一单位，或与另一单位同样相似，待确认归属）。"
    "代码或证据已能确定的记录不再列出。",
    "“核查依据”说明模型为何拿不准：各项比较的匹配权重，正数支持“同一单位”，负数反对"
    "（如“字号相符 +10.1；区县不符 −4.4”）。"
    "点击“对比页”列的链接，打开本文件旁 compare 文件夹中的同名网页（无需联网；"
    "请将该文件夹与本文件放在一起），可看到本记录与候选单位记录的并排对比和各项证据的瀑布图。",
    "每核查一条，在同一行填写：核查结论、所属单位编号、核查人、核查日期，可加备注。不核查的行留空即可，不会上报。",
    "核查结论（下拉选择）：",
    "  同一单位 —— 该记录属于“所属单位编号”所填单位（已预填最可能的候选单位，如不对请改成正确的编号）；",
    "  不同单位 —— 该记录不属于“所属单位编号”所填单位；",
    "  新单位 —— 该记录是一个独立的新单位，不并入任何候选单位（所属单位编号可不填）；",
    "  非经营主体 —— 该记录不是经营单位（如个人、住宅用电），从名录中剔除（所属单位编号可不填）。",
    "  同一经营者（一户多证） —— 与“所属单位编号”所填单位是同一经营者的不同执照（统一社会信用代码不同），"
    "记录在案，两者仍为不同单位，不会合并。",
    "核查日期写成 2026-11-05 或 2026/11/5（按北京时间）。",
    "请勿修改、删除或插入列，勿改灰色隐藏列（来源代码、记录编号、核查编号），勿新增行。",
    "填好后将本文件（Excel 或 CSV 均可）交回区县运维人员，"
    "由其执行：unitfusion verdicts add --out <目录> <文件>。",
    "结论在下一次运行时生效，并在以后的每次运行中持续有效；同一记录以核查日期最新的结论为准。",
)


# -- export ------------------------------------------------------------------------------------------------


def export_work_queues(
    store: RunStore, register_run: str | None = None, period: str | None = None
) -> list[Path]:
    """Write one workbook (``.xlsx``) and CSV per township for a published register run (default: the one
    ``register/latest`` points at); warnings only of ``period`` (YYYY-MM) when given. Returns the files."""
    run = _RegisterRun.read(store, register_run)
    warnings = run.warnings
    if warnings is not None and period:
        warnings = [w for w in warnings if w["period"] == period]
    partial = _fresh(store.queue_partial_dir(run.name))
    names = _write_queues(partial, run, run.review, warnings)
    target = store.queues_dir(run.name)
    _replace_dir(partial, target)
    return [target / name for name in names]


def export_period_pack(
    store: RunStore,
    period: str,
    register_run: str | None = None,
    verdicts: Sequence[vd.Verdict] | None = None,
) -> dict[str, Any]:
    """Write the pack of month ``period`` (``packs/<period>/``) from a published register run (default:
    the latest): the township work queues of that month only (review items of records about ``period``,
    warnings of ``period``), the pack pages (``index.html``, ``<division>_<township>.html``, the profiles of
    the units they name in ``units/``; ``verdicts``, the verdicts in force, give the feedback rate) and
    ``summary.json``. Ingest reads every topic to its end, so the register also
    holds records of later months that arrived before this run: they stay staged and in the register, and
    are only counted here (``later_records``), so a month's pack is the same whenever it is built from the
    same register. The folder is replaced whole. Returns the summary."""
    run = _RegisterRun.read(store, register_run)
    of_period, counts, later = _records_of(store, period)
    review = [item for item in run.review if (item["feed"], item["record_id"]) in of_period]
    warnings = None if run.warnings is None else [w for w in run.warnings if w["period"] == period]
    partial = _fresh(store.pack_partial_dir(period))
    names = _write_queues(partial, run, review, warnings)
    pages = write_pack_pages(
        store,
        partial,
        period,
        run.name,
        of_period,
        verdicts,
        stem_of=lambda row: _safe("_".join(_queue_key(row))),  # a page per township, named as its queue
    )
    summary = {
        "period": period,
        "register_run": run.name,
        "records": counts,
        "later_records": later,
        "review_items": len(review),
        "warnings": dict(sorted(Counter(w["rule"] for w in warnings or []).items())),
        "files": names,
        "pages": len(pages) + sum(name.startswith(f"{PAGE_FOLDER}/") for name in names),
    }
    text = json.dumps(summary, ensure_ascii=False, indent=2)
    (partial / "summary.json").write_text(text + "\n", encoding="utf-8")
    _replace_dir(partial, store.pack_dir(period))
    return summary


def _records_of(store: RunStore, period: str) -> tuple[set[tuple[str, str]], dict[str, int], dict[str, int]]:
    """(feed, record_id) of the records about ``period`` (latest versions of committed staging), their
    number per feed, and the number per feed of records about later months."""
    from pipelines.staging import all_latest_records

    selected: set[tuple[str, str]] = set()
    counts, later = {}, {}
    for feed, table in all_latest_records(store).items():
        periods = load_contracts()[feed].record_periods(table).to_pylist()
        ids = table["record_id"].to_pylist()
        selected |= {(feed, rid) for rid, p in zip(ids, periods, strict=True) if p == period}
        counts[feed] = sum(p == period for p in periods)
        later[feed] = sum(p is not None and p > period for p in periods)
    return selected, counts, later


@dataclass(frozen=True)
class _RegisterRun:
    """What the work queues are made from: a published register run's review items, warnings (None for a run
    from before warnings) and unit names."""

    name: str
    review: list[dict[str, Any]]
    warnings: list[dict[str, Any]] | None
    unit_names: dict[str, str]
    unit_tiers: dict[str, str]  # A–D (docs/marts.md): within a priority, the units that matter most first

    @classmethod
    def read(cls, store: RunStore, register_run: str | None) -> _RegisterRun:
        run_dir = store.register_run_dir(register_run) if register_run else store.register_latest()
        if run_dir is None or not run_dir.is_dir():
            raise FileNotFoundError(f"no published register run {register_run or '(latest)'} in {store.root}")
        register = pq.read_table(run_dir / "register.parquet")
        units = register.select(
            [c for c in ("unit_id", "name", "tier") if c in register.column_names]
        ).to_pydict()
        warnings_path = run_dir / "warnings.parquet"
        return cls(
            name=run_dir.name,
            review=pq.read_table(run_dir / "review.parquet").to_pylist(),
            warnings=pq.read_table(warnings_path).to_pylist() if warnings_path.exists() else None,
            unit_names=dict(zip(units["unit_id"], units["name"], strict=True)),
            unit_tiers=dict(zip(units["unit_id"], units.get("tier") or [], strict=False)),
        )

    def tier_rank(self, unit_id: str | None) -> str:
        """Sorts A first, a unit with no tier (a run from before tiers) last."""
        return self.unit_tiers.get(unit_id or "") or "E"


def _fresh(partial: Path) -> Path:
    """An empty hidden folder to write an export into (what an interrupted export left is dropped)."""
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    return partial


def _write_queues(
    folder: Path,
    run: _RegisterRun,
    review: list[dict[str, Any]],
    warnings: list[dict[str, Any]] | None,
) -> list[str]:
    """One workbook and CSV per township (and a CSV of its warnings) into ``folder``; returns the names."""
    queues: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = defaultdict(
        lambda: {"review": [], "warnings": []}
    )
    for item in review:
        queues[_queue_key(item)]["review"].append(_review_row(item, run.unit_names, run.name))
    warned = {w["unit_id"] for w in warnings or [] if w.get("unit_id")}
    for warning in warnings or []:
        queues[_queue_key(warning)]["warnings"].append(_warning_row(warning))
    names = []
    for (division, township), rows in sorted(queues.items()):
        stem = _safe(f"{division}_{township}")
        review_rows = sorted(rows["review"], key=lambda r: _review_order(r, run, warned))
        for row in review_rows:
            row["compare"] = f"{page_name(stem)}#{anchor(row)}"
        warning_rows = sorted(
            rows["warnings"],
            key=lambda r: (r["priority"], run.tier_rank(r["unit_id"]), r["period"], r["warning_id"]),
        )
        _write_workbook(folder / f"{stem}.xlsx", review_rows, warning_rows if warnings is not None else None)
        _write_csv(folder / f"{stem}.csv", REVIEW_COLUMNS, review_rows)
        names += [f"{stem}.xlsx", f"{stem}.csv"]
        if review_rows:
            title = f"{division} {township}"
            write_comparison_page(
                folder / page_name(stem), title, [r["item"] for r in review_rows], run.unit_names
            )
            names.append(page_name(stem))
        if warning_rows:
            _write_csv(folder / f"{stem}_{WARNING_SHEET}.csv", WARNING_COLUMNS, warning_rows)
            names.append(f"{stem}_{WARNING_SHEET}.csv")
    return names


def _review_order(row: dict[str, Any], run: _RegisterRun, warned: set[str]) -> tuple:
    """Priority; then the tier of the unit the row names (A first); then items about units with warnings;
    then the most important (the triage's importance: size and activity of the units at stake)."""
    item = row["item"]
    units = {item.get("current_unit_id"), *(item.get("candidate_unit_ids") or [])}
    return (
        row["priority"],
        run.tier_rank(row["unit_id"]),
        not (units & warned),
        -(item.get("importance") or 0.0),
        row["feed"],
        row["record_id"],
    )


def _queue_key(row: dict[str, Any]) -> tuple[str, str]:
    return (row.get("division_code") or NO_DIVISION, row.get("township") or NO_TOWNSHIP)


def _safe(stem: str) -> str:
    """A file name on any system: no path separators or characters Windows refuses."""
    return re.sub(r'[\\/:*?"<>|\s]+', "_", stem)


def _replace_dir(partial: Path, target: Path) -> None:
    """Swap the new queue folder in, so nobody sees a mix of two exports."""
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        if old.exists():
            shutil.rmtree(old)
        target.rename(old)
        partial.rename(target)
        shutil.rmtree(old)
    else:
        partial.rename(target)


def _feed_label(feed: str) -> str:
    contracts = load_contracts()
    return contracts[feed].department if feed in contracts else feed


def _unit_text(unit_id: str | None, unit_names: dict[str, str], score: float | None = None) -> str:
    if not unit_id:
        return ""
    text = f"{unit_id} {unit_names.get(unit_id) or ''}".strip()
    return f"{text} {score:.2f}" if score is not None else text


def _review_row(item: dict[str, Any], unit_names: dict[str, str], register_run: str) -> dict[str, Any]:
    candidates = item["candidate_unit_ids"] or []
    scores = item["candidate_scores"] or []
    digest = hashlib.sha1(f"{register_run}/{item['feed']}/{item['record_id']}".encode()).hexdigest()
    return {
        "priority": item["priority"],
        "reason": REASONS.get(item["reason"], item["reason"]),
        "source": _feed_label(item["feed"]),
        "name": item["name"] or "",
        "address": item["address"] or "",
        "township": item["township"] or "",
        "current_unit": _unit_text(item["current_unit_id"], unit_names),
        "candidates": "；".join(
            _unit_text(u, unit_names, s) for u, s in zip(candidates, scores, strict=False)
        ),
        "why": item.get("why") or "",
        "importance": item.get("importance"),
        "compare": "",  # the link to the item on the township's comparison page, set with the file's name
        "decision": "",
        "unit_id": candidates[0] if candidates else "",
        "decided_by": "",
        "decided_at": "",
        "note": "",
        "feed": item["feed"],
        "record_id": item["record_id"],
        "verdict_id": "V" + digest[:12].upper(),
        "item": {**item, "verdict_id": "V" + digest[:12].upper()},  # for the order and the comparison page
    }


def _warning_row(warning: dict[str, Any]) -> dict[str, Any]:
    return {
        **{column.field: warning.get(column.field) for column in WARNING_COLUMNS},
        "severity": SEVERITIES.get(warning["severity"], warning["severity"]),
        "rule": RULES.get(warning["rule"], warning["rule"]),
        "township": warning["township"] or "",
    }


def evaluated(value: Any) -> bool:
    """Whether a spreadsheet would take this text for a formula (OWASP's CSV-injection triggers)."""
    return isinstance(value, str) and value.startswith(FORMULA_TRIGGERS)


def csv_safe(value: Any) -> Any:
    """A text cell a spreadsheet would evaluate gets a leading ``'`` (shown, never run; ``verdicts.read_csv``
    drops it when the file comes back); numbers stay numbers."""
    return f"'{value}" if evaluated(value) else value


def _write_csv(path: Path, columns: Sequence[Column], rows: list[dict[str, Any]]) -> None:
    """UTF-8 with a byte-order mark: Excel on Chinese Windows then opens it without mangling the text."""
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([c.header for c in columns])
        writer.writerows(
            [["" if row[c.field] is None else csv_safe(row[c.field]) for c in columns] for row in rows]
        )


def _write_workbook(
    path: Path, review_rows: list[dict[str, Any]], warning_rows: list[dict[str, Any]] | None
) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill, Protection
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.datavalidation import DataValidation

    book = Workbook()
    sheet = book.active
    sheet.title = REVIEW_SHEET
    _fill_sheet(sheet, REVIEW_COLUMNS, review_rows)
    last = max(len(review_rows) + 1, 2)
    to_fill = PatternFill("solid", fgColor="FFF2CC")
    for index, column in enumerate(REVIEW_COLUMNS, start=1):
        letter = get_column_letter(index)
        if column.kind == FILL:  # the only cells staff may change on the protected sheet
            sheet.cell(1, index).fill = to_fill
            for row in range(2, last + 1):
                cell = sheet.cell(row, index)
                cell.protection = Protection(locked=False)
                cell.number_format = "yyyy-mm-dd" if column.field == "decided_at" else "@"
        elif column.kind == TECH:
            sheet.column_dimensions[letter].hidden = True
        if column.field == "compare":  # a link to the item on the comparison page beside the workbook
            for row in range(2, len(review_rows) + 2):
                cell = sheet.cell(row, index)
                if cell.value:
                    cell.hyperlink, cell.value, cell.style = cell.value, "查看对比", "Hyperlink"
        if column.field == "decision":
            choices = DataValidation(
                type="list",
                formula1='"' + ",".join(DECISIONS) + '"',
                allow_blank=True,
                showErrorMessage=True,
                errorTitle="核查结论",
                error="请从下拉列表中选择：" + " / ".join(DECISIONS),
                promptTitle="核查结论",
                prompt=" / ".join(DECISIONS) + "；见“填写说明”",
            )
            choices.add(f"{letter}2:{letter}{last}")
            sheet.add_data_validation(choices)
    # protected without a password: a guard against slips, not a lock; filtering and widening stay allowed
    sheet.protection.sheet = True
    sheet.protection.autoFilter = False
    sheet.protection.sort = False
    sheet.protection.formatColumns = False
    sheet.protection.formatRows = False

    if warning_rows is not None:
        _fill_sheet(book.create_sheet(WARNING_SHEET), WARNING_COLUMNS, warning_rows)

    help_sheet = book.create_sheet(HELP_SHEET)
    help_sheet.column_dimensions["A"].width = 120
    for row, line in enumerate(HELP_LINES, start=1):
        cell = help_sheet.cell(row, 1, line)
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    help_sheet.cell(1, 1).font = Font(bold=True)
    book.save(path)


def _fill_sheet(sheet: Any, columns: Sequence[Column], rows: list[dict[str, Any]]) -> None:
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    sheet.append([c.header for c in columns])
    for row in rows:
        sheet.append([row[c.field] for c in columns])
        for cell in sheet[sheet.max_row]:
            if evaluated(cell.value):  # text, never a formula, also after staff edit the cell
                cell.data_type = "s"
                cell.quotePrefix = True
    for index, column in enumerate(columns, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = column.width
        sheet.cell(1, index).font = Font(bold=True)
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(columns))}{max(len(rows) + 1, 1)}"


# -- reading a filled file back ----------------------------------------------------------------------------


def read_filled_workbook(path: Path) -> list[dict[str, str]]:
    """The rows of sheet 待核查 that have a 核查结论, as rows of the verdict contract."""
    return [row for _, row in filled_rows(path)]


def filled_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    """(row number, verdict row) for every filled row of a work-queue file, the workbook or its CSV."""
    if path.suffix == ".csv":
        header, rows = vd.read_csv(path)
        return verdict_rows(path.name, header, list(enumerate(rows, start=2)))
    return verdict_rows(path.name, *_workbook_rows(path))


def verdict_rows(
    file_name: str, header: list[str], numbered: list[tuple[int, dict[str, Any]]]
) -> list[tuple[int, dict[str, str]]]:
    """The filled rows of a work queue already read (header, numbered rows) as verdict-contract rows."""
    missing = [c.header for c in REVIEW_COLUMNS if c.kind != INFO and c.header not in header]
    if missing:
        raise vd.VerdictError(
            f"{file_name}: columns {', '.join(missing)} are missing; hand back the exported file "
            "without removing or renaming columns"
        )
    verdicts = []
    for number, raw in numbered:
        cells = {c.field: raw.get(c.header) for c in REVIEW_COLUMNS}
        if _text(cells["decision"]):
            verdicts.append((number, _verdict_row(cells, f"{file_name} {REVIEW_SHEET} row {number}")))
    return verdicts


def is_work_queue(header: Iterable[str]) -> bool:
    """Whether a CSV header is a work queue's (Chinese headers) rather than the verdict contract's."""
    return next(c.header for c in REVIEW_COLUMNS if c.field == "decision") in set(header)


def _workbook_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    from openpyxl import load_workbook

    book = load_workbook(path, read_only=True, data_only=True)
    try:
        if REVIEW_SHEET not in book.sheetnames:
            raise vd.VerdictError(f"{path.name}: no sheet {REVIEW_SHEET}; is this an exported work queue?")
        values = list(book[REVIEW_SHEET].iter_rows(values_only=True))
    finally:
        book.close()
    if not values:
        return [], []
    header = [_text(v) for v in values[0]]
    return header, [
        (number, dict(zip(header, row, strict=False))) for number, row in enumerate(values[1:], start=2)
    ]


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _verdict_row(cells: dict[str, Any], where: str) -> dict[str, str]:
    """One filled row → one verdict-contract row; says what is wrong in staff's terms when it cannot."""
    label = _text(cells["decision"])
    decision = DECISIONS.get(label)
    if decision is None:
        raise vd.VerdictError(f"{where}: 核查结论 {label!r} is not one of {' / '.join(DECISIONS)}")
    for field in ("feed", "record_id", "verdict_id"):
        if not _text(cells[field]):
            header = next(c.header for c in REVIEW_COLUMNS if c.field == field)
            raise vd.VerdictError(f"{where}: {header} is empty; only rows of the exported file can be filled")
    unit_id = _text(cells["unit_id"]).upper() if decision in NEEDS_UNIT else ""
    if decision in NEEDS_UNIT and not unit_id:
        raise vd.VerdictError(f"{where}: 核查结论 {label} needs 所属单位编号 (the unit, e.g. U26813253E411)")
    if unit_id and not UNIT_ID.match(unit_id):
        raise vd.VerdictError(f"{where}: 所属单位编号 {unit_id!r} is not a unit id (U and 12 hex digits)")
    decided_by = _text(cells["decided_by"])
    if not decided_by:
        raise vd.VerdictError(f"{where}: 核查人 is empty; say who checked")
    return {
        "verdict_id": _text(cells["verdict_id"]),
        "feed": _text(cells["feed"]),
        "record_id": _text(cells["record_id"]),
        "unit_id_a": "",
        "unit_id_b": unit_id,
        "decision": decision,
        "decided_by": decided_by,
        "decided_at": _decided_at(cells["decided_at"], where),
        "note": _text(cells["note"]),
    }


def _decided_at(value: Any, where: str) -> str:
    """ISO 8601 with offset; a date or time without one is Beijing time."""
    moment: datetime | None = None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time())
    elif text := _text(value):
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            if found := _LOOSE_DATE.match(text):
                try:
                    moment = datetime(*(int(part or 0) for part in found.groups()))  # type: ignore[misc]
                except ValueError:
                    moment = None
    if moment is None:
        raise vd.VerdictError(f"{where}: 核查日期 {_text(value)!r} is not a date like 2026-11-05")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=CHINA)
    return moment.isoformat(timespec="seconds")
