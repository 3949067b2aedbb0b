"""The two departments added by configuration (platform merchants, bookkeeping clients): their contracts,
mappings and suites load and agree, and the records the generator makes for them pass their suites as the
import stages them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.config import IngestSettings, default_topics
from pipelines.contracts import contract, load_contracts
from pipelines.generate import generate
from pipelines.generate.added import ADDED_FEEDS
from pipelines.ingest.job import run_ingest
from pipelines.ingest.parse import RawMessage, parse_message
from pipelines.kafka import jsonl_messages, produce_messages
from pipelines.mappings import UNIT, load_mappings, unit_feeds
from pipelines.pii import Tokeniser
from pipelines.quality.suites import check_suite, load_suite
from pipelines.quality.validate import validate_feed
from pipelines.store import RunStore

PLATFORM, BOOKKEEPING = ADDED_FEEDS
# Figures the warning rules read as tax, power and parcel figures: a new department's must be named otherwise.
FIGURES_OF_THE_RULES = {"sales", "tax_paid", "kwh", "parcels"}
KEY = b"new-feeds-config-test-key-012345"
NOW = datetime(2026, 11, 30, tzinfo=UTC)


def test_both_feeds_are_unit_feeds_whose_mappings_load_against_their_contracts():
    mappings = load_mappings()
    assert set(ADDED_FEEDS) <= set(mappings) and set(ADDED_FEEDS) <= set(unit_feeds())
    assert set(mappings) == set(load_contracts())
    platform, bookkeeping = mappings[PLATFORM], mappings[BOOKKEEPING]
    assert platform.kind == bookkeeping.kind == UNIT and not platform.anchor and not bookkeeping.anchor
    assert platform.roles == {
        "uscc": "uscc",
        "name": "shop_name",
        "address": "address",
        "phone": "phone",
        "legal_rep_name": "operator_name",
        "period": "period",
        "moment": "updated_at",
    }
    assert platform.figures == {"orders": "orders", "turnover": "sales"}
    assert platform.figure_info["orders"].active == "platform_active"  # a month with orders is an active one
    # a shop is its platform and shop id; a month that lost its shop id stands alone (joins no other such month)
    assert platform.entity.key_fields == ("platform", "shop_id", "record_id")
    assert platform.entity.key_rule == "all_else_record" and platform.entity.alone_needs_volume == "orders"
    assert platform.entity.code_from_any_record and platform.entity.namesakes_apart  # shops share names
    assert platform.ask_when_unregistered and bookkeeping.ask_when_unregistered  # units nobody else saw
    assert bookkeeping.roles == {
        "uscc": "uscc",
        "name": "client_name",
        "address": "address",
        "phone": "phone",
        "moment": "updated_at",
    }
    assert not bookkeeping.figures and bookkeeping.entity.key_rule == "code_else_text"


def test_new_figures_are_not_read_as_tax_power_or_parcels():
    for feed in ADDED_FEEDS:
        assert not set(load_mappings()[feed].figures) & FIGURES_OF_THE_RULES, feed


def test_the_person_fields_are_personal_and_the_mapped_person_is_the_operator():
    for feed in ADDED_FEEDS:
        spec = contract(feed)
        persons = [f.name for f in spec.fields if f.kind == "person_name"]
        assert persons and all(f.personal for f in spec.fields if f.kind == "person_name"), feed
        shown = dict(load_mappings()[feed].profile)
        assert all("令牌" in shown[name] for name in persons if name in shown)  # shown only as a token
    assert load_mappings()[PLATFORM].field("legal_rep_name") == "operator_name"
    assert load_mappings()[BOOKKEEPING].field("legal_rep_name") is None  # a clerk is not the legal rep


@pytest.mark.parametrize("feed", ADDED_FEEDS)
def test_suites_fit_their_contracts_and_name_every_column(feed):
    assert check_suite(feed) == []
    suite = load_suite(feed)
    columns = next(e for e in suite["expectations"] if e["type"] == "expect_table_columns_to_match_set")
    assert set(columns["kwargs"]["column_set"]) == set(contract(feed).staging_schema().names)
    guarded = {
        e["kwargs"]["column"]
        for e in suite["expectations"]
        if e["type"] == "expect_column_values_to_match_regex" and e["meta"]["severity"] == "block"
        and e["kwargs"]["regex"].startswith("^t1_")
    }  # fmt: skip
    assert guarded == {f.name for f in contract(feed).personal_fields}  # clear personal data blocks


def _staged(sample: Path, feed: str) -> pa.Table:
    """The generated records as the import stages them (personal fields tokenised)."""
    tokeniser, spec, rows = Tokeniser(KEY), contract(feed), []
    for offset, line in enumerate((sample / f"{feed}.jsonl").read_bytes().splitlines()):
        record_id = json.loads(line)["record_id"].encode()
        ok, row = parse_message(
            spec, RawMessage(feed, spec.topic, 0, offset, None, record_id, line), tokeniser, "r1"
        )
        assert ok, row["detail"]
        rows.append(row)
    schema = spec.staging_schema()
    full = [{**dict.fromkeys(schema.names), **row, "_topic": spec.topic, "_partition": 0} for row in rows]
    return pa.Table.from_pylist(full, schema=schema)


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    found = {}
    for difficulty in ("default", "hard"):
        found[difficulty] = tmp_path_factory.mktemp(difficulty)
        generate(units=1200, seed=21, out_dir=found[difficulty], difficulty=difficulty)
    return found


@pytest.mark.parametrize("feed", ADDED_FEEDS)
def test_generated_records_pass_their_suite(samples, feed):
    for difficulty, sample in samples.items():
        quality = validate_feed(feed, _staged(sample, feed), None, now=NOW)
        assert quality.rows > 50
        assert quality.ok, (difficulty, [o.message for o in quality.failures])
        if difficulty == "default":  # the default sample is a healthy extract: not even a warning
            assert not quality.failures, [o.message for o in quality.failures]


def test_a_clear_operator_in_staging_blocks(samples):
    table = _staged(samples["default"], PLATFORM)
    leaked = table.set_column(
        table.schema.get_field_index("operator_name"),
        "operator_name",
        pa.array(["王小明"] * len(table), pa.string()),
    )
    assert not validate_feed(PLATFORM, leaked, None, now=NOW).ok


# -- through a real broker ---------------------------------------------------------------------------------


def test_the_import_stages_the_new_feeds_from_kafka_with_persons_as_tokens(broker, topic_prefix, tmp_path):
    """Generated records of the two feeds go through the broker and the ingest job: all staged, none
    quarantined, their suites pass, and no clear operator or contact person reaches staging."""
    sample, out = tmp_path / "sample", tmp_path / "store"
    generate(units=300, seed=3, out_dir=sample)
    topics = default_topics(topic_prefix)
    produced = {
        feed: produce_messages(broker.bootstrap, topics[feed], jsonl_messages(sample / f"{feed}.jsonl"))
        for feed in ADDED_FEEDS
    }
    result = run_ingest(
        IngestSettings(bootstrap=broker.bootstrap, out=out, topics={f: topics[f] for f in ADDED_FEEDS}), KEY
    )
    assert not result.blocked
    store = RunStore(out)
    assert sum(pq.read_metadata(f).num_rows for f in store.committed_files(kind="quarantine")) == 0
    tokeniser = Tokeniser(KEY)
    for feed in ADDED_FEEDS:
        rows = pa.concat_tables([pq.read_table(f) for f in store.committed_files(feed)]).to_pylist()
        assert len(rows) == produced[feed] > 0
        clear = [
            json.loads(line) for line in (sample / f"{feed}.jsonl").read_text(encoding="utf-8").splitlines()
        ]
        by_id = {row["record_id"]: row for row in clear}
        kinds = {f.name: f.kind for f in contract(feed).personal_fields}
        assert {"operator_name", "contact_person"} & set(kinds), feed
        for name in kinds:
            for row in rows:
                written = by_id[row["record_id"]].get(name)
                assert row[name] == (tokeniser.token(kinds[name], written) if written else None), name
