"""The pages people read: one file per unit (一户一档) and the township monthly pack pages.

Both are offline HTML: inline CSS, charts as inline SVG (``pipelines.marts.charts``), no script and no URL,
so they open from a file share, a USB stick or an e-mail attachment. Monthly figures come from the
``unit_month`` mart and nothing else (one implementation of "a unit's month"); counts by industry and status
from the ``units`` mart, births and closures from ``demography``, lock-on lists from ``lockon`` and quality
from ``register_quality``; identity, links, review items, warnings and lineage from the register run itself.
Personal fields of records are HMAC tokens already; a profile shows only the key fields listed in
in its feed mapping's ``[profile]`` and shows a personal field only as its token.

Verdicts are passed in as values (``pipelines.verdicts.Verdict``): reading the verdict files is the
townships' business, and the callers (CLI, township pack) read them.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from pipelines.contracts import CHINA, load_contracts, output_schema
from pipelines.mappings import load_mappings
from pipelines.marts.charts import LINE, bar_chart, fmt_value, month_range, monthly_chart
from pipelines.marts.config import MartConfig, load_config
from pipelines.pii import TOKEN_PREFIX
from pipelines.resources import MART_TEMPLATES
from pipelines.staging import latest_records
from pipelines.standardise.divisions import division_label
from pipelines.standardise.vocabularies import labels
from pipelines.store import STATE_DIR, RunStore, utc_now, write_atomically
from pipelines.verdicts import Verdict

__all__ = [
    "ProfileData",
    "UnknownUnitError",
    "load_profile_data",
    "profile_context",
    "render_page",
    "write_pack_pages",
    "write_profile",
]

UNITS_DIR = "units"  # profiles inside a pack folder
HIDDEN = "（已隐藏）"


def record_fields(feed: str) -> tuple[tuple[str, str], ...]:
    """Key fields of a linked record with their Chinese headers: the feed mapping's ``[profile]``. Phones
    are left out there (a mobile is a person's even where the contract does not call it personal); a
    personal field shows only as its token."""
    return load_mappings()[feed].profile if feed in load_mappings() else ()


MATCHED_BY = labels("matched_by")
FLAGS = labels("flags")
RULES = labels("rules")
SEVERITIES = labels("severities")
REVIEW_REASONS = labels("review_reasons")
DECISIONS = labels("decisions")
LINEAGE_EVENTS = labels("lineage_events")
LOCKON_LISTS = labels("lockon_lists")
MEASURES = {"activity": "活跃度"}  # lock-on measures that are no figure of marts.toml [measures]
PACK_CHART = 500  # px: two charts side by side on a pack page
PROFILE_RECORDS = 200  # linked records listed per department on a profile (the latest; all are counted)
PROFILE_MONTHS = 36  # months a profile's timelines span at most, ending at the unit's latest figure
MONTHLY = (("tax_paid", "元"), ("kwh", "千瓦时"), ("parcels", "件"))  # unit_month figures charted, and units


class UnknownUnitError(LookupError):
    """A unit id the register run does not hold."""


# -- formatting -----------------------------------------------------------------------------------------


def fmt_cell(value: Any) -> str:
    """A value for a table cell: numbers with separators, dates and times in Beijing time, – for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, datetime):
        moment = value.astimezone(CHINA) if value.tzinfo else value
        return f"{moment:%Y-%m-%d %H:%M}"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int | float):
        return fmt_value(value)
    if isinstance(value, list | tuple):
        return "、".join(fmt_cell(v) for v in value) or "–"
    return str(value)


def fmt_share(part: float | None, whole: float | None) -> str:
    return f"{100 * part / whole:.1f} %" if whole and part is not None else "–"


def _record_value(feed: str, name: str, value: Any) -> str:
    """A record's field for the page: a personal field only as its token (never anything else)."""
    personal = {spec.name for spec in load_contracts()[feed].personal_fields}
    if name in personal and value is not None and not str(value).startswith(TOKEN_PREFIX):
        return HIDDEN
    return fmt_cell(value)


# -- reading a register run -------------------------------------------------------------------------------


def mart_path(run_dir: Path, table: str) -> Path:
    return run_dir / "marts" / table


def read_mart(
    run_dir: Path, table: str, filters: Any = None, columns: list[str] | None = None
) -> pa.Table | None:
    """A mart of the run (hive-partitioned where it is), or None when the run has none (older runs)."""
    path = mart_path(run_dir, table)
    if not path.is_dir():
        return None
    dataset = ds.dataset(path, format="parquet", partitioning="hive")
    names = [n for n in (columns or dataset.schema.names) if n in dataset.schema.names]
    return dataset.to_table(columns=names, filter=filters)


def _rows_of(path: Path, key: str, wanted: Iterable[str], columns: list[str] | None = None) -> list[dict]:
    """The rows of a Parquet table whose ``key`` is one of ``wanted`` (none if the file is missing)."""
    wanted = sorted(set(wanted))
    if not wanted or not path.is_file():
        return []
    return pq.read_table(path, columns=columns, filters=[(key, "in", wanted)]).to_pylist()


def _group(rows: Iterable[dict], key: str) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        grouped[row[key]].append(row)
    return grouped


def _runs_up_to(store: RunStore, run: str) -> list[Path]:
    """The published register runs up to ``run``, oldest first: where warnings and lineage have a history."""
    return [store.register_run_dir(r) for r in store.register_runs() if r <= run]


def _run_dir(store: RunStore, register_run: str | None) -> Path:
    run_dir = store.register_run_dir(register_run) if register_run else store.register_latest()
    if run_dir is None or not (run_dir / "register.parquet").is_file():
        raise FileNotFoundError(f"no published register run {register_run or '(latest)'} in {store.root}")
    return run_dir


@dataclass
class ProfileData:
    """What the profiles of some units of one register run are made from, read once for all of them."""

    run: str
    units: dict[str, dict[str, Any]]
    links: dict[str, list[dict]]
    records: dict[tuple[str, str], dict[str, Any]]
    months: dict[str, list[dict]]
    warnings: dict[str, list[dict]]
    history: dict[str, list[dict]]
    review: dict[str, list[dict]]
    lineage: dict[str, list[dict]]
    has_unit_month: bool
    verdicts: Sequence[Verdict] = field(default_factory=tuple)


def load_profile_data(
    store: RunStore,
    unit_ids: Iterable[str],
    register_run: str | None = None,
    verdicts: Sequence[Verdict] = (),
) -> ProfileData:
    """Read, for ``unit_ids``, every row a profile shows: only those rows (Parquet filters), so a pack
    naming a few hundred units of a city's register reads little."""
    run_dir = _run_dir(store, register_run)
    ids = sorted(set(unit_ids))
    units = {r["unit_id"]: r for r in _rows_of(run_dir / "register.parquet", "unit_id", ids)}
    for row in (
        read_mart(run_dir, "units", ds.field("unit_id").isin(pa.array(ids, pa.string()))) or pa.table({})
    ).to_pylist():
        units[row["unit_id"]] = {**row, **units.get(row["unit_id"], {})}  # mart labels beside the register's
    links = _rows_of(run_dir / "links.parquet", "unit_id", ids)
    records: dict[tuple[str, str], dict[str, Any]] = {}
    for feed, of_feed in _group(links, "feed").items():
        wanted = {link["record_id"] for link in of_feed}
        columns = ["record_id", *(name for name, _ in record_fields(feed))]
        state = run_dir / STATE_DIR / "records" / f"{feed}.parquet"
        if state.is_file():
            rows = _rows_of(state, "record_id", wanted, columns)
        else:  # a run whose state was pruned: the staged records (the latest version of each)
            table = latest_records(store, feed).select(columns)
            rows = table.filter(pc.is_in(table["record_id"], pa.array(sorted(wanted)))).to_pylist()
        records |= {(feed, row["record_id"]): row for row in rows}
    unit_month = read_mart(run_dir, "unit_month", ds.field("unit_id").isin(pa.array(ids, pa.string())))
    runs = _runs_up_to(store, run_dir.name)
    warning_columns = ["warning_id", "rule", "severity", "unit_id", "period", "message", "first_raised_run"]
    history = [
        {**row, "raised_in": path.name}
        for path in runs
        for row in _rows_of(path / "warnings.parquet", "unit_id", ids, warning_columns)
    ]
    review = pq.read_table(run_dir / "review.parquet").to_pylist()
    about: dict[str, list[dict]] = defaultdict(list)
    for item in review:
        for unit_id in {item["current_unit_id"], *(item["candidate_unit_ids"] or [])} & set(ids):
            about[unit_id].append(item)
    lineage: dict[str, list[dict]] = defaultdict(list)
    for path in runs:  # an event names the unit it came from, the unit it went to, or both
        for side in ("from_unit_id", "to_unit_id"):
            for event in _rows_of(path / "lineage.parquet", side, ids):
                lineage[event[side]].append(event)
    return ProfileData(
        run=run_dir.name,
        units=units,
        links=_group(links, "unit_id"),
        records=records,
        months=_group((unit_month or pa.table({"unit_id": []})).to_pylist(), "unit_id"),
        warnings=_group([w for w in history if w["raised_in"] == run_dir.name], "unit_id"),
        history=_group(history, "unit_id"),
        review=about,
        lineage=lineage,
        has_unit_month=unit_month is not None,
        verdicts=tuple(verdicts),
    )


# -- the unit profile ---------------------------------------------------------------------------------------


@dataclass
class Grid:
    """A table for a page: headers and rows of formatted cells; ``numeric`` columns align right."""

    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    numeric: frozenset[int] = frozenset()


def _verdict_row(verdict: Verdict) -> list[str]:
    return [
        verdict.verdict_id,
        DECISIONS.get(verdict.decision, verdict.decision),
        verdict.about,
        verdict.decided_by,
        fmt_cell(datetime.fromisoformat(verdict.decided_at)),
        verdict.note or "",
    ]


def profile_context(data: ProfileData, unit_id: str) -> dict[str, Any]:
    """Every section of one unit's profile, formatted for the template."""
    unit = data.units.get(unit_id)
    if unit is None:
        raise UnknownUnitError(f"unknown unit {unit_id}: not in register run {data.run}")
    industry = " ".join(
        part
        for part in (unit.get("industry_code"), unit.get("industry_section_name"), unit.get("industry_name"))
        if part
    )
    status = unit.get("status_label") or unit.get("status")
    identity = [
        ("单位编号", unit_id),
        ("名称", unit.get("name")),
        ("曾用名/别名", fmt_cell(unit.get("aliases") or [])),
        ("统一社会信用代码", unit.get("uscc")),
        ("类型", unit.get("entity_type")),
        ("法定代表人/经营者", unit.get("legal_rep_name")),
        ("行业", industry or None),
        ("地址", unit.get("address")),
        ("区县", division_label(unit.get("division_code"))),
        ("乡镇街道", unit.get("township") or "未分乡镇"),
        ("状态", status),
        ("活跃度等级", _tier_text(unit)),
        ("首次出现", fmt_cell(unit.get("first_seen"))),
        ("最近出现", fmt_cell(unit.get("last_seen"))),
        ("匹配置信度", fmt_cell(unit.get("confidence"))),
    ]
    contracts = load_contracts()
    links = sorted(data.links.get(unit_id, []), key=lambda r: (r["feed"], r["record_id"]))
    records = []
    for feed, of_feed in _group(links, "feed").items():
        fields = record_fields(feed)
        grid = Grid(["记录编号", *(label for _, label in fields), "匹配方式", "匹配概率"])
        period_field = contracts[feed].period_field if feed in contracts else "record_id"
        for link in sorted(
            of_feed, key=lambda r: _when(data.records.get((feed, r["record_id"]), {}), period_field)
        ):
            record = data.records.get((feed, link["record_id"]), {})
            grid.rows.append(
                [
                    link["record_id"],
                    *(_record_value(feed, name, record.get(name)) for name, _ in fields),
                    MATCHED_BY.get(link["matched_by"], link["matched_by"]),
                    f"{link['match_probability']:.3f}" if link["match_probability"] is not None else "–",
                ]
            )
        department = contracts[feed].department if feed in contracts else feed
        total = len(grid.rows)
        grid.rows = grid.rows[
            -PROFILE_RECORDS:
        ]  # the latest, in order: a busy shop ships thousands of parcels
        records.append({"feed": feed, "department": department, "grid": grid, "total": total})
    charted = [column for column, _ in MONTHLY]
    months = sorted(
        (r for r in data.months.get(unit_id, []) if any(r.get(c) is not None for c in charted)),
        key=lambda r: r["period"],
    )
    # the months with a charted figure, the latest PROFILE_MONTHS at most (a unit may date back years)
    axis = month_range(months[0]["period"], months[-1]["period"])[-PROFILE_MONTHS:] if months else []
    timelines = [
        monthly_chart(
            {r["period"]: r[column] for r in months if r.get(column) is not None},
            _label(column),
            unit_label,
            months=axis,
        )
        for column, unit_label in MONTHLY
    ]
    flag_names = [f.name for f in output_schema("register") if pa.types.is_boolean(f.type)]
    flags = [(FLAGS.get(name, name), bool(unit.get(name))) for name in flag_names]
    in_force = sorted(data.warnings.get(unit_id, []), key=lambda w: (w["period"], w["rule"]), reverse=True)
    warnings = Grid(["等级", "预警类型", "所属期", "预警内容", "首次预警批次", "预警编号"])
    warnings.rows = [
        [
            SEVERITIES.get(w["severity"], w["severity"]),
            RULES.get(w["rule"], w["rule"]),
            w["period"],
            w["message"],
            w["first_raised_run"] or "–",
            w["warning_id"],
        ]
        for w in in_force
    ]
    history = Grid(["预警编号", "预警类型", "所属期", "首次预警批次", "最近预警批次", "批次数", "当前"])
    by_id = _group(data.history.get(unit_id, []), "warning_id")
    current = {w["warning_id"] for w in in_force}
    for warning_id, raised in sorted(by_id.items(), key=lambda kv: kv[1][-1]["raised_in"], reverse=True):
        last = raised[-1]
        history.rows.append(
            [
                warning_id,
                RULES.get(last["rule"], last["rule"]),
                last["period"],
                min(w["first_raised_run"] or w["raised_in"] for w in raised),
                last["raised_in"],
                str(len(raised)),
                "在列" if warning_id in current else "已解除",
            ]
        )
    review = Grid(
        [
            "核查原因",
            "来源部门",
            "记录编号",
            "名称",
            "当前归属单位",
            "候选单位（匹配度）",
            "核查依据",
            "优先级",
        ]
    )
    for item in sorted(
        data.review.get(unit_id, []), key=lambda i: (i["priority"], i["feed"], i["record_id"])
    ):
        candidates = "；".join(
            f"{u} {s:.2f}"
            for u, s in zip(item["candidate_unit_ids"] or [], item["candidate_scores"] or [], strict=False)
        )
        review.rows.append(
            [
                REVIEW_REASONS.get(item["reason"], item["reason"]),
                contracts[item["feed"]].department if item["feed"] in contracts else item["feed"],
                item["record_id"],
                item["name"] or "–",
                item["current_unit_id"] or "–",
                candidates or "–",
                item.get("why") or "–",
                str(item["priority"]),
            ]
        )
    records_of_unit = {(link["feed"], link["record_id"]) for link in links}
    records_of_unit |= {(i["feed"], i["record_id"]) for i in data.review.get(unit_id, [])}
    verdicts = Grid(["核查编号", "核查结论", "核查对象", "核查人", "核查日期", "备注"])
    verdicts.rows = [
        _verdict_row(v)
        for v in sorted(data.verdicts, key=lambda v: v.decided_at, reverse=True)
        if unit_id in (v.unit_id_a, v.unit_id_b) or (v.feed, v.record_id) in records_of_unit
    ]
    lineage = Grid(["事件", "原单位", "现单位", "记录数", "批次"])
    lineage.rows = [
        [
            LINEAGE_EVENTS.get(e["event"], e["event"]),
            e["from_unit_id"] or "–",
            e["to_unit_id"] or "–",
            fmt_cell(e["records"]),
            e["run_id"],
        ]
        for e in sorted(data.lineage.get(unit_id, []), key=lambda e: e["run_id"], reverse=True)
    ]
    return {
        "page": "profile",
        "title": f"一户一档 · {unit.get('name') or unit_id}",
        "unit_id": unit_id,
        "name": unit.get("name") or unit_id,
        "register_run": data.run,
        "generated_at": fmt_cell(datetime.fromisoformat(utc_now())),
        "tier": fmt_cell(_tier_text(unit)),
        "identity": [(label, fmt_cell(value)) for label, value in identity],
        "records": records,
        "record_counts": [(r["department"], r["total"]) for r in records],
        "timelines": timelines if months else [],
        "has_unit_month": data.has_unit_month,
        "flags": flags,
        "warnings": warnings,
        "history": history,
        "review": review,
        "verdicts": verdicts,
        "lineage": lineage,
    }


def _when(record: dict[str, Any], period_field: str) -> str:
    """Sorts a feed's records by the month they are about (newest last), then by id."""
    return f"{fmt_cell(record.get(period_field))} {record.get('record_id')}"


def _tier_text(unit: dict[str, Any]) -> str | None:
    if not unit.get("tier"):
        return None
    score = unit.get("activity_score")
    return f"{unit['tier']} 级（{score:.0f} 分）" if score is not None else f"{unit['tier']} 级"


@cache
def _templates() -> Environment:
    """One environment per process: a pack renders hundreds of pages from two templates."""
    return Environment(
        loader=FileSystemLoader(MART_TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_page(context: dict[str, Any]) -> str:
    """The profile or pack page of a context (``context['page']`` says which template)."""
    return _templates().get_template(f"{context['page']}.html.j2").render(**context)


def write_profile(
    store: RunStore, unit_id: str, register_run: str | None = None, verdicts: Sequence[Verdict] = ()
) -> tuple[Path, dict[str, Any]]:
    """Write ``profiles/<reg-run>/<unit_id>.html`` atomically; returns its path and the page's context
    (the CLI prints a summary from it). ``UnknownUnitError`` when the run has no such unit."""
    data = load_profile_data(store, [unit_id], register_run, verdicts)
    context = profile_context(data, unit_id)
    path = store.profile_path(data.run, unit_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, render_page(context))
    return path, context


# -- the township monthly pack --------------------------------------------------------------------------


@cache
def _config() -> MartConfig:
    """The marts' reviewed configuration, read once: look-back window, rows per lock-on list, labels."""
    return load_config()


def _label(measure: str) -> str:
    """How pages name a figure (``marts.toml`` [measures.*] label)."""
    labels = {m.name: m.label for m in _config().measures}
    return labels.get(measure) or MEASURES.get(measure, measure)


def _months_back(period: str, count: int) -> list[str]:
    """The ``count`` months ending at ``period``."""
    year, month = int(period[:4]), int(period[5:7])
    index = year * 12 + month - 1 - (count - 1)
    return month_range(f"{index // 12:04d}-{index % 12 + 1:02d}", period)


@dataclass(frozen=True)
class Page:
    """One pack page: its file stem and the (division_code, township) pairs it covers (None: the city)."""

    stem: str
    division_code: str | None
    township: str | None

    @property
    def label(self) -> str:
        return f"{division_label(self.division_code)} {self.township or '未分乡镇'}"


def _table(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table | None, schema: dict[str, str]) -> bool:
    """Register a mart with DuckDB, or an empty table of the columns the pack reads when the run has none."""
    if table is None:
        columns = ", ".join(f"NULL::{kind} AS {column}" for column, kind in schema.items())
        con.execute(f"CREATE TABLE {name} AS SELECT {columns} WHERE false")
        return False
    con.register(name, table)
    return True


def _unit_link(unit_id: str | None, name: str | None, linked: set[str]) -> dict[str, Any]:
    """A cell naming a unit, linked to its profile in the pack (``units/<id>.html``)."""
    if unit_id:
        linked.add(unit_id)
    return {"href": f"{UNITS_DIR}/{unit_id}.html" if unit_id else None, "text": name or unit_id or "–"}


@dataclass(frozen=True)
class PackInputs:
    """The month's review items and warnings of the register run, those raised about the month in any run
    so far (the feedback rate's denominator), and the verdicts in force (None: not known)."""

    review: list[dict[str, Any]]
    warnings: list[dict[str, Any]] | None
    raised_review: list[dict[str, Any]]
    raised_warnings: list[dict[str, Any]]
    verdicts: Sequence[Verdict] | None

    @classmethod
    def read(
        cls,
        store: RunStore,
        run_dir: Path,
        period: str,
        of_period: set[tuple[str, str]],
        verdicts: Sequence[Verdict] | None,
    ) -> PackInputs:
        raised_review: dict[str, dict[str, Any]] = {}
        raised_warnings: dict[str, dict[str, Any]] = {}
        review: list[dict[str, Any]] = []
        warnings: list[dict[str, Any]] | None = None
        for path in _runs_up_to(store, run_dir.name):  # oldest first: the latest row of an item wins
            items = [
                i
                for i in pq.read_table(path / "review.parquet").to_pylist()
                if (i["feed"], i["record_id"]) in of_period
            ]
            raised_review |= {i["review_id"]: i for i in items}
            found = None
            if (path / "warnings.parquet").is_file():
                table = pq.read_table(path / "warnings.parquet", filters=[("period", "=", period)])
                found = table.to_pylist()
                raised_warnings |= {w["warning_id"]: w for w in found}
            if path.name == run_dir.name:
                review, warnings = items, found
        return cls(review, warnings, list(raised_review.values()), list(raised_warnings.values()), verdicts)


def _on(page: Page | None, row: dict[str, Any]) -> bool:
    """Whether a review item or warning belongs on a page (every one on the city's)."""
    return page is None or (row["division_code"], row["township"]) == (page.division_code, page.township)


Place = tuple[str | None, str | None] | None  # (division_code, township) of a township page; None: the city


class PackFigures:
    """The figures of every pack page from the marts, each query run once grouped by township and once for
    the city (a city has hundreds of townships: one query per page and figure would be thousands)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, period: str) -> None:
        window = _months_back(period, _config().look_back_months)
        months = [window[0], period]
        self.window = window
        self.sections = self._grouped(
            con,
            "coalesce(industry_section_name, industry_section, '未分类') AS label, count(*) AS n",
            "FROM units GROUP BY ALL ORDER BY n DESC, label",
        )
        self.statuses = self._grouped(
            con,
            "coalesce(status_label, status, '未登记') AS label, count(*) AS n",  # no status: no registration
            "FROM units GROUP BY ALL ORDER BY n DESC, label",
        )
        self.tiers = self._grouped(con, "coalesce(tier, '–'), count(*)", "FROM units GROUP BY ALL")
        self.months = self._grouped(
            con,
            "period, sum(tax_paid), sum(kwh), sum(parcels), count(*) FILTER (WHERE active)",
            "FROM unit_month WHERE period BETWEEN ? AND ? GROUP BY ALL ORDER BY period",
            months,
        )
        self.demography = self._grouped(
            con,
            "period, sum(births), sum(closures), sum(revivals), sum(went_dormant), sum(active_units)",
            "FROM demography WHERE period BETWEEN ? AND ? GROUP BY ALL ORDER BY period DESC",
            months,
        )
        self.lockon = self._grouped(
            con,
            "list, unit_id, name, tier, period, measure, value, previous_value, change, reason",
            "FROM lockon ORDER BY list, rank, unit_id",
            by_group=False,
        )

    @staticmethod
    def _grouped(
        con: duckdb.DuckDBPyConnection,
        select: str,
        rest: str,
        params: Sequence[Any] = (),
        by_group: bool = True,
    ) -> dict[Place, list[tuple]]:
        """Rows of ``SELECT <select> <rest>`` per township, and (key None) for the whole city."""
        grouped: dict[Place, list[tuple]] = defaultdict(list)
        rows = con.execute(f"SELECT division_code, township, {select} {rest}", list(params)).fetchall()
        for row in rows:
            grouped[(row[0], row[1])].append(row[2:])
        if by_group:
            grouped[None] = con.execute(f"SELECT {select} {rest}", list(params)).fetchall()
        else:
            grouped[None] = [row[2:] for row in rows]
        return grouped


def _pack_page_context(
    figures: PackFigures,
    page: Page | None,
    period: str,
    inputs: PackInputs,
    marts: dict[str, bool],
    quality: dict[str, Any],
    linked: set[str],
) -> dict[str, Any]:
    place: Place = None if page is None else (page.division_code, page.township)
    limit = int(_config().lockon["pack_rows"])
    window = figures.window
    by_section = figures.sections.get(place, [])
    by_status = figures.statuses.get(place, [])
    by_tier = dict(figures.tiers.get(place, []))
    monthly = {row[0]: row for row in figures.months.get(place, [])}
    trends = [
        monthly_chart(
            {m: monthly[m][i + 1] for m in window if m in monthly},
            _label(column),
            unit,
            LINE,
            window,
            PACK_CHART,
        )
        for i, (column, unit) in enumerate(MONTHLY)
    ]
    active = monthly_chart(
        {m: monthly[m][4] for m in window if m in monthly}, "活跃单位数", "户", "bar", window, PACK_CHART
    )
    births = Grid(
        ["月份", "新增", "关闭", "恢复活跃", "转入休眠", "活跃单位"], numeric=frozenset(range(1, 6))
    )
    births.rows = [[row[0], *(fmt_cell(v) for v in row[1:])] for row in figures.demography.get(place, [])]
    lockon = []
    for code, title in LOCKON_LISTS.items():
        listed = [row[1:] for row in figures.lockon.get(place, []) if row[0] == code]
        lockon.append(
            {
                "code": code,
                "title": title,
                "total": len(listed),
                "rows": [
                    {
                        "unit": _unit_link(unit_id, name, linked),
                        "cells": [
                            tier or "–",
                            month or "–",
                            _label(measure) if measure else "–",
                            fmt_cell(value),
                            fmt_cell(previous),
                            f"{100 * change:+.0f} %" if change is not None else "–",
                            reason or "",
                        ],
                    }
                    for unit_id, name, tier, month, measure, value, previous, change, reason in listed[:limit]
                ],
            }
        )
    mine = [w for w in inputs.warnings or [] if _on(page, w)]
    items = [i for i in inputs.review if _on(page, i)]
    by_rule = Counter(RULES.get(w["rule"], w["rule"]) for w in mine)
    top = sorted(mine, key=lambda w: (w["priority"], w["rule"], w["unit_id"]))[:limit]
    warning_rows = [
        {
            "unit": _unit_link(w["unit_id"], w["unit_name"], linked),
            "cells": [
                SEVERITIES.get(w["severity"], w["severity"]),
                RULES.get(w["rule"], w["rule"]),
                w["message"],
            ],
        }
        for w in top
    ]
    # Raised: in any register run so far (an answered item leaves the review of the runs after its verdict).
    # Answered: a review item when a verdict in force is about its record; a warning when one names its unit.
    verdicts = inputs.verdicts or ()
    answered_records = {(v.feed, v.record_id) for v in verdicts if v.record_id}
    answered_units = {u for v in verdicts for u in (v.unit_id_a, v.unit_id_b) if u}
    raised_items = [i for i in inputs.raised_review if _on(page, i)]
    raised_warnings = [w for w in inputs.raised_warnings if _on(page, w)]
    known = inputs.verdicts is not None
    handled = [
        ("预警", len(raised_warnings), sum(w["unit_id"] in answered_units for w in raised_warnings)),
        (
            "待核查记录",
            len(raised_items),
            sum((i["feed"], i["record_id"]) in answered_records for i in raised_items),
        ),
    ]
    units_total = sum(n for _, n in by_section)
    return {
        "counts": {"units": units_total, "warnings": len(mine), "review": len(items)},
        "overview": [
            ("单位数", fmt_cell(units_total) if marts["units"] else "–"),
            (
                "A/B/C/D 级",
                " / ".join(fmt_cell(by_tier.get(t, 0)) for t in "ABCD") if marts["units"] else "–",
            ),
            ("本期活跃单位", fmt_cell(monthly[period][4]) if period in monthly else "–"),
            ("本期预警", fmt_cell(len(mine))),
            ("本期待核查记录", fmt_cell(len(items))),
        ],
        "by_section": bar_chart([(label, n) for label, n in by_section], "按行业门类", width=PACK_CHART),
        "by_status": bar_chart([(label, n) for label, n in by_status], "按登记状态", width=PACK_CHART),
        "trends": trends,
        "active": active,
        "births": births,
        "lockon": lockon,
        "warnings_by_rule": bar_chart(by_rule.most_common(), "本期预警（按类型）", "条"),
        "warning_rows": warning_rows,
        "warnings_total": len(mine),
        "handled": [
            (
                label,
                fmt_cell(raised),
                *((fmt_cell(answered), fmt_share(answered, raised)) if known else ("–", "–")),
            )
            for label, raised, answered in handled
        ],
        "marts": marts,
        "quality": quality,
    }


def _quality_context(run_dir: Path) -> dict[str, Any]:
    """Quality indicators of the register: the ``register_quality`` mart (every run so far), else the run's
    ``_meta.json`` "quality"."""
    table = read_mart(run_dir, "register_quality")
    rows = table.to_pylist() if table is not None else []
    if not rows:
        meta = json.loads((run_dir / "_meta.json").read_text(encoding="utf-8"))
        rows = [{"run_id": run_dir.name, **meta["quality"]}] if meta.get("quality") else []
    rows = sorted(rows, key=lambda r: r.get("run_id") or "")[-6:]
    grid = Grid(
        [
            "批次",
            "单位数",
            "无信用代码占比",
            "疑似重复",
            "待核查",
            "待核查时长中位数（天）",
            "登记滞后中位数（天）",
            "编号变动",
        ],
        numeric=frozenset(range(1, 8)),
    )
    for row in reversed(rows):
        share = row.get("units_without_uscc_share")
        grid.rows.append(
            [
                row.get("run_id") or "–",
                fmt_cell(row.get("units")),
                f"{100 * share:.1f} %" if share is not None else "–",
                fmt_cell(row.get("duplicate_candidates")),
                fmt_cell(row.get("review_open")),
                fmt_cell(row.get("review_age_median_days")),
                fmt_cell(row.get("registration_lag_median_days")),
                _churn(row.get("id_churn")),
            ]
        )
    coverage = (rows[-1].get("coverage") or {}) if rows else {}
    contracts = load_contracts()
    chart = bar_chart(
        [
            (contracts[feed].department if feed in contracts else feed, round(100 * share, 1))
            for feed, share in coverage.items()
            if share is not None
        ],
        "各部门记录关联率（%）",
        "%",
    )
    return {"grid": grid, "coverage": chart if coverage else None}


def _churn(churn: dict[str, Any] | None) -> str:
    """Lineage events of a run: 合并 2 / 拆分 0 / 注销编号 1."""
    if not churn:
        return "–"
    return " / ".join(f"{label} {fmt_cell(churn.get(event) or 0)}" for event, label in LINEAGE_EVENTS.items())


UNITS_SCHEMA = {
    "unit_id": "VARCHAR",
    "name": "VARCHAR",
    "division_code": "VARCHAR",
    "township": "VARCHAR",
    "industry_section": "VARCHAR",
    "industry_section_name": "VARCHAR",
    "status": "VARCHAR",
    "status_label": "VARCHAR",
    "tier": "VARCHAR",
}
UNIT_MONTH_SCHEMA = {
    "unit_id": "VARCHAR",
    "period": "VARCHAR",
    "division_code": "VARCHAR",
    "township": "VARCHAR",
    "tax_paid": "DOUBLE",
    "kwh": "DOUBLE",
    "parcels": "DOUBLE",
    "active": "BOOLEAN",
}
DEMOGRAPHY_SCHEMA = {
    "period": "VARCHAR",
    "division_code": "VARCHAR",
    "township": "VARCHAR",
    "births": "BIGINT",
    "closures": "BIGINT",
    "revivals": "BIGINT",
    "went_dormant": "BIGINT",
    "active_units": "BIGINT",
}
LOCKON_SCHEMA = {
    "list": "VARCHAR",
    "unit_id": "VARCHAR",
    "name": "VARCHAR",
    "division_code": "VARCHAR",
    "township": "VARCHAR",
    "tier": "VARCHAR",
    "period": "VARCHAR",
    "measure": "VARCHAR",
    "value": "DOUBLE",
    "previous_value": "DOUBLE",
    "change": "DOUBLE",
    "reason": "VARCHAR",
    "rank": "BIGINT",
}


def write_pack_pages(
    store: RunStore,
    folder: Path,
    period: str,
    register_run: str,
    of_period: set[tuple[str, str]],
    verdicts: Sequence[Verdict] | None,
    stem_of: Callable[[dict[str, Any]], str],
) -> list[str]:
    """Write the pack pages of month ``period`` into ``folder`` (the pack's folder being written):
    ``index.html`` for the city, one ``<stem>.html`` per township (``stem_of`` names it from a row's
    ``division_code`` and ``township``, as the work queues are named), and ``units/<unit_id>.html`` for the
    units the pages name. ``of_period``: the (feed, record_id) of the records about the month, whose review
    items the pack holds; ``verdicts``: the verdicts in force (None: not known, so no feedback rate).
    Returns the names."""
    run_dir = _run_dir(store, register_run)
    inputs = PackInputs.read(store, run_dir, period, of_period, verdicts)
    con = duckdb.connect()
    marts = {
        "units": _table(con, "units", read_mart(run_dir, "units", columns=list(UNITS_SCHEMA)), UNITS_SCHEMA),
        "unit_month": _table(
            con,
            "unit_month",
            read_mart(run_dir, "unit_month", columns=list(UNIT_MONTH_SCHEMA)),
            UNIT_MONTH_SCHEMA,
        ),
        "demography": _table(con, "demography", read_mart(run_dir, "demography"), DEMOGRAPHY_SCHEMA),
        "lockon": _table(con, "lockon", read_mart(run_dir, "lockon"), LOCKON_SCHEMA),
    }
    places = con.execute(
        "SELECT DISTINCT division_code, township FROM ("
        "SELECT division_code, township FROM units UNION ALL SELECT division_code, township FROM unit_month)"
    ).fetchall()
    places += [(row["division_code"], row["township"]) for row in [*inputs.review, *(inputs.warnings or [])]]
    pages = sorted(
        {Page(stem_of({"division_code": d, "township": t}), d, t) for d, t in set(places)},
        key=lambda p: p.stem,
    )
    quality = _quality_context(run_dir)
    figures = PackFigures(con, period)
    linked: set[str] = set()
    common = {
        "page": "pack",
        "period": period,
        "register_run": run_dir.name,
        "generated_at": fmt_cell(datetime.fromisoformat(utc_now())),
    }
    names = []
    township_links = []
    for page in pages:
        context = _pack_page_context(figures, page, period, inputs, marts, quality, linked)
        html = render_page(
            {
                **common,
                **context,
                "title": f"{page.label} {period} 月度数据分析",
                "heading": page.label,
                "index": False,
            }
        )
        (folder / f"{page.stem}.html").write_text(html, encoding="utf-8")
        names.append(f"{page.stem}.html")
        counts = context["counts"]
        township_links.append(
            {
                "href": f"{page.stem}.html",
                "text": page.label,
                "cells": [fmt_cell(counts[key]) for key in ("units", "warnings", "review")],
            }
        )
    city = _pack_page_context(figures, None, period, inputs, marts, quality, linked)
    html = render_page(
        {
            **common,
            **city,
            "title": f"全市 {period} 月度数据分析",
            "heading": "全市概览",
            "index": True,
            "townships": township_links,
        }
    )
    (folder / "index.html").write_text(html, encoding="utf-8")
    names.append("index.html")
    (folder / UNITS_DIR).mkdir(exist_ok=True)
    data = load_profile_data(store, linked, run_dir.name, verdicts or ())
    for unit_id in sorted(linked & set(data.units)):
        (folder / UNITS_DIR / f"{unit_id}.html").write_text(
            render_page(profile_context(data, unit_id)), encoding="utf-8"
        )
        names.append(f"{UNITS_DIR}/{unit_id}.html")
    return names
