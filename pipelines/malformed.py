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
    return samples
