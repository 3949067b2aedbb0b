"""Parsing messages: typed rows, every quarantine reason, and no clear personal data in either; a batch
parses to Arrow tables holding what each message parses to alone."""

import json
from datetime import UTC, date, datetime

import pytest

from pipelines.contracts import QUARANTINE_SCHEMA, contract, load_contracts
from pipelines.ingest import parse
from pipelines.ingest.parse import FeedParser, parse_message
from pipelines.kafka import RawMessage
from pipelines.malformed import malformed_messages
from pipelines.pii import Tokeniser

TOKENISER = Tokeniser(b"unit-test-key-0123456789")


def _parse(feed: str, value: bytes, key: bytes | None = None):
    message = RawMessage(feed, f"feeds.{feed}", 2, 41, 1_700_000_000_000, key, value)
    return parse_message(contract(feed), message, TOKENISER, "run-000001")


def test_registration_row_is_typed_and_normalised():
    ok, row = _parse(
        "registration",
        json.dumps(
            {
                "record_id": "R1",
                "uscc": "91110000100006485K",
                "name": "  北京\u200b测试科技有限公司 ",
                "established_on": "2015-03-09",
                "registered_capital": 500,
                "updated_at": "2026-10-31T09:12:00+08:00",
                "legal_rep_id": "11010519491231002X",
                "comment": "unknown fields are kept aside",
            },
            ensure_ascii=False,
        ).encode(),
        key=b"R1",
    )
    assert ok
    assert row["name"] == "北京测试科技有限公司"
    assert row["established_on"] == date(2015, 3, 9)
    assert row["registered_capital"] == 500.0
    assert row["updated_at"] == datetime(2026, 10, 31, 1, 12, tzinfo=UTC)
    assert row["uscc_valid"] is True
    assert row["legal_rep_id_valid"] is True
    assert row["legal_rep_id"].startswith("t1_") and "11010519491231002X" not in row["legal_rep_id"]
    assert json.loads(row["_extra"]) == {"comment": "unknown fields are kept aside"}
    assert (row["_topic"], row["_partition"], row["_offset"]) == ("feeds.registration", 2, 41)


def test_missing_and_null_fields_are_allowed():
    ok, row = _parse("tax", b'{"record_id": "T1", "tax_paid": null}', key=b"T1")
    assert ok
    assert row["tax_paid"] is None and row["taxpayer_id"] is None and row["taxpayer_id_valid"] is None


def test_same_person_gets_same_token_across_feeds_and_formats():
    _, nucleic = _parse(
        "nucleic_contact",
        json.dumps(
            {"record_id": "N1", "id_number": "11010519491231002x", "phone": "+86 138-1234-5678"}
        ).encode(),
        key=b"N1",
    )
    _, registration = _parse(
        "registration",
        json.dumps({"record_id": "R1", "legal_rep_id": "110105194912310 02X"}).encode(),
        key=b"R1",
    )
    _, waybill = _parse(
        "waybill", json.dumps({"record_id": "W1", "sender_phone": "13812345678"}).encode(), key=b"W1"
    )
    assert nucleic["id_number"] == registration["legal_rep_id"]
    assert nucleic["phone"] == waybill["sender_phone"]
    assert nucleic["id_number"] != nucleic["phone"]


@pytest.mark.parametrize("feed", sorted(load_contracts()))
def test_every_malformed_kind_is_quarantined_with_its_reason(feed: str):
    samples = malformed_messages(contract(feed))
    assert {reason for _, _, reason in samples} >= {
        parse.INVALID_JSON,
        parse.NOT_UTF8,
        parse.NOT_OBJECT,
        parse.MISSING_RECORD_ID,
        parse.KEY_MISMATCH,
        parse.CONTRACT_VIOLATION,
        parse.OVERSIZE,
        parse.TOO_DEEP,
        parse.OUT_OF_RANGE,
    }
    for key, value, reason in samples:
        ok, row = _parse(feed, value, key=key)
        assert not ok
        assert row["reason"] == reason, row["detail"]
        assert row["detail"]
        assert b"11010519491231002X" not in row["raw_payload"]
        assert row["payload_bytes"] == len(value)


def test_wrong_types_and_formats_name_the_field():
    ok, row = _parse(
        "utility", json.dumps({"record_id": "E1", "kwh": "12.5", "period": "2026-13"}).encode(), key=b"E1"
    )
    assert not ok
    assert row["reason"] == parse.CONTRACT_VIOLATION  # the first problem in contract order: period
    assert "kwh" in row["detail"] and "period" in row["detail"]


def test_timestamp_without_offset_breaks_the_contract():
    ok, row = _parse("waybill", b'{"record_id": "W1", "shipped_at": "2026-10-01T08:00:00"}', key=b"W1")
    assert not ok and row["reason"] == parse.CONTRACT_VIOLATION and "shipped_at" in row["detail"]


def test_boolean_is_not_a_number_and_integers_must_be_whole():
    assert (
        _parse("waybill", b'{"record_id": "W1", "parcel_count": true}', key=b"W1")[1]["reason"]
        == "wrong_type"
    )
    assert (
        _parse("waybill", b'{"record_id": "W1", "parcel_count": 2.5}', key=b"W1")[1]["reason"] == "wrong_type"
    )
    ok, row = _parse("waybill", b'{"record_id": "W1", "parcel_count": 3.0}', key=b"W1")
    assert ok and row["parcel_count"] == 3


def test_empty_payload_and_utf8_bom():
    ok, row = _parse("tax", b"", key=b"T1")
    assert not ok and row["reason"] == parse.EMPTY_PAYLOAD
    ok, row = _parse("tax", '\ufeff{"record_id": "T1"}'.encode(), key=b"T1")
    assert ok and row["record_id"] == "T1"


def test_unparseable_payload_is_scrubbed_of_id_numbers_and_mobiles():
    value = b'{"record_id": "N9", "id_number": "11010519491231002X", "phone": "138 1234 5678", '
    ok, row = _parse("nucleic_contact", value, key=b"N9")
    assert not ok and row["reason"] == parse.INVALID_JSON
    assert b"11010519491231002X" not in row["raw_payload"]
    assert b"138 1234 5678" not in row["raw_payload"]
    assert row["raw_payload"].count(b"t1_") == 2


def test_every_contract_names_its_department_in_chinese_for_staff_facing_files():
    departments = {feed: c.department for feed, c in load_contracts().items()}
    assert departments["tax"] == "税务"
    assert all(name != feed and not name.isascii() for feed, name in departments.items()), departments


def _batch(feed: str) -> list[RawMessage]:
    """Good, bad, unknown-field and timestamp-less messages of one feed, as one read batch."""
    payloads = [
        {
            "record_id": "R1",
            "uscc": "91110000100006485K",
            "name": " 北京\u200b测试 ",
            "updated_at": "2026-10-31T09:12:00+08:00",
        },
        {
            "record_id": "R2",
            "legal_rep_id": "11010519491231002X",
            "established_on": "2015-03-09",
            "note": "138 1234 5678",
        },
        {"record_id": "R3", "established_on": "yesterday"},
        {"record_id": "R4", "registered_capital": 12},
    ]
    messages = [
        RawMessage(
            feed,
            f"feeds.{feed}",
            1,
            10 + i,
            timestamp,
            p["record_id"].encode(),
            json.dumps(p, ensure_ascii=False).encode(),
        )
        for i, (p, timestamp) in enumerate(zip(payloads, [1_700_000_000_123, -1, None, 0], strict=True))
    ]
    return [*messages, RawMessage(feed, f"feeds.{feed}", 1, 20, 5, b"R5", b"not json")]


def test_a_batch_parses_into_arrow_tables_holding_the_rows_of_single_messages():
    messages = _batch("registration")
    staged, quarantined = FeedParser(contract("registration"), TOKENISER, "run-000001").parse_batch(messages)
    assert staged.schema.equals(contract("registration").staging_schema())
    assert quarantined.schema.equals(QUARANTINE_SCHEMA)
    one_by_one = [parse_message(contract("registration"), m, TOKENISER, "run-000001") for m in messages]
    assert staged.to_pylist() == [row for ok, row in one_by_one if ok]
    assert quarantined.to_pylist() == [row for ok, row in one_by_one if not ok]
    assert staged.num_rows == 3 and [r["reason"] for r in quarantined.to_pylist()] == [
        parse.CONTRACT_VIOLATION,
        parse.INVALID_JSON,
    ]
    assert staged["_kafka_timestamp"].to_pylist()[:2] == [
        datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC),
        None,
    ]


def test_a_batch_of_another_feed_is_refused():
    with pytest.raises(ValueError, match="another feed"):
        FeedParser(contract("tax"), TOKENISER, "run-000001").parse_batch(_batch("registration"))


def test_a_bug_in_parsing_quarantines_the_message_and_the_batch_goes_on(monkeypatch: pytest.MonkeyPatch):
    def broken_check(code: str) -> bool:
        raise RuntimeError("a bug")

    monkeypatch.setitem(parse._CHECKS, "uscc", broken_check)
    parser = FeedParser(contract("registration"), TOKENISER, "run-000001")
    staged, quarantined = parser.parse_batch(_batch("registration"))
    assert staged["record_id"].to_pylist() == ["R2", "R4"]
    internal = [r for r in quarantined.to_pylist() if r["reason"] == parse.INTERNAL_ERROR]
    assert [(r["offset"], r["detail"]) for r in internal] == [(10, "RuntimeError: a bug")]


def test_values_the_staging_schema_cannot_hold_are_quarantined_not_a_failed_batch():
    invisible_id = '{"record_id": "\u200b\u200b"}'.encode()  # no key to compare: blank once normalised
    too_big = json.dumps({"record_id": "W1", "parcel_count": 2**70}).encode()
    batch = [
        RawMessage("waybill", "feeds.waybill", 0, 1, None, None, invisible_id),
        RawMessage("waybill", "feeds.waybill", 0, 2, None, b"W1", too_big),
    ]
    staged, quarantined = FeedParser(contract("waybill"), TOKENISER, "run-000001").parse_batch(batch)
    assert staged.num_rows == 0
    assert [(r["reason"], r["detail"]) for r in quarantined.to_pylist()] == [
        (parse.MISSING_RECORD_ID, "no record_id"),
        (parse.OUT_OF_RANGE, "parcel_count: outside the 64-bit integer range"),
    ]
