"""Turn one Kafka message into a typed staging row, or into a quarantine row with a reason.

Pure functions, no IO: the Beam stage in ``transforms.py`` only wires them up. Bad input is data: every
message ends as exactly one staged or one quarantined row, never an exception.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from pipelines.contracts import FeedContract, FieldSpec
from pipelines.kafka import RawMessage
from pipelines.pii import Tokeniser
from pipelines.standardise import codes

# Reason codes of quarantined messages, in the order they are checked.
EMPTY_PAYLOAD = "empty_payload"
OVERSIZE = "oversize"
NOT_UTF8 = "not_utf8"
INVALID_JSON = "invalid_json"
NOT_OBJECT = "not_object"
MISSING_RECORD_ID = "missing_record_id"
KEY_MISMATCH = "key_mismatch"
WRONG_TYPE = "wrong_type"
CONTRACT_VIOLATION = "contract_violation"
REASONS = (
    EMPTY_PAYLOAD, OVERSIZE, NOT_UTF8, INVALID_JSON, NOT_OBJECT,
    MISSING_RECORD_ID, KEY_MISMATCH, WRONG_TYPE, CONTRACT_VIOLATION,
)  # fmt: skip

_PERIOD_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
# Zero-width and bidi marks that copy-paste leaves in names; control characters other than whitespace.
_INVISIBLE = dict.fromkeys([0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, 0x200E, 0x200F, 0x00AD])

_CHECKS = {
    "uscc": codes.is_valid_uscc,
    "id_number": codes.is_valid_id_number,
    "taxpayer_id": codes.is_valid_taxpayer_id,
}


@dataclass
class _Problem(Exception):
    reason: str
    detail: str


def normalise_text(value: str) -> str | None:
    """NFC, no invisible or control characters, trimmed; empty becomes None."""
    value = unicodedata.normalize("NFC", value).translate(_INVISIBLE)
    value = "".join(ch if ch.isprintable() else " " for ch in value).strip()
    return value or None


def _convert(spec: FieldSpec, value: Any) -> Any:
    """Check one present, non-null value against its field spec and return it typed."""
    if spec.type in ("string", "date", "timestamp", "period"):
        if not isinstance(value, str):
            raise _Problem(WRONG_TYPE, f"{spec.name}: expected a string, got {type(value).__name__}")
        text = normalise_text(value)
        if text is None:
            return None
        if spec.max_length and len(text) > spec.max_length:
            raise _Problem(CONTRACT_VIOLATION, f"{spec.name}: longer than {spec.max_length} characters")
        if spec.type == "string":
            return text
        if spec.type == "period":
            if not _PERIOD_RE.match(text):
                raise _Problem(CONTRACT_VIOLATION, f"{spec.name}: not a YYYY-MM period")
            return text
        if spec.type == "date":
            try:
                return date.fromisoformat(text)
            except ValueError:
                raise _Problem(CONTRACT_VIOLATION, f"{spec.name}: not an ISO date YYYY-MM-DD") from None
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise _Problem(CONTRACT_VIOLATION, f"{spec.name}: not an ISO 8601 timestamp") from None
        if moment.tzinfo is None:
            raise _Problem(CONTRACT_VIOLATION, f"{spec.name}: timestamp has no UTC offset")
        return moment.astimezone(UTC)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Problem(WRONG_TYPE, f"{spec.name}: expected a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise _Problem(CONTRACT_VIOLATION, f"{spec.name}: not a finite number")
    if spec.type == "integer":
        if isinstance(value, float) and not value.is_integer():
            raise _Problem(WRONG_TYPE, f"{spec.name}: expected an integer")
        return int(value)
    return float(value)


def _tokenise_personal(contract: FeedContract, obj: dict[str, Any], tokeniser: Tokeniser) -> None:
    """Replace personal fields of a parsed object by tokens, in place (whatever their JSON type)."""
    for spec in contract.personal_fields:
        value = obj.get(spec.name)
        if value is not None:
            obj[spec.name] = tokeniser.token(spec.kind or spec.name, str(value))


def _decode(contract: FeedContract, message: RawMessage) -> dict[str, Any]:
    payload = message.value
    if not payload:
        raise _Problem(EMPTY_PAYLOAD, "message has no value")
    if len(payload) > contract.max_message_bytes:
        raise _Problem(OVERSIZE, f"{len(payload)} bytes > limit {contract.max_message_bytes}")
    try:
        text = payload.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise _Problem(NOT_UTF8, f"invalid UTF-8 at byte {err.start}") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise _Problem(INVALID_JSON, f"{err.msg} at line {err.lineno} column {err.colno}") from None
    if not isinstance(obj, dict):
        raise _Problem(NOT_OBJECT, f"top level is a JSON {type(obj).__name__}, not an object")
    return obj


def _typed_row(contract: FeedContract, obj: dict[str, Any], message: RawMessage) -> dict[str, Any]:
    record_id = obj.get(contract.key_field)
    if record_id is None or (isinstance(record_id, str) and not record_id.strip()):
        raise _Problem(MISSING_RECORD_ID, f"no {contract.key_field}")
    if message.key is not None and message.key.decode("utf-8", "replace") != str(record_id):
        raise _Problem(KEY_MISMATCH, f"message key differs from {contract.key_field}")
    row: dict[str, Any] = {}
    problems: list[_Problem] = []
    for spec in contract.fields:
        value = obj.get(spec.name)
        try:
            row[spec.name] = None if value is None else _convert(spec, value)
        except _Problem as problem:
            problems.append(problem)
    if problems:
        raise _Problem(problems[0].reason, "; ".join(p.detail for p in problems))
    return row


def parse_message(
    contract: FeedContract, message: RawMessage, tokeniser: Tokeniser, run_id: str
) -> tuple[bool, dict[str, Any]]:
    """Return ``(True, staging_row)`` or ``(False, quarantine_row)`` for one message."""
    obj: dict[str, Any] | None = None
    try:
        obj = _decode(contract, message)
        row = _typed_row(contract, obj, message)
    except _Problem as problem:
        return False, quarantine_row(
            contract, message, problem.reason, problem.detail, tokeniser, run_id, obj
        )

    for spec in contract.fields:
        if spec.validity_column:
            value = row[spec.name]
            row[spec.validity_column] = None if value is None else _CHECKS[spec.kind](value)  # type: ignore[index]
        if spec.personal and row[spec.name] is not None:
            row[spec.name] = tokeniser.token(spec.kind or spec.name, row[spec.name])
    extra = {k: v for k, v in obj.items() if k not in contract.field_names}
    row.update(
        _topic=message.topic,
        _partition=message.partition,
        _offset=message.offset,
        _kafka_timestamp=_kafka_time(message),
        _run_id=run_id,
        _extra=_scrubbed_json(extra, tokeniser) if extra else None,
    )
    return True, row


def quarantine_row(
    contract: FeedContract,
    message: RawMessage,
    reason: str,
    detail: str,
    tokeniser: Tokeniser,
    run_id: str,
    obj: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The quarantine row of a message: raw payload kept, personal data tokenised or scrubbed."""
    payload = message.value or b""
    if obj is not None:  # parsed: tokenise the personal fields we can name, then scrub the rest
        obj = dict(obj)
        _tokenise_personal(contract, obj, tokeniser)
        payload = json.dumps(obj, ensure_ascii=False, default=str).encode()
    return {
        "feed": contract.feed,
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "kafka_timestamp": _kafka_time(message),
        "key": tokeniser.scrub_bytes(message.key) if message.key else None,
        "reason": reason,
        "detail": detail,
        "raw_payload": tokeniser.scrub_bytes(payload),
        "payload_bytes": len(message.value or b""),
        "run_id": run_id,
    }


def _scrubbed_json(extra: dict[str, Any], tokeniser: Tokeniser) -> str:
    text = json.dumps(extra, ensure_ascii=False, default=str)
    return tokeniser.scrub_bytes(text.encode()).decode()


def _kafka_time(message: RawMessage) -> datetime | None:
    if message.timestamp_ms is None or message.timestamp_ms < 0:
        return None
    return datetime.fromtimestamp(message.timestamp_ms / 1000, tz=UTC)
