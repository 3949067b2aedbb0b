"""The Beam stage that splits staged rows from quarantine, run on Beam's own test pipeline."""

import json

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.contracts import load_contracts
from pipelines.ingest.transforms import QUARANTINE, ParseAndDesensitise
from pipelines.kafka import RawMessage


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
        outputs = pipeline | beam.Create(batches) | ParseAndDesensitise(contracts, "run-000001")
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
