"""A unit's best contact: candidates from every source ranked by the reviewed priority, confirmed only where
sources of two origins give the same number, carried in the register as token, masked form, source and
grade (never a clear value), followed by the register-quality shares and the call list."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.contacts.best import (
    CANDIDATE_SCHEMA,
    CONTACT_COLUMNS,
    ContactSources,
    Source,
    best_contacts,
    candidates,
    load_sources,
    parse_sources,
)
from pipelines.contacts.reveal import Request, export, parse_scopes
from pipelines.contacts.vault import Vault
from pipelines.contracts import contract, output_schema
from pipelines.ingest.parse import FeedParser
from pipelines.kafka import RawMessage
from pipelines.landing import resolve_and_land
from pipelines.mappings import load_mappings
from pipelines.marts.quality import register_quality
from pipelines.pii import Tokeniser
from pipelines.resolve.engine import DuckDBEngine
from pipelines.standardise.codes import make_uscc
from pipelines.store import RunStore
from tests.conftest import TOKEN_KEY
from tests.staging import commit_rows

TOKENS = Tokeniser(TOKEN_KEY)
QUERY = DuckDBEngine().query
WHEN = datetime(2026, 10, 1, tzinfo=UTC)
MASKED = re.compile(r"\d{3}\*{4,}\d{4}")
# Three sources of three origins, and a second one of the first origin.
SOURCES = ContactSources(
    (
        Source("register", "registration", "market"),
        Source("tax", "tax", "tax"),
        Source("rep_test", "nucleic_contact", "tests", ("legal_rep",)),
        Source("staff_test", "nucleic_contact", "tests", ("work_unit",)),
    )
)
PRIORITY = {s.name: i for i, s in enumerate(SOURCES.sources)}
ORIGIN = {s.name: s.origin for s in SOURCES.sources}


def _phone(number: str) -> str:
    return TOKENS.token("phone", number)  # type: ignore[return-value]


def _found(rows: list[tuple[str, str, str]], sources: ContactSources = SOURCES) -> pa.Table:
    """Candidates (unit, token, source) as ``candidates`` gives them, ranked by ``sources``."""
    priority = {s.name: i for i, s in enumerate(sources.sources)}
    return pa.Table.from_pylist(
        [
            {"unit_id": u, "token": t, "source": s, "origin": ORIGIN[s], "priority": priority[s]}
            for u, t, s in rows
        ],
        schema=CANDIDATE_SCHEMA,
    )


def _best(rows: list[tuple[str, str, str]], sources: ContactSources = SOURCES) -> dict[str, dict]:
    return {r["unit_id"]: r for r in best_contacts(QUERY, _found(rows, sources), sources).to_pylist()}


# -- the reviewed file --------------------------------------------------------------------------------


def test_the_reviewed_sources_follow_the_pilots_ranking():
    sources = load_sources()
    names = [s.name for s in sources.sources]
    assert names.index("registration") < names.index("tax") < names.index("legal_rep_test")
    assert {s.feed for s in sources.sources if s.linked_by} == {"nucleic_contact"}
    rep, staff = (
        next(s for s in sources.sources if s.name == n) for n in ("legal_rep_test", "employee_test")
    )
    assert "legal_rep" in rep.linked_by and "work_unit" in staff.linked_by and rep.origin == staff.origin
    assert (sources.confirmed, sources.single) == ("confirmed", "single")


def test_every_feed_with_a_phone_is_a_contact_source():
    """A new department's feed with a phone is configuration: its line in sources.toml, or no unit gets
    its number as a contact."""
    with_phone = {feed for feed, found in load_mappings().items() if "phone" in found.roles}
    assert with_phone - {s.feed for s in load_sources().sources} == set()


@pytest.mark.parametrize(
    "text",
    [
        '[[sources]]\nname = "a"\nfeed = "tax"\n',  # no origin
        '[[sources]]\nname = "a"\nfeed = "tax"\norigin = "x"\n[[sources]]\nname = "a"\nfeed = "utility"\n'
        'origin = "y"\n',  # named twice
    ],
)
def test_a_source_without_origin_or_named_twice_is_refused(text):
    with pytest.raises(ValueError):
        parse_sources(text)


# -- ranking and confirming ---------------------------------------------------------------------------


def test_the_best_source_wins_when_nothing_is_confirmed():
    rows = [("U1", _phone("13600003333"), "tax"), ("U1", _phone("13700002222"), "register")]
    best = _best(rows)["U1"]
    assert (best["contact_token"], best["contact_source"]) == (_phone("13700002222"), "register")
    assert best["contact_grade"] == "single" and best["contact_candidates"] == 2
    # the priority is the file's: put tax first and tax's number wins
    tax_first = ContactSources((SOURCES.sources[1], SOURCES.sources[0], *SOURCES.sources[2:]))
    assert _best(rows, tax_first)["U1"]["contact_source"] == "tax"


def test_a_registered_phone_the_legal_representative_also_gives_is_confirmed():
    agreed = _phone("13900001111")
    rows = [("U1", _phone("13700002222"), "register"), ("U1", agreed, "tax"), ("U1", agreed, "rep_test")]
    best = _best(rows)["U1"]
    # two origins agree on it: it beats the register's lone number, and says the best source that gives it
    assert (best["contact_token"], best["contact_grade"], best["contact_source"]) == (
        agreed,
        "confirmed",
        "tax",
    )
    alone_first = ContactSources(SOURCES.sources, prefer_confirmed=False)
    assert _best(rows, alone_first)["U1"]["contact_source"] == "register"


def test_the_same_origin_repeating_itself_confirms_nothing():
    same = _phone("13900001111")
    best = _best([("U1", same, "rep_test"), ("U1", same, "staff_test"), ("U1", same, "rep_test")])["U1"]
    assert (best["contact_grade"], best["contact_source"], best["contact_candidates"]) == (
        "single",
        "rep_test",
        1,
    )


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["U1", "U2"]), st.sampled_from("abcd"), st.sampled_from(sorted(PRIORITY))),
        min_size=1,
        max_size=12,
    )
)
def test_the_best_is_confirmed_when_any_is_and_otherwise_of_the_best_source(rows):
    best = _best(rows)
    for unit in {u for u, _, _ in rows}:
        offered: dict[str, set[str]] = {}
        for u, token, source in rows:
            if u == unit:
                offered.setdefault(token, set()).add(source)
        confirmed = {t for t, s in offered.items() if len({ORIGIN[x] for x in s}) >= 2}
        chosen = best[unit]
        assert chosen["contact_candidates"] == len(offered)
        assert (chosen["contact_grade"] == "confirmed") == (chosen["contact_token"] in confirmed)
        pool = confirmed or set(offered)
        assert chosen["contact_token"] in pool
        top = min(PRIORITY[s] for t in pool for s in offered[t])
        assert (
            PRIORITY[chosen["contact_source"]]
            == top
            == min(PRIORITY[s] for s in offered[chosen["contact_token"]])
        )


def test_candidates_come_from_entity_phones_and_linked_test_records_by_how_they_are_linked():
    members = pa.table({"entity_id": ["registration:R1", "tax:T1", "waybill:W1"], "unit_id": ["U1"] * 3})
    entities = pa.table(
        {
            "entity_id": ["registration:R1", "tax:T1", "waybill:W1"],
            "feed": ["registration", "tax", "waybill"],
            "phone": [_phone("13700002222"), _phone("12345"), _phone("13500004444")],
            "phone_kind": ["mobile", "unknown", "token"],
        }
    )
    people = pa.table(
        {"record_id": ["N1", "N2", "N3"], "phone": [_phone("13900001111"), _phone("13800001111"), None]}
    )
    links = pa.table(
        {
            "record_id": ["N1", "N2", "N3"],
            "unit_id": ["U1"] * 3,
            "matched_by": ["legal_rep", "work_unit", "x"],
        }
    )
    found = candidates(QUERY, members, entities, links, people, "nucleic_contact", SOURCES)
    got = sorted((r["token"], r["source"]) for r in found.to_pylist())
    # the unknown number and the waybill (no source for it here) give none; a test record by how it links
    assert got == sorted(
        [
            (_phone("13700002222"), "register"),
            (_phone("13900001111"), "rep_test"),
            (_phone("13800001111"), "staff_test"),
        ]
    )


# -- through a register pass ------------------------------------------------------------------------------

REP = TOKENS.token("id_number", "330106198001011234")
CLEAR = ["13900001111", "057188889999", "13700002222", "13600003333", "13500005555"]


def _registration(record_id: str, code: str, name: str, phone: str | None, rep: str | None = None) -> dict:
    return {"record_id": record_id, "uscc": make_uscc("9", "1", "330106", code), "name": name,
            "address": f"杭州市西湖区文三路{record_id[1:]}0号", "phone": phone, "legal_rep_name": "张伟",
            "legal_rep_id": rep, "division_code": "330106", "entity_type": "有限责任公司", "status": "存续",
            "updated_at": WHEN}  # fmt: skip


def _tax(record_id: str, code: str, name: str, phone: str) -> dict:
    return {"record_id": record_id, "taxpayer_id": make_uscc("9", "1", "330106", code), "taxpayer_name": name,
            "address": "杭州市西湖区文三路", "phone": phone, "period": "2026-09", "tax_paid": 100.0,
            "taxpayer_status": "正常",
            "tax_office": "国家税务总局杭州市西湖区税务局", "updated_at": WHEN}  # fmt: skip


def _person(record_id: str, who: str, phone: str, work_unit: str, id_number: str | None = None) -> dict:
    return {"record_id": record_id, "person_name": TOKENS.token("person_name", who),
            "id_number": id_number or TOKENS.token("id_number", f"3301061990010{record_id[1:]}1234"),
            "phone": _phone(phone), "work_unit": work_unit, "sampled_at": WHEN}  # fmt: skip


def _staging() -> dict[str, list[dict]]:
    """U-rep: a registered mobile its legal representative's test record also gives; U-land: a landline
    registration and tax agree on; U-two: registered and tax phones differ; U-staff: only two employees'
    test records, both giving one mobile."""
    return {
        "registration": [
            _registration("R1", "MA2H1001", "杭州汇丰科技有限公司", "13900001111", REP),
            _registration("R2", "MA2H1002", "杭州明辉餐饮管理有限公司", "0571-88889999"),
            _registration("R3", "MA2H1003", "杭州德胜五金有限公司", "13700002222"),
            _registration("R4", "MA2H1004", "杭州新月茶业有限公司", None),
        ],
        "tax": [
            _tax("T2", "MA2H1002", "杭州明辉餐饮管理有限公司", "057188889999"),
            _tax("T3", "MA2H1003", "杭州德胜五金有限公司", "13600003333"),
        ],
        "nucleic_contact": [
            _person("N1", "张伟", "13900001111", "杭州汇丰科技有限公司", REP),
            _person("N2", "赵六", "13500005555", "杭州新月茶业有限公司"),
            _person("N3", "孙七", "13500005555", "杭州新月茶业有限公司"),
        ],
    }


def _register(path: Path) -> dict[str, dict]:
    """Register rows by the registration record of their unit."""
    links = pq.read_table(path / "links.parquet").to_pylist()
    unit = {r["record_id"]: r["unit_id"] for r in links if r["feed"] == "registration"}
    rows = {r["unit_id"]: r for r in pq.read_table(path / "register.parquet").to_pylist()}
    return {record: rows[unit_id] for record, unit_id in unit.items()}


def _contact(row: dict) -> tuple:
    return tuple(row[c] for c in ("contact_source", "contact_grade", "contact_candidates"))


def test_a_pass_gives_each_unit_its_best_contact_masked_and_graded(tmp_path):
    store = RunStore(tmp_path / "out")
    commit_rows(store, _staging())
    landed = resolve_and_land(store, key=TOKEN_KEY)
    register = _register(landed.path)
    assert _contact(register["R1"]) == ("registration", "confirmed", 1)
    assert register["R1"]["contact_token"] == _phone("13900001111")
    assert _contact(register["R2"]) == ("registration", "confirmed", 1)
    assert register["R2"]["contact_masked"] == "057*****9999"  # a landline, masked from its record
    assert _contact(register["R3"]) == ("registration", "single", 2)
    assert register["R3"]["contact_masked"] == "137****2222"
    assert _contact(register["R4"]) == ("employee_test", "single", 1)  # two employees: one origin
    assert register["R4"]["contact_masked"] is None  # a person's phone, and no vault was kept
    # the figures follow the columns
    contacts = landed.meta["quality"]["contacts"]
    assert contacts == {
        "with_candidate": 4,
        "with_candidate_share": 1.0,
        "confirmed": 2,
        "confirmed_share": 0.5,
    }
    # no clear number in the register, the marts or the run's meta
    _assert_no_clear_phone(landed.path)

    # the legal representative gives another phone now (same record, same link): the unit follows
    changed = {**_staging()["nucleic_contact"][0], "phone": _phone("13100007777")}
    commit_rows(store, {"nucleic_contact": [changed]})
    again = resolve_and_land(store, key=TOKEN_KEY)
    assert again.meta["mode"] == "incremental"
    after = _register(again.path)
    assert _contact(after["R1"]) == ("registration", "single", 2)
    assert after["R2"]["run_id"] == register["R2"]["run_id"]  # untouched units keep their row


def _assert_no_clear_phone(run_dir: Path) -> None:
    """Nothing the register run publishes (its state aside, which keeps staged records) holds a number."""
    published = [p for p in run_dir.rglob("*.parquet") if "state" not in p.relative_to(run_dir).parts]
    assert published
    text = (
        "".join(str(pq.read_table(p).to_pylist()) for p in published) + (run_dir / "_meta.json").read_text()
    )
    digits = re.sub(r"[^0-9*]", "", text.replace("t1_", " "))
    assert not [n for n in CLEAR if n in text or n[-8:] in digits]


def test_a_register_from_before_contacts_is_continued_and_filled(tmp_path):
    store = RunStore(tmp_path / "out")
    commit_rows(store, _staging())
    first = resolve_and_land(store, key=TOKEN_KEY)
    path = first.path / "register.parquet"
    old = pq.read_table(path)
    pq.write_table(old.drop_columns(list(CONTACT_COLUMNS)), path)  # as an older version published it
    commit_rows(store, {"tax": [{**_staging()["tax"][0], "record_id": "T9", "period": "2026-10"}]})
    landed = resolve_and_land(store, key=TOKEN_KEY)
    assert landed.meta["mode"] == "incremental"
    assert _contact(_register(landed.path)["R3"]) == ("registration", "single", 2)  # untouched, yet filled


def test_register_quality_gives_the_shares_of_units_with_a_contact_and_a_confirmed_one():
    rows = [
        {"unit_id": "U1", "contact_token": "t1_a", "contact_grade": "confirmed", "contact_candidates": 2},
        {"unit_id": "U2", "contact_token": "t1_b", "contact_grade": "single", "contact_candidates": 1},
        {"unit_id": "U3", "contact_candidates": 0},
        {"unit_id": "U4", "contact_candidates": 0},
    ]
    schema = output_schema("register")
    tables = {
        "register": pa.Table.from_pylist([{n: r.get(n) for n in schema.names} for r in rows], schema=schema),
        "links": output_schema("links").empty_table(),
        "review": output_schema("review").empty_table(),
        "lineage": output_schema("lineage").empty_table(),
    }
    figures = register_quality(tables, {}, "reg-000001", "2026-10-01T00:00:00+00:00", WHEN.date())
    assert figures["contacts"] == {
        "with_candidate": 2,
        "with_candidate_share": 0.5,
        "confirmed": 1,
        "confirmed_share": 0.25,
    }


# -- the call list ---------------------------------------------------------------------------------------

VAULT_KEY = bytes(range(1, 33))


def test_the_call_list_gives_the_best_contact_not_the_registered_phone(tmp_path):
    """A unit whose registered mobile is not its best contact (its legal representative's mobile, confirmed
    by tax): the call list reveals the best one, with its source and grade."""
    store = RunStore(tmp_path / "out")
    run_id = store.next_run_id()
    vault = Vault(VAULT_KEY)
    sealed = []
    for feed, record in (
        ("registration", {"record_id": "R1", "name": "城西五金厂", "phone": "13700001111"}),
        ("nucleic_contact", {"record_id": "N1", "phone": "13900002222"}),
    ):
        parser = FeedParser(contract(feed), TOKENS, run_id, vault)
        message = RawMessage(feed, f"feeds.{feed}", 0, 0, None, b"R1" if feed == "registration" else b"N1",
                             json.dumps(record).encode())  # fmt: skip
        sealed.append(parser.parse_sealed([message])[2])
    vault_file = store.vault_prefix(run_id, "all").with_name("part-00000-of-00001.parquet")
    vault_file.parent.mkdir(parents=True)
    pq.write_table(pa.concat_tables(sealed), vault_file)
    store.commit({"run_id": run_id, "sequence": 1, "offsets": [], "feeds": {},
                  "quarantine": {"by_reason": {}, "files": []},
                  "contacts": {"files": [store.relative(vault_file)], "sealed": 2}})  # fmt: skip
    register = pa.table(
        {
            "unit_id": ["U000000000001"],
            "name": ["城西五金厂"],
            "division_code": ["330106"],
            "township": ["西溪街道"],
            "phone": [_phone("13700001111")],
            "contact_token": [_phone("13900002222")],
            "contact_masked": ["139****2222"],
            "contact_source": ["tax"],
            "contact_grade": ["confirmed"],
            "contact_candidates": [2],
        }
    )
    store.write_register("reg-000001", {"register": register}, {"run_id": "reg-000001"})
    store.publish_register("reg-000001")
    scopes = parse_scopes('[people."li.caller"]\nexport = ["330106"]\n')
    listed = export(
        store, vault, scopes, Request("li.caller", "普查电话核实"), "330106", "calls.csv"
    ).to_pylist()
    assert [(r["phone"], r["phone_masked"], r["phone_source"], r["phone_grade"]) for r in listed] == [
        ("13900002222", "139****2222", "tax", "confirmed")
    ]
    assert listed[0]["phone_token"] == _phone("13900002222")
