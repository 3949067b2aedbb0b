"""Malformed messages of every kind the ingest must quarantine, each with the reason it should get.

The demo mixes them into the sample feeds so the quarantine shows up, and the integration tests use them to
check that nothing is lost. One list, so a new reason code gets a sample in both places.
"""

from __future__ import annotations

import json

from pipelines.contracts import FeedContract
from pipelines.ingest import parse


def malformed_messages(contract: FeedContract, tag: str = "bad") -> list[tuple[bytes | None, bytes, str]]:
    """``(key, value, expected_reason)`` for one feed; record ids start with ``tag`` to stay unique."""
    rid = f"{tag}-{contract.feed}"
    numeric = next((f.name for f in contract.fields if f.type in ("number", "integer")), None)
    timed = next(f.name for f in contract.fields if f.type in ("timestamp", "date", "period"))
    personal = next((f for f in contract.fields if f.personal or f.kind == "id_number"), None)

    def obj(record_id: str, **fields: object) -> bytes:
        return json.dumps({"record_id": record_id, **fields}, ensure_ascii=False).encode()

    samples: list[tuple[bytes | None, bytes, str]] = [
        (f"{rid}-1".encode(), b'{"record_id": "' + f"{rid}-1".encode() + b'", "name": ', parse.INVALID_JSON),
        (f"{rid}-2".encode(), '{"record_id": "x", "name": "杭州"}'.encode("gb18030"), parse.NOT_UTF8),
        (f"{rid}-3".encode(), b'["a", "list"]', parse.NOT_OBJECT),
        (f"{rid}-4".encode(), json.dumps({"note": "no id"}).encode(), parse.MISSING_RECORD_ID),
        (f"{rid}-5".encode(), obj(f"{rid}-5-other"), parse.KEY_MISMATCH),
        (f"{rid}-6".encode(), obj(f"{rid}-6", **{timed: "yesterday"}), parse.CONTRACT_VIOLATION),
        (
            f"{rid}-7".encode(),
            obj(f"{rid}-7", padding="长" * (contract.max_message_bytes // 3 + 10)),
            parse.OVERSIZE,
        ),
    ]
    if numeric:
        samples.append((f"{rid}-8".encode(), obj(f"{rid}-8", **{numeric: "很多"}), parse.WRONG_TYPE))
    if personal is not None:  # a parseable but broken message that carries personal data
        samples.append(
            (
                f"{rid}-9".encode(),
                obj(f"{rid}-9", **{personal.name: "11010519491231002X", timed: 20240101}),
                parse.WRONG_TYPE,
            )
        )
    return samples + _poison(contract, rid)


def _poison(contract: FeedContract, rid: str) -> list[tuple[bytes | None, bytes, str]]:
    """Messages that once stopped every feed (each crashed the run, and every rerun): values the staging
    types cannot hold, or that Python's parser fails on."""
    text = next(f.name for f in contract.fields if f.type == "string" and f.name != contract.key_field)
    numeric = next((f.name for f in contract.fields if f.type in ("number", "integer")), None)
    integer = next((f.name for f in contract.fields if f.type == "integer"), None)
    timestamp = next((f.name for f in contract.fields if f.type == "timestamp"), None)

    def raw(n: int, body: str) -> tuple[bytes, bytes]:
        """Key and JSON text written by hand: json.dumps cannot write these."""
        return f"{rid}-p{n}".encode(), f'{{"record_id": "{rid}-p{n}", {body}}}'.encode()

    samples: list[tuple[bytes | None, bytes, str]] = [
        # Only invisible characters: a record id before normalising, nothing after it.
        ("\u200b".encode(), '{"record_id": "\u200b"}'.encode(), parse.MISSING_RECORD_ID),
        (*raw(1, '"nested": ' + "[" * 5000 + "]" * 5000), parse.TOO_DEEP),
        (*raw(2, f'"{text}": "\\ud800"'), parse.NOT_UTF8),  # a lone surrogate escape
        (*raw(3, '"count": ' + "9" * 5000), parse.OUT_OF_RANGE),  # beyond Python's int parsing limit
    ]
    if integer:
        samples.append((*raw(4, f'"{integer}": {2**64}'), parse.OUT_OF_RANGE))
    if numeric:
        samples.append((*raw(5, f'"{numeric}": 1e400'), parse.OUT_OF_RANGE))
        samples.append((*raw(6, f'"{numeric}": NaN'), parse.INVALID_JSON))
    if timestamp:
        samples.append((*raw(7, f'"{timestamp}": "9999-12-31T23:59:59-01:00"'), parse.OUT_OF_RANGE))
    return samples


# 10000-01-01T00:00:00Z: a producer clock this far off makes a timestamp no datetime holds.
FAR_FUTURE_MS = 253_402_300_800_000


def far_future_message(contract: FeedContract, tag: str = "bad") -> tuple[bytes, bytes, int, str]:
    """``(key, value, timestamp_ms, expected_reason)``: a good payload whose Kafka timestamp is after year
    9999; producing it needs a producer that sets the timestamp (``send(..., timestamp_ms=...)``)."""
    rid = f"{tag}-{contract.feed}-future"
    return rid.encode(), json.dumps({"record_id": rid}).encode(), FAR_FUTURE_MS, parse.OUT_OF_RANGE
