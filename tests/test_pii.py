"""The scrubber: ID numbers and mobiles found by their shape however they are written (a reviewed corpus and
properties), business codes, landlines and amounts kept; names of persons in quarantined payloads and of
private waybill senders tokenised; free text, extra fields and record ids scrubbed at import."""

import json
import re
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.contracts import contract
from pipelines.ingest.parse import parse_message
from pipelines.kafka import RawMessage
from pipelines.pii import Tokeniser, is_private_name, is_token
from pipelines.standardise.codes import id_check_char

TOKENISER = Tokeniser(b"unit-test-key-0123456789")
CORPUS = tomllib.loads((Path(__file__).parent / "fixtures" / "pii_shapes.toml").read_text(encoding="utf-8"))
_PLACEHOLDER_RE = re.compile(r"\{(id|phone):([0-9X]+)\}")
_KINDS = {"id": "id_number", "phone": "phone"}


def _expected(template: str) -> str:
    return _PLACEHOLDER_RE.sub(lambda m: TOKENISER.token(_KINDS[m[1]], m[2]) or "", template)


@pytest.mark.parametrize("case", CORPUS["positive"], ids=lambda case: case["why"])
def test_corpus_shapes_are_tokenised(case: dict[str, str]):
    assert TOKENISER.scrub(case["text"]) == _expected(case["scrubbed"])


@pytest.mark.parametrize("case", CORPUS["negative"], ids=lambda case: case["why"])
def test_corpus_business_data_is_kept(case: dict[str, str]):
    assert TOKENISER.scrub(case["text"]) == case["text"]


def test_a_number_found_in_text_gets_the_token_of_the_personal_field():
    assert TOKENISER.scrub("+86 138.1234.5678") == TOKENISER.token("phone", "13812345678")
    assert TOKENISER.scrub("１１０１０５１９４９１２３１００２ｘ") == TOKENISER.token(
        "id_number", "11010519491231002X"
    )
    # The personal field itself normalises full-width digits too.
    assert TOKENISER.token("id_number", "１１０１０５１９４９１２３１００２Ｘ") == TOKENISER.token(
        "id_number", "11010519491231002X"
    )


# -- properties ---------------------------------------------------------------------------------------------

# Text around the numbers: Chinese, Latin letters, punctuation and separators, but no digits.
_AROUND = st.text(
    alphabet=st.sampled_from(list("杭州市西湖区路号公司张伟abcXYZ ,.;:-/()（）：，、\n")), max_size=12
)
_FULL_WIDTH = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")
_SEPARATORS = st.sampled_from(["", " ", "-", ".", "\u3000", "－"])


@st.composite
def _id_numbers(draw) -> str:
    province = draw(st.sampled_from(["11", "31", "33", "44", "51", "65", "81"]))
    rest = draw(st.from_regex(r"[0-9]{4}", fullmatch=True))
    year, month, day = draw(st.integers(1930, 2020)), draw(st.integers(1, 12)), draw(st.integers(1, 28))
    body = f"{province}{rest}{year:04d}{month:02d}{day:02d}" + draw(
        st.from_regex(r"[0-9]{3}", fullmatch=True)
    )
    check = id_check_char(body) if draw(st.booleans()) else draw(st.sampled_from("0123456789X"))
    return body + check


@st.composite
def _written(draw, number: str, cuts: list[int]) -> str:
    """A number as someone typed it: separators at some of the cut points, maybe full-width."""
    pieces, last = [], 0
    for cut in sorted(set(cuts)):
        pieces.append(number[last:cut])
        last = cut
    pieces.append(number[last:])
    separator = draw(_SEPARATORS)
    text = separator.join(pieces)
    return text.translate(_FULL_WIDTH) if draw(st.booleans()) else text


@st.composite
def _written_id(draw) -> tuple[str, str]:
    number = draw(_id_numbers())
    cuts = draw(st.lists(st.integers(1, 17), max_size=4))
    return number, draw(_written(number, cuts))


@st.composite
def _written_mobile(draw) -> tuple[str, str]:
    number = draw(st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True))
    cuts = draw(st.sampled_from([[], [3, 7], [3], [7]]))
    text = draw(_written(number, cuts))
    prefix = draw(st.sampled_from(["", "+86 ", "+86", "0086-", "86 "]))
    return number, prefix + text


def _digits(text: str) -> str:
    return "".join(
        ch for ch in text.translate(str.maketrans("０１２３４５６７８９", "0123456789")) if ch.isdigit()
    )


@settings(max_examples=300, deadline=None)
@given(before=_AROUND, after=_AROUND, found=st.one_of(_written_id(), _written_mobile()))
def test_no_id_number_or_mobile_survives_however_written(before: str, after: str, found: tuple[str, str]):
    number, written = found
    kind = "id_number" if len(number) == 18 else "phone"
    scrubbed = TOKENISER.scrub(before + written + after)
    assert number[:17] not in _digits(scrubbed)
    assert TOKENISER.token(kind, number) in scrubbed


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_scrubbing_is_idempotent(text: str):
    once = TOKENISER.scrub(text)
    assert TOKENISER.scrub(once) == once


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60).filter(lambda t: len(_digits(t)) < 11))
def test_text_with_fewer_than_eleven_digits_is_unchanged(text: str):
    assert TOKENISER.scrub(text) == text


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80))
def test_raw_bytes_outside_a_shape_are_kept_byte_for_byte(payload: bytes):
    if len(_digits(payload.decode("utf-8", "replace"))) < 11:
        assert TOKENISER.scrub_bytes(payload) == payload


# -- names --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["张伟", "王 伟", "歐陽娜娜", "Li Wei"])
def test_a_name_without_business_marker_is_a_persons(name: str):
    assert is_private_name(name)


@pytest.mark.parametrize(
    "name",
    ["杭州鑫达贸易有限公司", "鑫达店", "鑫达客服", "老王水果铺", "城西五金廠", "ACME Trading Co., Ltd"],
)
def test_a_name_with_a_business_marker_is_a_business(name: str):
    assert not is_private_name(name)


def test_named_fields_are_tokenised_in_payloads_even_cut_off():
    named = {"person_name": "person_name", "sender_name": "person_name"}
    cut = '{"record_id": "N1", "person_name": "欧阳\\u5a1c娜", "sender_name": "司马相'.encode()
    scrubbed = TOKENISER.scrub_bytes(cut, named)
    assert "欧阳".encode() not in scrubbed and "司马".encode() not in scrubbed
    assert TOKENISER.token("person_name", "欧阳娜娜").encode() in scrubbed
    assert TOKENISER.scrub_bytes(scrubbed, named) == scrubbed  # a token is not tokenised again


def test_a_gb18030_payload_is_scrubbed_and_stays_gb18030():
    payload = '{"person_name": "张伟", "note": "电话 138 1234 5678"}'.encode("gb18030")
    scrubbed = TOKENISER.scrub_bytes(payload, {"person_name": "person_name"}).decode("gb18030")
    assert "张伟" not in scrubbed and "1234" not in scrubbed and '"note": "电话 t1_' in scrubbed


# -- at import ----------------------------------------------------------------------------------------------


def _parse(feed: str, obj: dict | bytes, key: str | None = None):
    value = obj if isinstance(obj, bytes) else json.dumps(obj, ensure_ascii=False).encode()
    message = RawMessage(feed, f"feeds.{feed}", 0, 7, 1_700_000_000_000, key.encode() if key else None, value)
    return parse_message(contract(feed), message, TOKENISER, "run-000001")


def test_free_text_fields_are_scrubbed_and_codes_kept():
    ok, row = _parse(
        "nucleic_contact",
        {"record_id": "N1", "work_unit": "某某公司 330106198807154323", "address": "文三路1号 139.8765.4321"},
        key="N1",
    )
    assert ok
    assert row["work_unit"] == "某某公司 " + TOKENISER.token("id_number", "330106198807154323")
    assert row["address"] == "文三路1号 " + TOKENISER.token("phone", "13987654321")
    # A 15-digit registration number has the shape of an old ID number: a code field keeps it.
    ok, row = _parse(
        "registration",
        {
            "record_id": "R1",
            "reg_no": "440106600123456",
            "division_code": "330106001000",
            "phone": "13812345678",
        },
        key="R1",
    )
    assert ok and row["reg_no"] == "440106600123456" and row["division_code"] == "330106001000"
    assert row["phone"] == "13812345678"  # a business's own contact phone: public, kept (see the contract)


def test_an_id_number_as_record_id_is_tokenised():
    ok, row = _parse("tax", {"record_id": "440106199001011235", "tax_paid": 1.0}, key="440106199001011235")
    assert ok and row["record_id"] == TOKENISER.token("id_number", "440106199001011235")


def test_extra_fields_are_scrubbed_of_every_shape():
    ok, row = _parse(
        "waybill",
        {
            "record_id": "W1",
            "note": "11010519491231002xabc / 110105 1949 1231 002X / 138.1234.5678 / １３９８７６５４３２１",
        },
        key="W1",
    )
    assert ok
    extra = json.loads(row["_extra"])["note"]
    assert len(_digits(extra.replace("t1_", ""))) < len(_digits(extra))  # only tokens' hex digits left
    assert "1949" not in extra and "5678" not in extra and "４３２１" not in extra


def test_private_waybill_senders_name_is_tokenised_a_shops_kept():
    ok, row = _parse(
        "waybill", {"record_id": "W1", "sender_name": "司马 相如", "sender_company": None}, key="W1"
    )
    assert ok and row["sender_name"] == TOKENISER.token("person_name", "司马相如")
    ok, row = _parse("waybill", {"record_id": "W2", "sender_name": "鑫达水果店"}, key="W2")
    assert ok and row["sender_name"] == "鑫达水果店"


def test_a_persons_name_does_not_survive_in_a_quarantined_payload():
    cut = '{"record_id": "N9", "person_name": "诸葛青云", "work_unit": "公司 330106198807154323"'.encode()
    ok, row = _parse("nucleic_contact", cut, key="N9")
    assert not ok and row["reason"] == "invalid_json"
    assert "诸葛".encode() not in row["raw_payload"] and b"330106198807154323" not in row["raw_payload"]
    ok, row = _parse(
        "waybill", {"record_id": "W9", "sender_name": "司马相如", "parcel_count": "两"}, key="W9"
    )
    assert not ok and "司马".encode() not in row["raw_payload"]
    ok, row = _parse("waybill", {"record_id": "W8", "sender_name": ["司马相如"], "parcel_count": 1}, key="W8")
    assert not ok and "司马".encode() not in row["raw_payload"]


def test_tokens_are_tokens():
    token = TOKENISER.token("phone", "13812345678")
    assert token and is_token(token) and not is_token(token + "0") and not is_token("13812345678")
