"""Standardisation on real-looking examples: names, addresses, phones, code parts."""

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pypinyin import Style, lazy_pinyin
from pypinyin.constants import PHRASES_DICT

from pipelines.standardise.addresses import parse_address
from pipelines.standardise.codes import org_code_of, uscc_parts
from pipelines.standardise.divisions import by_code, divisions, names_index
from pipelines.standardise.names import (
    BRANCH_MARKERS,
    INDUSTRY_WORDS,
    ORGANISATION_FORMS,
    is_personal_name,
    parse_company_name,
    surnames,
)
from pipelines.standardise.phones import Phone, parse_phone
from pipelines.standardise.regions import MUNICIPALITIES, match_region
from pipelines.standardise.text import LOOKALIKES, fold, phonetic_key


def test_fold_width_script_and_lookalikes():
    assert fold("杭州滙豐華僑（杭州）貿易有限公司 ") == "杭州汇丰华侨(杭州)贸易有限公司"
    assert fold("ＡＢＣ１２３") == "ABC123"
    assert phonetic_key("鑫汇") == phonetic_key("新惠") == "xinhui"


# Characters names and addresses are written in: place names, name words, common traditional forms and
# look-alikes, ASCII and its full-width forms, spaces.
NAME_CHARS = sorted(
    set("".join(names_index()))
    | set("".join(INDUSTRY_WORDS + ORGANISATION_FORMS + BRANCH_MARKERS))
    | set("貿易華國東區縣廣門號樓層長寧灣臺體測點務稅業電氣醫藥飲餐館廳鐵鋼開發實興隆豐")
    | {chr(code) for code in LOOKALIKES}
    | set(string.ascii_letters + string.digits + "()-· \u3000")
    | {chr(code) for code in range(0xFF01, 0xFF5F)}
)
names_and_addresses = st.text(alphabet=NAME_CHARS, max_size=30)


@given(names_and_addresses)
def test_folding_twice_changes_nothing(text):
    # Not for every string: OpenCC's t2s converts some characters in two steps (薴 → 苧 → 苎).
    assert fold(fold(text)) == fold(text)


@given(st.text())
def test_folded_text_has_no_spaces_lower_case_ascii_or_lookalikes(text):
    folded = fold(text)
    assert not any(ch.isspace() or ch in string.ascii_lowercase or ord(ch) in LOOKALIKES for ch in folded)


@given(st.text(alphabet=string.ascii_letters + string.digits + string.punctuation + " ", max_size=30))
def test_full_width_and_spaced_ascii_folds_like_plain_ascii(text):
    full_width = "".join(chr(ord(ch) + 0xFEE0) if ch != " " else "\u3000" for ch in text)
    assert fold(full_width) == fold(text) == text.replace(" ", "").upper()


@given(st.lists(st.sampled_from(NAME_CHARS) | st.sampled_from(sorted(PHRASES_DICT)), max_size=8).map("".join))
def test_phonetic_key_is_pypinyins_reading_of_the_folded_text(text):
    """Names are converted word by word; a phrase with its own reading (重庆, 银行) must keep it."""
    expected = "".join(lazy_pinyin(fold(text), style=Style.NORMAL, errors="ignore"))
    assert phonetic_key(text) == expected
    assert set(expected) <= set(string.ascii_lowercase)


def test_phonetic_key_reads_polyphones_by_their_phrase():
    assert phonetic_key("重庆") == "chongqing" and phonetic_key("重") == "zhong"
    assert phonetic_key("银行") == "yinhang" and phonetic_key("行") == "xing"
    assert phonetic_key("重重") != phonetic_key("重") * 2  # a repeated character can be a phrase


_DISTRICTS_IN_FULL = [  # 浙江省 杭州市 西湖区 (municipalities write 北京市 东城区, without the city)
    (d, by_code()[d.province_code].name + by_code()[d.city_code].name + d.name)
    for d in divisions()
    if d.level == "district"
    and d.code[:2] not in MUNICIPALITIES
    and getattr(by_code().get(d.city_code), "level", None) == "city"
    and d.province_code in by_code()
]


@given(st.sampled_from(_DISTRICTS_IN_FULL), names_and_addresses)
def test_a_district_written_with_its_province_and_city_is_found_whatever_follows(district_in_full, rest):
    district, prefix = district_in_full
    found = match_region(prefix + rest)
    assert (found.district, found.end) == (district, len(prefix))


@given(
    st.lists(st.sampled_from(sorted(names_index())) | st.sampled_from(NAME_CHARS), max_size=5).map("".join),
    st.sampled_from([None, "330106", "110105", "350102", "320106"]),
    st.booleans(),
)
def test_the_region_prefix_alone_matches_the_same_divisions(text, hint, strict_short):
    found = match_region(text, hint, strict_short=strict_short)
    assert found.end <= len(text)
    assert match_region(text[: found.end], hint, strict_short=strict_short) == found


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
        # 朝阳区 is a district of two cities, and 朝阳 alone a third city's short name: still the region
        ("朝阳区田记手机维修部", "朝阳区", "田记", "手机维修", "部", ""),
        ("通州区老董服装店", "通州区", "老董", "服装", "店", ""),
        # shops' trades (name_words.toml): a person naming the shop says 纳禾汇, not 纳禾汇文具
        ("纳禾汇文具店", "", "纳禾汇", "文具", "店", ""),
        ("同聚达企业管理有限公司", "", "同聚达", "企业管理", "有限公司", ""),
        # an industry word taking in the form's character is read whole: 面馆, not 面 + 馆
        ("北京市丰台区悦豪面馆", "北京市丰台区", "悦豪", "面馆", "", ""),
        ("川味川菜馆", "", "川味", "川菜", "馆", ""),
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
    ("text", "street_key", "rest"),
    [
        # number-building-room, as couriers write it, is the same site as 2号8幢317室
        ("成都市金牛区金牛大道2-8-317", "金牛大道2", "8栋317"),
        ("四川省成都市金牛区金牛大道2号8幢317室", "金牛大道2", "8栋317"),
        ("杭州市西湖区文三路88-1-3-501", "文三路88-1", "3栋501"),  # the house number 88-1
        ("杭州市西湖区文三路90-2号3幢501室", "文三路90-2", "3栋501"),
        # a road whose name holds a shorter road word (新街口外大街, not 新街) still ends at its number
        ("北京市西城区新街口外大街70号2401室", "新街口外大街70", "2401"),
        # a hyphenated house number on its own stays one number
        ("朝阳区 阜通东大街47-3号", "阜通东大街47-3", ""),
    ],
)
def test_number_building_room_written_with_hyphens_reads_as_number_building_room(text, street_key, rest):
    parsed = parse_address(text)
    assert (parsed.street_key, parsed.rest) == (street_key, rest)


def test_a_branch_keeps_its_head_offices_region_whatever_district_it_is_registered_in():
    """成都某某有限公司杭州分公司 is registered in Hangzhou: 成都 is still its region, not part of its trade name,
    so a person naming 蓝竹环保科技杭州分公司 finds it. A shop called 成都小吃 in Hangzhou keeps its name."""
    branch = parse_company_name("成都蓝竹环保科技有限公司杭州分公司", "330114")
    assert (branch.region, branch.trade_name, branch.branch) == ("成都", "蓝竹", "杭州分公司")
    assert parse_company_name("成都小吃店", "330114").trade_name == "成都"


@pytest.mark.parametrize(
    ("text", "township", "street_key"),
    [
        # a 街道 named after a road is the township, and the road after it the street
        ("北京市海淀区万寿路街道上地十街48号10幢1001室", "万寿路街道", "上地十街48"),
        ("四川省成都市成华区府青路街道府青路118号", "府青路街道", "府青路118"),
        ("北京市朝阳区和平街街道工人体育场北路27号", "和平街街道", "工人体育场北路27"),
    ],
)
def test_a_township_named_after_a_road_is_read_as_the_township(text, township, street_key):
    parsed = parse_address(text)
    assert (parsed.township, parsed.street_key) == (township, street_key)


@pytest.mark.parametrize(
    ("text", "kind", "number"),
    [
        ("+86 138-1234-5678", "mobile", "13812345678"),
        # an extension is no part of the number: the switchboard is the unit's phone
        ("0571-88889999转801", "landline", "057188889999"),
        ("0571-88889999-801", "landline", "057188889999"),
        ("(0571)88889999 分机 12", "landline", "057188889999"),
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


@given(
    st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True),
    st.sampled_from(["", "+86", "+86 ", "0086", "86-"]),
    st.lists(st.sampled_from(["", " ", "-", "\u3000"]), min_size=11, max_size=11),
    st.booleans(),
)
def test_a_mobile_number_is_read_however_it_is_written(mobile, country, separators, full_width):
    digits = mobile.translate(str.maketrans("0123456789", "０１２３４５６７８９")) if full_width else mobile
    written = country + "".join(digit + sep for digit, sep in zip(digits, separators, strict=True))
    assert parse_phone(written) == parse_phone(mobile) == Phone("mobile", mobile)


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


def test_an_address_starting_with_a_district_several_cities_have_keeps_it_out_of_the_street():
    """朝阳区 is Beijing's and Changchun's: the code stays unknown, but the street key is the street's alone,
    as another record of the same site writes it with its city."""
    bare, full = parse_address("朝阳区 阜通东大街47-3号"), parse_address("北京市朝阳区阜通东大街47-3号")
    assert bare.division_code is None and full.division_code == "110105"
    assert bare.street_key == full.street_key == "阜通东大街47-3"


@pytest.mark.parametrize(
    ("name", "two_characters", "personal"),
    [
        ("戴娟勇", False, True),
        ("欧阳志远", False, True),
        ("戴蕾", False, False),  # two characters: as likely a bare trade name (华泰)
        ("戴蕾", True, True),
        ("华泰", True, True),  # where bare trade names do not stand (a power account's holder)
        ("王记", True, False),
        ("李家", True, False),
        ("老王", True, False),
        ("沈记面馆", True, False),
        ("王金花店", True, False),
        ("新锐科技", True, False),
        ("王磊1", True, False),
        (None, True, False),
    ],
)
def test_a_persons_name_where_a_business_name_should_stand(name, two_characters, personal):
    assert is_personal_name(name, two_characters=two_characters) is personal


_CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)


@given(st.sampled_from(sorted(surnames().single)), st.text(_CJK, min_size=0, max_size=6))
def test_a_name_with_an_organisation_form_or_industry_is_never_a_persons(surname, middle):
    for ending in ("有限公司", "店", "商行", "科技", "贸易"):
        assert not is_personal_name(surname + middle + ending, two_characters=True)


@given(
    st.sampled_from(sorted(surnames().single)),
    st.text(_CJK, min_size=2, max_size=2).filter(lambda text: fold(text) == text),  # 一 folds to a dash
)
def test_a_surname_and_two_plain_characters_is_a_persons_name(surname, given_name):
    name = surname + given_name
    business_words = (*ORGANISATION_FORMS, *INDUSTRY_WORDS, *BRANCH_MARKERS)
    expected = not (
        given_name.endswith(surnames().not_given)
        or any(word in given_name for word in business_words)
        or name[:2] in surnames().compound
    )
    assert is_personal_name(name) is expected
