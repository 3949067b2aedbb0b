"""Turn Kafka messages into typed staging rows, or into quarantine rows with a reason.

Pure functions, no IO: the Beam stage in ``transforms.py`` only wires them up. Bad input is data: every
message ends as exactly one staged or one quarantined row, never an exception. ``FeedParser`` prepares a
feed's contract once; ``parse_batch`` turns a batch of one feed's messages into two Arrow tables (staged,
quarantined), which is what the job writes; ``parse_message`` gives one message's row as a dict.
"""

from __future__ import annotations

import codecs
import json
import logging
import math
import re
import sys
import traceback
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache, partial
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.contacts.vault import SEALED_KINDS, VAULT_SCHEMA, Vault
from pipelines.contracts import QUARANTINE_SCHEMA, FeedContract, FieldSpec
from pipelines.kafka import RawMessage
from pipelines.pii import Tokeniser, is_private_name
from pipelines.standardise import codes
from pipelines.standardise.phones import parse_phone

# Reason codes of quarantined messages, in the order they are checked.
EMPTY_PAYLOAD = "empty_payload"
OVERSIZE = "oversize"
NOT_UTF8 = "not_utf8"
INVALID_JSON = "invalid_json"
TOO_DEEP = "too_deep"
NOT_OBJECT = "not_object"
MISSING_RECORD_ID = "missing_record_id"
KEY_MISMATCH = "key_mismatch"
WRONG_TYPE = "wrong_type"
CONTRACT_VIOLATION = "contract_violation"
OUT_OF_RANGE = "out_of_range"
REASONS = (
    EMPTY_PAYLOAD, OVERSIZE, NOT_UTF8, INVALID_JSON, TOO_DEEP, NOT_OBJECT,
    MISSING_RECORD_ID, KEY_MISMATCH, WRONG_TYPE, CONTRACT_VIOLATION, OUT_OF_RANGE,
)  # fmt: skip
# Not a check: parsing itself failed (a bug). The message is quarantined rather than lost, and the detail
# carries the error's message (scrubbed of personal data) so the bug can be found.
INTERNAL_ERROR = "internal_error"

log = logging.getLogger(__name__)

_PERIOD_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
# Zero-width and bidi marks that copy-paste leaves in names; control characters other than whitespace.
_INVISIBLE = dict.fromkeys([0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, 0x200E, 0x200F, 0x00AD])

_CHECKS = {
    "uscc": codes.is_valid_uscc,
    "id_number": codes.is_valid_id_number,
    "taxpayer_id": codes.is_valid_taxpayer_id,
}

# What the staging types hold: int64, and Kafka timestamps (ms) that Python and Arrow readers can turn into
# datetimes, i.e. before year 10000. Negative ones mean "no timestamp" (Kafka writes -1).
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_KAFKA_MS_END = 253_402_300_800_000  # 10000-01-01T00:00:00Z
# A \uD800-\uDFFF escape; only the rare payloads with one are checked for a lone surrogate.
_SURROGATE_ESCAPE_RE = re.compile(r"\\u[dD][89a-fA-F]")

# Staging columns that come from where the message was read and from the run, not from its payload.
_NOT_PARSED = frozenset({"_topic", "_partition", "_offset", "_kafka_timestamp", "_run_id"})


@dataclass
class _Problem(Exception):
    reason: str
    detail: str


def normalise_text(value: str) -> str | None:
    """NFC, no invisible or control characters, trimmed; empty becomes None."""
    value = unicodedata.normalize("NFC", value)
    if not value.isprintable():  # the invisible marks are not printable either: most values skip this
        value = "".join(ch if ch.isprintable() else " " for ch in value.translate(_INVISIBLE))
    return value.strip() or None


# One check-and-convert function per field type; each takes a present, non-null value.


def _string(spec: FieldSpec, value: Any) -> str | None:
    if not isinstance(value, str):
        raise _Problem(WRONG_TYPE, f"{spec.name}: expected a string, got {type(value).__name__}")
    text = normalise_text(value)
    if text is not None and spec.max_length and len(text) > spec.max_length:
        raise _Problem(CONTRACT_VIOLATION, f"{spec.name}: longer than {spec.max_length} characters")
    return text


def _period(spec: FieldSpec, value: Any) -> str | None:
    text = _string(spec, value)
    if text is not None and not _PERIOD_RE.match(text):
        raise _Problem(CONTRACT_VIOLATION, f"{spec.name}: not a YYYY-MM period")
    return text


def _date(spec: FieldSpec, value: Any) -> date | None:
    text = _string(spec, value)
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _Problem(CONTRACT_VIOLATION, f"{spec.name}: not an ISO date YYYY-MM-DD") from None


def _timestamp(spec: FieldSpec, value: Any) -> datetime | None:
    text = _string(spec, value)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _Problem(CONTRACT_VIOLATION, f"{spec.name}: not an ISO 8601 timestamp") from None
    if moment.tzinfo is None:
        raise _Problem(CONTRACT_VIOLATION, f"{spec.name}: timestamp has no UTC offset")
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 or 9999-12-31T23:59-01:00
        raise _Problem(OUT_OF_RANGE, f"{spec.name}: {text} is outside years 1-9999 in UTC") from None


def _number(spec: FieldSpec, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Problem(WRONG_TYPE, f"{spec.name}: expected a number, got {type(value).__name__}")
    try:
        number = float(value)  # a JSON integer of 310 digits or more has no float
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):  # 1e400 parses as inf (NaN and Infinity are refused as JSON)
        raise _Problem(OUT_OF_RANGE, f"{spec.name}: beyond the range of a 64-bit float")
    return number


def _integer(spec: FieldSpec, value: Any) -> int:
    if isinstance(value, float):
        _number(spec, value)
        if not value.is_integer():
            raise _Problem(WRONG_TYPE, f"{spec.name}: expected an integer")
        value = int(value)
    elif isinstance(value, bool) or not isinstance(value, int):
        raise _Problem(WRONG_TYPE, f"{spec.name}: expected an integer, got {type(value).__name__}")
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise _Problem(OUT_OF_RANGE, f"{spec.name}: outside the 64-bit integer range")
    return value


_CONVERTERS: dict[str, Callable[[FieldSpec, Any], Any]] = {
    "string": _string,
    "period": _period,
    "date": _date,
    "timestamp": _timestamp,
    "number": _number,
    "integer": _integer,
}


# Fields scrubbed of ID numbers and mobiles typed into them: free text (no kind: also the record id) and
# names. Codes (uscc, taxpayer_id, code) and business phones are kept as written; personal fields are tokens.
_SCRUBBED_KINDS = (None, "person_name")


@lru_cache(maxsize=16)
def _named_fields(contract: FeedContract) -> dict[str, str]:
    """Fields tokenised wherever a quarantined payload holds them (name → token kind): personal ones, and
    persons' names even where the contract keeps a business's name in clear."""
    return {s.name: s.kind or s.name for s in contract.fields if s.personal or s.kind == "person_name"}


def _tokenise_personal(contract: FeedContract, obj: dict[str, Any], tokeniser: Tokeniser) -> None:
    """Replace personal fields and names of a parsed object by tokens, in place (whatever their JSON type)."""
    for name, kind in _named_fields(contract).items():
        value = obj.get(name)
        if value is not None:
            obj[name] = tokeniser.token(kind, str(value))


def _refuse_constant(name: str) -> float:
    raise _Problem(INVALID_JSON, f"{name} is not a JSON number (JSON has no NaN or Infinity)")


# Python's json reads NaN and Infinity, which JSON does not have and which would make ``_extra`` invalid JSON.
_JSON = json.JSONDecoder(parse_constant=_refuse_constant)


def _lone_surrogate(obj: dict[str, Any]) -> str | None:
    """The first lone surrogate (an escape such as \\ud800) in a parsed object: no UTF-8 text holds one."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as err:
        return f"U+{ord(err.object[err.start]):04X}"
    return None


def _decode(contract: FeedContract, message: RawMessage) -> dict[str, Any]:
    payload = message.value
    if not payload:
        raise _Problem(EMPTY_PAYLOAD, "message has no value")
    if len(payload) > contract.max_message_bytes:
        raise _Problem(OVERSIZE, f"{len(payload)} bytes > limit {contract.max_message_bytes}")
    try:
        # What decode("utf-8-sig") does (error positions after the BOM too), without its Python-level codec.
        text = payload.removeprefix(codecs.BOM_UTF8).decode("utf-8")
    except UnicodeDecodeError as err:
        raise _Problem(NOT_UTF8, f"invalid UTF-8 at byte {err.start}") from None
    if text.startswith("\ufeff"):  # one BOM is removed above; json.loads would say this, _JSON does not
        raise _Problem(INVALID_JSON, "a second UTF-8 byte-order mark at line 1 column 1")
    try:
        obj = _JSON.decode(text)
        # Rare (an escape of U+D800-U+DFFF): only then look for a lone surrogate.
        surrogate = _lone_surrogate(obj) if "\\u" in text and _SURROGATE_ESCAPE_RE.search(text) else None
    except json.JSONDecodeError as err:
        raise _Problem(INVALID_JSON, f"{err.msg} at line {err.lineno} column {err.colno}") from None
    except ValueError:  # Python refuses to convert integers longer than its limit (CVE-2020-10735)
        raise _Problem(OUT_OF_RANGE, f"a number longer than {sys.get_int_max_str_digits()} digits") from None
    except RecursionError:
        raise _Problem(TOO_DEEP, "JSON nested deeper than the parser's recursion limit") from None
    if surrogate:
        raise _Problem(NOT_UTF8, f"a \\u escape encodes a lone surrogate ({surrogate}), not a character")
    if not isinstance(obj, dict):
        raise _Problem(NOT_OBJECT, f"top level is a JSON {type(obj).__name__}, not an object")
    return obj


class FeedParser:
    """One feed's contract prepared once (field checks, codes to verify, personal fields), to parse many of
    its messages. With a ``vault``, the clear contact values of staged rows are also sealed
    (``parse_sealed``); what is staged does not change."""

    def __init__(
        self, contract: FeedContract, tokeniser: Tokeniser, run_id: str, vault: Vault | None = None
    ) -> None:
        self.contract = contract
        self._tokeniser = tokeniser
        self._vault = vault
        self._run_id = run_id
        self._schema = contract.staging_schema()
        self._known = frozenset(contract.field_names)
        self._converters = [(spec.name, partial(_CONVERTERS[spec.type], spec)) for spec in contract.fields]
        # A code repeats across a feed (a taxpayer files every month): check each distinct one once.
        self._checked = [
            (i, lru_cache(maxsize=1 << 16)(_CHECKS[spec.kind]))
            for i, spec in enumerate(contract.fields)
            if spec.validity_column
        ]
        self._personal = [
            (i, spec.kind or spec.name) for i, spec in enumerate(contract.fields) if spec.personal
        ]
        # What the vault seals: personal phones and ID numbers, and mobiles in any phone field (a shop's
        # registered phone is usually its owner's mobile; a business landline stays out).
        self._sealed = [(i, kind) for i, kind in self._personal if kind in SEALED_KINDS]
        self._phones = [
            i for i, spec in enumerate(contract.fields) if spec.kind == "phone" and not spec.personal
        ]
        self._scrubbed = [
            i
            for i, spec in enumerate(contract.fields)
            if spec.type == "string" and spec.kind in _SCRUBBED_KINDS and not spec.personal
        ]
        # A name that may be a person's or a shop's (a waybill sender): tokenised when it is a person's.
        self._names = [
            i for i, spec in enumerate(contract.fields) if spec.kind == "person_name" and not spec.personal
        ]
        self._required = [(i, spec.name) for i, spec in enumerate(contract.fields) if spec.required]
        # Fields, validity flags and ``_extra``: the staged columns parsing fills, in schema order.
        self._parsed_fields = [f for f in self._schema if f.name not in _NOT_PARSED]

    def parse(self, message: RawMessage) -> tuple[bool, dict[str, Any]]:
        """``(True, staging_row)`` or ``(False, quarantine_row)``."""
        values, _, quarantined = self._parse(message)
        if values is None:
            return False, quarantined  # type: ignore[return-value]
        row = dict(zip((f.name for f in self._parsed_fields), values, strict=True))
        row.update(
            _topic=message.topic,
            _partition=message.partition,
            _offset=message.offset,
            _kafka_timestamp=_kafka_time(message),
            _run_id=self._run_id,
        )
        return True, row

    def parse_batch(self, messages: Sequence[RawMessage]) -> tuple[pa.Table, pa.Table]:
        """The staged table (staging schema) and the quarantine table of messages of this feed."""
        staged, quarantined, _ = self.parse_sealed(messages)
        return staged, quarantined

    def parse_sealed(self, messages: Sequence[RawMessage]) -> tuple[pa.Table, pa.Table, pa.Table]:
        """The staged table, the quarantine table, and the vault rows of the staged rows' contacts (empty
        without a vault)."""
        if any(message.feed != self.contract.feed for message in messages):
            raise ValueError(f"a batch for {self.contract.feed} holds messages of another feed")
        rows, staged, quarantined, contacts = [], [], [], []
        for message in messages:
            values, found, quarantine = self._parse(message)
            if values is None:
                quarantined.append(quarantine)
            else:
                rows.append(values)
                staged.append(message)
                contacts += found
        try:
            table = self._staged_table(rows, staged)
        except Exception:  # a bug let through a value Arrow cannot hold: find it rather than fail the batch
            table = self._staged_table_row_by_row(rows, staged, quarantined)
        vault = self._vault.rows(contacts, self._run_id) if self._vault else VAULT_SCHEMA.empty_table()
        return table, pa.Table.from_pylist(quarantined, schema=QUARANTINE_SCHEMA), vault

    def _staged_table_row_by_row(
        self, rows: list[list[Any]], messages: list[RawMessage], quarantined: list[dict[str, Any]]
    ) -> pa.Table:
        """The staged table of the rows Arrow takes; the others go to quarantine as internal errors."""
        tables = []
        for values, message in zip(rows, messages, strict=True):
            try:
                tables.append(self._staged_table([values], [message]))
            except Exception as error:
                detail = _error_detail(error, self._tokeniser)
                _log_bug("staging", message, detail, error)
                quarantined.append(
                    quarantine_row(
                        self.contract, message, INTERNAL_ERROR, detail, self._tokeniser, self._run_id
                    )
                )
        return pa.concat_tables(tables) if tables else self._schema.empty_table()

    def _parse(
        self, message: RawMessage
    ) -> tuple[list[Any] | None, list[tuple[str, str, str]], dict[str, Any] | None]:
        """The parsed column values of a message and its contacts to seal, or its quarantine row."""
        obj: dict[str, Any] | None = None
        try:
            obj = _decode(self.contract, message)
            values, contacts = self._values(obj, message)
            _check_kafka_timestamp(message)
            return values, contacts, None
        except _Problem as problem:
            reason, detail = problem.reason, problem.detail
        except Exception as error:  # a bug in parsing must not lose the message either
            reason, detail, obj = INTERNAL_ERROR, _error_detail(error, self._tokeniser), None
            _log_bug("parsing", message, detail, error)
        return (
            None,
            [],
            quarantine_row(self.contract, message, reason, detail, self._tokeniser, self._run_id, obj),
        )

    def _contacts(self, values: list[Any]) -> list[tuple[str, str, str]]:
        """``(token, kind, clear value)`` of the contacts the vault seals, read before tokenisation; the
        token is the one staging (personal fields) or the resolver (phones) gives the value. A business
        landline is sealed too (a call list must reach it); one without its area code cannot be (the
        resolver's token adds the area code of the record's district, which import does not know)."""
        found = []
        for i, kind in self._sealed:
            token = self._tokeniser.token(kind, values[i]) if values[i] is not None else None
            if token:
                found.append((token, kind, values[i]))
        for i in self._phones:
            phone = parse_phone(values[i])
            if phone is not None and phone.kind in ("mobile", "landline"):
                found.append((self._tokeniser.token("phone", phone.number) or "", "phone", phone.number))
        return found

    def _values(
        self, obj: dict[str, Any], message: RawMessage
    ) -> tuple[list[Any], list[tuple[str, str, str]]]:
        """Contract fields (typed, personal ones tokenised), validity of checked codes, then ``_extra``; and
        the contacts to seal (none without a vault)."""
        contract = self.contract
        record_id = obj.get(contract.key_field)
        if isinstance(record_id, str):  # normalised before it is checked: "\u200b" is no record id
            record_id = normalise_text(record_id)
        if record_id is None:
            raise _Problem(MISSING_RECORD_ID, f"no {contract.key_field}")
        if message.key is not None and normalise_text(message.key.decode("utf-8", "replace")) != str(
            record_id
        ):
            raise _Problem(KEY_MISMATCH, f"message key differs from {contract.key_field}")
        values: list[Any] = []
        problems: list[_Problem] = []
        for name, convert in self._converters:
            value = obj.get(name)
            try:
                values.append(None if value is None else convert(value))
            except _Problem as problem:
                problems.append(problem)
        if problems:
            raise _Problem(problems[0].reason, "; ".join(p.detail for p in problems))
        self._check_storable(values)

        validity = [None if values[i] is None else check(values[i]) for i, check in self._checked]
        contacts = self._contacts(values) if self._vault else []
        for i, kind in self._personal:
            if values[i] is not None:
                values[i] = self._tokeniser.token(kind, values[i])
        for i in self._scrubbed:
            if values[i] is not None:
                values[i] = self._tokeniser.scrub(values[i])
        for i in self._names:
            if values[i] is not None and is_private_name(values[i]):
                values[i] = self._tokeniser.token("person_name", values[i])
        extra = None
        if not self._known.issuperset(obj):
            unknown = {k: v for k, v in obj.items() if k not in self._known}
            try:
                extra = _scrubbed_json(unknown, self._tokeniser)
            except ValueError:  # allow_nan=False: 1e400 parses as inf, which JSON cannot write back
                raise _Problem(
                    OUT_OF_RANGE, "an unknown field holds a number beyond 64-bit float range"
                ) from None
            except RecursionError:
                raise _Problem(TOO_DEEP, "an unknown field is nested too deeply to keep as JSON") from None
        return [*values, *validity, extra], contacts

    def _check_storable(self, values: list[Any]) -> None:
        """A required field that normalised to nothing would fail the write of the whole batch (and of every
        rerun). Ranges are checked by the converters."""
        for i, name in self._required:
            if values[i] is None:
                if name == self.contract.key_field:
                    raise _Problem(MISSING_RECORD_ID, f"no {name}")
                raise _Problem(CONTRACT_VIOLATION, f"{name}: required")

    def _staged_table(self, rows: list[list[Any]], messages: list[RawMessage]) -> pa.Table:
        if not rows:
            return self._schema.empty_table()
        parsed = [
            pa.array(column, f.type)
            for column, f in zip(zip(*rows, strict=True), self._parsed_fields, strict=True)
        ]
        _, topics, partitions, offsets, timestamps_ms, _, _ = zip(*messages, strict=True)
        timestamps = pa.array(timestamps_ms, pa.int64())
        not_parsed = {
            "_topic": pa.array(topics, pa.string()),
            "_partition": pa.array(partitions, pa.int32()),
            "_offset": pa.array(offsets, pa.int64()),
            "_kafka_timestamp": pc.if_else(pc.less(timestamps, 0), None, timestamps).cast(  # -1: none
                self._schema.field("_kafka_timestamp").type
            ),
            "_run_id": pa.array([self._run_id] * len(rows), pa.string()),
        }
        columns = dict(zip((f.name for f in self._parsed_fields), parsed, strict=True)) | not_parsed
        return pa.Table.from_arrays([columns[name] for name in self._schema.names], schema=self._schema)


def parse_message(
    contract: FeedContract, message: RawMessage, tokeniser: Tokeniser, run_id: str
) -> tuple[bool, dict[str, Any]]:
    """Return ``(True, staging_row)`` or ``(False, quarantine_row)`` for one message."""
    return _parser(contract, tokeniser, run_id).parse(message)


@lru_cache(maxsize=16)
def _parser(contract: FeedContract, tokeniser: Tokeniser, run_id: str) -> FeedParser:
    """Callers of ``parse_message`` parse many messages of a few feeds: prepare each feed once."""
    return FeedParser(contract, tokeniser, run_id)


def quarantine_row(
    contract: FeedContract,
    message: RawMessage,
    reason: str,
    detail: str,
    tokeniser: Tokeniser,
    run_id: str,
    obj: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The quarantine row of a message: raw payload kept, personal data tokenised or scrubbed. Never raises:
    it is where failures end."""
    payload = message.value or b""
    if obj is not None:  # parsed: tokenise the personal fields we can name, then scrub the rest
        try:
            obj = dict(obj)
            _tokenise_personal(contract, obj, tokeniser)
            payload = json.dumps(obj, ensure_ascii=False, default=str).encode("utf-8", "backslashreplace")
        except Exception:  # too deep to write back, say: the scrub below still tokenises named fields
            payload = message.value or b""
    key = _scrub_or_drop(tokeniser, message.key, {}) if message.key else b""
    raw_payload = _scrub_or_drop(tokeniser, payload, _named_fields(contract))
    if key is None or raw_payload is None:
        detail += "; payload or key not kept: scrubbing it failed (see the log)"
    return {
        "feed": contract.feed,
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "kafka_timestamp": _kafka_time(message),
        "key": key or None,
        "reason": reason,
        "detail": detail,
        "raw_payload": raw_payload or b"",
        "payload_bytes": len(message.value or b""),
        "run_id": run_id,
    }


def _scrub_or_drop(tokeniser: Tokeniser, data: bytes, named: dict[str, str]) -> bytes | None:
    """Scrubbed bytes, or None if the scrubber fails on them: better no payload than one in clear."""
    try:
        return tokeniser.scrub_bytes(data, named)
    except Exception:
        log.exception("scrubbing a quarantined payload failed; it is not kept")
        return None


def _scrubbed_json(extra: dict[str, Any], tokeniser: Tokeniser) -> str:
    text = json.dumps(extra, ensure_ascii=False, default=str, allow_nan=False)
    return tokeniser.scrub(text)


def _kafka_time(message: RawMessage) -> datetime | None:
    """The message's timestamp; None when it has none, or one no datetime holds (that message is
    quarantined by ``_check_kafka_timestamp``, and its quarantine row must still be written)."""
    if message.timestamp_ms is None or not 0 <= message.timestamp_ms < _KAFKA_MS_END:
        return None
    return datetime.fromtimestamp(message.timestamp_ms / 1000, tz=UTC)


def _check_kafka_timestamp(message: RawMessage) -> None:
    """A timestamp in year 10000 or later would stage a value readers cannot turn into a datetime."""
    if message.timestamp_ms is not None and message.timestamp_ms >= _KAFKA_MS_END:
        raise _Problem(
            OUT_OF_RANGE, f"Kafka timestamp {message.timestamp_ms} ms is after year 9999 (producer clock?)"
        )


def _log_bug(step: str, message: RawMessage, detail: str, error: BaseException) -> None:
    """Log a bug with its stack but only the scrubbed message: an exception's text may quote a value."""
    stack = "".join(traceback.format_tb(error.__traceback__))
    where = f"{message.topic}[{message.partition}]@{message.offset}"
    log.error("%s %s failed: %s\n%s", step, where, detail, stack)


def _error_detail(error: BaseException, tokeniser: Tokeniser, limit: int = 500) -> str:
    """What a bug's error says, scrubbed of personal data (messages may quote the value), kept short."""
    text = f"{type(error).__name__}: {error}"[:limit]
    try:
        return tokeniser.scrub_bytes(text.encode("utf-8", "backslashreplace")).decode("utf-8", "replace")
    except Exception:  # the scrubber failed too: the class name alone is safe
        return f"{type(error).__name__} (its message is not kept: scrubbing it failed)"
