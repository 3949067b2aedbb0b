"""Standardisation on real-looking examples: names, addresses, phones, code parts."""

import pytest

from pipelines.standardise.addresses import parse_address
from pipelines.standardise.codes import org_code_of, uscc_parts
from pipelines.standardise.names import parse_company_name
from pipelines.standardise.phones import parse_phone
from pipelines.standardise.text import fold, phonetic_key


def test_fold_width_script_and_lookalikes():
    assert fold("杭州滙豐華僑（杭州）貿易有限公司 ") == "杭州汇丰华侨(杭州)贸易有限公司"
    assert fold("ＡＢＣ１２３") == "ABC123"
    assert phonetic_key("鑫汇") == phonetic_key("新惠") == "xinhui"


@pytest.mark.parametrize(
    ("name", "region", "trade", "industry", "form", "branch"),
    [
        ("杭州滙豐科技有限責任公司", "杭州", "汇丰", "科技", "有限公司", ""),
        ("汇丰科技有限公司", "", "汇丰", "科技", "有限公司", ""),
        ("浙江省杭州市新锐网络科技有限公司", "浙江省杭州市", "新锐", "网络科技", "有限公司", ""),
        ("鑫源（杭州）餐饮管理有限公司", "杭州", "鑫源", "餐饮管理", "有限公司", ""),
        ("杭州某某贸易有限公司滨江分公司", "杭州", "某某", "贸易", "有限公司", "滨江分公司"),
        ("阿里巴巴（中国）网络技术有限公司", "中国", "阿里巴巴", "网络技术", "有限公司", ""),
        ("杭州西湖龙井茶叶有限公司", "杭州", "西湖龙井", "茶叶", "有限公司", ""),
        ("北京市朝阳区宏达建筑工程股份有限公司", "北京市朝阳区", "宏达", "建筑工程", "股份有限公司", ""),
    ],
)
def test_company_name_parts(name, region, trade, industry, form, branch):
    parsed = parse_company_name(name)
    assert (parsed.region, parsed.trade_name, parsed.industry, parsed.organisation_form, parsed.branch) == (
        region,
        trade,
        industry,
        form,
        branch,
    )


def test_name_variants_share_their_core():
    variants = ["杭州汇丰科技有限公司", "汇丰科技有限责任公司", "杭州滙豐科技有限公司", "汇丰 科技有限公司"]
    assert {parse_company_name(v).core for v in variants} == {"汇丰科技有限公司"}
    assert (
        parse_company_name("汇丰科技有限公司滨江分公司").core != parse_company_name("汇丰科技有限公司").core
    )


def test_address_parts():
    full = parse_address("浙江省杭州市西湖区文新街道文三路90号东部软件园3号楼5层501室")
    assert (full.division_code, full.township, full.road, full.number) == (
        "330106",
        "文新街道",
        "文三路",
        "90",
    )
    assert full.rest == "东部软件园3栋501"
    short = parse_address("西湖区文三路９０号3幢501", hint="330106")
    assert (short.division_code, short.street_key) == ("330106", full.street_key)
    assert parse_address("西湖区文三路90号").division_code is None  # 杭州 or 南昌? no hint, no guess
    assert parse_address("杭州市临平区南苑街道人民大道100号").division_code == "330113"
    assert parse_address("北京市海淀区中关村大街27号").division_code == "110108"


@pytest.mark.parametrize(
    ("text", "kind", "number"),
    [
        ("+86 138-1234-5678", "mobile", "13812345678"),
        ("008613812345678", "mobile", "13812345678"),
        ("0571-88889999", "landline", "057188889999"),
        ("(0571)88889999", "landline", "057188889999"),
        ("010-62345678", "landline", "01062345678"),
        ("0571-88889999/13812345678", "landline", "057188889999"),
    ],
)
def test_phone_forms(text, kind, number):
    phone = parse_phone(text)
    assert phone is not None and (phone.kind, phone.number) == (kind, number)


def test_landline_without_area_code_takes_the_default():
    assert parse_phone("88889999", default_area_code="0571").number == "057188889999"
    assert parse_phone("88889999").kind == "unknown"
    assert parse_phone("") is None


def test_uscc_parts_and_legacy_taxpayer_link():
    assert uscc_parts("91110000100006485K") == {
        "authority": "9",
        "org_type": "1",
        "division": "110000",
        "org_code": "100006485",
    }
    assert uscc_parts("91110000100006485X") is None
    assert org_code_of("91110000100006485K") == org_code_of("110000100006485") == "100006485"
    assert org_code_of("110000100006486") is None


def test_sql_string_distances_count_characters_not_bytes():
    import duckdb

    from pipelines.resolve.udfs import register_duckdb

    con = duckdb.connect()
    register_duckdb(con)
    row = con.sql("select uf_char_levenshtein('北京','北景'), levenshtein('北京','北景')").fetchall()
    assert row == [(1, 3)]  # DuckDB's own function counts UTF-8 bytes


def test_saved_model_transpiles_for_splinks_spark_backend():
    from pipelines.resolve.model import model_settings_for

    spark = model_settings_for("spark")
    assert spark["sql_dialect"] == "spark"
    rules = [r["blocking_rule"] for r in spark["blocking_rules_to_generate_predictions"]]
    assert rules and all('"' not in rule and "`" in rule for rule in rules)  # Spark quotes with backticks
    conditions = [level["sql_condition"] for c in spark["comparisons"] for level in c["comparison_levels"]]
    assert any("uf_char_jaro_winkler" in condition.lower() for condition in conditions)
