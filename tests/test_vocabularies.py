"""Department vocabularies read from reviewed files: the industry classification, statuses, entity types,
electricity customer classes."""

from __future__ import annotations

import csv
import json
import re
import string
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines import verdicts
from pipelines.contracts import output_schema
from pipelines.generate import generate
from pipelines.generate.feeds import DEPARTMENT_VOCABULARIES
from pipelines.generate.names import COMPANY_INDUSTRIES, INDIVIDUAL_TRADES, Weighted
from pipelines.generate.units import ACTIVE_STATUSES, ENTITY_TYPES, REVOKED_STATUSES
from pipelines.marts.config import load_config
from pipelines.resources import VOCABULARIES
from pipelines.rules.warnings import RULES, load_rules
from pipelines.standardise.text import fold
from pipelines.standardise.vocabularies import (
    HOUSEHOLD,
    LEVELS,
    UNKNOWN,
    customer_class_spellings,
    customer_kind,
    industry_dimension,
    industry_path,
    labels,
    normalise_customer_classes,
    normalise_entity_types,
    normalise_industries,
    normalise_statuses,
    status_dimension,
    unknown_values,
)

SECTIONS = string.ascii_uppercase[:20]  # A–T
CODE_SHAPES = {"section": r"[A-T]", "division": r"[0-9]{2}", "group": r"[0-9]{3}", "class": r"[0-9]{4}"}


def _rows() -> list[dict[str, str]]:
    with open(VOCABULARIES / "industries.csv", encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file))


ROWS = _rows()
CODES = [row["code"] for row in ROWS]
DIGIT_CODES = [code for code in CODES if code.isdigit()]
FULL_WIDTH = str.maketrans(string.digits + string.ascii_letters, "０１２３４５６７８９" + "".join(
    chr(ord(char) - ord("A") + ord("Ａ")) if char.isupper() else chr(ord(char) - ord("a") + ord("ａ"))
    for char in string.ascii_letters
))  # fmt: skip


# ---------------------------------------------------------------- the classification file


def test_the_classification_has_the_levels_of_the_2017_standard():
    counts = Counter(row["level"] for row in ROWS)
    assert (counts["section"], counts["division"], counts["group"]) == (20, 97, 473)
    assert 1380 <= counts["class"] <= 1382  # counts published for the edition and its 2019 amendment
    assert {row["code"] for row in ROWS if row["level"] == "section"} == set(SECTIONS)
    assert {row["code"] for row in ROWS if row["level"] == "division"} == {f"{n:02d}" for n in range(1, 98)}


def test_every_code_has_its_levels_shape_and_a_parent_one_level_up_listed_before_it():
    seen: dict[str, str] = {}
    for row in ROWS:
        code, level, parent = row["code"], row["level"], row["parent_code"]
        assert re.fullmatch(CODE_SHAPES[level], code), row
        assert row["name"] and row["name"] == row["name"].strip(), row
        assert code not in seen, f"{code} twice"
        if level == "section":
            assert parent == ""
        else:
            assert seen.get(parent) == LEVELS[LEVELS.index(level) - 1], row
            assert level == "division" or code.startswith(parent), row
        seen[code] = level


def test_the_dimension_has_one_row_per_code_with_its_ancestors():
    dimension = industry_dimension().to_pylist()
    assert [row["code"] for row in dimension] == CODES
    by_code = {row["code"]: row for row in dimension}
    for row in dimension:
        parent = by_code.get(row["parent_code"])
        if row["level"] == "class":
            assert (row["group"], row["group_name"]) == (parent["code"], parent["name"])
        if row["level"] in ("group", "class"):
            assert by_code[row["division"]]["name"] == row["division_name"]
        assert by_code[row["section"]]["name"] == row["section_name"]
        if row["level"] == "section":
            assert row["division"] is row["group"] is row["parent_code"] is None


# ---------------------------------------------------------------- reading codes


@given(st.sampled_from(DIGIT_CODES))
def test_a_code_reads_the_same_with_or_without_its_letter_in_any_width_and_case(code):
    path = industry_path(code)
    assert path is not None and path.code == code
    letter = path.section
    for spelling in (letter + code, f" {letter.lower()} {code} ", (letter + code).translate(FULL_WIDTH)):
        assert industry_path(spelling) == path


@given(st.sampled_from(DIGIT_CODES), st.sampled_from(SECTIONS))
def test_a_letter_is_accepted_only_with_its_own_divisions(code, letter):
    assert (industry_path(letter + code) is not None) == (letter == industry_path(code).section)


def test_higher_levels_leave_the_lower_fields_empty():
    section, division, group = industry_path("F"), industry_path("F51"), industry_path("519")
    assert (section.level, section.division, section.group) == ("section", None, None)
    assert (division.level, division.division, division.group) == ("division", "51", None)
    assert (group.level, group.section, group.division, group.group) == ("group", "F", "51", "519")
    assert industry_path("F519").group_name == group.name == group.group_name


GENERATOR_CODES = sorted(
    {industry.code for industry in (*COMPANY_INDUSTRIES.items, *INDIVIDUAL_TRADES.items)}
)


@pytest.mark.parametrize("code", GENERATOR_CODES)
def test_every_industry_the_generator_uses_resolves_under_its_letter(code):
    path = industry_path(code)
    assert path is not None and path.level == "class" and path.section == code[0]


def test_normalised_industries_keep_rows_and_order_and_say_what_is_unknown():
    codes = pa.chunked_array([["F5199", "A5199", None, "5199"], ["", "f 51", "9999", "F5199"]])
    table = normalise_industries(codes)
    assert table.num_rows == len(codes)
    assert table.column_names == [
        "industry_code", "industry_level", "industry_name", "industry_section", "industry_section_name",
        "industry_division", "industry_division_name", "industry_known",
    ]  # fmt: skip
    assert table["industry_known"].to_pylist() == [True, False, None, True, None, True, False, True]
    assert table["industry_code"].to_pylist() == ["5199", None, None, "5199", None, "51", None, "5199"]
    for text, row in zip(codes.to_pylist(), table.to_pylist(), strict=True):
        path = text and industry_path(text)
        assert row["industry_name"] == (path.name if path else None)
        assert row["industry_division_name"] == (path.division_name if path else None)
    assert unknown_values("industry", codes) == {"A5199": 1, "9999": 1}


# ---------------------------------------------------------------- statuses


def _status(vocabulary: str, value: str | None) -> str | None:
    return normalise_statuses(vocabulary, pa.array([value], pa.string()))["status"][0].as_py()


@pytest.mark.parametrize(
    ("vocabulary", "values", "code"),
    [
        ("registration", ["存续", "在业", "在营", "开业", "正常"], "active"),
        ("registration", ["停业", "歇业"], "suspended"),
        ("registration", ["吊销", "吊销未注销", "吊销，未注销", "吊销,未注销", "吊销 未注销"], "revoked"),
        ("registration", ["注销"], "cancelled"),
        ("registration", ["迁出"], "moved_out"),
        ("registration", ["清算"], "liquidating"),
        ("taxpayer", ["正常"], "normal"),
        ("taxpayer", ["非正常", "非正常户"], "abnormal"),
        ("taxpayer", ["停业"], "suspended"),
        ("taxpayer", ["注销", "非正常户注销"], "cancelled"),
    ],
)
def test_status_spellings_read_as_their_code(vocabulary, values, code):
    assert [_status(vocabulary, value) for value in values] == [code] * len(values)


def test_every_label_and_source_value_reads_back_as_its_own_code():
    dimension = status_dimension().to_pylist()
    assert {row["vocabulary"] for row in dimension if row["code"] == UNKNOWN} == {"registration", "taxpayer"}
    for row in dimension:
        if row["code"] != UNKNOWN:
            assert _status(row["vocabulary"], row["label"]) == row["code"], row
            for value in row["source_values"]:
                assert _status(row["vocabulary"], value) == row["code"], (row["code"], value)


NOISE = " \u3000\t，,、；;（）()【】"
LISTED = [
    (row["vocabulary"], row["code"], value)
    for row in status_dimension().to_pylist()
    for value in row["source_values"]
]


@given(st.sampled_from(LISTED), st.data())
def test_spaces_and_punctuation_anywhere_do_not_change_a_status(listed, data):
    vocabulary, code, value = listed
    noisy = "".join(char + data.draw(st.text(alphabet=NOISE, max_size=2)) for char in value)
    assert _status(vocabulary, data.draw(st.text(alphabet=NOISE, max_size=2)) + noisy) == code


def test_unknown_statuses_are_marked_and_counted_not_guessed():
    values = pa.array(["存续", "营业中", "营业中", None, "", " ，", "注 销"])
    table = normalise_statuses("registration", values)
    assert table["status"].to_pylist() == ["active", UNKNOWN, UNKNOWN, None, None, None, "cancelled"]
    assert table["status_label"][1].as_py() == "未知"
    assert unknown_values("registration", values) == {"营业中": 2}
    assert unknown_values("taxpayer", pa.array(["非正常", "走逃", "走逃", "失联"])) == {"走逃": 2, "失联": 1}


def test_a_vocabulary_that_does_not_exist_is_an_error():
    with pytest.raises(ValueError, match="vocabulary"):
        normalise_statuses("industry", pa.array(["存续"]))
    with pytest.raises(ValueError, match="vocabulary"):
        unknown_values("colour", pa.array(["red"]))


# ---------------------------------------------------------------- entity types


def _entity(value: str | None) -> dict:
    return normalise_entity_types(pa.array([value], pa.string())).to_pylist()[0]


def test_the_generators_entity_types_get_their_kind_and_ascii_brackets():
    for kind, types in ENTITY_TYPES.items():
        for text in types.items if isinstance(types, Weighted) else (types,):
            for spelling in (text, text.replace("（", "(").replace("）", ")"), f" {text}\u3000"):
                entity = _entity(spelling)
                assert entity["entity_kind"] == ("company" if kind == "joint_stock" else kind), spelling
                assert entity["entity_type"] == text.replace("（", "(").replace("）", ")")


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("农民专业合作社", "farmer_cooperative"),
        ("有限合伙企业", "partnership"),
        ("普通合伙企业", "partnership"),
        ("个人独资企业分支机构", "branch"),
        ("股份有限公司（上市、国有控股）", "company"),
        ("全民所有制", "other"),
    ],
)
def test_other_entity_types_get_their_kind(text, kind):
    assert _entity(text)["entity_kind"] == kind


def test_entity_types_no_rule_knows_are_other_and_counted():
    values = pa.array(["有限责任公司（自然人独资）", "某种新类型", "某种新类型", "全民所有制", None, " "])
    table = normalise_entity_types(values)
    assert table["entity_kind"].to_pylist() == ["company", "other", "other", "other", None, None]
    assert unknown_values("entity_type", values) == {"某种新类型": 2}


# ---------------------------------------------------------------- electricity customer classes


def _kinds(*values: str | None) -> list[str | None]:
    return normalise_customer_classes(pa.array(values, pa.string()))["customer_kind"].to_pylist()


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        # State Grid before and after the reforms, China Southern Grid
        (
            [
                "一般工商业",
                "一般工商业用电",
                "大工业",
                "大工业用电",
                "工商业",
                "工商业用电",
                "工商业及其他用电",
            ],
            "business",
        ),
        (["非居民照明", "商业用电", "非工业", "普通工业", "非、普工业", "工商业用电（两部制）"], "business"),
        (["居民", "居民生活用电", "城乡居民生活用电", "农村居民生活用电", "居民合表用户"], HOUSEHOLD),
        (["农业", "农业生产用电", "农业排灌", "贫困县农业排灌用电"], "agriculture"),
        # width, spaces and voltage levels do not change the class
        (
            [
                "一般工商业用电（不满1千伏）",
                "大工业用电 35kV及以上",
                "一般工商业\u3000",
                "工商业用电(单一制)",
            ],
            "business",
        ),
        (["居民生活用电1-10千伏", "居民 生活 用电", "居民生活用电 ２２０Ｖ", "城鄉居民生活用電"], HOUSEHOLD),
    ],
)
def test_tariff_class_names_read_as_their_customer_kind(values, kind):
    assert _kinds(*values) == [kind] * len(values)


def test_classes_that_could_be_either_kind_are_unknown_and_counted_never_guessed():
    values = pa.array(["其他", "趸售", "执行居民电价的非居民用户", "其他", "10千伏", None, " ", "居民"])
    table = normalise_customer_classes(values)
    assert table["customer_kind"].to_pylist() == [UNKNOWN] * 5 + [None, None, HOUSEHOLD]
    assert table["customer_kind_label"].to_pylist()[0] == "未知"
    assert unknown_values("customer_class", values) == {
        "其他": 2, "趸售": 1, "执行居民电价的非居民用户": 1, "10千伏": 1,
    }  # fmt: skip


LISTED_CLASSES = [(kind, value) for kind, values in customer_class_spellings().items() for value in values]


def test_the_class_file_lists_three_kinds_and_every_spelling_once():
    assert set(customer_class_spellings()) == {"business", HOUSEHOLD, "agriculture"}
    values = [value for _, value in LISTED_CLASSES]
    assert len(values) == len(set(values))


@given(st.sampled_from(LISTED_CLASSES), st.data())
def test_spaces_punctuation_width_and_a_voltage_level_do_not_change_a_class(listed, data):
    kind, value = listed
    noisy = "".join(char + data.draw(st.text(alphabet=NOISE, max_size=2)) for char in value)
    voltage = data.draw(st.sampled_from(["", "不满1千伏", "（1-10千伏）", " 35kV及以上", "220V", "１０ＫＶ"]))
    assert _kinds(value.translate(FULL_WIDTH), noisy + voltage) == [kind, kind]


LISTED_CHARACTERS = {char for _, value in LISTED_CLASSES for char in fold(value)} | set(
    "不满低于小于高于千伏以上下及"
)
OTHER_WORDS = st.text(alphabet=st.characters(categories=("Lo",)), min_size=1, max_size=4).filter(
    lambda text: not set(fold(text)) & LISTED_CHARACTERS
)


@given(st.sampled_from(LISTED_CLASSES), OTHER_WORDS)
def test_a_listed_name_inside_other_words_is_unknown_not_its_kind(listed, words):
    """No prefix or substring test: 居民楼底商 or 商业综合体 is not read as a household or a business."""
    _, value = listed
    assert _kinds(value + words, words + value) == [UNKNOWN, UNKNOWN]


@pytest.mark.parametrize("name", sorted(DEPARTMENT_VOCABULARIES))
def test_every_spelling_a_generator_vocabulary_writes_reads_as_its_class(name):
    meant = {"大工业": "business", "一般工商业": "business", "居民": HOUSEHOLD, "农业": "agriculture"}
    for customer_class, spellings in DEPARTMENT_VOCABULARIES[name].customer_classes.items():
        assert _kinds(*(spelling for spelling, _ in spellings)) == [meant[customer_class]] * len(spellings)


# ---------------------------------------------------------------- open-ended input


CODE_LIKE = st.text(alphabet="ABFHMSTXafz0123456789０１５９Ｆ \u3000-.", max_size=7)


@given(st.text() | CODE_LIKE)
def test_any_text_never_raises(text):
    values = pa.array([text, None, text])
    industry_path(text)
    assert normalise_industries(values).num_rows == 3
    assert normalise_statuses("registration", values).num_rows == 3
    assert normalise_statuses("taxpayer", values).num_rows == 3
    assert normalise_entity_types(values).num_rows == 3
    assert _kinds(text, None, text) == [customer_kind(text), None, customer_kind(text)]
    for vocabulary in ("industry", "registration", "taxpayer", "entity_type", "customer_class"):
        assert set(unknown_values(vocabulary, values)) <= {text}


@given(st.text() | CODE_LIKE)
def test_normalising_twice_changes_nothing(text):
    industry = normalise_industries(pa.array([text])).to_pylist()[0]
    if industry["industry_code"] is not None:
        assert normalise_industries(pa.array([industry["industry_code"]])).to_pylist()[0] == industry
    entity = _entity(text)
    if entity["entity_type"] is not None:
        assert _entity(entity["entity_type"]) == entity


# ---------------------------------------------------------------- what the demo generator writes


def _column(path: Path, field: str) -> pa.Array:
    lines = path.read_text(encoding="utf-8").splitlines()
    return pa.array([json.loads(line).get(field) for line in lines], pa.string())


def test_every_value_the_generator_writes_is_known(tmp_path):
    generate(units=2000, seed=17, out_dir=tmp_path)
    registration, tax = tmp_path / "registration.jsonl", tmp_path / "tax.jsonl"
    assert unknown_values("registration", _column(registration, "status")) == {}
    assert unknown_values("taxpayer", _column(tax, "taxpayer_status")) == {}
    assert unknown_values("entity_type", _column(registration, "entity_type")) == {}
    assert unknown_values("industry", _column(registration, "industry_code")) == {}
    assert unknown_values("customer_class", _column(tmp_path / "utility.jsonl", "customer_class")) == {}
    # Values a small sample may not draw.
    active = [value for weighted in ACTIVE_STATUSES.values() for value in weighted.items]
    for value in (*active, *REVOKED_STATUSES.items, "注销", "迁出", "停业"):
        assert _status("registration", value) not in (None, UNKNOWN), value
    for value in ("正常", "非正常", "停业", "注销"):
        assert _status("taxpayer", value) not in (None, UNKNOWN), value


def test_every_code_a_clerk_reads_has_its_chinese_label():
    """Labels live in labels.toml; a rule, decision, flag or list added without one would show its code."""
    assert set(load_rules()["rules"]) | set(RULES) <= set(labels("rules"))
    assert set(verdicts.DECISIONS) == set(labels("decisions"))
    assert len(set(labels("decisions").values())) == len(verdicts.DECISIONS)  # the workbook reads them back
    assert {f.name for f in output_schema("register") if f.type == pa.bool_()} == set(labels("flags"))
    assert {"dormant", "falling", "pillar_change"} == set(labels("lockon_lists"))
    assert {"merged", "split", "retired"} == set(labels("lineage_events"))
    assert load_config().lockon  # the lists' thresholds exist for every labelled list
    with pytest.raises(KeyError, match="no \\[nothing\\]"):
        labels("nothing")
