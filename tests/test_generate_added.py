"""The feeds added later (platform merchants, bookkeeping clients): made from the same true units as the others
without changing a byte of them, with ground truth for every record and the units only they show."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pipelines.generate.generator as generator_module
from pipelines.contracts import contract
from pipelines.generate import DIFFICULTIES, TRUTH_ADDED, UNITS_ADDED, generate
from pipelines.generate.added import (
    ADDED_FEEDS,
    BOOKKEEPING_ONLY_PER_1000,
    PLATFORM_MONTHS,
    PLATFORM_ONLY_PER_1000,
    REGISTERED_ELSEWHERE,
)
from pipelines.ingest.parse import RawMessage, parse_message
from pipelines.pii import Tokeniser
from pipelines.standardise.codes import clean_code, is_valid_uscc
from pipelines.standardise.divisions import by_code

UNITS, SEED = 1500, 11
PLATFORM, BOOKKEEPING = ADDED_FEEDS
ORIGINAL_FILES = (
    "nucleic_contact.jsonl", "registration.jsonl", "tax.jsonl", "utility.jsonl", "waybill.jsonl",
    "truth.jsonl", "units.jsonl", "anomalies.jsonl",
)  # fmt: skip
ADDED_FILES = (f"{PLATFORM}.jsonl", f"{BOOKKEEPING}.jsonl", TRUTH_ADDED, UNITS_ADDED)
TOKEN = re.compile(r"^t1_[0-9a-f]{32}$")
KEY = b"added-feeds-test-key-0123456789"
REGIONS = {code: region for counties in REGISTERED_ELSEWHERE.values() for code, region in counties}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@dataclass
class Sample:
    path: Path
    rows: dict[str, list[dict]]  # the added feeds' records
    owner: dict[
        tuple[str, str], str | None
    ]  # (feed, record_id) → unit, from truth.jsonl and truth_added.jsonl
    added_truth: list[dict]
    units: dict[str, dict]  # units.jsonl
    units_added: dict[str, dict]  # units_added.jsonl

    def unit(self, feed: str, row: dict) -> dict | None:
        unit_id = self.owner[(feed, row["record_id"])]
        return (self.units.get(unit_id) or self.units_added.get(unit_id)) if unit_id else None

    def feeds_of_units(self) -> dict[str, set[str]]:
        feeds = defaultdict(set)
        for (feed, _), unit_id in self.owner.items():
            if unit_id:
                feeds[unit_id].add(feed)
        return feeds


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    out = tmp_path_factory.mktemp("added")
    generate(units=UNITS, seed=SEED, out_dir=out)
    added_truth = _lines(out / TRUTH_ADDED)
    return Sample(
        path=out,
        rows={feed: _lines(out / f"{feed}.jsonl") for feed in ADDED_FEEDS},
        owner={(t["feed"], t["record_id"]): t["unit_id"] for t in _lines(out / "truth.jsonl") + added_truth},
        added_truth=added_truth,
        units={u["unit_id"]: u for u in _lines(out / "units.jsonl")},
        units_added={u["unit_id"]: u for u in _lines(out / UNITS_ADDED)},
    )


# -- the other files do not change -----------------------------------------------------------------------


class _NoAddedFeeds:
    """Stands in for the added feeds' maker: makes nothing."""

    def __init__(self, *args: object) -> None:
        pass

    def family(self, family: list) -> None:
        pass

    def finish(self, *args: object) -> int:
        return 0


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    units=st.integers(1, 120),
    seed=st.integers(0, 2**63),
    difficulty=st.sampled_from(sorted(DIFFICULTIES)),
    vocabulary=st.sampled_from(["default", "variant"]),
)
def test_the_original_files_are_the_same_bytes_with_or_without_the_added_feeds(
    tmp_path_factory, monkeypatch, units, seed, difficulty, vocabulary
):
    with_added, without = tmp_path_factory.mktemp("with"), tmp_path_factory.mktemp("without")
    generate(units, seed, with_added, vocabulary=vocabulary, difficulty=difficulty)
    with monkeypatch.context() as patch:
        patch.setattr(generator_module, "AddedFeedMaker", _NoAddedFeeds)
        generate(units, seed, without, vocabulary=vocabulary, difficulty=difficulty)
    for name in ORIGINAL_FILES:
        assert (with_added / name).read_bytes() == (without / name).read_bytes(), name
    assert all((with_added / name).is_file() for name in ADDED_FILES)


def test_the_added_feeds_are_deterministic_and_follow_the_seed_and_difficulty(tmp_path):
    runs = {
        "a": generate(units=400, seed=3, out_dir=tmp_path / "a"),
        "b": generate(units=400, seed=3, out_dir=tmp_path / "b"),
        "seed": generate(units=400, seed=4, out_dir=tmp_path / "seed"),
        "hard": generate(units=400, seed=3, out_dir=tmp_path / "hard", difficulty="hard"),
    }
    for name in ADDED_FILES:
        same = (tmp_path / "a" / name).read_bytes()
        assert same == (tmp_path / "b" / name).read_bytes(), name
        assert same != (tmp_path / "seed" / name).read_bytes(), name
    for feed in ADDED_FEEDS:
        assert runs["a"].counts[feed] == len(_lines(tmp_path / "a" / f"{feed}.jsonl")) > 0
        assert (tmp_path / "a" / f"{feed}.jsonl").read_bytes() != (
            tmp_path / "hard" / f"{feed}.jsonl"
        ).read_bytes()
    assert runs["a"].units_added == len(_lines(tmp_path / "a" / UNITS_ADDED)) > 0
    assert runs["a"].paths["truth_added"] == tmp_path / "a" / TRUTH_ADDED


# -- ground truth ----------------------------------------------------------------------------------------


def test_truth_covers_every_added_record_once_and_names_only_true_units(sample):
    records = [(feed, row["record_id"]) for feed, rows in sample.rows.items() for row in rows]
    truth = [(t["feed"], t["record_id"]) for t in sample.added_truth]
    assert len(records) == len(set(records)) == len(truth) == len(set(truth))
    assert set(records) == set(truth)
    named = {t["unit_id"] for t in sample.added_truth if t["unit_id"]}
    assert named <= set(sample.units) | set(sample.units_added)
    assert set(sample.units_added) <= named  # a unit only these feeds show is shown
    assert not set(sample.units) & set(sample.units_added)
    assert {t["feed"] for t in sample.added_truth if t["unit_id"] is None} == {PLATFORM}  # persons' own sales


def test_units_seen_only_on_a_platform_or_a_bookkeeping_list_exist(sample):
    feeds_of = sample.feeds_of_units()
    only = Counter(next(iter(feeds)) for feeds in feeds_of.values() if len(feeds) == 1)
    assert only[PLATFORM] == round(UNITS * PLATFORM_ONLY_PER_1000 / 1000)
    assert only[BOOKKEEPING] == round(UNITS * BOOKKEEPING_ONLY_PER_1000 / 1000)
    for unit_id, unit in sample.units_added.items():
        assert feeds_of[unit_id] == {unit["seen_only_in"]}
    numbers = sorted(int(u[1:]) for u in sample.units_added)
    assert numbers == list(range(UNITS + 1, UNITS + 1 + len(numbers)))  # ids after the others'


def test_units_only_on_a_platform_never_registered(sample):
    shops = [u for u in sample.units_added.values() if u["seen_only_in"] == PLATFORM]
    assert shops and all(u["kind"] == "ecommerce_shop" and u["uscc"] is None for u in shops)


def test_units_only_on_a_bookkeeping_list_are_registered_in_a_county_nearby(sample):
    clients = [u for u in sample.units_added.values() if u["seen_only_in"] == BOOKKEEPING]
    divisions = by_code()
    assert clients
    for unit in clients:
        assert is_valid_uscc(unit["uscc"]) and unit["kind"] == "company"
        elsewhere = divisions[unit["uscc"][2:8]]
        assert unit["uscc"][2:8] != unit["division_code"] and elsewhere.level == "district"
        assert unit["name"].startswith(REGIONS[unit["uscc"][2:8]])  # the county's name leads the company's
    given = [
        clean_code(row["uscc"])
        for row in sample.rows[BOOKKEEPING]
        if row.get("uscc") and sample.unit(BOOKKEEPING, row) in clients
    ]
    assert sum(code in {u["uscc"] for u in clients} for code in given) >= 0.9 * len(given)


# -- platform merchants ------------------------------------------------------------------------------------


def _shops(sample: Sample) -> dict[tuple[str, str], list[dict]]:
    shops = defaultdict(list)
    for row in sample.rows[PLATFORM]:
        if row.get("platform") and row.get("shop_id"):
            shops[row["platform"], row["shop_id"]].append(row)
    return shops


def test_a_shop_has_one_record_a_month_within_the_extract(sample):
    shops = _shops(sample)
    assert len(shops) > 100
    for rows in shops.values():
        periods = [row["period"] for row in rows if row.get("period")]
        assert len(periods) == len(set(periods)) and set(periods) <= set(PLATFORM_MONTHS)
        assert len({sample.owner[(PLATFORM, row["record_id"])] for row in rows}) == 1  # one owner
    assert sum(len(rows) for rows in shops.values()) / len(shops) > 3  # months, not one line a shop
    for row in sample.rows[PLATFORM]:
        assert row.get("orders") is None or (type(row["orders"]) is int and row["orders"] >= 0)


def test_platforms_hold_online_sellers_restaurants_and_shops(sample):
    owners = [sample.unit(PLATFORM, row) for row in sample.rows[PLATFORM]]
    units = {u["unit_id"]: u for u in owners if u}
    kinds = Counter(u["kind"] for u in units.values())
    assert kinds["individual_business"] > kinds["company"] > 0 and kinds["ecommerce_shop"] > 0
    online = [u for u in sample.units.values() if u["ecommerce"]]
    assert sum(u["unit_id"] in units for u in online) > 0.8 * len(online)
    assert 0.08 < len(units) / (len(sample.units) + len(sample.units_added)) < 0.35
    platforms = Counter(row.get("platform") for row in sample.rows[PLATFORM])
    assert {"淘宝", "抖音", "拼多多", "美团"} <= set(platforms)


def test_shop_names_are_mostly_not_the_registered_name(sample):
    rows = [(row, unit) for row in sample.rows[PLATFORM] if (unit := sample.unit(PLATFORM, row))]
    registered = [r for r, u in rows if r.get("shop_name") and u["uscc"] and r["shop_name"] == u["name"]]
    assert len(registered) < 0.3 * len(rows)
    assert any(r.get("shop_name", "").endswith(("旗舰店", "专营店")) for r, _ in rows)
    assert any("店）" in (r.get("shop_name") or "") for r, _ in rows)  # 张记面馆（文三路店）


def test_the_operator_is_the_legal_representative(sample):
    rows = [
        (row, unit)
        for row in sample.rows[PLATFORM]
        if row.get("operator_name") and (unit := sample.unit(PLATFORM, row))
    ]
    same = [row["operator_name"].replace(" ", "") == unit["legal_rep"] for row, unit in rows]
    assert sum(same) > 0.97 * len(rows)
    individual = [(row, unit) for row, unit in rows if unit["kind"] == "individual_business"]
    assert individual and all(
        row["operator_name"].replace(" ", "") == u["legal_rep"] for row, u in individual
    )


def test_registered_shops_show_their_licence_often_and_unregistered_ones_never(sample):
    rows = [(row, unit) for row in sample.rows[PLATFORM] if (unit := sample.unit(PLATFORM, row))]
    registered = [row for row, unit in rows if unit["uscc"]]
    shown = [row for row in registered if row.get("uscc")]
    assert 0.5 < len(shown) / len(registered) < 0.95
    assert all(not row.get("uscc") for row, unit in rows if unit["uscc"] is None)
    by_unit = {(row["record_id"]): unit for row, unit in rows}
    assert sum(clean_code(row["uscc"]) == by_unit[row["record_id"]]["uscc"] for row in shown) > 0.97 * len(
        shown
    )


def test_persons_selling_their_own_things_are_no_unit(sample):
    private = [row for row in sample.rows[PLATFORM] if sample.owner[(PLATFORM, row["record_id"])] is None]
    assert private
    assert all(not row.get("uscc") and (row.get("orders") or 0) <= 8 for row in private)


# -- bookkeeping clients ----------------------------------------------------------------------------------


def test_bookkeeping_clients_are_mostly_small_companies_with_their_uscc(sample):
    rows = [(row, unit) for row in sample.rows[BOOKKEEPING] if (unit := sample.unit(BOOKKEEPING, row))]
    assert len(rows) == len(sample.rows[BOOKKEEPING]) > 200  # every line is a unit's
    kinds = Counter(unit["kind"] for _, unit in rows)
    assert kinds["company"] > 0.6 * len(rows) and not kinds["ecommerce_shop"]
    with_code = [row for row, _ in rows if row.get("uscc")]
    assert len(with_code) > 0.85 * len(rows)
    assert sum(is_valid_uscc(row["uscc"]) for row in with_code) > 0.97 * len(with_code)
    assert sum(row.get("client_name") == unit["name"] for row, unit in rows) > 0.6 * len(rows)
    assert len({row.get("bookkeeping_firm") for row, _ in rows}) >= 10


# -- as the import stages them -----------------------------------------------------------------------------


def test_persons_arrive_as_tokens_and_the_operator_as_the_legal_reps_token(sample):
    """The operator and the contact person (and the contact's phone) are tokenised at import; an operator's
    token is the token of the legal representative's name, which the resolver compares."""
    tokeniser = Tokeniser(KEY)
    personal = {feed: [f.name for f in contract(feed).personal_fields] for feed in ADDED_FEEDS}
    assert personal == {PLATFORM: ["operator_name"], BOOKKEEPING: ["contact_person", "phone"]}
    same_rep = operators = 0
    for feed, rows in sample.rows.items():
        spec = contract(feed)
        for offset, row in enumerate(rows):
            payload = json.dumps(row, ensure_ascii=False).encode()
            message = RawMessage(feed, feed, 0, offset, None, row["record_id"].encode(), payload)
            staged, result = parse_message(spec, message, tokeniser, "test")
            assert staged, (feed, result.get("detail"))
            # a business's name may hold its owner's (王楠饰品工作室): that is the public name, not a leak
            rest = json.dumps(
                {k: v for k, v in result.items() if k not in ("shop_name", "client_name")},
                ensure_ascii=False,
                default=str,
            )
            for name in personal[feed]:
                assert result[name] is None or TOKEN.match(result[name]), (feed, name)
                assert not row.get(name) or row[name] not in rest, (feed, name)
            unit = sample.unit(feed, row)
            if feed == PLATFORM and result["operator_name"] and unit:
                operators += 1
                same_rep += result["operator_name"] == tokeniser.token("person_name", unit["legal_rep"])
    assert same_rep > 0.97 * operators
