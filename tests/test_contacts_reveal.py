"""Audited reveal: a named person with a purpose gets clear contacts only within the scopes file, every act
(granted or refused) is a line on a hash-chained audit log that holds no clear value, and an edited log is
caught at the first line that breaks the chain."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from pipelines import resources
from pipelines.cli import main
from pipelines.contacts import audit
from pipelines.contacts.reveal import (
    Grant,
    RefusedError,
    Request,
    export,
    load_scopes,
    parse_scopes,
    reveal,
)
from pipelines.contacts.vault import Vault
from pipelines.contracts import contract
from pipelines.ingest.parse import FeedParser
from pipelines.kafka import RawMessage
from pipelines.pii import Tokeniser
from pipelines.standardise.phones import parse_phone
from pipelines.store import RunStore
from tests.conftest import TOKEN_KEY

VAULT_KEY = bytes(range(1, 33))
TOKENS = Tokeniser(TOKEN_KEY)
SCOPES = """
[people."zhang.supervisor"]
reveal = ["phone", "id_number"]
export = ["3301"]

[people."li.caller"]
reveal = []
export = ["330106/西溪街道"]
"""
# (unit, name, division, township, registered phone)
UNITS = [
    ("U000000000001", "城西五金厂", "330106", "西溪街道", "13700001111"),
    ("U000000000002", "城东茶馆", "330106", "西溪街道", "0571-88889999"),  # a landline: sealed to be dialled
    ("U000000000003", "北山画室", "330106", "北山街道", "13912340000"),
    ("U000000000004", "滨江网店", "330108", "长河街道", "15800002222"),
]
LEGAL_REP_ID = "440106199001011235"


def _registered_phone_token(phone: str) -> str:
    """The token the resolver gives a registered phone."""
    return TOKENS.token("phone", parse_phone(phone).number)


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    """A store with one ingest run whose registrations were sealed at import, and a published register."""
    store = RunStore(tmp_path / "out")
    run_id = store.next_run_id()
    parser = FeedParser(contract("registration"), TOKENS, run_id, Vault(VAULT_KEY))
    records = [
        {
            "record_id": f"R{i}",
            "name": name,
            "division_code": division,
            "phone": phone,
            "legal_rep_id": LEGAL_REP_ID,
        }
        for i, (_, name, division, _, phone) in enumerate(UNITS)
    ]
    messages = [
        RawMessage(
            "registration", "feeds.registration", 0, i, None, r["record_id"].encode(), json.dumps(r).encode()
        )
        for i, r in enumerate(records)
    ]
    _, _, sealed = parser.parse_sealed(messages)
    vault_file = store.vault_prefix(run_id, "registration").with_name("part-00000-of-00001.parquet")
    vault_file.parent.mkdir(parents=True)
    pq.write_table(sealed, vault_file)
    store.commit(
        {
            "run_id": run_id,
            "sequence": 1,
            "offsets": [],
            "feeds": {},
            "quarantine": {"by_reason": {}, "files": []},
            "contacts": {"files": [store.relative(vault_file)], "sealed": sealed.num_rows},
        }
    )
    register = pa.table(
        {
            "unit_id": [u[0] for u in UNITS],
            "name": [u[1] for u in UNITS],
            "division_code": [u[2] for u in UNITS],
            "township": [u[3] for u in UNITS],
            "phone": [_registered_phone_token(u[4]) for u in UNITS],
        }
    )
    store.write_register("reg-000001", {"register": register}, {"run_id": "reg-000001"})
    store.publish_register("reg-000001")
    return store


def _lines(store: RunStore) -> list[dict]:
    return [json.loads(line) for line in store.audit_log.read_text(encoding="utf-8").splitlines()]


def _assert_no_clear_value_in_the_log(store: RunStore) -> None:
    text = store.audit_log.read_text(encoding="utf-8")
    assert not [phone for *_, phone in UNITS if parse_phone(phone).number in text]
    assert LEGAL_REP_ID not in text


def test_the_shipped_scopes_file_parses():
    grants = load_scopes(resources.CONTACT_SCOPES)
    assert grants and all(isinstance(g, Grant) for g in grants.values())
    assert all(kind in ("phone", "id_number") for g in grants.values() for kind in g.reveal)


def test_a_reveal_gives_the_clear_value_and_leaves_its_audit_line(store):
    tokens = [_registered_phone_token(UNITS[0][4]), TOKENS.token("id_number", LEGAL_REP_ID), "t1_" + "0" * 32]
    found = reveal(
        store, Vault(VAULT_KEY), parse_scopes(SCOPES), Request("zhang.supervisor", "回访核实"), tokens
    )
    values = {row["token"]: row["value"] for row in found}
    assert values[tokens[0]] == "13700001111" and values[tokens[1]] == LEGAL_REP_ID
    assert values[tokens[2]] == ""  # not in the vault
    (line,) = _lines(store)
    assert line["who"] == "zhang.supervisor" and line["purpose"] == "回访核实" and line["action"] == "reveal"
    assert (line["count"], line["result"], line["tokens"]) == (2, "granted", sorted(tokens))
    assert line["prev"] == audit.GENESIS and line["time"].endswith("+00:00")
    _assert_no_clear_value_in_the_log(store)


def test_a_refused_scope_exits_with_a_message_and_is_audited(store):
    grants = parse_scopes(SCOPES)
    token = _registered_phone_token(UNITS[0][4])
    with pytest.raises(RefusedError, match="may not reveal single tokens"):
        reveal(store, Vault(VAULT_KEY), grants, Request("li.caller", "call"), [token])
    with pytest.raises(RefusedError, match="may not reveal id_number"):
        reveal(store, Vault(VAULT_KEY), grants | {"li.caller": Grant("li.caller", frozenset({"phone"}))},
               Request("li.caller", "call"), [TOKENS.token("id_number", LEGAL_REP_ID)])  # fmt: skip
    with pytest.raises(RefusedError, match="not in the scopes file"):
        reveal(store, Vault(VAULT_KEY), grants, Request("somebody", "curious"), [token])
    with pytest.raises(RefusedError, match=r"outside li\.caller's export scope"):
        export(store, Vault(VAULT_KEY), grants, Request("li.caller", "call"), "北山街道", "stdout")
    lines = _lines(store)
    assert [(line["who"], line["result"], line["count"]) for line in lines] == [
        ("li.caller", "refused", 0),
        ("li.caller", "refused", 0),
        ("somebody", "refused", 0),
        ("li.caller", "refused", 0),
    ]
    assert all(line["reason"] for line in lines)
    assert audit.verify_file(store.audit_log) is None
    _assert_no_clear_value_in_the_log(store)


def test_a_township_export_is_the_call_list_of_its_units(store):
    grants = parse_scopes(SCOPES)
    table = export(
        store, Vault(VAULT_KEY), grants, Request("li.caller", "普查电话核实"), "西溪街道", "calls.csv"
    )
    rows = table.to_pylist()
    assert [r["unit_id"] for r in rows] == ["U000000000001", "U000000000002"]
    assert rows[0]["phone"] == "13700001111" and rows[0]["phone_masked"] == "137****1111"
    assert rows[1]["phone"] == "057188889999" and rows[1]["phone_masked"] == "057*****9999"  # a landline
    assert rows[0]["phone_token"] == _registered_phone_token("13700001111")
    (line,) = _lines(store)
    assert (line["action"], line["township"], line["units"], line["count"], line["result"]) == (
        "export", "西溪街道", 2, 2, "granted",
    )  # fmt: skip
    assert line["register_run"] == "reg-000001" and line["to"] == "calls.csv"
    whole = export(
        store, Vault(VAULT_KEY), grants, Request("zhang.supervisor", "全区核实"), "330106", "stdout"
    )
    assert whole.num_rows == 3 and whole["phone"].null_count == 0
    _assert_no_clear_value_in_the_log(store)


def test_an_edited_or_removed_audit_line_is_named(store):
    grants, vault = parse_scopes(SCOPES), Vault(VAULT_KEY)
    token = _registered_phone_token(UNITS[0][4])
    for purpose in ("one", "two", "three"):
        reveal(store, vault, grants, Request("zhang.supervisor", purpose), [token])
    lines = store.audit_log.read_text(encoding="utf-8").splitlines()
    assert audit.verify(lines) is None
    edited = [lines[0], lines[1].replace('"two"', '"twice"'), lines[2]]
    assert audit.verify(edited)[0] == 2
    resealed = json.loads(lines[1]) | {"purpose": "twice"}  # an editor who recomputes the line's own hash
    resealed = audit.sealed_line(
        {k: v for k, v in resealed.items() if k not in ("hash", "prev")}, resealed["prev"]
    )
    assert audit.verify([lines[0], resealed, lines[2]])[0] == 3
    assert audit.verify([lines[0], lines[2]])[0] == 2


def _cli(store: RunStore, *args: str, key: bytes | None = VAULT_KEY, scopes: Path | None = None):
    env = {"UNITFUSION_VAULT_KEY": key.hex() if key else ""}
    extra = ["--scopes", str(scopes)] if scopes and args[0] != "verify-audit" else []
    return CliRunner().invoke(main, ["contacts", *args, "--out", str(store.root), *extra], env=env)


def test_the_commands_reveal_export_and_verify(store, tmp_path):
    scopes = tmp_path / "scopes.toml"
    scopes.write_text(SCOPES, encoding="utf-8")
    token = _registered_phone_token(UNITS[0][4])
    who = ["--who", "zhang.supervisor", "--purpose", "核实"]
    done = _cli(store, "reveal", "--token", token, *who, scopes=scopes)
    assert done.exit_code == 0, done.output
    assert done.output.split("\t") == [token, "phone", "137****1111", "13700001111\n"]
    calls = tmp_path / "calls.csv"
    done = _cli(store, "export", "--township", "西溪街道", "--to", str(calls), *who, scopes=scopes)
    assert done.exit_code == 0, done.output
    with calls.open(encoding="utf-8") as handle:
        assert [row["phone"] for row in csv.DictReader(handle)] == ["13700001111", "057188889999"]
    assert calls.stat().st_mode & 0o077 == 0
    refused = _cli(store, "reveal", "--token", token, "--who", "li.caller", "--purpose", "x", scopes=scopes)
    assert refused.exit_code == 1 and "refused" in refused.output and "13700001111" not in refused.output
    no_key = _cli(store, "reveal", "--token", token, *who, key=None, scopes=scopes)
    assert no_key.exit_code == 1 and "UNITFUSION_VAULT_KEY" in no_key.output
    verified = _cli(store, "verify-audit")
    assert verified.exit_code == 0 and "3 lines" in verified.output
    lines = store.audit_log.read_text(encoding="utf-8").splitlines()
    edited = lines[1].replace('"count":2', '"count":0')  # hide how many numbers the export revealed
    assert edited != lines[1]
    lines[1] = edited
    store.audit_log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    broken = _cli(store, "verify-audit")
    assert broken.exit_code == 1 and "line 2" in broken.output
    _assert_no_clear_value_in_the_log(store)
