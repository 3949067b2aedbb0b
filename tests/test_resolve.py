"""Resolution on hand-made staging: the USCC constraint, person links, verdicts, stable ids, atomic landing."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest

from pipelines.landing import resolve_and_land
from pipelines.pii import Tokeniser
from pipelines.standardise.codes import make_uscc
from pipelines.store import RunStore
from tests.conftest import TOKEN_KEY
from tests.staging import commit_rows

TOKENS = Tokeniser(b"resolve-test-key-0123")
REP = TOKENS.token("id_number", "330106198001011234")
PARENT = make_uscc("9", "1", "330106", "MA2H1001")
BRANCH = make_uscc("9", "1", "330108", "MA2H1002")
WHEN = datetime(2026, 10, 1, tzinfo=UTC)


def _registrations():
    return [
        {"record_id": "R1", "uscc": PARENT, "name": "杭州汇丰科技有限公司", "address": "浙江省杭州市西湖区文三路90号501室",
         "phone": "0571-88889999", "legal_rep_name": "张伟", "legal_rep_id": REP, "division_code": "330106",
         "entity_type": "有限责任公司", "status": "存续", "updated_at": WHEN},
        {"record_id": "R2", "uscc": BRANCH, "name": "杭州汇丰科技有限公司滨江分公司", "address": "杭州市滨江区江南大道100号",
         "phone": "0571-88889999", "legal_rep_name": "张伟", "legal_rep_id": REP, "division_code": "330108",
         "entity_type": "分公司", "status": "存续", "updated_at": WHEN},
        {"record_id": "R3", "uscc": make_uscc("9", "1", "330105", "MA2H1003"), "name": "杭州明辉餐饮管理有限公司",
         "address": "杭州市拱墅区湖墅南路100号", "phone": "13900001111", "legal_rep_name": "李娜",
         "division_code": "330105", "status": "存续", "updated_at": WHEN},
    ]  # fmt: skip


def _tax(period: str, record_id: str):
    legacy = "330106" + PARENT[8:17]  # the old 15-character taxpayer id of the parent
    return {"record_id": record_id, "taxpayer_id": legacy, "taxpayer_name": "杭州汇丰科技有限责任公司",
            "address": "西湖区文三路90号", "period": period, "tax_paid": 1200.0, "taxpayer_status": "正常",
            "tax_office": "国家税务总局杭州市西湖区税务局", "updated_at": WHEN}  # fmt: skip


def _staging():
    return {
        "registration": _registrations(),
        "tax": [_tax("2026-08", "T1"), _tax("2026-09", "T2")],
        "utility": [
            {"record_id": "E1", "account_no": "3301001", "account_name": "杭州汇丰科技有限公司", "meter_no": "M1",
             "address": "杭州市西湖区文三路90号501", "phone": "0571-88889999", "customer_class": "一般工商业",
             "period": "2026-09", "kwh": 3000.0, "updated_at": WHEN},
            {"record_id": "E2", "account_no": "3301001", "account_name": "杭州汇丰科技有限公司", "meter_no": "M2",
             "address": "杭州市西湖区文三路90号501", "phone": "0571-88889999", "customer_class": "一般工商业",
             "period": "2026-09", "kwh": 200.0, "updated_at": WHEN},
        ],
        "waybill": [
            {"record_id": "W1", "carrier": "顺丰", "sender_name": "王芳", "sender_phone": TOKENS.token("phone", "13700001111"),
             "sender_address": "杭州市西湖区某小区1幢", "shipped_at": WHEN, "parcel_count": 1},
        ],
        "nucleic_contact": [
            {"record_id": "N1", "person_name": TOKENS.token("person_name", "张伟"), "id_number": REP,
             "work_unit": "杭州汇丰科技有限公司", "sampled_at": WHEN},
            {"record_id": "N2", "person_name": TOKENS.token("person_name", "赵六"),
             "id_number": TOKENS.token("id_number", "330106199001011234"), "work_unit": "明辉餐饮管理有限公司",
             "sampled_at": WHEN},
            {"record_id": "N3", "person_name": TOKENS.token("person_name", "孙七"),
             "id_number": TOKENS.token("id_number", "330106199101011234"), "work_unit": "某某个人", "sampled_at": WHEN},
        ],
    }  # fmt: skip


def _links(path):
    table = pq.read_table(path / "links.parquet").to_pylist()
    return {(r["feed"], r["record_id"]): r for r in table}


@pytest.fixture
def store(tmp_path) -> RunStore:
    store = RunStore(tmp_path / "out")
    commit_rows(store, _staging())
    return store


def test_siblings_stay_apart_and_evidence_attaches_to_the_right_unit(store):
    landed = resolve_and_land(store, key=TOKEN_KEY)
    links = _links(landed.path)
    unit = {key: row["unit_id"] for key, row in links.items()}
    assert unit[("registration", "R1")] != unit[("registration", "R2")]  # same phone and rep, two USCCs
    assert unit[("tax", "T1")] == unit[("tax", "T2")] == unit[("registration", "R1")]
    assert links[("tax", "T1")]["matched_by"] == "org_code"
    assert unit[("utility", "E1")] == unit[("registration", "R1")]
    assert links[("utility", "E1")]["matched_by"] == "model"
    assert links[("utility", "E1")]["field_weights"]  # a reviewer can see why
    assert ("waybill", "W1") not in links  # a private sender belongs to no unit
    # The rep of two units: the work unit decides; an employee links through the work unit name.
    assert unit[("nucleic_contact", "N1")] == unit[("registration", "R1")]
    assert links[("nucleic_contact", "N1")]["matched_by"] == "legal_rep"
    assert unit[("nucleic_contact", "N2")] == unit[("registration", "R3")]
    assert links[("nucleic_contact", "N2")]["matched_by"] == "work_unit"
    assert ("nucleic_contact", "N3") not in links
    register = {r["unit_id"]: r for r in pq.read_table(landed.path / "register.parquet").to_pylist()}
    parent = register[unit[("registration", "R1")]]
    assert parent["multi_meter"] and parent["tax_active"] and parent["power_active"]
    assert parent["name"] == "杭州汇丰科技有限公司" and parent["uscc"] == PARENT
    assert "330106198001011234" not in str(register) + str(links)
    # the meter scores higher against the parent than against its branch: no question for a township
    review = pq.read_table(landed.path / "review.parquet").to_pylist()
    assert "rival_unit" not in {r["reason"] for r in review}


def test_an_organisation_code_inside_two_uscc_joins_neither_by_code(tmp_path):
    """Two USCCs sharing the organisation code of a legacy taxpayer id: picking either by code is a guess (and
    one that flipped between incremental runs); the model decides, as for any record without a code."""
    staging = _staging()
    twin = make_uscc("9", "2", "330108", "MA2H1001")  # another USCC with the parent's organisation code
    staging["registration"].append(
        {**staging["registration"][2], "record_id": "R4", "uscc": twin, "name": "杭州汇丰贸易有限公司"}
    )
    store = RunStore(tmp_path / "out")
    commit_rows(store, staging)
    links = _links(resolve_and_land(store, key=TOKEN_KEY).path)
    assert links[("tax", "T1")]["matched_by"] != "org_code"
    assert links[("registration", "R4")]["unit_id"] != links[("registration", "R1")]["unit_id"]


def test_ids_stay_stable_when_new_data_arrives_and_nothing_new_is_a_noop(store):
    first = _links(resolve_and_land(store, key=TOKEN_KEY).path)
    assert resolve_and_land(store, key=TOKEN_KEY) is None  # inputs unchanged
    commit_rows(store, {"tax": [_tax("2026-10", "T3")]})
    second_path = resolve_and_land(store, key=TOKEN_KEY).path
    second = _links(second_path)
    assert {k: v["unit_id"] for k, v in first.items()} == {
        k: v["unit_id"] for k, v in second.items() if k in first
    }
    assert second[("tax", "T3")]["unit_id"] == first[("registration", "R1")]["unit_id"]
    assert store.register_latest() == second_path.resolve()
    assert pq.read_table(second_path / "lineage.parquet").num_rows == 0


def test_a_verdict_overrides_the_model_and_keeps_applying(store, tmp_path):
    first = _links(resolve_and_land(store, key=TOKEN_KEY).path)
    parent = first[("registration", "R1")]["unit_id"]
    verdict = tmp_path / "xihu-2026-11.csv"
    verdict.write_text(
        "verdict_id,feed,record_id,unit_id_a,unit_id_b,decision,decided_by,decided_at,note\n"
        f"V1,utility,E1,,{parent},different_units,文新街道办,2026-11-05T10:00:00+08:00,现场核查为另一家\n",
        encoding="utf-8",
    )
    from pipelines.townships.verdict_files import add_verdict_file

    add_verdict_file(verdict, store.verdicts_dir)
    second = _links(resolve_and_land(store, key=TOKEN_KEY).path)
    assert second[("utility", "E1")]["unit_id"] != parent
    assert second[("registration", "R1")]["unit_id"] == parent
    commit_rows(store, {"tax": [_tax("2026-10", "T3")]})
    third = _links(resolve_and_land(store, key=TOKEN_KEY).path)
    assert third[("utility", "E1")]["unit_id"] != parent  # still applies a run later


def test_landing_is_atomic_and_runs_are_immutable(store, monkeypatch):
    first = resolve_and_land(store, key=TOKEN_KEY).path

    def broken_write(*args, **kwargs):
        raise OSError("disk full")

    with monkeypatch.context() as patched, pytest.raises(OSError):
        patched.setattr(pq, "write_table", broken_write)
        resolve_and_land(store, force=True, key=TOKEN_KEY)
    assert store.register_latest() == first.resolve()  # readers still see the complete previous run
    assert sorted(p.name for p in (store.register_dir / "runs").iterdir() if not p.name.startswith(".")) == [
        first.name
    ]
    second = resolve_and_land(store, force=True, key=TOKEN_KEY).path
    assert second != first and first.exists() and store.register_latest() == second.resolve()


def test_an_address_without_its_city_is_placed_by_the_city_in_the_name():
    """通州区 is a district of Beijing and of Nantong: the account name's 北京 decides, so the account blocks
    and compares with its registration; with no city anywhere the district stays unknown."""
    from pipelines.resolve.entities import SOURCES

    def account(record_id: str, name: str) -> dict:
        return {"record_id": record_id, "account_no": record_id, "account_name": name, "uscc": None,
                "phone": None, "address": "通州区通胡大街178号2幢", "customer_class": "大工业用电"}  # fmt: skip

    build = SOURCES["utility"].build
    placed = build("utility:A1", account("A1", "北京明竹成服饰有限公司"), TOKENS)
    unplaced = build("utility:A2", account("A2", "明竹成服饰有限公司"), TOKENS)
    assert (placed.district_code, placed.street_key) == ("110112", "通胡大街178")
    assert unplaced.district_code is None


def test_an_address_naming_its_city_in_full_is_read_as_written_whatever_the_records_code_says():
    """A Beijing firm's account for its Hangzhou site carries the Beijing USCC, whose division is no hint
    for 杭州市上城区: the address names its city and district in full and is read as written."""
    from pipelines.resolve.entities import SOURCES

    account = {"record_id": "A1", "account_no": "A1", "account_name": "北京明竹成服饰有限公司",
               "uscc": make_uscc("9", "1", "110105", "MA2H5001"), "phone": None,
               "address": "杭州市上城区望江东路63号2215房", "customer_class": "一般工商业"}  # fmt: skip
    built = SOURCES["utility"].build("utility:A1", account, TOKENS)
    assert (built.district_code, built.street_key) == ("330102", "望江东路63")


def test_a_record_whose_district_stays_unknown_still_meets_its_unit_by_trade_name_and_street(tmp_path):
    """The account 明竹成服饰 at 通州区通胡大街178号 names no city: its district stays unknown, so no
    blocking rule on the district brings it to the registration at that number. The trade name at the same
    street number does, and the model links it."""
    staging = {
        "registration": [
            {"record_id": "R1", "uscc": make_uscc("9", "1", "110112", "MA2H2001"), "name": "北京明竹成服饰有限公司",
             "address": "北京市通州区通胡大街178号2幢", "phone": "010-61234567", "legal_rep_name": "韩梅",
             "division_code": "110112", "status": "存续", "updated_at": WHEN},
        ],
        "utility": [
            {"record_id": "E1", "account_no": "1100001", "account_name": "明竹成服饰", "meter_no": "M1",
             "address": "通州区通胡大街178号2幢", "phone": "13522223333", "customer_class": "一般工商业",
             "period": "2026-09", "kwh": 900.0, "updated_at": WHEN},
        ],
    }  # fmt: skip
    store = RunStore(tmp_path / "out")
    commit_rows(store, staging)
    links = _links(resolve_and_land(store, key=TOKEN_KEY).path)
    assert links[("utility", "E1")]["unit_id"] == links[("registration", "R1")]["unit_id"]
    assert links[("utility", "E1")]["matched_by"] == "model"


def test_a_legal_rep_without_a_usable_id_number_links_by_name_only_with_the_units_phone(tmp_path):
    """R3's licence has no ID number: 李娜's test record joins it through her name, but only when her phone
    is the unit's; a namesake with another phone stays unlinked."""
    tokens = Tokeniser(TOKEN_KEY)  # the key the run itself tokenises with
    staging = _staging()
    staging["nucleic_contact"] += [
        {"record_id": "N4", "person_name": tokens.token("person_name", "李 娜"), "id_number": None,
         "phone": tokens.token("phone", "13900001111"), "sampled_at": WHEN},
        {"record_id": "N5", "person_name": tokens.token("person_name", "李娜"), "id_number": None,
         "phone": tokens.token("phone", "13900002222"), "sampled_at": WHEN},
    ]  # fmt: skip
    store = RunStore(tmp_path / "out")
    commit_rows(store, staging)
    links = _links(resolve_and_land(store, key=TOKEN_KEY).path)
    assert links[("nucleic_contact", "N4")]["unit_id"] == links[("registration", "R3")]["unit_id"]
    assert links[("nucleic_contact", "N4")]["matched_by"] == "legal_rep_name"
    assert ("nucleic_contact", "N5") not in links


def test_a_record_with_the_full_registered_name_joins_that_unit_unless_it_is_elsewhere(tmp_path):
    """An electricity account with no address and another phone still carries 杭州明辉餐饮管理有限公司, a name
    registered once: it joins R3. The same name at an address in another district does not."""
    staging = _staging()
    account = {"account_name": "杭州明辉餐饮管理有限责任公司", "customer_class": "一般工商业", "period": "2026-09",
               "kwh": 10.0, "phone": "13811112222", "updated_at": WHEN}  # fmt: skip
    staging["utility"] += [
        {**account, "record_id": "E3", "account_no": "3301003"},
        {
            **account,
            "record_id": "E4",
            "account_no": "3301004",
            "address": "杭州市余杭区文一西路9号",
            "phone": "13833334444",
        },
    ]
    store = RunStore(tmp_path / "out")
    commit_rows(store, staging)
    links = _links(resolve_and_land(store, key=TOKEN_KEY).path)
    assert links[("utility", "E3")]["unit_id"] == links[("registration", "R3")]["unit_id"]
    assert links[("utility", "E3")]["matched_by"] == "registered_name"
    assert links[("utility", "E4")]["unit_id"] != links[("registration", "R3")]["unit_id"]


def test_a_record_as_like_one_sibling_as_the_other_lands_the_same_way_whatever_order_the_engine_returns(
    tmp_path, monkeypatch
):
    """Two licences of one operator at one address and phone (一户多证), and a meter in the operator's own name
    with that address and phone: the model scores it the same against both. DuckDB may return the pairs in
    any order; the register must not depend on it."""
    from pipelines.resolve import resolver

    staging = _staging()
    sibling = {**staging["registration"][0], "record_id": "R4", "name": "杭州悦达商贸有限公司",
               "uscc": make_uscc("9", "1", "330106", "MA2H1004")}  # fmt: skip
    staging["registration"].append(sibling)
    staging["utility"] = [
        {"record_id": "E9", "account_no": "3301009", "account_name": "张伟", "meter_no": "M9",
         "address": "杭州市西湖区文三路90号501", "phone": "0571-88889999", "customer_class": "一般工商业",
         "period": "2026-09", "kwh": 900.0, "updated_at": WHEN}
    ]  # fmt: skip
    real_score = resolver.score_new
    placed = []
    for reverse in (False, True):

        def score_new(*args, reverse=reverse, **kwargs):
            edges = real_score(*args, **kwargs)
            return edges.take(list(range(edges.num_rows))[::-1]) if reverse else edges

        monkeypatch.setattr(resolver, "score_new", score_new)
        store = RunStore(tmp_path / f"out-{reverse}")
        commit_rows(store, staging)
        landed = resolve_and_land(store, key=TOKEN_KEY)
        links = _links(landed.path)
        sibling_of = {links[("registration", r)]["unit_id"]: r for r in ("R1", "R4")}
        assert len(sibling_of) == 2  # two USCCs stay two units
        meter = links[("utility", "E9")]
        placed.append((sibling_of.get(meter["unit_id"]), meter["matched_by"]))
        # and a township is asked whose meter it is
        review = {r["review_id"]: r for r in pq.read_table(landed.path / "review.parquet").to_pylist()}
        item = review["utility/E9"]
        assert item["reason"] == "rival_unit" and item["current_unit_id"] == meter["unit_id"]
        assert item["candidate_unit_ids"][0] in sibling_of.keys() - {meter["unit_id"]}
    assert placed[0] == placed[1] and placed[0][0] in ("R1", "R4"), placed


@pytest.mark.parametrize(
    ("customer_class", "is_person"),
    [
        ("居民", True),
        ("城乡居民生活用电", True),  # another grid's spelling: not a prefix of 居民生活用电 nor starting 居民
        ("居民生活用电（不满1千伏）", True),
        ("一户一表居民用户", True),
        ("工商业及其他用电", False),
        ("非居民照明", False),  # contains 居民 but is a business tariff
        ("其他", False),  # unknown: counted by the vocabulary, never taken for a household
        (None, False),
    ],
)
def test_whether_an_account_is_a_households_comes_from_the_tariff_vocabulary(customer_class, is_person):
    from pipelines.resolve.entities import SOURCES

    account = {"record_id": "A1", "account_no": "A1", "account_name": "王芳", "uscc": None, "phone": None,
               "address": "杭州市西湖区文三路90号", "customer_class": customer_class}  # fmt: skip
    build = SOURCES["utility"].build
    assert build("utility:A1", account, TOKENS).is_person is is_person
    with_code = {**account, "uscc": make_uscc("9", "1", "330106", "MA2H1009")}
    assert build("utility:A1", with_code, TOKENS).is_person is False  # a USCC makes it a unit's account


@pytest.mark.parametrize(("customer_class", "own_unit"), [("城乡居民生活用电", False), ("非居民照明", True)])
def test_a_household_account_in_another_grids_spelling_is_not_made_a_unit(tmp_path, customer_class, own_unit):
    """A household meter in a resident's name, far from every unit, stays a person's account; the same account
    on a business tariff is an unregistered business of its own."""
    staging = _staging()
    staging["utility"].append(
        {"record_id": "E7", "account_no": "3301007", "account_name": "王芳", "meter_no": "M7",
         "address": "杭州市上城区望江东路8号3幢2单元501", "phone": "13722223333", "customer_class": customer_class,
         "period": "2026-09", "kwh": 180.0, "updated_at": WHEN}
    )  # fmt: skip
    store = RunStore(tmp_path / "out")
    commit_rows(store, staging)
    links = _links(resolve_and_land(store, key=TOKEN_KEY).path)
    assert (("utility", "E7") in links) is own_unit
    if own_unit:
        others = {link["unit_id"] for key, link in links.items() if key != ("utility", "E7")}
        assert links[("utility", "E7")]["unit_id"] not in others


def test_an_accounts_bill_that_lost_its_address_does_not_speak_for_the_account(tmp_path):
    """The newest of the most complete bills speaks: September's bill came without an address, August's gives
    it, so the account keeps its street (and can meet the unit there)."""
    staging = _staging()
    bill = {"account_no": "3301005", "account_name": "明辉餐饮", "meter_no": "M5", "phone": None,
            "customer_class": "一般工商业", "kwh": 50.0, "updated_at": WHEN}  # fmt: skip
    staging["utility"] += [
        {**bill, "record_id": "E5", "period": "2026-08", "address": "杭州市拱墅区湖墅南路100号"},
        {**bill, "record_id": "E6", "period": "2026-09", "address": None, "updated_at": datetime(2026, 10, 2, tzinfo=UTC)},
    ]  # fmt: skip
    store = RunStore(tmp_path / "out")
    commit_rows(store, staging)
    landed = resolve_and_land(store, key=TOKEN_KEY)
    entities = pq.read_table(landed.path / "state" / "entities.parquet").to_pylist()
    account = next(e for e in entities if e["entity_id"] == "utility:3301005")
    assert (account["rep_record_id"], account["street_key"]) == ("E5", "湖墅南路100")


def test_an_account_or_waybill_in_a_persons_name_compares_as_that_person_and_keeps_no_clear_name():
    """A business power account in the owner's (or a landlord's) name, and a waybill whose company field
    carries the sender's own name: no trade name to compare, the person as a legal representative would be,
    and the name itself only as a token."""
    from pipelines.resolve.entities import SOURCES

    account = {"record_id": "A1", "account_no": "A1", "account_name": "张伟", "uscc": None, "phone": None,
               "address": "杭州市西湖区文三路90号501室", "customer_class": "一般工商业"}  # fmt: skip
    waybill = {"record_id": "W9", "sender_company": "张伟明", "sender_name": TOKENS.token("person_name", "张伟明"),
               "sender_phone": None, "sender_address": "杭州市西湖区文三路90号"}  # fmt: skip
    held = SOURCES["utility"].build("utility:A1", account, TOKENS)
    sent = SOURCES["waybill"].build("waybill:W9", waybill, TOKENS)
    for entity, person in ((held, "张伟"), (sent, "张伟明")):
        assert entity.trade_name is None and entity.name_core is None
        assert entity.name == entity.legal_rep_name_token == TOKENS.token("person_name", person)
        assert entity.is_person is False  # a business account, a sender that may be an online shop
    shop = SOURCES["utility"].build("utility:A2", {**account, "account_name": "张记面馆"}, TOKENS)
    assert shop.trade_name and shop.name == "张记面馆"


def test_the_model_compares_legal_representatives_by_their_token_on_every_side():
    """A licence carries the name in clear, a waybill only as a token: the model reads the token of both."""
    import pyarrow as pa

    from pipelines.resolve.engine import DuckDBEngine
    from pipelines.resolve.entities import ENTITY_SCHEMA
    from pipelines.resolve.model import model_frame

    token = TOKENS.token("person_name", "张伟")
    rows = [{"entity_id": "registration:R1", "feed": "registration", "legal_rep_name": "张伟",
             "legal_rep_name_token": token, "is_person": False},
            {"entity_id": "waybill:W1", "feed": "waybill", "legal_rep_name": token,
             "legal_rep_name_token": token, "is_person": True}]  # fmt: skip
    frame = model_frame(DuckDBEngine(), pa.Table.from_pylist(rows, schema=ENTITY_SCHEMA))
    assert frame["legal_rep_name"].to_pylist() == [token, token]


@pytest.mark.parametrize(("kind", "joins"), [("full", True), ("core", False)])
def test_a_work_units_full_name_joins_its_unit_whatever_city_the_person_lives_in(kind, joins):
    """杭州某某有限公司 named by someone living in Hefei is still the Hangzhou unit: a full name says where it
    is. A bare name (core) found only in another city than the person's stays unlinked (a namesake there)."""
    from pipelines.resolve.persons import Person, _decide

    person = Person("N9", "3401", (), None, None)
    decided = _decide(person, {"work": {1: {"U1"}}}, {1: kind}, {"U1": "3301"}, {}, {"U1": set()})
    assert decided == (("U1", "work_unit") if joins else None)


@pytest.mark.parametrize(
    ("site", "district"),
    [
        ("萧山区人民医院采样点", "330109"),
        ("杭州市西湖区文化广场采样点", "330106"),
        ("临江街道香樟社区核酸采样点", None),  # a township of Hangzhou, not 临江市 in Jilin
        ("五常街道香樟社区核酸采样点", None),  # not 五常市 in Heilongjiang
        ("萧山文化广场便民采样点", None),  # a short name says too little
    ],
)
def test_a_test_site_places_a_person_only_when_it_names_a_division_in_full(site, district):
    """Without a home address, the test site is where the person lives; a site named after its township
    must not put the person in a far city whose short name the township shares (and so rule out every unit of
    the person's own city)."""
    from pipelines.resolve.persons import _person

    person = _person({"record_id": "N1", "address": None, "site": site, "phone": None, "moment": None})
    assert person.city == (district[:4] if district else None)


def test_a_bare_trade_name_names_every_unit_of_that_name_alike(tmp_path):
    """赵六's other test names 金诚, a trade name two units in Hangzhou have: 杭州金诚机械设备有限公司 and
    浙江金诚软件有限公司, whose waybills write its name as bare 金诚. The bare form on a waybill makes the
    software firm no likelier: the test joins neither. 吴十 names 鸿运, and the one unit of that trade name in
    Hangzhou is a Beijing firm's branch there: his test joins it."""
    tokens = Tokeniser(TOKEN_KEY)  # the key the run itself tokenises with
    staging = _staging()
    staging["registration"] += [
        {"record_id": f"R{n}", "uscc": make_uscc("9", "1", "330106", f"MA2H200{n}"), "name": name,
         "address": f"杭州市西湖区天目山路{n}号", "phone": f"0571-8666000{n}", "legal_rep_name": rep,
         "division_code": "330106", "status": "存续", "updated_at": WHEN}
        for n, name, rep in ((7, "杭州金诚机械设备有限公司", "钱八"), (8, "浙江金诚软件有限公司", "孙九"),
                             (9, "北京鸿运机械设备有限公司杭州分公司", "王五"))
    ]  # fmt: skip
    staging["waybill"].append(
        {"record_id": "W2", "carrier": "顺丰", "sender_company": "金诚", "sender_name": tokens.token("person_name", "孙九"),
         "sender_phone": tokens.token("phone", "057186660008"), "sender_address": "杭州市西湖区天目山路8号",
         "shipped_at": WHEN, "parcel_count": 3}
    )  # fmt: skip
    staging["nucleic_contact"].append(
        {"record_id": "N8", "person_name": tokens.token("person_name", "周九"),
         "id_number": tokens.token("id_number", "330106199201011234"), "work_unit": "金诚",
         "address": "杭州市西湖区文三路1号", "sampled_at": WHEN}
    )  # fmt: skip
    staging["nucleic_contact"].append(
        {"record_id": "N9", "person_name": tokens.token("person_name", "吴十"),
         "id_number": tokens.token("id_number", "330106199301011234"), "work_unit": "鸿运",
         "address": "杭州市西湖区文三路2号", "sampled_at": WHEN}
    )  # fmt: skip
    store = RunStore(tmp_path / "out")
    commit_rows(store, staging)
    links = _links(resolve_and_land(store, key=TOKEN_KEY).path)
    assert links[("waybill", "W2")]["unit_id"] == links[("registration", "R8")]["unit_id"]
    assert links[("registration", "R7")]["unit_id"] != links[("registration", "R8")]["unit_id"]
    assert ("nucleic_contact", "N8") not in links
    assert links[("nucleic_contact", "N9")]["unit_id"] == links[("registration", "R9")]["unit_id"]


def test_a_register_published_before_review_items_were_explained_is_continued(store):
    """An older register's review table lacks today's columns (why, importance …): the next run reads it
    with those columns null instead of failing."""
    first = resolve_and_land(store, key=TOKEN_KEY)
    review_path = first.path / "review.parquet"
    old = pq.read_table(review_path)
    pq.write_table(
        old.drop_columns(["why", "importance", "match_weights", "match_weight", "compared"]), review_path
    )
    commit_rows(store, {"tax": [_tax("2026-10", "T3")]})
    second = resolve_and_land(store, key=TOKEN_KEY)
    assert second is not None and second.meta["mode"] == "incremental"
    assert "why" in pq.read_table(second.path / "review.parquet").column_names


@pytest.mark.parametrize("second_licence_there", [False, True])
def test_a_power_account_in_a_persons_name_joins_the_one_registered_unit_at_its_premises(
    tmp_path, second_licence_there
):
    """A shop's meter often stays in the landlord's name: a business account held by a person, at the site of
    exactly one registered unit, is that unit's. With a second licence at the same site it is not decided."""
    staging = _staging()
    staging["utility"].append(
        {"record_id": "E8", "account_no": "3301008", "account_name": "周建国", "meter_no": "M8",
         "address": "杭州市拱墅区湖墅南路100号", "phone": "13755556666", "customer_class": "一般工商业",
         "period": "2026-09", "kwh": 900.0, "updated_at": WHEN}
    )  # fmt: skip
    if second_licence_there:
        staging["registration"].append(
            {"record_id": "R4", "uscc": make_uscc("9", "2", "330105", "MA2H1004"), "name": "拱墅区周记烟酒店",
             "address": "杭州市拱墅区湖墅南路100号", "phone": "13700009999", "legal_rep_name": "周建华",
             "division_code": "330105", "status": "存续", "updated_at": WHEN}
        )  # fmt: skip
    store = RunStore(tmp_path / "out")
    commit_rows(store, staging)
    links = _links(resolve_and_land(store, key=TOKEN_KEY).path)
    account = links[("utility", "E8")]
    if second_licence_there:
        assert account["matched_by"] != "premises"
    else:
        assert account["unit_id"] == links[("registration", "R3")]["unit_id"]
        assert account["matched_by"] == "premises"


def test_two_senders_sharing_only_a_name_are_held_below_the_link_threshold():
    """Online shops with one name are many: two waybill senders with the same name but another street and
    no common phone stay in the review band; the same name with the same phone, or a street on one side only,
    keeps the model's score, and so does any pair that is not two senders."""
    import pyarrow as pa

    from pipelines.resolve.engine import DuckDBEngine
    from pipelines.resolve.evidence import namesake_senders_held_back
    from pipelines.resolve.model import EDGE_SCHEMA

    rows = [("w1", "waybill", "p1", "体育场路355"), ("w2", "waybill", "p2", "丽水路37"),
            ("w3", "waybill", "p1", "丽水路37"), ("w4", "waybill", None, None),
            ("r1", "registration", "p9", "丽水路37")]  # fmt: skip
    entities = pa.table(
        {name: [r[i] for r in rows] for i, name in enumerate(("entity_id", "feed", "phone", "street_key"))}
    )
    pairs = [("w1", "w2"), ("w1", "w3"), ("w1", "w4"), ("w1", "r1")]
    edges = pa.table(
        {"a": [a for a, _ in pairs], "b": [b for _, b in pairs], "probability": [0.9999] * 4,
         "matched_by": ["model"] * 4, "weights": [None] * 4},
        schema=EDGE_SCHEMA,
    )  # fmt: skip
    held = namesake_senders_held_back(DuckDBEngine(), entities, edges, 0.99)
    scores = dict(
        zip(
            zip(held["a"].to_pylist(), held["b"].to_pylist(), strict=True),
            held["probability"].to_pylist(),
            strict=True,
        )
    )
    assert scores[("w1", "w2")] < 0.99
    assert scores[("w1", "w3")] == scores[("w1", "w4")] == scores[("w1", "r1")] == 0.9999


def test_a_test_record_naming_a_shared_name_joins_the_unit_the_persons_other_records_are_in(tmp_path):
    """赵六 names 杭州明辉餐饮管理有限公司 on one test and only 明辉 on another, a name two units in the city
    share: the second joins the unit the first is in. Someone else naming only 明辉 stays unlinked."""
    staging = _staging()
    staging["registration"].append(
        {"record_id": "R5", "uscc": make_uscc("9", "1", "330106", "MA2H1005"), "name": "杭州明辉科技有限公司",
         "address": "杭州市西湖区天目山路8号", "phone": "0571-86660000", "legal_rep_name": "钱八",
         "division_code": "330106", "status": "存续", "updated_at": WHEN}
    )  # fmt: skip
    zhao = TOKENS.token("id_number", "330106199001011234")  # N2's, as _staging gives it
    other = TOKENS.token("id_number", "330106199201011234")
    staging["nucleic_contact"] += [
        {"record_id": "N6", "person_name": TOKENS.token("person_name", "赵六"), "id_number": zhao,
         "work_unit": "明辉", "sampled_at": WHEN},
        {"record_id": "N7", "person_name": TOKENS.token("person_name", "周九"), "id_number": other,
         "work_unit": "明辉", "sampled_at": WHEN},
    ]  # fmt: skip
    store = RunStore(tmp_path / "out")
    commit_rows(store, staging)
    links = _links(resolve_and_land(store, key=TOKEN_KEY).path)
    assert links[("nucleic_contact", "N2")]["unit_id"] == links[("registration", "R3")]["unit_id"]
    assert links[("nucleic_contact", "N6")]["unit_id"] == links[("registration", "R3")]["unit_id"]
    assert links[("nucleic_contact", "N6")]["matched_by"] == "same_person"
    assert ("nucleic_contact", "N7") not in links


def test_a_test_record_naming_nothing_joins_the_one_unit_whose_phone_it_gives(tmp_path):
    """A shop known only by its meter gives its owner's mobile, and 周九's test (no work unit, no licence)
    gives that number: it joins the shop. R3's licence names its representative, 李娜: 吴十, who gives R3's
    phone, is a contact there, not R3's record. A phone two units give decides nothing, and a phone a unit
    gives only from a later batch attaches the earlier test record then."""
    tokens = Tokeniser(TOKEN_KEY)  # the key the run itself tokenises with
    staging = _staging()
    meter = {"meter_no": "M9", "address": "杭州市西湖区保俶路5号", "customer_class": "一般工商业", "period": "2026-09",
             "kwh": 420.0, "updated_at": WHEN}  # fmt: skip
    staging["utility"].append(
        {
            **meter,
            "record_id": "E8",
            "account_no": "3301008",
            "account_name": "山野茶叶小店",
            "phone": "13900005555",
        }
    )
    staging["nucleic_contact"] += [
        {"record_id": f"N{n}", "person_name": tokens.token("person_name", name),
         "id_number": tokens.token("id_number", f"33010619920{n}011234"), "phone": tokens.token("phone", phone),
         "sampled_at": WHEN}
        for n, name, phone in (("8", "周九", "13900005555"), ("9", "吴十", "13900001111"),
                               ("10", "郑一", "0571-88889999"), ("11", "冯二", "13600007777"))
    ]  # fmt: skip
    store = RunStore(tmp_path / "out")
    commit_rows(store, staging)
    links = _links(resolve_and_land(store, key=TOKEN_KEY).path)
    assert links[("nucleic_contact", "N8")]["unit_id"] == links[("utility", "E8")]["unit_id"]
    assert links[("nucleic_contact", "N8")]["matched_by"] == "same_phone"
    assert ("nucleic_contact", "N9") not in links  # R3's phone; R3 names 李娜
    assert links[("registration", "R1")]["unit_id"] != links[("registration", "R2")]["unit_id"]
    assert ("nucleic_contact", "N10") not in links  # R1's and R2's phone
    assert ("nucleic_contact", "N11") not in links

    commit_rows(store, {"utility": [
        {**meter, "record_id": "E9", "account_no": "3301009", "account_name": "冯记茶饮店", "phone": "13600007777",
         "address": "杭州市西湖区保俶路9号"},
    ]})  # fmt: skip
    links = _links(resolve_and_land(store, key=TOKEN_KEY).path)
    assert links[("nucleic_contact", "N11")]["unit_id"] == links[("utility", "E9")]["unit_id"]
    assert links[("nucleic_contact", "N8")]["unit_id"] == links[("utility", "E8")]["unit_id"]


def test_a_shared_phone_stops_counting_once_a_licence_names_another_representative(tmp_path):
    """周九's test joins the shop known by its meter through the phone it gives; when the shop's licence
    arrives naming 赵四 as its representative, 周九 is a contact there, not the shop's record."""
    tokens = Tokeniser(TOKEN_KEY)
    account = {"record_id": "E8", "account_no": "3301008", "account_name": "杭州市西湖区山野茶叶店", "meter_no": "M9",
               "address": "杭州市西湖区保俶路5号", "phone": "13900005555", "customer_class": "一般工商业",
               "period": "2026-09", "kwh": 420.0, "updated_at": WHEN}  # fmt: skip
    test = {"record_id": "N8", "person_name": tokens.token("person_name", "周九"),
            "id_number": tokens.token("id_number", "330106199208011234"), "phone": tokens.token("phone", "13900005555"),
            "sampled_at": WHEN}  # fmt: skip
    store = RunStore(tmp_path / "out")
    commit_rows(store, {"utility": [account], "nucleic_contact": [test]})
    links = _links(resolve_and_land(store, key=TOKEN_KEY).path)
    assert links[("nucleic_contact", "N8")]["unit_id"] == links[("utility", "E8")]["unit_id"]

    commit_rows(store, {"registration": [
        {"record_id": "R9", "uscc": make_uscc("9", "2", "330106", "MA2H3009"), "name": "杭州市西湖区山野茶叶店",
         "address": "杭州市西湖区保俶路5号", "phone": "13900005555", "legal_rep_name": "赵四",
         "division_code": "330106", "entity_type": "个体工商户", "status": "存续", "updated_at": WHEN},
    ]})  # fmt: skip
    links = _links(resolve_and_land(store, key=TOKEN_KEY).path)
    assert links[("registration", "R9")]["unit_id"] == links[("utility", "E8")]["unit_id"]
    assert ("nucleic_contact", "N8") not in links


def test_a_private_sender_at_a_shopfront_ships_for_the_one_unit_registered_there(tmp_path):
    """A clerk ships from 明辉's door at 湖墅南路100号 giving only her own name: a road and a number, no
    room, where R3 alone is registered. The waybill is R3's. A sender at a flat (a building and a room) at
    another number stays a private person's."""
    tokens = Tokeniser(TOKEN_KEY)
    staging = _staging()
    sender = {"carrier": "顺丰", "sender_phone": tokens.token("phone", "13700002222"), "shipped_at": WHEN,
              "parcel_count": 1}  # fmt: skip
    staging["waybill"] += [
        {**sender, "record_id": "W2", "sender_name": tokens.token("person_name", "陈小红"),
         "sender_address": "杭州市拱墅区湖墅南路100号"},
        {**sender, "record_id": "W3", "sender_name": tokens.token("person_name", "林小青"),
         "sender_phone": tokens.token("phone", "13700003333"), "sender_address": "杭州市拱墅区湖墅南路102号3幢501室"},
    ]  # fmt: skip
    store = RunStore(tmp_path / "out")
    commit_rows(store, staging)
    links = _links(resolve_and_land(store, key=TOKEN_KEY).path)
    assert links[("waybill", "W2")]["unit_id"] == links[("registration", "R3")]["unit_id"]
    assert links[("waybill", "W2")]["matched_by"] == "premises"
    assert ("waybill", "W3") not in links


def test_a_company_name_without_place_joins_the_one_registered_unit_of_that_name(tmp_path):
    """A waybill from 明辉餐饮管理有限公司 gives no address and a clerk's phone: nothing says where it is, and
    exactly one registered unit has that name (R3, 杭州明辉…), so it is R3's. 恒达贸易有限公司 is registered
    twice (杭州 and 北京): its waybill is decided by nothing and joins neither."""
    tokens = Tokeniser(TOKEN_KEY)
    staging = _staging()
    staging["registration"] += [
        {"record_id": f"R{n}", "uscc": make_uscc("9", "1", code, f"MA2H400{n}"), "name": name,
         "address": address, "phone": phone, "legal_rep_name": rep, "division_code": code, "status": "存续",
         "updated_at": WHEN}
        for n, name, code, address, phone, rep in (
            (7, "杭州恒达贸易有限公司", "330106", "杭州市西湖区天目山路7号", "0571-86660007", "钱八"),
            (8, "北京恒达贸易有限公司", "110105", "北京市朝阳区工体北路8号", "010-86660008", "孙九"),
        )
    ]  # fmt: skip
    sender = {"carrier": "顺丰", "shipped_at": WHEN, "parcel_count": 2, "sender_address": None}
    staging["waybill"] += [
        {**sender, "record_id": "W2", "sender_company": "明辉餐饮管理有限公司",
         "sender_name": tokens.token("person_name", "陈小红"), "sender_phone": tokens.token("phone", "13700002222")},
        {**sender, "record_id": "W3", "sender_company": "恒达贸易有限公司",
         "sender_name": tokens.token("person_name", "林小青"), "sender_phone": tokens.token("phone", "13700003333")},
    ]  # fmt: skip
    store = RunStore(tmp_path / "out")
    commit_rows(store, staging)
    links = _links(resolve_and_land(store, key=TOKEN_KEY).path)
    assert links[("waybill", "W2")]["unit_id"] == links[("registration", "R3")]["unit_id"]
    assert links[("waybill", "W2")]["matched_by"] == "registered_core"
    registered = {links[("registration", r)]["unit_id"] for r in ("R7", "R8")}
    assert links.get(("waybill", "W3"), {}).get("unit_id") not in registered
