"""The generator's difficulty knob: the default level is the generator as it was, byte for byte; "hard" moves
the shares of the hard cases the way the pilots' feeds did, and its ground truth stays whole."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines.contracts import contract, load_contracts
from pipelines.generate import DIFFICULTIES, TRUTH_ADDED, UNITS_ADDED, Difficulty, generate
from pipelines.generate.difficulty import chance
from pipelines.generate.names import GIVEN_NAME_CHARS, SURNAMES, nickname, surname_of
from pipelines.ingest.parse import RawMessage, parse_message
from pipelines.pii import Tokeniser
from pipelines.standardise.addresses import parse_address
from pipelines.standardise.codes import clean_code

UNITS, SEED = 1000, 5
# sha256 over (file name, bytes) of every file generate(units=300, seed=9) wrote, computed with the generator
# before it had a difficulty knob. Change it only when the default's output is meant to change: the tests'
# and benchmarks' figures depend on it. The feeds added later (pipelines/generate/added.py) write files of
# their own beside these, pinned on their own: ORIGINAL_FILES are still exactly these bytes.
PINNED_300_9 = "d0b22ab1a1d2a2d9757e649a7cf026500009e4a2fa9578da579f6a5fee0b3fc0"
ORIGINAL_FILES = frozenset(
    f"{name}.jsonl"
    for name in (
        "nucleic_contact",
        "registration",
        "tax",
        "utility",
        "waybill",
        "truth",
        "units",
        "anomalies",
    )
)
PINNED_ADDED_300_9 = "8acd17d5e2f1938226274ff5896a72d1d8844c02fa35f572ec17086adeae55c0"
ADDED_FILES = frozenset({"platform_merchant.jsonl", "bookkeeping_client.jsonl", TRUTH_ADDED, UNITS_ADDED})
HOUSEHOLD_CLASSES = {"居民", "居民生活用电", "城乡居民生活用电", "居民合表用户"}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _digest(out: Path, names: frozenset[str] | None = None) -> str:
    """sha256 over (file name, bytes) of the files in ``out`` (those ``names``d), in name order."""
    digest = hashlib.sha256()
    for path in sorted(out.iterdir()):
        if names is None or path.name in names:
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


@dataclasses.dataclass
class Level:
    path: Path
    rows: dict[str, list[dict]]
    units: dict[str, dict]
    owner: dict[tuple[str, str], str | None]
    truth_lines: int

    def unit(self, feed: str, row: dict) -> dict | None:
        unit_id = self.owner[(feed, row["record_id"])]
        return self.units[unit_id] if unit_id else None


def _level(out: Path, difficulty: str) -> Level:
    generate(units=UNITS, seed=SEED, out_dir=out, difficulty=difficulty)
    truth = _lines(out / "truth.jsonl") + _lines(out / TRUTH_ADDED)
    return Level(
        path=out,
        rows={feed: _lines(out / f"{feed}.jsonl") for feed in load_contracts()},
        units={u["unit_id"]: u for name in ("units.jsonl", UNITS_ADDED) for u in _lines(out / name)},
        owner={(t["feed"], t["record_id"]): t["unit_id"] for t in truth},
        truth_lines=len(truth),
    )


@pytest.fixture(scope="module")
def levels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Level]:
    return {name: _level(tmp_path_factory.mktemp(name), name) for name in ("default", "hard")}


# -- the knob ------------------------------------------------------------------------------------------


def test_the_default_level_is_the_generator_as_it_was(tmp_path):
    without = generate(units=300, seed=9, out_dir=tmp_path / "without")
    named = generate(units=300, seed=9, out_dir=tmp_path / "named", difficulty="default")
    assert named.counts == without.counts
    for out in (tmp_path / "named", tmp_path / "without"):
        assert {path.name for path in out.iterdir()} == ORIGINAL_FILES | ADDED_FILES  # each file pinned
        assert _digest(out, ORIGINAL_FILES) == PINNED_300_9
        assert _digest(out, ADDED_FILES) == PINNED_ADDED_300_9


def test_hard_is_deterministic_and_differs_from_the_default(tmp_path):
    for name in ("a", "b"):
        generate(units=200, seed=3, out_dir=tmp_path / name, difficulty="hard")
    generate(units=200, seed=3, out_dir=tmp_path / "default")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "default")


def test_an_unknown_difficulty_is_refused_naming_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="'default', 'hard'"):
        generate(units=10, seed=1, out_dir=tmp_path, difficulty="brutal")
    assert set(DIFFICULTIES) == {"default", "hard"}
    assert all(isinstance(level, Difficulty) for level in DIFFICULTIES.values())
    with pytest.raises(dataclasses.FrozenInstanceError):
        DIFFICULTIES["hard"].blanks = 1.0  # type: ignore[misc]


def test_shares_of_draws_rise_in_order_and_end_at_one():
    for level in DIFFICULTIES.values():
        shares = [share for _, share in level.sender_company]
        assert shares == sorted(shares) and shares[-1] == 1.0
        assert level.rep_names_unit <= level.rep_self_employed <= 1
        assert level.landlord_account + level.owner_account <= 1


@given(st.floats(min_value=-1, max_value=2), st.integers(0, 2**32))
def test_a_chance_of_nothing_or_everything_makes_no_draw(share, seed):
    rng, untouched = random.Random(seed), random.Random(seed)
    result, first = chance(rng, share), untouched.random()
    if 0 < share < 1:  # one draw, decided by it
        assert result == (first < share) and rng.random() == untouched.random()
    else:
        assert result == (share >= 1) and rng.random() == first


@given(st.sampled_from(SURNAMES.items), st.text(alphabet=GIVEN_NAME_CHARS, min_size=1, max_size=2))
def test_a_nickname_keeps_the_surname_or_a_given_character(surname, given_name):
    name = surname + given_name
    assert surname_of(name) == surname
    for seed in range(5):
        nick = nickname(random.Random(seed), name)
        assert surname in nick or given_name[-1] in nick
        assert nick != name and 2 <= len(nick) <= 4


# -- what "hard" changes -------------------------------------------------------------------------------


def _share(rows: list, test) -> float:
    return sum(map(test, rows)) / len(rows)


def test_fewer_test_records_name_a_work_unit(levels):
    def names_one(row: dict) -> bool:
        return bool(row.get("work_unit")) and row["work_unit"] != "无"

    shares = {name: _share(level.rows["nucleic_contact"], names_one) for name, level in levels.items()}
    assert shares["hard"] < 0.5 < shares["default"]  # in the pilots most had none


def test_waybill_senders_give_the_registered_name_less_often(levels):
    def shares(level: Level) -> dict[str, float]:
        rows = [(row, unit) for row in level.rows["waybill"] if (unit := level.unit("waybill", row))]
        given = [row.get("sender_company") for row, _ in rows]
        return {
            "registered": _share(rows, lambda r: r[0].get("sender_company") == r[1]["name"]),
            "owner": _share(rows, lambda r: r[0].get("sender_company") == r[1]["legal_rep"]),
            "distinct": len(set(given)) / len(given),
        }

    default, hard = shares(levels["default"]), shares(levels["hard"])
    assert hard["registered"] < default["registered"] - 0.2
    assert hard["registered"] < 0.5  # more often not the registered name
    assert hard["owner"] > 0.05 > default["owner"]


def _person_like(name: str) -> bool:
    name = name.replace(" ", "")
    surname = surname_of(name)
    given_name = name[len(surname) :]
    return (
        surname in SURNAMES.items and 1 <= len(given_name) <= 2 and set(given_name) <= set(GIVEN_NAME_CHARS)
    )


def _person_held_accounts(level: Level) -> list[tuple[dict, dict]]:
    """Business-tariff power accounts (first record of each) whose account name is a person's."""
    seen, held = set(), []
    for row in level.rows["utility"]:
        unit = level.unit("utility", row)
        account, name = row.get("account_no"), row.get("account_name")
        if unit is None or account in seen or not name or row.get("customer_class") in HOUSEHOLD_CLASSES:
            continue
        seen.add(account)
        if _person_like(name) and name.replace(" ", "") not in (unit["name"], unit["trade_name"]):
            held.append((row, unit))
    return held


def test_power_accounts_in_a_landlords_or_the_owners_name_at_the_units_address(levels):
    default, hard = _person_held_accounts(levels["default"]), _person_held_accounts(levels["hard"])
    assert len(hard) > 50 > len(default)
    owners = [(row, unit) for row, unit in hard if row["account_name"].replace(" ", "") == unit["legal_rep"]]
    landlords = [(row, unit) for row, unit in hard if (row, unit) not in owners]
    assert len(owners) > 10 and len(landlords) > 10
    assert all(not row.get("uscc") for row, _ in hard)  # a person has no USCC
    streets = [
        parse_address(row["address"]).street_key == parse_address(unit["address"]).street_key
        for row, unit in hard
        if row.get("address")
    ]
    assert sum(streets) > 0.8 * len(streets)  # at the unit's premises (extra meters may be elsewhere)


def test_more_units_register_the_owners_mobile(levels):
    def mobile(row: dict) -> bool:
        digits = clean_code(row.get("phone") or "").removeprefix("86")
        return len(digits) == 11 and digits.startswith("1")

    shares = {name: _share(level.rows["registration"], mobile) for name, level in levels.items()}
    assert shares["hard"] > shares["default"] + 0.05


def test_more_names_are_respelled_and_more_fields_left_out(levels):
    def respelled(level: Level) -> float:
        rows = [(row, level.unit("tax", row)) for row in level.rows["tax"] if row.get("taxpayer_name")]
        return _share(rows, lambda r: r[0]["taxpayer_name"] != r[1]["name"])

    def blank(level: Level) -> float:
        cells = [
            row.get(name) is None
            for feed, rows in level.rows.items()
            for row in rows
            for name in contract(feed).field_names
        ]
        return sum(cells) / len(cells)

    default, hard = levels["default"], levels["hard"]
    assert respelled(hard) > respelled(default) * 1.3
    assert blank(hard) > blank(default) * 1.2


# -- ground truth at the hard level ----------------------------------------------------------------------


def test_hard_truth_covers_every_record_once_and_names_only_true_units(levels):
    hard = levels["hard"]
    records = [(feed, row["record_id"]) for feed, rows in hard.rows.items() for row in rows]
    assert len(records) == len(set(records)) == hard.truth_lines == len(hard.owner)
    assert set(hard.owner) == set(records)
    linked = {unit for unit in hard.owner.values() if unit}
    assert linked == set(hard.units)  # every unit is seen somewhere, and truth names only true units


def test_hard_records_follow_their_contracts(levels):
    tokeniser = Tokeniser(b"difficulty-test-key-0123456789")
    for feed, rows in levels["hard"].rows.items():
        spec = contract(feed)
        for offset, row in enumerate(rows):
            payload = json.dumps(row, ensure_ascii=False).encode()
            message = RawMessage(feed, feed, 0, offset, None, row["record_id"].encode(), payload)
            staged, result = parse_message(spec, message, tokeniser, "test")
            assert staged, (feed, result.get("detail"), row)


def test_an_employees_test_without_a_work_unit_is_a_private_record_unless_at_the_workplace(levels):
    """Truth follows what a record points at: a rep's test is the unit's by the ID on the licence; an
    employee's test naming no work unit is the unit's only when given at the workplace's address."""
    hard = levels["hard"]
    reps = {clean_code(r["legal_rep_id"]) for r in hard.rows["registration"] if r.get("legal_rep_id")}
    unnamed = [
        (row, unit)
        for row in hard.rows["nucleic_contact"]
        if (unit := hard.unit("nucleic_contact", row))
        and not row.get("work_unit")
        and clean_code(row.get("id_number") or "") not in reps
        and (row.get("person_name") or "").replace(" ", "") != unit["legal_rep"]
    ]
    assert unnamed  # employees tested at work without naming it
    at_work = [
        parse_address(row["address"]).street_key == parse_address(unit["address"]).street_key
        for row, unit in unnamed
        if row.get("address")
    ]
    assert sum(at_work) > 0.8 * len(at_work)


def test_the_vocabulary_knob_is_independent_of_difficulty(levels, tmp_path):
    """Department spellings stay the vocabulary's: "hard" with the variant vocabulary gives the same records
    as "hard" with the default one but for industry codes and customer classes."""
    generate(units=UNITS, seed=SEED, out_dir=tmp_path, vocabulary="variant", difficulty="hard")
    hard = levels["hard"]
    for name in ("tax.jsonl", "waybill.jsonl", "nucleic_contact.jsonl", "truth.jsonl", "units.jsonl"):
        assert (tmp_path / name).read_bytes() == (hard.path / name).read_bytes(), name
    for feed, field in (("registration", "industry_code"), ("utility", "customer_class")):
        variant = _lines(tmp_path / f"{feed}.jsonl")
        assert [{k: v for k, v in r.items() if k != field} for r in variant] == [
            {k: v for k, v in r.items() if k != field} for r in hard.rows[feed]
        ]
        assert any(a.get(field) != b.get(field) for a, b in zip(variant, hard.rows[feed], strict=True))
