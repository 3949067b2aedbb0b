"""Review triage: what evidence settles never reaches a township, the rest is ranked and explained in Chinese,
and each township's workbook links an offline comparison page of its items."""

from __future__ import annotations

import json
import math
import re

import openpyxl
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines.resolve import DuckDBEngine, ResolveSettings
from pipelines.resolve.entities import ENTITY_FEEDS
from pipelines.resolve.tables import MEMBER_SCHEMA, review_rows
from pipelines.resolve.triage import COMPARISONS, SHOWN_EVIDENCE, evidence_text, explain
from pipelines.standardise.codes import make_uscc
from pipelines.townships.comparisons import waterfall_steps
from pipelines.townships.workqueue import REVIEW_COLUMNS, REVIEW_SHEET, export_work_queues
from tests.test_workqueue import _publish, _queue, _review_item, read_sheet
from tests.test_workqueue import store as store

HEADER = {c.field: c.header for c in REVIEW_COLUMNS}
UA, UB = make_uscc("9", "1", "330106", "MA2H2001"), make_uscc("9", "1", "330106", "MA2H2002")
WEIGHTS = {"trade_name": 10.08, "phone": 13.659, "district_code": -4.383, "branch_key": 0.214}
ENTITY_FIELDS = ("entity_id", "feed", "name", "address", "district_code", "township", "uscc", "org_code",
                 "phone", "legal_rep_name_token")  # fmt: skip


def _odds(probability: float) -> float:
    return math.log2(probability / (1 - probability))


def _review(
    *,
    own: float = 0.999999,
    candidate: float = 0.9,
    person: bool = False,
    parcels: int = 1,
    feed: str = "utility",
    org_code: str | None = None,
    second: bool = False,
    settings: ResolveSettings | None = None,
) -> dict[str, dict]:
    """A small register: units UA and UB (registered, one licence each) and a record ``x`` the model put in UA
    (pair probability ``own``) that also scores ``candidate`` against UB's licence; ``second``: another
    record of UA just as alike to UB. The review items by id."""
    rows = [
        {"entity_id": "reg_a", "feed": "registration", "uscc": UA, "org_code": UA[8:17], "name": "杭州甲科技有限公司"},
        {"entity_id": "reg_b", "feed": "registration", "uscc": UB, "org_code": UB[8:17], "name": "杭州乙科技有限公司"},
        {"entity_id": "x", "feed": feed, "org_code": org_code, "name": "甲科技", "is_person": person,
         "phone": "t1_" + "a" * 32, "legal_rep_name_token": "t1_" + "b" * 32},
        {"entity_id": "y", "feed": "utility", "name": "甲科技二号表"},
    ]  # fmt: skip
    schema = pa.schema([(c, pa.string()) for c in ENTITY_FIELDS] + [("is_person", pa.bool_())])
    entities = pa.Table.from_pylist(rows, schema=schema)
    members = pa.Table.from_pylist(
        [
            {"entity_id": "reg_a", "cluster": "UA", "unit_id": "UA"},
            {"entity_id": "reg_b", "cluster": "UB", "unit_id": "UB"},
            {"entity_id": "x", "cluster": "UA", "unit_id": "UA", "matched_by": "model", "probability": own},
            {"entity_id": "y", "cluster": "UA", "unit_id": "UA", "matched_by": "model", "probability": own},
        ],
        schema=MEMBER_SCHEMA,
    )
    weights = json.dumps(WEIGHTS)
    edges = [
        {"a": "reg_a", "b": "x", "probability": own, "matched_by": "model", "weights": weights},
        {"a": "reg_b", "b": "x", "probability": candidate, "matched_by": "model", "weights": weights},
        {"a": "reg_a", "b": "y", "probability": own, "matched_by": "model", "weights": weights},
    ]
    if second:
        edges.append({"a": "reg_b", "b": "y", "probability": candidate - 0.01, "matched_by": "model"})
    empty = pa.table({"record_id": pa.array([], pa.string()), "entity_id": pa.array([], pa.string())})
    records = {f: empty for f in ENTITY_FEEDS}
    records["registration"] = pa.table({"record_id": ["R1", "R2"], "entity_id": ["reg_a", "reg_b"]})
    records["utility"] = pa.table({"record_id": ["E2"], "entity_id": ["y"], "kwh": [300.0]})
    if feed == "waybill":
        records["waybill"] = pa.table({"record_id": ["W1"], "entity_id": ["x"], "parcel_count": [parcels]})
    elif feed == "tax":
        records["tax"] = pa.table({"record_id": ["T1"], "entity_id": ["x"], "tax_paid": [5000.0]})
    else:
        records["utility"] = pa.table(
            {"record_id": ["E1", "E2"], "entity_id": ["x", "y"], "kwh": [900.0, 300.0]}
        )
    review = review_rows(
        DuckDBEngine(),
        members,
        pa.array(["UA", "UB"]),
        entities,
        pa.Table.from_pylist(edges),
        records,
        pa.array(["UA", "UB"]),
        settings or ResolveSettings(),
        "reg-1",
    )
    return {row["review_id"]: row for row in review.to_pylist()}


# -- the rules: each settles what it should and nothing else ------------------------------------------------


def test_an_uncertain_link_far_below_the_records_own_link_is_settled():
    """Held in UA by a pair of weight 20 (p 0.999999), offered UB at weight 3.2: 16.8 bits apart."""
    assert "utility/E1" in _review(own=0.999999)  # 16.8 bits < 20: asked
    assert "utility/E1" not in _review(own=0.999999, settings=ResolveSettings(settle_margin_bits=15))
    assert "utility/E1" not in _review(own=1 - 1e-9)  # 26.7 bits: settled
    assert "utility/E1" in _review(own=1 - 1e-9, settings=ResolveSettings(settle_margin_bits=30))


def test_a_private_persons_small_volume_is_no_question_a_larger_one_is():
    settled = _review(feed="waybill", person=True, parcels=5)
    assert "waybill/W1" not in settled
    assert "waybill/W1" in _review(feed="waybill", person=True, parcels=500)  # could be a shop of its own
    assert "waybill/W1" in _review(feed="waybill", person=False, parcels=5)  # a company's sender
    kept = _review(feed="waybill", person=True, parcels=5, settings=ResolveSettings(ecommerce_min_parcels=3))
    assert "waybill/W1" in kept


def test_a_legacy_taxpayer_id_of_another_organisation_is_never_offered_the_unit():
    """The tax record's old taxpayer id names an organisation code: UB's USCC names another one."""
    assert "tax/T1" in _review(feed="tax", org_code=UB[8:17])
    assert "tax/T1" not in _review(feed="tax", org_code="MA2H9999X")


def test_one_question_per_pair_of_units():
    """Two records of UA both alike to UB: the stronger is asked, one answer is enough."""
    asked = _review(second=True)
    assert "utility/E1" in asked and "utility/E2" not in asked
    alone = _review(second=False)
    assert "utility/E2" not in alone  # y scores UB only through x (no edge of its own)


def test_a_rival_unit_is_asked_however_far_the_band():
    """Placed by the model at 0.995 with another unit as likely: rules never settle a rival."""
    items = _review(own=0.995, candidate=0.995, feed="waybill", person=True, parcels=1)
    assert items["waybill/W1"]["reason"] == "rival_unit"


# -- what a kept item carries ------------------------------------------------------------------------------


def test_kept_items_carry_importance_why_and_the_pair_with_tokens_only():
    [item] = [r for r in _review().values() if r["review_id"] == "utility/E1"]
    assert item["reason"] == "uncertain_link" and item["candidate_unit_ids"] == ["UB"]
    # records at stake: UA (reg_a, x, y: 3 records) and UB (1); kWh 1200
    assert item["importance"] == pytest.approx(math.log2(1 + 4) + math.log10(1 + 1200), abs=0.01)
    assert item["match_weight"] == pytest.approx(_odds(0.9), abs=1e-3)
    assert json.loads(item["match_weights"]) == WEIGHTS
    assert item["why"].startswith("与最可能的候选单位匹配度 0.90") and "电话相符 +13.7" in item["why"]
    compared = json.loads(item["compared"])
    assert compared["record"]["record_id"] == "E1" and compared["candidate"]["record_id"] == "R2"
    assert compared["record"]["phone"].startswith("t1_") and compared["record"]["legal_rep"].startswith("t1_")


def test_importance_grows_with_the_activity_at_stake():
    small = _review()["utility/E1"]["importance"]
    busy = _review(feed="tax")["tax/T1"]["importance"]  # 5,000 yuan of tax at stake
    assert busy > small


# -- the explanation, in Chinese ---------------------------------------------------------------------------


def test_the_explanation_reads_the_match_weights_in_chinese():
    text = explain("uncertain_link", json.dumps(WEIGHTS), 0.94, 4.0)
    assert text == "与最可能的候选单位匹配度 0.94（合计 +4.0）：电话相符 +13.7；字号相符 +10.1；区县不符 −4.4"
    assert explain("no_registration_match", None, None, None) == "模型未找到相似的登记单位"
    assert evidence_text({"tf_adj_trade_name": -9.3, "trade_name": 10.08}) == "字号相符 +10.1；字号常见 −9.3"


@given(
    st.dictionaries(
        st.sampled_from(sorted(COMPARISONS)), st.floats(-30, 30, allow_nan=False), max_size=len(COMPARISONS)
    )
)
def test_the_evidence_names_the_strongest_comparisons_with_their_sign(weights):
    parts = [p for p in evidence_text(weights).split("；") if p]
    strong = [w for w in weights.values() if abs(w) >= 0.5]
    assert len(parts) == min(len(strong), SHOWN_EVIDENCE)
    shown = [float(p.rsplit(" ", 1)[1].replace("−", "-")) for p in parts]
    assert [abs(v) for v in shown] == sorted((abs(v) for v in shown), reverse=True)
    said = {}  # what each comparison should read as: its label, then for or against (a rarity is its label)
    for name, weight in weights.items():
        word = (
            ("少见" if weight > 0 else "常见") if name.startswith("tf_") else "相符" if weight > 0 else "不符"
        )
        said.setdefault(COMPARISONS[name] + word, []).append(weight)
    for part, value in zip(parts, shown, strict=True):
        words = part.rsplit(" ", 1)[0]
        assert any(abs(w - value) < 0.051 for w in said[words]), (part, weights)


def test_the_waterfall_starts_at_the_prior_and_ends_at_the_total():
    steps = waterfall_steps(WEIGHTS, 4.0)
    assert steps[0][2] == pytest.approx(4.0 - sum(WEIGHTS.values()))  # the prior
    assert steps[-1][2] == pytest.approx(4.0)
    assert [label for label, _, _ in steps[1:-1]] == [
        COMPARISONS[n] for n in ("phone", "trade_name", "district_code", "branch_key")
    ]
    silent = waterfall_steps({**WEIGHTS, "street": 0.0, "tf_adj_trade_name": -9.3}, 4.0)
    assert [label for label, _, _ in silent[1:3]] == ["电话", "字号"] and "字号常见" in dict(
        (label, end) for label, _, end in silent
    )
    assert "道路门牌" not in [label for label, _, _ in silent]  # no weight, no bar
    assert silent[-1][2] == pytest.approx(4.0)


# -- the work queue: ranked, explained, linked to its comparison page ------------------------------------


def test_within_a_priority_and_tier_warned_and_important_units_come_first(tmp_path):
    from pipelines.store import RunStore
    from tests.test_workqueue import _warning

    store = RunStore(tmp_path / "out")
    review = [
        _review_item("R1", 2, "330105", "米市巷街道", importance=1.0),
        _review_item("R2", 2, "330105", "米市巷街道", importance=9.0),
        _review_item("R3", 2, "330105", "米市巷街道", importance=0.5, current_unit_id="U00000000000C"),
    ]
    warnings = [_warning("W1", "2026-09", 2, "米市巷街道") | {"unit_id": "U00000000000C"}]
    _publish(store, review, warnings)
    mishi = _queue(export_work_queues(store), "330105_米市巷街道", ".xlsx")
    assert [r[HEADER["record_id"]] for r in read_sheet(mishi)] == ["R3", "R2", "R1"]


PERSONAL = ("张伟", "李娜", "88889999", "13900001111", "王芳", "13700001111")


def test_each_workbook_links_an_offline_comparison_page_with_no_clear_personal_data(store):
    from pipelines.landing import resolve_and_land
    from tests.conftest import TOKEN_KEY

    resolve_and_land(store, key=TOKEN_KEY)
    paths = export_work_queues(store)
    books = [p for p in paths if p.suffix == ".xlsx"]
    pages = [p for p in paths if p.parent.name == "compare" and p.suffix == ".html"]
    assert pages
    for book_path in books:
        rows = read_sheet(book_path)
        if not rows:
            continue
        page = book_path.parent / "compare" / f"{book_path.stem}.html"
        assert page in pages
        html = page.read_text(encoding="utf-8")
        sheet = openpyxl.load_workbook(book_path)[REVIEW_SHEET]
        headers = [c.value for c in sheet[1]]
        links = [
            sheet.cell(r, headers.index(HEADER["compare"]) + 1).hyperlink for r in range(2, len(rows) + 2)
        ]
        for row, link in zip(rows, links, strict=True):
            assert link.target == f"compare/{page.name}#{row[HEADER['verdict_id']]}"
            assert f'id="{row[HEADER["verdict_id"]]}"' in html  # the row's link lands on its item
            assert re.search(r"[\u4e00-\u9fff]", row[HEADER["why"]])
        assert "<script" not in html and "http" not in html and "src=" not in html  # nothing from a network
        assert not [value for value in PERSONAL if value in html], page.name
    wenxin = next(p for p in pages if p.stem == "330106_文新街道").read_text(encoding="utf-8")
    assert (
        "<svg" in wenxin and "杭州汇丰科技有限公司" in wenxin
    )  # X5 beside its candidate, with its waterfall


def test_a_comparison_page_about_units_with_no_name_still_writes(tmp_path):
    """A unit the register holds without a name (all its records came nameless) is shown by its id alone:
    at 1M records such units exist, and one of them stopped a whole run's work queues."""
    from pipelines.townships.comparisons import write_comparison_page

    row = {"review_id": "utility/E9", "verdict_id": "V0000000000E9", "feed": "utility", "record_id": "E9", "reason": "uncertain_link",
           "priority": 2, "name": None, "why": None, "importance": None, "current_unit_id": "U1",
           "candidate_unit_ids": ["U2"], "candidate_scores": [0.6], "match_weights": json.dumps(WEIGHTS),
           "match_weight": 4.0, "compared": None}  # fmt: skip
    path = tmp_path / "page.html"
    write_comparison_page(path, "某街道", [row], {"U1": None, "U2": None})
    html = path.read_text(encoding="utf-8")
    assert "当前归属单位：U1" in html and "None" not in html
