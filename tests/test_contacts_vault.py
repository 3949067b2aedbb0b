"""The contact vault: AES-GCM under a key of its own, bound to token and kind (a flipped byte, another key or a
row moved elsewhere fails to open); import seals persons' phones and ID numbers (and mobiles in phone fields)
without changing what is staged; without a vault key nothing is sealed and the manifest says so; no clear
personal value reaches a run's files outside the ciphertexts."""

from __future__ import annotations

import base64
import json
import secrets

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines.contacts.vault import (
    VAULT_SCHEMA,
    Vault,
    VaultKeyError,
    VaultOpenError,
    first_per_token,
    key_id,
    load_vault_key,
    mask,
    parse_vault_key,
)
from pipelines.contracts import contract, load_contracts
from pipelines.ingest.parse import FeedParser
from pipelines.kafka import RawMessage
from pipelines.pii import Tokeniser
from pipelines.standardise.phones import normalise_phone, parse_phone
from tests.conftest import TOKEN_KEY

VAULT_KEY = bytes(range(32))
TOKENS = Tokeniser(TOKEN_KEY)


def _message(feed: str, offset: int, record: dict) -> RawMessage:
    value = json.dumps(record, ensure_ascii=False).encode()
    return RawMessage(feed, f"feeds.{feed}", 0, offset, None, record["record_id"].encode(), value)


NUCLEIC = [
    {
        "record_id": "N1",
        "person_name": "王小明",
        "id_number": "330106198807154323",
        "phone": "+86 138-1234-5678",
    },
    {"record_id": "N2", "person_name": "李华", "id_number": "33010619900101123X", "phone": "13900000006"},
    {"record_id": "N3", "person_name": "王小明", "id_number": "330106198807154323", "phone": "13812345678"},
]
REGISTRATION = [
    {"record_id": "R1", "name": "城西五金厂", "legal_rep_id": "440106199001011235", "phone": "137 0000 1111"},
    {
        "record_id": "R2",
        "name": "城东茶馆",
        "phone": "0571-88889999",
    },  # a business landline: sealed to be dialled
]


def _sealed(vault: Vault, rows: pa.Table) -> dict[str, tuple[str, str]]:
    """token → (kind, clear value) of vault rows."""
    return {
        row["token"]: (row["kind"], vault.open(row["token"], row["kind"], row["nonce"], row["ciphertext"]))
        for row in rows.to_pylist()
    }


# -- the cipher --------------------------------------------------------------------------------------------


def test_a_sealed_value_opens_to_its_normal_form_under_its_key():
    vault = Vault(VAULT_KEY)
    token = TOKENS.token("phone", "+86 138-1234-5678")
    rows = vault.rows([(token, "phone", "+86 138-1234-5678")], "run-000001")
    assert rows.schema == VAULT_SCHEMA
    row = rows.to_pylist()[0]
    assert (row["masked"], row["key_id"], row["first_seen_run"]) == (
        "138****5678",
        key_id(VAULT_KEY),
        "run-000001",
    )
    assert b"13812345678" not in row["ciphertext"]
    assert vault.open(token, "phone", row["nonce"], row["ciphertext"]) == "13812345678"


def test_a_flipped_byte_another_key_or_a_moved_row_does_not_open():
    vault = Vault(VAULT_KEY)
    first, second = TOKENS.token("phone", "13812345678"), TOKENS.token("phone", "13900000006")
    rows = vault.rows(
        [(first, "phone", "13812345678"), (second, "phone", "13900000006")], "run-000001"
    ).to_pylist()
    a, b = rows
    flipped = bytes([a["ciphertext"][0] ^ 1]) + a["ciphertext"][1:]
    with pytest.raises(VaultOpenError):
        vault.open(first, "phone", a["nonce"], flipped)
    with pytest.raises(VaultOpenError):
        vault.open(first, "phone", bytes([a["nonce"][0] ^ 1]) + a["nonce"][1:], a["ciphertext"])
    with pytest.raises(VaultOpenError):  # b's ciphertext moved into a's row
        vault.open(first, "phone", b["nonce"], b["ciphertext"])
    with pytest.raises(VaultOpenError):  # the same row read as another kind
        vault.open(first, "id_number", a["nonce"], a["ciphertext"])
    with pytest.raises(VaultOpenError):
        Vault(secrets.token_bytes(32)).open(first, "phone", a["nonce"], a["ciphertext"])
    assert vault.open(second, "phone", b["nonce"], b["ciphertext"]) == "13900000006"


def test_the_vault_key_is_32_bytes_in_hex_or_base64_and_optional():
    assert parse_vault_key(VAULT_KEY.hex()) == VAULT_KEY
    assert parse_vault_key(base64.b64encode(VAULT_KEY).decode()) == VAULT_KEY
    assert load_vault_key({"UNITFUSION_VAULT_KEY": VAULT_KEY.hex()}) == VAULT_KEY
    assert load_vault_key({}) is None and load_vault_key({"UNITFUSION_VAULT_KEY": " "}) is None
    for bad in ("short", VAULT_KEY.hex()[:-2], base64.b64encode(VAULT_KEY[:16]).decode()):
        with pytest.raises(VaultKeyError):
            parse_vault_key(bad)
    assert key_id(VAULT_KEY) != key_id(bytes(32)) and VAULT_KEY.hex() not in key_id(VAULT_KEY)


def test_readers_keep_the_first_row_of_a_token_across_runs():
    vault = Vault(VAULT_KEY)
    token = TOKENS.token("phone", "13812345678")
    older = vault.rows([(token, "phone", "13812345678")], "run-000001")
    newer = vault.rows(
        [(token, "phone", "13812345678"), (TOKENS.token("phone", "13900000006"), "phone", "13900000006")],
        "run-000002",
    )
    merged = first_per_token([older, newer])
    assert merged.num_rows == 2
    assert merged.to_pylist()[0]["first_seen_run"] == "run-000001"
    assert merged.to_pylist()[0]["nonce"] == older.to_pylist()[0]["nonce"]


# -- masked forms --------------------------------------------------------------------------------------------


@given(st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True))
def test_a_mobile_shows_its_first_three_and_last_four_digits(number):
    masked = mask("phone", number)
    assert masked == number[:3] + "****" + number[-4:]
    assert number not in masked


@given(st.from_regex(r"[1-8][0-9]{16}[0-9X]", fullmatch=True))
def test_an_id_number_shows_its_first_four_and_last_four(number):
    masked = mask("id_number", number)
    assert len(masked) == 18 and masked.count("*") == 10
    assert masked[:4] == number[:4] and masked[-4:] == number[-4:]
    assert number[4:14] not in masked


@given(st.sampled_from(["phone", "id_number"]), st.text(alphabet="0123456789X", max_size=30))
def test_a_masked_form_keeps_the_length_and_hides_most_of_the_value(kind, value):
    masked = mask(kind, value)
    assert len(masked) == len(value)
    assert all(m in ("*", v) for m, v in zip(masked, value, strict=True))
    hidden = masked.count("*")
    assert hidden >= 4 or hidden >= len(value) - len(value) // 4
    assert sum(c != "*" for c in masked) <= 8


# -- import --------------------------------------------------------------------------------------------------


def _parse(feed: str, records: list[dict], vault: Vault | None) -> tuple[pa.Table, pa.Table, pa.Table]:
    parser = FeedParser(contract(feed), TOKENS, "run-000001", vault)
    return parser.parse_sealed([_message(feed, i, r) for i, r in enumerate(records)])


def test_import_seals_persons_contacts_and_stages_the_same_tokens_as_without_a_vault():
    vault = Vault(VAULT_KEY)
    staged, quarantined, sealed = _parse("nucleic_contact", NUCLEIC, vault)
    plain, plain_quarantined, nothing = _parse("nucleic_contact", NUCLEIC, None)
    assert staged.equals(plain) and quarantined.num_rows == plain_quarantined.num_rows == 0
    assert nothing.num_rows == 0 and nothing.schema == VAULT_SCHEMA
    opened = _sealed(vault, sealed)
    assert sealed.num_rows == len(opened) == 4  # two persons, an ID and a phone each (N3 repeats N1)
    for row in staged.to_pylist():
        assert opened[row["phone"]][0] == "phone" and opened[row["id_number"]][0] == "id_number"
    assert sorted(v for _, v in opened.values()) == sorted(
        ["13812345678", "13900000006", "330106198807154323", "33010619900101123X"]
    )
    assert set(sealed["masked"].to_pylist()) >= {"138****5678", "3301**********4323"}
    assert b"13812345678" not in pq_bytes(staged)  # staging keeps tokens only


def test_import_seals_a_registered_mobile_under_the_token_the_resolver_gives_it():
    vault = Vault(VAULT_KEY)
    staged, _, sealed = _parse("registration", REGISTRATION, vault)
    opened = _sealed(vault, sealed)
    resolver_token = TOKENS.token("phone", parse_phone("137 0000 1111").number)
    assert opened[resolver_token] == ("phone", "13700001111")
    assert opened[staged.to_pylist()[0]["legal_rep_id"]] == ("id_number", "440106199001011235")
    landline = TOKENS.token("phone", parse_phone("0571-88889999").number)
    assert opened[landline] == ("phone", parse_phone("0571-88889999").number)  # a call list can dial it
    assert len(opened) == 3
    assert staged["phone"].to_pylist() == ["137 0000 1111", "0571-88889999"]  # as before: not personal


def test_a_quarantined_message_seals_nothing():
    vault = Vault(VAULT_KEY)
    broken = {**NUCLEIC[0], "sampled_at": "not a time"}
    staged, quarantined, sealed = _parse("nucleic_contact", [broken], vault)
    assert (staged.num_rows, quarantined.num_rows, sealed.num_rows) == (0, 1, 0)


def pq_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


# -- through the broker ----------------------------------------------------------------------------------------


def _values(sample, personal: bool) -> set[str]:
    """Clear phones and ID numbers of a generated sample's personal fields (or its business phones), as
    written and as digits."""
    found = set()
    for feed in load_contracts():
        names = [
            s.name
            for s in contract(feed).fields
            if s.personal == personal and s.kind in ("phone", "id_number")
        ]
        for line in (sample / f"{feed}.jsonl").read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            for name in names:
                if record.get(name):
                    value = record[name]
                    found |= {value, "".join(filter(str.isalnum, value)), normalise_phone(value)}
    return {value for value in found if len(value) >= 11}


def _personal_values(sample) -> set[str]:
    """Persons' phones and ID numbers that are nowhere a business's registered phone (which stays clear in
    staging until resolution tokenises it)."""
    return _values(sample, personal=True) - _values(sample, personal=False)


@pytest.mark.integration
def test_a_pass_through_the_broker_seals_contacts_only_with_a_vault_key(broker, topic_prefix, tmp_path):
    from pipelines.config import IngestSettings, default_topics
    from pipelines.contacts.reveal import read_vault
    from pipelines.contracts import load_contracts
    from pipelines.generate import generate
    from pipelines.ingest.job import run_ingest
    from pipelines.kafka import jsonl_messages, produce_messages
    from pipelines.store import RunStore

    sample = tmp_path / "sample"
    generate(units=30, seed=5, out_dir=sample)
    clear = _personal_values(sample)
    assert len(clear) > 20
    topics = default_topics(topic_prefix)
    for feed in load_contracts():
        produce_messages(broker.bootstrap, topics[feed], list(jsonl_messages(sample / f"{feed}.jsonl")))

    without = run_ingest(
        IngestSettings(bootstrap=broker.bootstrap, out=tmp_path / "plain", topics=topics), TOKEN_KEY
    )
    assert without.committed
    manifest = RunStore(tmp_path / "plain").latest_manifest()
    assert manifest["contacts"] == {
        "files": [],
        "sealed": 0,
        "key_id": None,
        "note": "no vault key: no contact sealed",
    }
    assert read_vault(RunStore(tmp_path / "plain")).num_rows == 0

    out = tmp_path / "sealed"
    sealed = run_ingest(
        IngestSettings(bootstrap=broker.bootstrap, out=out, topics=topics), TOKEN_KEY, VAULT_KEY
    )
    store = RunStore(out)
    manifest = store.latest_manifest()
    assert manifest["contacts"]["key_id"] == key_id(VAULT_KEY) and manifest["contacts"]["sealed"] > 0
    vault = read_vault(store)
    assert vault.num_rows == len(set(vault["token"].to_pylist())) > 0
    for feed, stats in sealed.feeds.items():  # staging is what it is without a vault
        plain = pa.concat_tables(pq.read_table(f) for f in RunStore(tmp_path / "plain").committed_files(feed))
        same = pa.concat_tables(pq.read_table(f) for f in store.committed_files(feed))
        assert stats.staged == plain.num_rows
        assert (
            same.drop_columns(["_run_id", "_kafka_timestamp"])
            .sort_by("record_id")
            .equals(plain.drop_columns(["_run_id", "_kafka_timestamp"]).sort_by("record_id"))
        )
    opened = set(_sealed(Vault(VAULT_KEY), vault).values())
    assert {v for _, v in opened} >= {
        "".join(filter(str.isalnum, v)).removeprefix("86") for v in clear if len(v) <= 14
    } - {""}

    leaks = {
        (str(path.relative_to(out)), value)
        for path in out.rglob("*")
        if path.is_file()
        for value in clear
        if value.encode() in path.read_bytes()
        or (
            path.suffix == ".parquet"
            and value in json.dumps(pq.read_table(path).to_pylist(), default=str, ensure_ascii=False)
        )
    }
    assert not leaks


def test_a_held_back_or_set_aside_feed_leaves_no_vault_row(tmp_path):
    from pipelines.ingest.job import _hold_back, _parquet_files, _set_aside
    from pipelines.store import RunStore

    store = RunStore(tmp_path)
    staged, _, sealed = _parse("nucleic_contact", NUCLEIC, Vault(VAULT_KEY))
    for feed in ("nucleic_contact", "waybill"):
        for prefix, table in ((store.staging_prefix, staged), (store.vault_prefix, sealed)):
            path = prefix("run-000001", feed).with_name("part-00000-of-00001.parquet")
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path)
    store.quarantine_prefix("run-000001").parent.mkdir(parents=True)
    _hold_back(store, "run-000001", {"nucleic_contact"})
    assert _parquet_files(store.vault_prefix("run-000001", "nucleic_contact")) == []
    assert len(_parquet_files(store.vault_prefix("run-000001", "waybill"))) == 1
    decision = {"by": "ops", "decided_at": "2026-11-30T00:00:00+00:00", "reason": "test"}
    _set_aside(store, "run-000001", "waybill", decision)
    assert _parquet_files(store.vault_prefix("run-000001", "waybill")) == []
