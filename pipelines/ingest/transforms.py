"""The ingest job's stages, one named PTransform each; IO only at the edges (read ranges, write Parquet).

Elements are batches, not single messages: a planned range's messages travel as one list and leave the
parse stage as Arrow tables, so Beam's per-element cost is paid per range rather than per message.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipelines.contacts.vault import VAULT_SCHEMA, Vault
from pipelines.contracts import QUARANTINE_SCHEMA, FeedContract
from pipelines.ingest.parse import FeedParser
from pipelines.kafka import OffsetRange, RawMessage, read_range
from pipelines.pii import Tokeniser

QUARANTINE = "quarantine"


def vault_tag(feed: str) -> str:
    """The output of a feed's sealed contacts (vault rows)."""
    return f"vault_{feed}"


class _ReadRangeFn(beam.DoFn):
    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap
        self._read = Metrics.counter("ingest", "messages_read")

    def process(self, offsets: OffsetRange):
        messages = list(read_range(self._bootstrap, offsets))
        self._read.inc(len(messages))
        if messages:
            yield messages


class ReadKafkaRanges(beam.PTransform):
    """Planned offset ranges in, one list of Kafka messages per range out. Reshuffled so that runners spread
    ranges over workers."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__()
        self._bootstrap = bootstrap

    def expand(self, ranges):
        return ranges | "Spread" >> beam.Reshuffle() | "Read" >> beam.ParDo(_ReadRangeFn(self._bootstrap))


class _ParseFn(beam.DoFn):
    """Turns a batch of one feed's messages into a staged table (tagged with the feed) and a quarantine table
    (tagged ``quarantine``). The tokenisation key is a constructor argument: it travels with the pickled DoFn
    to whichever runner executes it (in process, Flink, Dataflow), so no worker needs it in its environment;
    a remote runner's job service and workers see it, and must be trusted as much as the key's owner. The
    vault key (None: seal nothing) travels the same way; its rows are tagged ``vault_<feed>``."""

    def __init__(
        self, contracts: dict[str, FeedContract], run_id: str, key: bytes, vault_key: bytes | None = None
    ) -> None:
        self._contracts = contracts
        self._run_id = run_id
        self._key = key
        self._vault_key = vault_key
        self._staged = Metrics.counter("ingest", "staged")
        self._quarantined = Metrics.counter("ingest", "quarantined")
        self._parsers: dict[str, FeedParser] = {}

    def setup(self) -> None:
        tokeniser = Tokeniser(self._key)
        vault = Vault(self._vault_key) if self._vault_key else None
        self._parsers = {
            feed: FeedParser(c, tokeniser, self._run_id, vault) for feed, c in self._contracts.items()
        }

    def process(self, messages: list[RawMessage]):
        if not messages:
            return
        feed = messages[0].feed
        staged, quarantined, sealed = self._parsers[feed].parse_sealed(messages)
        self._staged.inc(staged.num_rows)
        self._quarantined.inc(quarantined.num_rows)
        if staged.num_rows:
            yield beam.pvalue.TaggedOutput(feed, staged)
        if quarantined.num_rows:
            yield beam.pvalue.TaggedOutput(QUARANTINE, quarantined)
        if sealed.num_rows:
            yield beam.pvalue.TaggedOutput(vault_tag(feed), sealed)


class ParseAndDesensitise(beam.PTransform):
    """Check messages against their feed contract, tokenise personal data, split staged from quarantined.

    Takes batches (lists) of one feed's messages. Returns a ``DoOutputsTuple`` with one output per feed, of
    Arrow tables in the feed's staging schema, plus ``quarantine``, of tables in the quarantine schema.
    ``key`` is the tokenisation key (bytes), resolved by the entry point that builds the pipeline; with a
    ``vault_key``, ``vault_<feed>`` outputs hold the feed's sealed contacts (``contacts.vault``).
    """

    def __init__(
        self, contracts: dict[str, FeedContract], run_id: str, key: bytes, vault_key: bytes | None = None
    ) -> None:
        super().__init__()
        self._contracts = contracts
        self._run_id = run_id
        self._key = key
        self._vault_key = vault_key

    def expand(self, batches):
        parse = _ParseFn(self._contracts, self._run_id, self._key, self._vault_key)
        return batches | beam.ParDo(parse).with_outputs(
            QUARANTINE, *self._contracts, *map(vault_tag, self._contracts)
        )


class WriteStaging(beam.PTransform):
    """Typed Parquet files of one feed, with the schema derived from its contract."""

    def __init__(self, contract: FeedContract, path_prefix: str) -> None:
        super().__init__()
        self._contract = contract
        self._prefix = path_prefix

    def expand(self, tables):
        return tables | beam.io.WriteToParquetBatched(
            self._prefix, self._contract.staging_schema(), file_name_suffix=".parquet"
        )


class WriteQuarantine(beam.PTransform):
    def __init__(self, path_prefix: str) -> None:
        super().__init__()
        self._prefix = path_prefix

    def expand(self, tables):
        return tables | beam.io.WriteToParquetBatched(
            self._prefix, QUARANTINE_SCHEMA, file_name_suffix=".parquet"
        )


class WriteVault(beam.PTransform):
    """One feed's sealed contacts (``contacts.vault.VAULT_SCHEMA``), committed with the run like staging."""

    def __init__(self, path_prefix: str) -> None:
        super().__init__()
        self._prefix = path_prefix

    def expand(self, tables):
        return tables | beam.io.WriteToParquetBatched(self._prefix, VAULT_SCHEMA, file_name_suffix=".parquet")
