"""The pages people read: a unit's profile (一户一档) and the township monthly pack, made from a real register
(feeds through the embedded broker, register runs, a township verdict before the last) and read in headless
Chromium from the file, as people open them: every section in Chinese, a CJK font actually used, the
figures the marts hold, and nothing fetched from anywhere."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from pipelines.cli import main
from pipelines.contracts import contract, load_contracts
from pipelines.landing import resolve_and_land
from pipelines.marts import pages
from pipelines.marts.charts import bar_chart, fmt_value, month_range, monthly_chart
from pipelines.marts.config import load_config
from pipelines.marts.pages import UnknownUnitError, load_profile_data, write_profile
from pipelines.staging import latest_records
from pipelines.store import RunStore
from pipelines.townships.verdict_files import add_verdict_file, load_verdicts
from pipelines.townships.workqueue import export_period_pack
from pipelines.verdicts import VERDICT_COLUMNS
from tests.shared_stores import SharedRegister, copy_store

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
CJK = re.compile(r"[\u4e00-\u9fff]")
PROFILE_SECTIONS = {
    "identity": "基本信息",
    "records": "关联记录",
    "timelines": "月度走势",
    "flags": "标记",
    "warnings": "预警",
    "review": "核查事项与结论",
    "lineage": "沿革",
}
PACK_SECTIONS = {
    "overview": "概览",
    "units": "单位构成",
    "trends": "月度走势",
    "demography": "新增与关闭",
    "warnings": "预警与反馈",
    "lockon": "重点关注名单",
    "quality": "名录质量",
}


# -- charts ---------------------------------------------------------------------------------------------


def _svg(markup: str) -> ET.Element:
    """A chart parsed as XML: it must be well-formed, whatever its text."""
    return ET.fromstring(str(markup))


MONTHS = month_range("2024-01", "2026-12")


@given(
    st.dictionaries(
        st.sampled_from(MONTHS),
        st.one_of(st.none(), st.floats(-1e9, 1e9, allow_nan=False)),
        max_size=24,
    ),
    st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=20),
)
def test_a_monthly_chart_draws_every_month_it_knows_and_a_gap_for_every_month_it_does_not(values, title):
    known = {m: v for m, v in values.items() if v is not None}
    axis = month_range(min(values), max(values)) if values else []
    for kind in ("bar", "line"):
        chart = monthly_chart(values, title, "元", kind)
        root = _svg(chart)
        marks = "rect" if kind == "bar" else "circle"
        drawn = [e.find("title").text for e in root.iter(marks) if e.get("class") in ("bar", "point")]
        assert drawn == [f"{m}：{fmt_value(known[m])} 元" for m in axis if m in known]
        gaps = [e.find("title").text for e in root.iter("rect") if e.get("class") == "gap"]
        assert gaps == [f"{m}：无数据" for m in axis if m not in known]
        assert (root.find("title").text or "") == title  # escaped, not markup
        assert "http" not in chart and "<script" not in chart


def test_a_line_breaks_at_a_month_without_figures_and_bars_scale_to_the_largest_value():
    chart = monthly_chart({"2026-01": 10, "2026-02": 20, "2026-04": 40, "2026-05": 5}, "纳税额", "元", "line")
    lines = [e.get("points").split() for e in _svg(chart).iter("polyline")]
    assert [len(points) for points in lines] == [2, 2]  # 01–02, then 04–05: March is a gap, not a zero
    bars = bar_chart([("制造业", 10), ("<批发>&零售", 5)], "按行业门类")
    root = _svg(bars)
    widths = [float(e.get("width")) for e in root.iter("rect")]
    assert widths[0] == 2 * widths[1] > 0
    assert [e.text for e in root.iter("text")][1:] == ["制造业", "10", "<批发>&零售", "5"]
    assert "Noto Sans CJK SC" in root.get("font-family")
    assert _svg(bar_chart([("名\x1f称", 1)], "\x00标题")).find("title").text == "标题"  # no XML takes these


# -- a real register --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample(shared_register: SharedRegister) -> Path:
    return shared_register.sample


def _answer_one_review_item(store: RunStore, folder: Path) -> dict:
    """A township says a queued record is its first candidate unit, and that two unregistered units are one
    (the file staff hand back, in the verdict contract's CSV form); returns the review item."""
    review = pq.read_table(store.register_latest() / "review.parquet").to_pylist()
    item = next(i for i in sorted(review, key=lambda i: i["review_id"]) if i["candidate_unit_ids"])
    register = pq.read_table(store.register_latest() / "register.parquet").to_pylist()
    pair = sorted(
        u["unit_id"] for u in register if u["unregistered"] and u["unit_id"] not in item["candidate_unit_ids"]
    )[:2]
    decided = {"decided_by": "测试街道 核查组", "decided_at": "2026-11-05T10:00:00+08:00", "note": "现场核实"}
    path = folder / "核查结果.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=VERDICT_COLUMNS)
        writer.writeheader()
        writer.writerow(
            {
                "verdict_id": "VPAGES0000001",
                "feed": item["feed"],
                "record_id": item["record_id"],
                "unit_id_b": item["candidate_unit_ids"][0],
                "decision": "same_unit",
                **decided,
            }
        )
        writer.writerow(
            {
                "verdict_id": "VPAGES0000002",
                "unit_id_a": pair[0],
                "unit_id_b": pair[1],
                "decision": "same_unit",
            }
            | decided
        )
    add_verdict_file(path, store.verdicts_dir, register=store.register_latest())
    return item


@pytest.fixture(scope="module")
def store(shared_register: SharedRegister, tmp_path_factory: pytest.TempPathFactory) -> tuple[RunStore, dict]:
    """Everything through the real broker and two registers (a copy of the session's shared register), a
    township verdict, and the register again (which applies it). Returns the store and the review item the
    verdict answered."""
    store = copy_store(shared_register.store, tmp_path_factory.mktemp("pages") / "store")
    item = _answer_one_review_item(store, tmp_path_factory.mktemp("pages-verdicts"))
    assert resolve_and_land(store, force=True, key=shared_register.key) is not None
    assert store.register_runs() == ["reg-000001", "reg-000002", "reg-000003"]
    return store, item


def _latest(store: RunStore) -> Path:
    latest = store.register_latest()
    assert latest is not None
    return latest


def _unit_month(store: RunStore) -> str:
    return f"read_parquet('{_latest(store)}/marts/unit_month/*/*.parquet', hive_partitioning = true)"


def _query(sql: str, params: list | None = None) -> list[tuple]:
    return duckdb.connect().execute(sql, params or []).fetchall()


def _personal_values(sample: Path) -> set[str]:
    """Clear values of personal fields in the generated feeds (ID numbers, persons' names and phones)."""
    values = set()
    for feed, feed_contract in load_contracts().items():
        for line in (sample / f"{feed}.jsonl").read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            values |= {str(record[f.name]) for f in feed_contract.personal_fields if record.get(f.name)}
    return {value for value in values if len(value) >= 4}


def _busiest_unit(store: RunStore) -> str:
    """The unit with tax, power and the most months in unit_month: a profile with every timeline."""
    return _query(
        f"SELECT unit_id FROM {_unit_month(store)} GROUP BY unit_id "
        "HAVING count(tax_paid) > 2 AND count(kwh) > 2 ORDER BY count(*) DESC, unit_id LIMIT 1"
    )[0][0]


@pytest.fixture(scope="module")
def pack(store: tuple[RunStore, dict]) -> tuple[Path, str]:
    """The pack of the month the answered record is about, with the verdicts in force."""
    run_store, item = store
    records = latest_records(run_store, item["feed"])
    periods = dict(
        zip(
            records["record_id"].to_pylist(),
            contract(item["feed"]).record_periods(records).to_pylist(),
            strict=True,
        )
    )
    period = periods[item["record_id"]]
    export_period_pack(run_store, period, verdicts=load_verdicts(run_store.verdicts_dir).in_force)
    return run_store.pack_dir(period), period


# -- the browser -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    fonts = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True).stdout
    if "Noto Sans CJK SC" not in fonts:
        pytest.skip("no CJK font: install Debian's fonts-noto-cjk (make system does) to see the Chinese text")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def _open(browser, path: Path, outside: list[str]):  # type: ignore[no-untyped-def]
    """The page from its file; every request that is not file:// is recorded and refused."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.set_default_timeout(5000)

    def guard(route) -> None:  # type: ignore[no-untyped-def]
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    page.goto(path.as_uri())
    return page


def _fonts_used(page, selector: str) -> set[str]:  # type: ignore[no-untyped-def]
    """The platform fonts Chromium drew an element's text with (DevTools: CSS.getPlatformFontsForNode)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument")["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
    fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    return {font["familyName"] for font in fonts if font["glyphCount"]}


def _assert_sections(page, sections: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    for section_id, heading in sections.items():
        text = page.locator(f"section#{section_id} h2").inner_text()
        assert text.startswith(heading) and CJK.search(text)


# -- the profile -------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_a_profile_in_headless_chromium_has_every_section_its_records_and_the_unit_month_figures(
    store, sample, browser, tmp_path
):
    run_store, _ = store
    unit_id = _busiest_unit(run_store)
    path, _ = write_profile(run_store, unit_id)
    assert path == run_store.profile_path(_latest(run_store).name, unit_id)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # written aside, then renamed
    outside: list[str] = []
    page = _open(browser, path, outside)
    try:
        _assert_sections(page, PROFILE_SECTIONS)
        register = pq.read_table(_latest(run_store) / "register.parquet", filters=[("unit_id", "=", unit_id)])
        assert page.locator("h1").inner_text() == f"一户一档 · {register['name'][0].as_py()}"
        identity = page.locator("section#identity").inner_text()
        assert unit_id in identity and re.search(r"[ABCD] 级（\d+ 分）", identity)

        links = pq.read_table(_latest(run_store) / "links.parquet", filters=[("unit_id", "=", unit_id)])
        per_feed = {f: links["feed"].to_pylist().count(f) for f in set(links["feed"].to_pylist())}
        for feed, count in per_feed.items():
            department = contract(feed).department
            assert page.locator(f"#records-{feed}").inner_text() == f"{department}（{count} 条）"
            assert page.locator(f"#records-{feed} + div tbody tr").count() == count

        # the timelines are the unit_month mart's figures, month by month, and nothing else
        figures = _query(
            f"SELECT period, tax_paid, kwh FROM {_unit_month(run_store)} WHERE unit_id = ? ORDER BY period",
            [unit_id],
        )
        charts = page.locator("section#timelines svg")
        assert charts.count() == 3
        for index, (column, unit) in enumerate(((1, "元"), (2, "千瓦时"))):
            drawn = charts.nth(index).locator("rect.bar title").all_text_contents()
            assert drawn == [
                f"{row[0]}：{fmt_value(row[column])} {unit}" for row in figures if row[column] is not None
            ]

        warnings = pq.read_table(_latest(run_store) / "warnings.parquet", filters=[("unit_id", "=", unit_id)])
        assert page.locator("section#warnings table").first.locator(
            "tbody tr"
        ).count() == warnings.num_rows or (
            warnings.num_rows == 0 and "当前没有预警" in page.locator("section#warnings").inner_text()
        )
        assert any("CJK" in name for name in _fonts_used(page, "h1"))
        assert any("CJK" in name for name in _fonts_used(page, "section#timelines svg text"))
        page.screenshot(path=str(tmp_path / "profile.png"), full_page=True)
    finally:
        page.close()
    assert outside == []
    assert (tmp_path / "profile.png").stat().st_size > 10_000
    html = path.read_text(encoding="utf-8")
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert not [value for value in _personal_values(sample) if value in html]


@pytest.mark.integration
def test_a_profile_shows_the_township_verdict_and_the_link_it_made(store):
    run_store, item = store
    unit_id = item["candidate_unit_ids"][0]
    _, context = write_profile(run_store, unit_id, verdicts=load_verdicts(run_store.verdicts_dir).in_force)
    assert [row[:3] for row in context["verdicts"].rows] == [
        ["VPAGES0000001", "同一单位", f"{item['feed']} {item['record_id']}"]
    ]
    department = contract(item["feed"]).department
    rows = next(r["grid"].rows for r in context["records"] if r["department"] == department)
    assert [row[-2] for row in rows if row[0] == item["record_id"]] == ["乡镇核查结论"]
    with pytest.raises(UnknownUnitError, match="unknown unit U000000000000"):
        write_profile(run_store, "U000000000000")
    # the two units the township found to be one were merged: the profile of the one kept says so
    merged = pq.read_table(_latest(run_store) / "lineage.parquet", filters=[("event", "=", "merged")])
    assert merged.num_rows >= 1
    event = merged.to_pylist()[0]
    _, kept = write_profile(run_store, event["to_unit_id"])
    assert ["合并", event["from_unit_id"], event["to_unit_id"]] in [row[:3] for row in kept["lineage"].rows]
    nobody = load_profile_data(run_store, [])  # a pack naming no unit (a quiet month) reads nothing
    assert (nobody.units, nobody.links, nobody.months) == ({}, {}, {})


# -- the township pack -------------------------------------------------------------------------------------


def _hrefs(html: str) -> list[str]:
    return re.findall(r'href="([^"#]+)"', html)


@pytest.mark.integration
def test_pack_pages_sit_beside_the_work_queues_and_every_link_opens_a_page_of_the_pack(store, pack, sample):
    run_store, _ = store
    folder, _ = pack
    assert not run_store.pack_partial_dir(pack[1]).exists()
    stems = {p.stem for p in folder.glob("*.xlsx")}
    pages = {p.stem for p in folder.glob("*.html")} - {"index"}
    assert stems and stems <= pages  # every township with a work queue has its page, under the same name
    index = (folder / "index.html").read_text(encoding="utf-8")
    assert {Path(h).stem for h in _hrefs(index) if not h.startswith("units/")} == pages
    personal = _personal_values(sample)
    for html_path in folder.glob("*.html"):
        html = html_path.read_text(encoding="utf-8")
        for href in _hrefs(html):
            assert (folder / href).is_file(), f"{html_path.name} links {href}"
        assert "<script" not in html and "http://" not in html and "https://" not in html
        assert not [value for value in personal if value in html]
    assert list((folder / "units").glob("U*.html"))
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    assert summary["pages"] == len(list(folder.rglob("*.html")))


def _township_of_most_units(store: RunStore) -> tuple[str, str]:
    return _query(
        f"SELECT division_code, township FROM read_parquet('{_latest(store)}/marts/units/*.parquet') "
        "WHERE township IS NOT NULL GROUP BY ALL ORDER BY count(*) DESC, 1, 2 LIMIT 1"
    )[0]


@pytest.mark.integration
def test_a_township_pack_page_in_headless_chromium_shows_the_marts_figures_in_chinese(
    store, pack, browser, tmp_path
):
    run_store, _ = store
    folder, period = pack
    division, township = _township_of_most_units(run_store)
    outside: list[str] = []
    page = _open(browser, folder / f"{division}_{township}.html", outside)
    try:
        _assert_sections(page, PACK_SECTIONS)
        assert township in page.locator("h1").inner_text() and period in page.locator("h1").inner_text()
        # the tax trend is the township's unit_month sums over the look-back window ending at the month
        window = month_range("0000-01", period)[-load_config().look_back_months :]
        sums = _query(
            f"SELECT period, sum(tax_paid) FROM {_unit_month(run_store)} WHERE division_code = ? AND township = ? "
            "AND period BETWEEN ? AND ? AND tax_paid IS NOT NULL GROUP BY period ORDER BY period",
            [division, township, window[0], period],
        )
        points = page.locator("section#trends svg").first.locator("circle.point title").all_text_contents()
        assert points == [f"{month}：{fmt_value(total)} 元" for month, total in sums]
        units = _query(
            f"SELECT count(*) FROM read_parquet('{_latest(run_store)}/marts/units/*.parquet') "
            "WHERE division_code = ? AND township = ?",
            [division, township],
        )[0][0]
        assert page.locator("section#overview dd").first.inner_text() == fmt_value(units)
        rows = int(load_config().lockon["pack_rows"])
        for table in page.locator("section#lockon table").all():
            assert 1 <= table.locator("tbody tr").count() <= rows
            assert table.locator("tbody a[href^='units/U']").count() == table.locator("tbody tr").count()
        assert any("CJK" in name for name in _fonts_used(page, "h1"))
        assert any("CJK" in name for name in _fonts_used(page, "section#units svg text"))
        page.screenshot(path=str(tmp_path / "pack.png"), full_page=True)
        # a unit named on the page opens its profile, from the pack folder
        first = page.locator("section#warnings a[href^='units/'], section#lockon a[href^='units/']").first
        name = first.inner_text()
        first.click()
        assert page.locator("h1").inner_text() == f"一户一档 · {name}"
    finally:
        page.close()
    assert outside == []
    assert (tmp_path / "pack.png").stat().st_size > 10_000


@pytest.mark.integration
def test_the_feedback_rate_counts_the_answered_review_item_of_the_month(store, pack, browser):
    _, item = store
    folder, _ = pack
    stem = f"{item['division_code'] or '未分区县'}_{item['township'] or '未分乡镇'}"
    outside: list[str] = []
    page = _open(browser, folder / f"{stem}.html", outside)
    try:
        row = page.locator("section#warnings table").first.locator("tbody tr", has_text="待核查记录")
        raised, answered, rate = [
            int(c) if c.isdigit() else c for c in row.locator("td").all_inner_texts()[1:]
        ]
        assert answered == 1 and raised >= 1 and rate == f"{100 / raised:.1f} %"
    finally:
        page.close()
    assert outside == []


# -- the command -------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_unit_command_prints_a_summary_and_writes_the_profile_and_refuses_an_unknown_unit(store):
    run_store, _ = store
    unit_id = _busiest_unit(run_store)
    result = CliRunner().invoke(main, ["unit", "--out", str(run_store.root), unit_id])
    assert result.exit_code == 0, result.output
    name = pq.read_table(_latest(run_store) / "register.parquet", filters=[("unit_id", "=", unit_id)])[
        "name"
    ][0]
    lines = result.output.splitlines()
    assert lines[0].startswith(f"{unit_id} {name.as_py()}")
    assert re.match(r"活跃度等级: [ABCD] 级", lines[1]) and lines[2].startswith("关联记录: ")
    written = run_store.profile_path(_latest(run_store).name, unit_id)
    assert lines[-1] == f"profile: {written}" and written.is_file()
    unknown = CliRunner().invoke(main, ["unit", "--out", str(run_store.root), "U000000000000"])
    assert unknown.exit_code == 1
    assert unknown.output.strip().splitlines() == [
        f"Error: unknown unit U000000000000: not in register run {_latest(run_store).name}"
    ]


@pytest.mark.integration
def test_a_busy_unit_lists_its_latest_records_and_counts_them_all(store, monkeypatch):
    run_store, _ = store
    monkeypatch.setattr(pages, "PROFILE_RECORDS", 2)
    unit_id = _busiest_unit(run_store)
    _, context = write_profile(run_store, unit_id)
    tax = next(r for r in context["records"] if r["feed"] == "tax")
    links = pq.read_table(_latest(run_store) / "links.parquet", filters=[("unit_id", "=", unit_id)])
    linked = {
        r
        for f, r in zip(links["feed"].to_pylist(), links["record_id"].to_pylist(), strict=True)
        if f == "tax"
    }
    periods = sorted(
        r["period"] for r in latest_records(run_store, "tax").to_pylist() if r["record_id"] in linked
    )
    assert tax["total"] == len(periods) > 2
    assert [row[3] for row in tax["grid"].rows] == periods[-2:]  # 所属期 of the two latest filings


@pytest.mark.integration
def test_a_profiles_review_items_say_why_in_chinese(store):
    """Each open review item about the unit carries its per-field evidence (核查依据), as the work queue does."""
    run_store, _ = store
    first = run_store.register_dir / "runs" / "reg-000001"  # before the township answered: items open
    item = next(i for i in pq.read_table(first / "review.parquet").to_pylist() if i["why"])
    _, context = write_profile(run_store, item["current_unit_id"], "reg-000001")
    column = context["review"].headers.index("核查依据")
    whys = [row[column] for row in context["review"].rows]
    assert item["why"] in whys
