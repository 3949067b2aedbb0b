"""The Beam stage that splits staged rows from quarantine, run on Beam's own test pipeline."""

import json

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.contracts import load_contracts
from pipelines.ingest.transforms import QUARANTINE, ParseAndDesensitise
from pipelines.kafka import RawMessage
from tests.conftest import TOKEN_KEY


def _message(feed: str, offset: int, value: bytes, key: bytes | None) -> RawMessage:
    return RawMessage(feed, f"feeds.{feed}", 0, offset, None, key, value)


def _rows(tables, label: str):
    """The stage emits Arrow tables; the checks below look at their rows."""
    return tables | f"{label}Rows" >> beam.FlatMap(lambda table: table.to_pylist())


def test_parse_stage_routes_each_message_to_its_feed_or_quarantine():
    batches = [  # the stage takes one list of messages per planned range: one feed each
        [
            _message("tax", 0, json.dumps({"record_id": "T1", "tax_paid": 12.5}).encode(), b"T1"),
            _message("tax", 1, b"not json", b"T2"),
        ],
        [_message("utility", 0, json.dumps({"record_id": "E1", "kwh": 300}).encode(), b"E1")],
        [
            _message(
                "nucleic_contact", 0, json.dumps({"record_id": "N1", "phone": "13812345678"}).encode(), b"N1"
            )
        ],
    ]
    contracts = load_contracts()
    options = PipelineOptions(["--runner=FnApiRunner"])
    with TestPipeline(options=options) as pipeline:
        outputs = pipeline | beam.Create(batches) | ParseAndDesensitise(contracts, "run-000001", TOKEN_KEY)
        assert_that(
            _rows(outputs["tax"], "Tax") | "TaxIds" >> beam.Map(lambda r: (r["record_id"], r["tax_paid"])),
            equal_to([("T1", 12.5)]),
            label="tax",
        )
        assert_that(
            _rows(outputs["utility"], "Power") | "PowerIds" >> beam.Map(lambda r: (r["record_id"], r["kwh"])),
            equal_to([("E1", 300.0)]),
            label="utility",
        )
        assert_that(
            _rows(outputs["nucleic_contact"], "Nucleic") | "Phones" >> beam.Map(lambda r: r["phone"][:3]),
            equal_to(["t1_"]),
            label="nucleic",
        )
        assert_that(
            _rows(outputs[QUARANTINE], "Quarantine")
            | "Reasons" >> beam.Map(lambda r: (r["feed"], r["offset"], r["reason"])),
            equal_to([("tax", 1, "invalid_json")]),
            label="quarantine",
        )


def test_poisons_in_a_batch_go_to_quarantine_and_the_stage_goes_on():
    """A Kafka timestamp after year 9999, an integer beyond 64 bits, JSON nested past the parser's limit: each
    once failed the whole stage (and every rerun)."""
    year_10000_ms = 253_402_300_800_000
    batches = [
        [
            RawMessage("waybill", "feeds.waybill", 0, 0, year_10000_ms, b"W0", b'{"record_id": "W0"}'),
            RawMessage("waybill", "feeds.waybill", 0, 1, year_10000_ms, b"W1", b"not json"),
            _message("waybill", 2, b'{"record_id": "W2", "parcel_count": 18446744073709551616}', b"W2"),
            _message("waybill", 3, b'{"record_id": "W3", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}", b"W3"),
            _message("waybill", 4, b'{"record_id": "W4", "parcel_count": 2}', b"W4"),
        ]
    ]
    options = PipelineOptions(["--runner=FnApiRunner"])
    with TestPipeline(options=options) as pipeline:
        outputs = (
            pipeline | beam.Create(batches) | ParseAndDesensitise(load_contracts(), "run-000001", TOKEN_KEY)
        )
        assert_that(
            _rows(outputs["waybill"], "Waybill") | "Ids" >> beam.Map(lambda r: r["record_id"]),
            equal_to(["W4"]),
            label="waybill",
        )
        assert_that(
            _rows(outputs[QUARANTINE], "Quarantine")
            | "Reasons" >> beam.Map(lambda r: (r["offset"], r["reason"])),
            equal_to([(0, "out_of_range"), (1, "invalid_json"), (2, "out_of_range"), (3, "too_deep")]),
            label="quarantine",
        )
