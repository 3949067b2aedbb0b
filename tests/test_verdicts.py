"""Verdict files kept safe: never overwritten, unknown feeds refused, unknown records and units listed, no
verdict from the future, one-line errors for unreadable files, and ``verdicts add`` only into a run store."""

from __future__ import annotations

import csv
import html
import json
import re
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import openpyxl
import pyarrow as pa
import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.landing import resolve_and_land
from pipelines.ops.report import write_report
from pipelines.store import RunStore
from pipelines.townships.verdict_files import add_verdict_file, load_verdicts, read_verdict_file
from pipelines.verdicts import VerdictError
from tests.conftest import TOKEN_KEY
from tests.staging import commit_rows
from tests.test_resolve import _staging

HEADER = "verdict_id,feed,record_id,unit_id_a,unit_id_b,decision,decided_by,decided_at,note\n"
DAY = "2026-11-05T10:00:00+08:00"


def _csv(path: Path, *rows: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join(row + "\n" for row in rows), encoding="utf-8")
    return path


def _new_unit(verdict_id: str, record: str = "E2", when: str = DAY, feed: str = "utility") -> str:
    return f"{verdict_id},{feed},{record},,,new_unit,文新街道办,{when},"


def _in_force(store: RunStore) -> dict[str, str]:
    return {v.verdict_id: v.record_id for v in load_verdicts(store.verdicts_dir).in_force}


@pytest.fixture
def store(tmp_path) -> RunStore:
    store = RunStore(tmp_path / "out")
    commit_rows(store, _staging())
    return store


def _add(store: RunStore, path: Path):
    return CliRunner().invoke(main, ["verdicts", "add", "--out", str(store.root), str(path)])


# -- never overwritten ---------------------------------------------------------------------------------


def test_files_with_clashing_names_are_all_kept(store, tmp_path):
    """Townships name their files alike; the store's own renaming must not land on a file it kept."""
    add_verdict_file(_csv(tmp_path / "a" / "xihu-2.csv", _new_unit("V1", "E1")), store.verdicts_dir)
    add_verdict_file(_csv(tmp_path / "b" / "xihu.csv", _new_unit("V2", "E2")), store.verdicts_dir)
    add_verdict_file(_csv(tmp_path / "c" / "xihu.csv", _new_unit("V3", "T1", feed="tax")), store.verdicts_dir)
    assert len(list(store.verdicts_dir.iterdir())) == 3
    assert _in_force(store) == {"V1": "E1", "V2": "E2", "V3": "T1"}


def test_the_same_file_twice_is_kept_once_and_says_so(store, tmp_path):
    path = _csv(tmp_path / "xihu.csv", _new_unit("V1"))
    first = _add(store, path)
    assert first.exit_code == 0, first.output
    assert "1 verdicts from xihu.csv kept" in first.output
    again = _add(store, path)
    assert again.exit_code == 0, again.output
    assert "xihu.csv was kept before" in again.output and "nothing to add" in again.output
    assert len(list(store.verdicts_dir.iterdir())) == 1
    kept = add_verdict_file(path, store.verdicts_dir)
    assert (kept.count, kept.new) == (1, False)


# -- unknown feeds, records, units ----------------------------------------------------------------------


def test_a_verdict_about_an_unknown_feed_is_refused(store, tmp_path):
    path = _csv(tmp_path / "v.csv", _new_unit("V1"), _new_unit("V2", feed="customs"))
    with pytest.raises(VerdictError, match=r"^v\.csv row 3: unknown feed 'customs'; known feeds: .*utility"):
        add_verdict_file(path, store.verdicts_dir)
    assert not store.verdicts_dir.exists()
    result = _add(store, path)
    assert result.exit_code == 1 and "unknown feed 'customs'" in result.output


def test_verdicts_about_unknown_records_or_units_are_kept_and_listed_with_why(store, tmp_path):
    first = resolve_and_land(store, key=TOKEN_KEY)
    parent = next(r["unit_id"] for r in _links(first.path) if r["record_id"] == "R1")
    _add_checked(
        store,
        _csv(
            tmp_path / "v.csv",
            _new_unit("V1", "E2"),  # applies
            _new_unit("V2", "NOPE"),
            f"V3,,,U000000000000,{parent},different_units,文新街道办,{DAY},",
            f"V4,utility,E1,,U111111111111,same_unit,文新街道办,{DAY},",
        ),
    )
    second = resolve_and_land(store, key=TOKEN_KEY)
    unapplied = second.meta["verdicts"]["unapplied"]
    assert second.meta["verdicts"]["in_force"] == 4
    assert {row["verdict_id"]: row["reason"] for row in unapplied} == {
        "V2": "unknown record utility NOPE",
        "V3": "unknown unit U000000000000",
        "V4": "unknown unit U111111111111",
    }
    assert second.meta["stats"]["unknown_verdicts"] == 3
    assert len(list(store.verdicts_dir.iterdir())) == 1  # kept: the record may come in a later batch

    page = write_report(store, second.path.name).read_text(encoding="utf-8")
    rows = _table(page, "unapplied")
    assert [row[0] for row in rows] == ["V2", "V3", "V4"]
    assert rows[0] == ["V2", "new_unit", "utility NOPE", "文新街道办", DAY, "unknown record utility NOPE"]
    assert "4</strong> verdict(s) in force" in page and "3 could not apply" in page


def test_a_register_run_from_before_verdicts_were_listed_still_renders(store):
    landed = resolve_and_land(store, key=TOKEN_KEY)
    path = landed.path / "_meta.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    del meta["verdicts"]
    path.write_text(json.dumps(meta), encoding="utf-8")
    page = write_report(store, landed.path.name).read_text(encoding="utf-8")
    assert "this register run did not record its verdicts" in page


# -- no verdict from the future ------------------------------------------------------------------------


def test_a_verdict_dated_in_the_future_is_refused_at_add(store, tmp_path):
    path = _csv(tmp_path / "v.csv", _new_unit("V1", when="9999-12-31T00:00:00+08:00"))
    with pytest.raises(
        VerdictError, match=r"^v\.csv row 2: decided_at 9999-12-31T00:00:00\+08:00 is in the future"
    ):
        add_verdict_file(path, store.verdicts_dir)
    assert _add(store, path).exit_code == 1
    soon = (datetime.now(UTC) + timedelta(hours=12)).isoformat(timespec="seconds")
    assert add_verdict_file(_csv(tmp_path / "w.csv", _new_unit("V2", when=soon)), store.verdicts_dir).new


def test_a_stored_verdict_from_the_future_does_not_win_and_is_listed(store, tmp_path):
    """A file put into the store by hand (or kept before such dates were refused) is read with the check too."""
    add_verdict_file(_csv(tmp_path / "v.csv", _new_unit("V1", "E2")), store.verdicts_dir)
    _csv(
        store.verdicts_dir / "by-hand.csv",
        "V9,utility,E2,,,not_a_business,文新街道办,9999-01-01T00:00:00+00:00,",
    )
    landed = resolve_and_land(store, key=TOKEN_KEY)
    linked = [r["record_id"] for r in _links(landed.path)]
    assert "E2" in linked  # V1 (a unit of its own) applies, not V9 (no business: out of the register)
    assert [(r["verdict_id"], r["reason"]) for r in landed.meta["verdicts"]["unapplied"]] == [
        ("V9", "decided_at in the future (by-hand.csv)")
    ]
    assert [v.verdict_id for v in load_verdicts(store.verdicts_dir).in_force] == ["V1"]


# -- unreadable files: one line naming the file and the line or row ---------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("v.jsonl", b'{"verdict_id": "V1"\n', r"v\.jsonl line 1: not JSON"),
        ("v.jsonl", b"\n" + json.dumps(["V1"]).encode() + b"\n", r"v\.jsonl line 2: not a JSON object"),
        ("v.jsonl", b'{"note": "\xff\xfe"}\n', r"v\.jsonl: not UTF-8 text"),
        ("v.xlsx", b"not a workbook at all", r"v\.xlsx: not a readable XLSX workbook"),
        ("v.xlsx", None, r"v\.xlsx: not a readable XLSX workbook"),  # a real workbook cut short
    ],
    ids=["bad json", "json not an object", "not utf-8", "not a zip", "truncated workbook"],
)
def test_an_unreadable_file_is_one_line_naming_file_and_line(store, tmp_path, name, content, message):
    path = tmp_path / name
    if content is None:
        book = openpyxl.Workbook()
        book.active.append(["a"] * 10)
        book.save(path)
        path.write_bytes(path.read_bytes()[:200])
        assert not zipfile.is_zipfile(path)
    else:
        path.write_bytes(content)
    with pytest.raises(VerdictError, match=rf"^{message}"):
        read_verdict_file(path)
    result = _add(store, path)
    assert result.exit_code == 1
    assert re.fullmatch(rf"Error: {message}[^\n]*\n", result.output), result.output
    assert not store.verdicts_dir.exists()


def test_a_jsonl_file_in_the_contract_is_read(tmp_path):
    row = {"verdict_id": "V1", "feed": "utility", "record_id": "E2", "decision": "new_unit",
           "decided_by": "文新街道办", "decided_at": DAY}  # fmt: skip
    path = tmp_path / "v.jsonl"
    path.write_text(json.dumps(row, ensure_ascii=False) + "\n\n", encoding="utf-8")
    assert [(v.verdict_id, v.record_id) for v in read_verdict_file(path)] == [("V1", "E2")]


# -- only into a run store ------------------------------------------------------------------------------


def test_verdicts_add_refuses_an_out_that_is_not_a_run_store(tmp_path):
    path = _csv(tmp_path / "v.csv", _new_unit("V1"))
    result = _add(RunStore(tmp_path / "nonexistent"), path)
    assert result.exit_code == 2
    assert "is not a run store" in result.output
    assert not (tmp_path / "nonexistent").exists()


# -- verdicts a hard constraint would override: refused at add, never asked -------------------------------


def test_a_same_unit_that_two_usccs_would_override_is_refused_at_add_offering_same_operator(store, tmp_path):
    """R1 and R2 hold distinct valid USCCs (a company and its branch): they never merge, so a "same unit"
    about them would be ignored by every run and its item would stay in the queue."""
    units = {
        (r["feed"], r["record_id"]): r["unit_id"] for r in _links(resolve_and_land(store, key=TOKEN_KEY).path)
    }
    parent, branch = units[("registration", "R1")], units[("registration", "R2")]
    rows = {
        "pair": f"V1,,,{parent},{branch},same_unit,文新街道办,{DAY},",
        "record": f"V2,registration,R2,,{parent},same_unit,文新街道办,{DAY},",
    }
    for name, row in rows.items():
        path = _csv(tmp_path / f"{name}.csv", _new_unit("V0"), row)
        result = _add(store, path)
        assert result.exit_code == 1
        side = f"unit {parent}" if name == "pair" else "registration R2"
        assert re.fullmatch(
            rf"Error: {name}\.csv row 3: same_unit cannot apply: {side} holds USCC \w{{18}} and unit U\w{{12}} "
            r"holds \w{18}, and distinct valid USCCs never merge; if one operator holds both licences \(一户多证\), "
            r"give decision same_operator \(同一经营者\) instead\n",
            result.output,
        ), result.output
        assert not store.verdicts_dir.exists()  # nothing of the file is kept

    # What the township found, said so it applies: one operator's licences, recorded and kept apart.
    _add_checked(
        store,
        _csv(
            tmp_path / "fixed.csv",
            f"V1,,,{parent},{branch},same_operator,文新街道办,{DAY},",
            f"V2,registration,R2,,{parent},same_operator,文新街道办,{DAY},",
        ),
    )
    second = resolve_and_land(store, key=TOKEN_KEY)
    after = {(r["feed"], r["record_id"]): r["unit_id"] for r in _links(second.path)}
    assert (after[("registration", "R1")], after[("registration", "R2")]) == (parent, branch)
    assert second.meta["verdicts"] == {"in_force": 2, "unapplied": []}
    # A record with no code of its own (a meter) may still be the branch's: that is no conflict.
    meter = _csv(tmp_path / "meter.csv", f"V3,utility,E1,,{branch},same_unit,文新街道办,{DAY},")
    assert add_verdict_file(meter, tmp_path / "elsewhere", register=store.register_latest()).new


def test_a_work_queue_row_filled_same_operator_is_a_same_operator_verdict(tmp_path):
    """The answer the refusal offers can be given in the work queue itself: 同一经营者（一户多证）."""
    from pipelines.townships.workqueue import REVIEW_COLUMNS

    cells = {"decision": "同一经营者（一户多证）", "unit_id": "U00000000000B", "decided_by": "王敏",
             "decided_at": "2026-11-05", "feed": "registration", "record_id": "R2", "verdict_id": "V7"}  # fmt: skip
    path = tmp_path / "330105_米市巷街道.csv"
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([c.header for c in REVIEW_COLUMNS])
        writer.writerow([cells.get(c.field, "") for c in REVIEW_COLUMNS])
    [verdict] = read_verdict_file(path)
    assert (verdict.decision, verdict.record_id, verdict.unit_id_b) == (
        "same_operator",
        "R2",
        "U00000000000B",
    )


def test_the_review_queue_asks_no_same_unit_question_two_usccs_would_override():
    """A small constructed register: two registered units with distinct USCCs that the model finds alike
    (no question: they can never merge), a meter with no code between them (a question: it may move), and
    an unregistered taxpayer with a code of its own whose only candidate holds another (asked about its
    registration, with no candidate it could never join)."""
    from pipelines.resolve import DuckDBEngine, ResolveSettings
    from pipelines.resolve.entities import ENTITY_FEEDS
    from pipelines.resolve.tables import MEMBER_SCHEMA, review_rows
    from pipelines.standardise.codes import make_uscc

    codes = [make_uscc("9", "1", "330106", f"MA2H100{i}") for i in (1, 2, 3)]
    entities = pa.Table.from_pylist(
        [
            {"entity_id": "reg1", "feed": "registration", "uscc": codes[0]},
            {"entity_id": "reg2", "feed": "registration", "uscc": codes[1]},
            {"entity_id": "meter", "feed": "utility", "uscc": None},
            {"entity_id": "payer", "feed": "tax", "uscc": codes[2]},
        ],
        schema=pa.schema(
            [
                (c, pa.string())
                for c in ("entity_id", "feed", "name", "address", "district_code", "township", "uscc")
            ]
        ),
    )
    members = pa.Table.from_pylist(
        [
            {"entity_id": "reg1", "cluster": "UA", "unit_id": "UA"},
            {"entity_id": "reg2", "cluster": "UB", "unit_id": "UB"},
            {
                "entity_id": "meter",
                "cluster": "UA",
                "unit_id": "UA",
                "matched_by": "model",
                "probability": 0.995,
            },
            {"entity_id": "payer", "cluster": "UT", "unit_id": "UT"},
        ],
        schema=MEMBER_SCHEMA,
    )
    edges = pa.Table.from_pylist(
        [
            {"a": "reg1", "b": "reg2", "probability": 0.9, "matched_by": "model"},  # review band, two USCCs
            {"a": "meter", "b": "reg1", "probability": 0.995, "matched_by": "model"},
            {"a": "meter", "b": "reg2", "probability": 0.995, "matched_by": "model"},  # as high: rival
            {"a": "payer", "b": "reg1", "probability": 0.6, "matched_by": "model"},  # another USCC
        ]
    )
    records = {feed: pa.table({"record_id": pa.array([], pa.string()), "entity_id": pa.array([], pa.string())})
               for feed in ENTITY_FEEDS}  # fmt: skip
    records["registration"] = pa.table({"record_id": ["R1", "R2"], "entity_id": ["reg1", "reg2"]})
    records["utility"] = pa.table({"record_id": ["E1"], "entity_id": ["meter"]})
    records["tax"] = pa.table({"record_id": ["T1"], "entity_id": ["payer"]})
    review = review_rows(
        DuckDBEngine(),
        members,
        pa.array(["UA", "UB", "UT"]),
        entities,
        edges,
        records,
        pa.array(["UA", "UB"]),
        ResolveSettings(),
        "reg-1",
    )
    items = {r["review_id"]: (r["reason"], r["candidate_unit_ids"]) for r in review.to_pylist()}
    assert items == {"utility/E1": ("rival_unit", ["UB"]), "tax/T1": ("no_registration_match", [])}


# -- cells neutralised against spreadsheet formulas ---------------------------------------------------------


def test_the_quote_before_a_formula_like_csv_cell_is_dropped(tmp_path):
    """Work-queue CSVs write ``'`` before a cell a spreadsheet would take for a formula; read back, the cell
    is as it was. A ``'`` before anything else was typed, and stays."""
    path = _csv(tmp_path / "v.csv", f"V1,utility,'-E2,,,new_unit,'=文新街道办,{DAY},'@note")
    quoted = _csv(tmp_path / "w.csv", f"V2,utility,'E3,,,new_unit,'王敏,{DAY},'引号")
    assert [(v.record_id, v.decided_by, v.note) for v in read_verdict_file(path)] == [
        ("-E2", "=文新街道办", "@note")
    ]
    assert [(v.record_id, v.decided_by, v.note) for v in read_verdict_file(quoted)] == [
        ("'E3", "'王敏", "'引号")
    ]


# -- helpers --------------------------------------------------------------------------------------------


def _add_checked(store: RunStore, path: Path) -> None:
    result = _add(store, path)
    assert result.exit_code == 0, result.output


def _links(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path / "links.parquet").to_pylist()


def _table(page: str, css: str) -> list[list[str]]:
    body = page.split(f'<table class="{css}">')[1].split("<tbody>")[1].split("</tbody>")[0]
    return [
        [html.unescape(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", body)
    ]
