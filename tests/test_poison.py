"""No message can stop a feed: every poison is quarantined with its own reason and a useful detail, whatever
the bytes, the JSON values of the contract fields or the Kafka timestamp; and on the real broker the other
feeds and the later messages of the same feed still land."""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka import KafkaProducer

from pipelines.config import IngestSettings, default_topics
from pipelines.contracts import QUARANTINE_SCHEMA, FeedContract, FieldSpec, contract, load_contracts
from pipelines.generate import generate
from pipelines.ingest import parse
from pipelines.ingest.job import run_ingest
from pipelines.ingest.parse import FeedParser
from pipelines.kafka import RawMessage
from pipelines.pii import Tokeniser
from pipelines.store import RunStore
from tests.conftest import TOKEN_KEY

TOKENISER = Tokeniser(b"unit-test-key-0123456789")
YEAR_10000_MS = 253_402_300_800_000
NOW_MS = 1_700_000_000_000
DEEP = "[" * 5000 + "]" * 5000

# (name, feed, key, value, kafka timestamp ms, reason, words the detail must hold)
POISONS = [
    ("invisible record id", "registration", "\u200b".encode(), '{"record_id": "\u200b"}'.encode(),
     NOW_MS, parse.MISSING_RECORD_ID, "record_id"),
    ("integer above int64", "waybill", b"P2", b'{"record_id": "P2", "parcel_count": 18446744073709551616}',
     NOW_MS, parse.OUT_OF_RANGE, "parcel_count: outside the 64-bit integer range"),
    ("Kafka timestamp in year 10000", "tax", b"P3", b'{"record_id": "P3"}',
     YEAR_10000_MS, parse.OUT_OF_RANGE, "Kafka timestamp 253402300800000 ms is after year 9999"),
    ("Kafka timestamp in year 10000, bad payload", "tax", b"P4", b'{"record_id": "P4",',
     YEAR_10000_MS + 1, parse.INVALID_JSON, "line 1"),
    ("NaN", "tax", b"P5", b'{"record_id": "P5", "tax_paid": NaN}',
     NOW_MS, parse.INVALID_JSON, "NaN is not a JSON number"),
    ("Infinity in an unknown field", "tax", b"P6", b'{"record_id": "P6", "note": -Infinity}',
     NOW_MS, parse.INVALID_JSON, "-Infinity is not a JSON number"),
    ("number beyond float range", "utility", b"P7", b'{"record_id": "P7", "kwh": 1e400}',
     NOW_MS, parse.OUT_OF_RANGE, "kwh: beyond the range of a 64-bit float"),
    ("integer beyond float range in a number field", "utility", b"P8",
     b'{"record_id": "P8", "kwh": 1' + b"0" * 400 + b"}",
     NOW_MS, parse.OUT_OF_RANGE, "kwh: beyond the range of a 64-bit float"),
    ("number beyond float range in an unknown field", "utility", b"P9", b'{"record_id": "P9", "x": 1e400}',
     NOW_MS, parse.OUT_OF_RANGE, "unknown field"),
    ("number of 5000 digits", "utility", b"P10", b'{"record_id": "P10", "x": ' + b"9" * 5000 + b"}",
     NOW_MS, parse.OUT_OF_RANGE, "longer than 4300 digits"),
    ("deeply nested JSON", "waybill", b"P11", b'{"record_id": "P11", "x": ' + DEEP.encode() + b"}",
     NOW_MS, parse.TOO_DEEP, "nested deeper"),
    ("deeply nested top level", "waybill", b"P12", DEEP.encode(), NOW_MS, parse.TOO_DEEP, "nested deeper"),
    ("lone surrogate in an unknown field", "waybill", b"P13", b'{"record_id": "P13", "x": "\\ud800"}',
     NOW_MS, parse.NOT_UTF8, "lone surrogate (U+D800)"),
    ("lone surrogate in a key", "waybill", b"P14", b'{"record_id": "P14", "\\udfff": 1}',
     NOW_MS, parse.NOT_UTF8, "lone surrogate (U+DFFF)"),
    ("lone surrogate as record id", "waybill", b"P15", b'{"record_id": "\\udc00"}',
     NOW_MS, parse.NOT_UTF8, "lone surrogate (U+DC00)"),
    ("timestamp before year 1 in UTC", "waybill", b"P16",
     b'{"record_id": "P16", "shipped_at": "0001-01-01T00:00:00+01:00"}',
     NOW_MS, parse.OUT_OF_RANGE, "shipped_at: 0001-01-01T00:00:00+01:00 is outside years 1-9999"),
    ("timestamp after year 9999 in UTC", "nucleic_contact", b"P17",
     b'{"record_id": "P17", "sampled_at": "9999-12-31T23:59:59-01:00"}',
     NOW_MS, parse.OUT_OF_RANGE, "sampled_at"),
    ("two byte-order marks", "registration", b"P18", b'\xef\xbb\xbf\xef\xbb\xbf{"record_id": "P18"}',
     NOW_MS, parse.INVALID_JSON, "byte-order mark"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("feed", "key", "value", "timestamp_ms", "reason", "detail"),
    [p[1:] for p in POISONS],
    ids=[p[0] for p in POISONS],
)
def test_each_poison_is_quarantined_with_its_reason(feed, key, value, timestamp_ms, reason, detail):
    message = RawMessage(feed, f"feeds.{feed}", 0, 7, timestamp_ms, key, value)
    staged, quarantined = FeedParser(contract(feed), TOKENISER, "run-000001").parse_batch([message])
    assert staged.num_rows == 0
    [row] = quarantined.to_pylist()
    assert (row["reason"], row["offset"]) == (reason, 7)
    assert detail in row["detail"]
    _assert_writes(staged, quarantined)


def test_the_edges_of_each_range_are_staged():
    """The range checks refuse only what the staging types cannot hold."""
    values = [
        ("waybill", {"parcel_count": 2**63 - 1, "shipped_at": "9999-12-31T23:59:59.999999+00:00"}),
        ("waybill", {"parcel_count": -(2**63), "shipped_at": "0001-01-01T00:00:00-01:00"}),
        ("utility", {"kwh": 1.7976931348623157e308}),
        ("registration", {"established_on": "0001-01-01", "abnormal_since": "9999-12-31"}),
    ]
    for i, (feed, fields) in enumerate(values):
        message = RawMessage(
            feed,
            f"feeds.{feed}",
            0,
            i,
            YEAR_10000_MS - 1,
            b"E",
            json.dumps({"record_id": "E", **fields}).encode(),
        )
        staged, quarantined = FeedParser(contract(feed), TOKENISER, "run-000001").parse_batch([message])
        assert quarantined.num_rows == 0, quarantined.to_pylist()
        _assert_writes(staged, quarantined)


def test_a_bug_is_an_internal_error_whose_detail_carries_the_message_scrubbed(monkeypatch):
    def broken(spec, value):
        raise RuntimeError(f"cannot handle {value!r} of 11010519491231002X")

    monkeypatch.setitem(parse._CONVERTERS, "period", broken)
    message = RawMessage("tax", "feeds.tax", 0, 1, NOW_MS, b"T1", b'{"record_id": "T1", "period": "2026-01"}')
    _, quarantined = FeedParser(contract("tax"), TOKENISER, "run-000001").parse_batch([message])
    [row] = quarantined.to_pylist()
    assert row["reason"] == parse.INTERNAL_ERROR
    assert row["detail"].startswith("RuntimeError: cannot handle '2026-01' of t1_")
    assert "11010519491231002X" not in row["detail"]


def test_a_failing_scrubber_drops_the_payload_and_the_batch_goes_on(monkeypatch):
    """The quarantine row is where failures end: if even the scrubber fails, no payload in clear, no crash."""

    def broken(self, payload, named=None):
        raise RuntimeError(f"scrubber bug on {payload!r}")

    monkeypatch.setattr(Tokeniser, "scrub_bytes", broken)
    messages = [
        RawMessage(
            "nucleic_contact",
            "feeds.nucleic_contact",
            0,
            0,
            NOW_MS,
            b"N0",
            b'{"record_id": "N0", "id_number": 1',
        ),
        RawMessage("nucleic_contact", "feeds.nucleic_contact", 0, 1, NOW_MS, b"N1", b'{"record_id": "N1"}'),
    ]
    staged, quarantined = FeedParser(contract("nucleic_contact"), TOKENISER, "run-000001").parse_batch(
        messages
    )
    assert staged["record_id"].to_pylist() == ["N1"]
    [row] = quarantined.to_pylist()
    assert (row["reason"], row["raw_payload"], row["key"]) == (parse.INVALID_JSON, b"", None)
    assert "payload or key not kept" in row["detail"]


def test_a_value_arrow_refuses_quarantines_that_message_not_the_batch(monkeypatch):
    """Last resort: if a converter lets through a value Arrow cannot hold, the batch is still written."""
    real = parse._CONVERTERS["integer"]
    monkeypatch.setitem(
        parse._CONVERTERS, "integer", lambda spec, value: 2**64 if value == 13 else real(spec, value)
    )
    messages = [
        RawMessage("waybill", "feeds.waybill", 0, i, NOW_MS, f"W{i}".encode(),
                   json.dumps({"record_id": f"W{i}", "parcel_count": count}).encode())
        for i, count in enumerate([1, 13, 2])
    ]  # fmt: skip
    staged, quarantined = FeedParser(contract("waybill"), TOKENISER, "run-000001").parse_batch(messages)
    assert staged["_offset"].to_pylist() == [0, 2]
    assert [(r["offset"], r["reason"]) for r in quarantined.to_pylist()] == [(1, parse.INTERNAL_ERROR)]
    assert "int" in quarantined["detail"][0].as_py().lower()


# -- Property: arbitrary input never escapes, and everything written can be read back --------------------

EXAMPLES: Counter[str] = Counter()
PROPERTY = settings(
    max_examples=int(os.environ.get("UNITFUSION_POISON_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
# Any code point, surrogates and controls included, with the invisible marks copy-paste leaves.
CHARS = st.characters(codec=None, exclude_categories=()) | st.sampled_from("\u200b\ufeff\u00ad \t\n\x00")
TEXT = st.text(CHARS, max_size=20)
# Literals json.dumps cannot write, spliced into the JSON text in place of a placeholder string.
RAW_LITERALS = [
    "NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400", "9" * 5000, "1" + "0" * 400, "-" + "9" * 30,
    '"\\ud800"', '"\\udfff"', '"\\ud83d\\ude00"', DEEP, "[" * 900 + "]" * 900,
]  # fmt: skip
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)


def _typed(spec: FieldSpec) -> st.SearchStrategy[object]:
    """Values close to what the field's type accepts, at and beyond its edges."""
    years = st.integers(0, 10000)
    if spec.type in ("date", "timestamp", "period"):
        day = st.builds("{:04d}-{:02d}-{:02d}".format, years, st.integers(0, 13), st.integers(0, 32))
        offset = st.sampled_from(["", "Z", "+00:00", "+01:00", "-01:00", "+23:59", "-23:59", "+14:00"])
        moment = st.builds("{}T{:02d}:{:02d}:{:02d}{}".format, day, st.integers(0, 24),
                           st.integers(0, 59), st.integers(0, 60), offset)  # fmt: skip
        period = st.builds("{:04d}-{:02d}".format, years, st.integers(0, 13))
        return (
            day
            | moment
            | period
            | st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
        )
    if spec.type in ("number", "integer"):
        edges = st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 1.7976931348623157e308])
        return st.integers() | st.integers(-(2**70), 2**70) | edges | st.floats() | st.booleans()
    long = st.integers(0, 3).map(lambda n: "长" * ((spec.max_length or 10) + n - 1))
    return TEXT | long


def _payload(fields: dict[str, object], ensure_ascii: bool, raws: list[str]) -> bytes:
    text = json.dumps(fields, ensure_ascii=ensure_ascii)
    for i, literal in enumerate(raws):
        text = text.replace(json.dumps(f"@@raw{i}@@"), literal)
    return text.encode("utf-8", "surrogatepass")  # ensure_ascii=False keeps lone surrogates: invalid UTF-8


def _valid(spec: FieldSpec) -> st.SearchStrategy[object]:
    """Values the field accepts, so that many messages stage and the staged tables get tested too."""
    if spec.type == "date":
        return st.dates().map(date.isoformat)
    if spec.type == "timestamp":
        offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
        moments = st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30), timezones=offsets)
        return moments.map(datetime.isoformat)
    if spec.type == "period":
        return st.builds("{:04d}-{:02d}".format, st.integers(1, 9999), st.integers(1, 12))
    if spec.type == "number":
        return st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**80), 2**80)
    if spec.type == "integer":
        return st.integers(-(2**63), 2**63 - 1)
    return st.text(CHARS.filter(lambda c: not 0xD800 <= ord(c) <= 0xDFFF), min_size=1, max_size=8)


def _value(draw: st.DrawFn, spec: FieldSpec | None, raws: list[str]) -> object:
    """Mostly a value the field accepts; else one near its type's edges, any JSON value, or a placeholder for
    a literal json.dumps cannot write."""
    choice = draw(st.integers(0, 39))  # 0, what Hypothesis tries first and shrinks to, is a good value
    if choice == 39:
        raws.append(draw(st.sampled_from(RAW_LITERALS)))
        return f"@@raw{len(raws) - 1}@@"
    if spec is None or choice == 38:
        return draw(JSON_VALUES)
    return draw(_typed(spec) if choice >= 36 else _valid(spec))


@st.composite
def _messages(draw: st.DrawFn, feed: FeedContract) -> list[RawMessage]:
    """A batch of one feed: JSON objects with arbitrary values for any contract field, or arbitrary bytes;
    keys that match the record id, are missing or are any bytes; any Kafka timestamp."""
    messages = []
    for offset in range(draw(st.integers(1, 4))):
        raws: list[str] = []
        fields = {
            spec.name: _value(draw, spec, raws)
            for spec in feed.fields
            if spec.name == feed.key_field or draw(st.booleans())
        }
        for name in draw(st.lists(TEXT, max_size=2)):
            fields[name] = _value(draw, None, raws)
        key_kind = draw(st.integers(0, 5))
        key = draw(st.binary(max_size=8)) if key_kind == 5 else None
        if key_kind < 4:  # mostly the record id, as producers send it
            key = str(fields.get(feed.key_field)).encode("utf-8", "surrogatepass")
        if draw(st.integers(0, 9)) == 9:
            payload = draw(st.binary(min_size=1, max_size=300))
        else:
            payload = _payload(fields, draw(st.booleans()), raws)
        timestamp = draw(
            st.integers(-1, YEAR_10000_MS - 1)
            | st.none()
            | st.integers(-(2**63), 2**63 - 1)
            | st.integers(YEAR_10000_MS - 2, YEAR_10000_MS + 1)
        )
        messages.append(RawMessage(feed.feed, feed.topic, 0, offset, timestamp, key, payload))
    return messages


FEEDS = sorted(load_contracts())


@PROPERTY
@given(feed=st.sampled_from(FEEDS), data=st.data())
def test_arbitrary_json_values_for_every_contract_field_stage_or_quarantine(feed, data):
    messages = data.draw(_messages(contract(feed)))
    _parse_and_write(contract(feed), messages)
    EXAMPLES["json"] += 1


@PROPERTY
@given(
    feed=st.sampled_from(FEEDS),
    values=st.lists(
        st.tuples(
            st.none() | st.binary(max_size=12), st.binary(min_size=1, max_size=400), st.none() | st.integers()
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_arbitrary_bytes_and_timestamps_stage_or_quarantine(feed, values):
    messages = [
        RawMessage(
            feed,
            f"feeds.{feed}",
            0,
            i,
            min(max(ts, -(2**63)), 2**63 - 1) if ts is not None else None,
            key,
            value,
        )
        for i, (key, value, ts) in enumerate(values)
    ]
    _parse_and_write(contract(feed), messages)
    EXAMPLES["bytes"] += 1


@pytest.fixture(scope="module", autouse=True)
def _report_examples():
    yield
    if EXAMPLES:
        examples = EXAMPLES["json"] + EXAMPLES["bytes"]
        print(f"\nhypothesis examples run: {examples}; {dict(sorted(EXAMPLES.items()))}")


def _parse_and_write(feed: FeedContract, messages: list[RawMessage]) -> None:
    """No exception, each message exactly once (staged or quarantined with a known reason, never a bug),
    and both tables written to Parquet and read back as Python values."""
    staged, quarantined = FeedParser(feed, TOKENISER, "run-000001").parse_batch(messages)
    assert staged.schema.equals(feed.staging_schema())
    assert quarantined.schema.equals(QUARANTINE_SCHEMA)
    offsets = staged["_offset"].to_pylist() + quarantined["offset"].to_pylist()
    assert sorted(offsets) == [m.offset for m in messages]
    rows = quarantined.to_pylist()
    assert {r["reason"] for r in rows} <= set(parse.REASONS), [(r["reason"], r["detail"]) for r in rows]
    assert all(r["detail"] for r in rows)
    _assert_writes(staged, quarantined)
    EXAMPLES["staged rows"] += staged.num_rows
    EXAMPLES.update(f"quarantined {r['reason']}" for r in rows)


def _assert_writes(*tables) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for i, table in enumerate(tables):
            path = Path(tmp) / f"{i}.parquet"
            pq.write_table(table, path)
            assert pq.read_table(path).to_pylist() == table.to_pylist()


# -- On the real broker: poisons do not stop any feed -------------------------------------------------


@pytest.mark.integration
def test_poisons_on_the_broker_are_quarantined_and_every_other_message_lands(broker, topic_prefix, tmp_path):
    sample = tmp_path / "sample"
    generate(units=40, seed=3, out_dir=sample)
    topics = default_topics(topic_prefix)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=False, linger_ms=5)
    good: dict[str, list[bytes]] = {}
    for feed in load_contracts():
        lines = (sample / f"{feed}.jsonl").read_bytes().splitlines()
        good[feed] = [json.loads(line)["record_id"].encode() for line in lines]
        half = len(lines) // 2
        planted = [(key, value, ts) for _, f, key, value, ts, _, _ in POISONS if f == feed]
        sends = [(json.loads(line)["record_id"].encode(), line, None) for line in lines[:half]]
        sends += planted + [(json.loads(line)["record_id"].encode(), line, None) for line in lines[half:]]
        futures = [
            producer.send(topics[feed], key=key, value=value, timestamp_ms=ts, partition=0)
            for key, value, ts in sends
        ]
        producer.flush()
        for future in futures:
            future.get(timeout=30)
    producer.close()

    out = tmp_path / "out"
    result = run_ingest(IngestSettings(bootstrap=broker.bootstrap, out=out, topics=topics), TOKEN_KEY)
    assert result.committed
    store = RunStore(out)
    for feed in load_contracts():
        staged = _concat(store.committed_files(feed))
        assert sorted(staged["record_id"].to_pylist()) == sorted(k.decode() for k in good[feed]), feed
        poisons = sum(1 for p in POISONS if p[1] == feed)
        # The later half sits after the poisons in the one partition: all of it landed.
        assert max(staged["_offset"].to_pylist()) == len(good[feed]) + poisons - 1
    quarantine = _concat(store.committed_files(kind="quarantine")).to_pylist()
    landed = sorted((r["feed"], r["offset"] - len(good[r["feed"]]) // 2, r["reason"]) for r in quarantine)
    expected = []
    for feed in load_contracts():
        planted = [p for p in POISONS if p[1] == feed]
        expected += [(feed, i, p[5]) for i, p in enumerate(planted)]
    assert landed == sorted(expected)
    assert all(r["detail"] and r["reason"] != parse.INTERNAL_ERROR for r in quarantine)


def _concat(files: list[Path]) -> pa.Table:
    return pa.concat_tables([pq.read_table(f) for f in files])
