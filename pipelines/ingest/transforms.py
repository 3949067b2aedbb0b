"""The ingest job's stages, one named PTransform each; IO only at the edges (read ranges, write Parquet)."""

from __future__ import annotations

import logging

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipelines.contracts import QUARANTINE_SCHEMA, FeedContract
from pipelines.ingest.parse import parse_message, quarantine_row
from pipelines.kafka import OffsetRange, RawMessage, read_range
from pipelines.pii import Tokeniser, load_key

QUARANTINE = "quarantine"
INTERNAL_ERROR = "internal_error"
log = logging.getLogger(__name__)


class _ReadRangeFn(beam.DoFn):
    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap
        self._read = Metrics.counter("ingest", "messages_read")

    def process(self, offsets: OffsetRange):
        for message in read_range(self._bootstrap, offsets):
            self._read.inc()
            yield message


class ReadKafkaRanges(beam.PTransform):
    """Planned offset ranges in, Kafka messages out. Reshuffled so that runners spread ranges over workers."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__()
        self._bootstrap = bootstrap

    def expand(self, ranges):
        return ranges | "Spread" >> beam.Reshuffle() | "Read" >> beam.ParDo(_ReadRangeFn(self._bootstrap))


class _ParseFn(beam.DoFn):
    """Tags each message with its feed (staged) or ``quarantine``. The key is read from the environment on
    the worker, so it never travels inside the pipeline graph."""

    def __init__(self, contracts: dict[str, FeedContract], run_id: str) -> None:
        self._contracts = contracts
        self._run_id = run_id
        self._staged = Metrics.counter("ingest", "staged")
        self._quarantined = Metrics.counter("ingest", "quarantined")
        self._tokeniser: Tokeniser | None = None

    def setup(self) -> None:
        self._tokeniser = Tokeniser(load_key())

    def process(self, message: RawMessage):
        assert self._tokeniser is not None
        contract = self._contracts[message.feed]
        try:
            staged, row = parse_message(contract, message, self._tokeniser, self._run_id)
        except Exception as error:  # a bug in parsing must not lose the message either
            log.exception("parsing %s[%d]@%d failed", message.topic, message.partition, message.offset)
            staged = False
            row = quarantine_row(
                contract, message, INTERNAL_ERROR, type(error).__name__, self._tokeniser, self._run_id
            )
        if staged:
            self._staged.inc()
            yield beam.pvalue.TaggedOutput(message.feed, row)
        else:
            self._quarantined.inc()
            yield beam.pvalue.TaggedOutput(QUARANTINE, row)


class ParseAndDesensitise(beam.PTransform):
    """Check messages against their feed contract, tokenise personal data, split staged from quarantined.

    Returns a ``DoOutputsTuple`` with one output per feed plus ``quarantine``.
    """

    def __init__(self, contracts: dict[str, FeedContract], run_id: str) -> None:
        super().__init__()
        self._contracts = contracts
        self._run_id = run_id

    def expand(self, messages):
        return messages | beam.ParDo(_ParseFn(self._contracts, self._run_id)).with_outputs(
            QUARANTINE, *self._contracts
        )


class WriteStaging(beam.PTransform):
    """Typed Parquet files of one feed, with the schema derived from its contract."""

    def __init__(self, contract: FeedContract, path_prefix: str) -> None:
        super().__init__()
        self._contract = contract
        self._prefix = path_prefix

    def expand(self, rows):
        return rows | beam.io.WriteToParquet(
            self._prefix, self._contract.staging_schema(), file_name_suffix=".parquet"
        )


class WriteQuarantine(beam.PTransform):
    def __init__(self, path_prefix: str) -> None:
        super().__init__()
        self._prefix = path_prefix

    def expand(self, rows):
        return rows | beam.io.WriteToParquet(self._prefix, QUARANTINE_SCHEMA, file_name_suffix=".parquet")
