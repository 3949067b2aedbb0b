"""The sample-data generator: deterministic, true to the contracts, and holding the hard cases it promises."""

from __future__ import annotations

import json
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.contracts import contract, load_contracts
from pipelines.generate import AS_OF, RECORD_PREFIXES, TRUTH_ADDED, UNITS_ADDED, generate
from pipelines.generate.added import ADDED_FEEDS
from pipelines.generate.batches import TRUTH_FILES, batch_name, split_batches
from pipelines.generate.feeds import CLASS_LONG
from pipelines.generate.geography import CITIES
from pipelines.ingest.parse import RawMessage, parse_message
from pipelines.pii import Tokeniser
from pipelines.quality.suites import load_suite
from pipelines.standardise.codes import (
    clean_code,
    is_valid_id_number,
    is_valid_legacy_taxpayer_id,
    is_valid_taxpayer_id,
    is_valid_uscc,
)
from pipelines.standardise.divisions import by_code
from pipelines.standardise.text import fold
from pipelines.standardise.vocabularies import UNKNOWN, customer_kind, industry_path, unknown_values

UNITS = 1500
SEED = 5
OUTPUT_FILES = {*(f"{feed}.jsonl" for feed in load_contracts()), "truth.jsonl", "units.jsonl"}
OUTPUT_FILES |= {"anomalies.jsonl"}  # planted figure anomalies (pipelines/generate/anomalies.py)
OUTPUT_FILES |= {TRUTH_ADDED, UNITS_ADDED}  # the feeds added later (pipelines/generate/added.py)
ORIGINAL_FEEDS = tuple(feed for feed in load_contracts() if feed not in ADDED_FEEDS)
# Fields that are empty by nature for many records (no legacy number, not listed as abnormal, a private
# sender without a company …); every other field should be there nearly always.
SPARSE = {
    "registration": {"reg_no", "abnormal_since", "registered_capital"},
    "utility": {"uscc"},
    "waybill": {"sender_company"},
    "nucleic_contact": {"work_unit"},
    "platform_merchant": {"uscc"},  # only where the shop showed its licence
}
TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+08:00$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
PERIOD_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


@dataclass
class Sample:
    path: Path
    counts: dict[str, int]
    records_per_unit: float
    rows: dict[str, list[dict]]
    truth: list[dict]  # of every feed: truth.jsonl and truth_added.jsonl
    units: dict[str, dict]  # units.jsonl: the units the original feeds show
    units_added: dict[str, dict]  # units only the feeds added later show

    def unit_of(self, feed: str, record_id: str) -> str | None:
        return self.owner[(feed, record_id)]

    def __post_init__(self) -> None:
        self.owner = {(t["feed"], t["record_id"]): t["unit_id"] for t in self.truth}
        self.by_unit: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
        for feed, rows in self.rows.items():
            for row in rows:
                unit = self.owner.get((feed, row["record_id"]))
                if unit:
                    self.by_unit[unit][feed].append(row)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    out = tmp_path_factory.mktemp("generated")
    summary = generate(units=UNITS, seed=SEED, out_dir=out)
    return Sample(
        path=out,
        counts=summary.counts,
        records_per_unit=summary.records_per_unit,
        rows={feed: _lines(out / f"{feed}.jsonl") for feed in load_contracts()},
        truth=_lines(out / "truth.jsonl") + _lines(out / TRUTH_ADDED),
        units={u["unit_id"]: u for u in _lines(out / "units.jsonl")},
        units_added={u["unit_id"]: u for u in _lines(out / UNITS_ADDED)},
    )


def test_same_seed_gives_the_same_bytes_without_global_random_state(tmp_path, monkeypatch):
    first = generate(units=300, seed=9, out_dir=tmp_path / "a")
    assert {p.name for p in (tmp_path / "a").iterdir()} == OUTPUT_FILES
    assert set(first.paths.values()) == set((tmp_path / "a").iterdir())

    def forbidden(*args, **kwargs):
        raise AssertionError("the generator must not use the global random state")

    for name in ("random", "choice", "choices", "randint", "randrange", "shuffle", "sample", "uniform"):
        monkeypatch.setattr(random, name, forbidden)
    generate(units=300, seed=9, out_dir=tmp_path / "b")
    monkeypatch.undo()
    generate(units=300, seed=10, out_dir=tmp_path / "c")

    for name in OUTPUT_FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    for name in OUTPUT_FILES:
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes(), name


def test_summary_counts_the_lines_written(sample):
    for feed, rows in sample.rows.items():
        assert sample.counts[feed] == len(rows) > 0
    assert len(sample.units) == UNITS


def test_records_follow_their_contracts(sample):
    tokeniser = Tokeniser(b"generator-test-key-0123456789")
    for feed, rows in sample.rows.items():
        spec = contract(feed)
        assert all(set(row) <= set(spec.field_names) for row in rows), feed
        ids = [row["record_id"] for row in rows]
        assert len(ids) == len(set(ids)), feed
        assert all(i.startswith(RECORD_PREFIXES[feed]) for i in ids), feed
        for offset, row in enumerate(rows):
            payload = json.dumps(row, ensure_ascii=False).encode()
            message = RawMessage(feed, feed, 0, offset, None, row["record_id"].encode(), payload)
            staged, result = parse_message(spec, message, tokeniser, "test")
            assert staged, (feed, result.get("detail"), row)
        for field in spec.fields:
            values = [row[field.name] for row in rows if row.get(field.name) is not None]
            if field.type == "timestamp":
                assert all(TIMESTAMP_RE.match(v) for v in values), field.name
                assert max(datetime.fromisoformat(v).date() for v in values) <= AS_OF
            elif field.type == "date":
                assert all(DATE_RE.match(v) for v in values), field.name
            elif field.type == "period":
                assert all(PERIOD_RE.match(v) for v in values), field.name
            elif field.type == "integer":
                assert all(type(v) is int for v in values), field.name
            elif field.type == "number":
                assert all(type(v) in (int, float) for v in values), field.name


def test_fields_go_missing_now_and_then_but_not_often(sample):
    for feed, rows in sample.rows.items():
        assert any(len(row) < len(contract(feed).field_names) for row in rows), f"{feed}: no key ever missing"
        assert any(None in row.values() for row in rows), f"{feed}: no value ever null"
        for name in set(contract(feed).field_names) - SPARSE.get(feed, set()):
            present = sum(row.get(name) is not None for row in rows) / len(rows)
            assert present > 0.85, (feed, name, present)


def test_truth_covers_every_record_exactly_once(sample):
    records = [(feed, row["record_id"]) for feed, rows in sample.rows.items() for row in rows]
    assert len(sample.truth) == len(records) == len(sample.owner)
    assert set(sample.owner) == set(records)
    linked = {t["unit_id"] for t in sample.truth if t["unit_id"]}
    # every unit is seen somewhere, and truth names only true units
    assert linked == set(sample.units) | set(sample.units_added)
    without_unit = Counter(t["feed"] for t in sample.truth if t["unit_id"] is None)
    assert set(without_unit) == {
        "waybill",
        "nucleic_contact",
        "platform_merchant",
    }  # persons selling their own


def test_cities_and_districts_are_real():
    divisions = by_code()
    for city in CITIES:
        assert divisions[city.code].name == city.name
        for district in city.districts:
            assert divisions[district.code].name == district.name
            assert district.code.startswith(city.code[:4])
            assert len(set(district.townships)) == len(district.townships)
            assert all(t.endswith(("街道", "镇")) for t in district.townships)


def test_units_carry_valid_unique_codes_of_real_divisions(sample):
    registered = [u for u in sample.units.values() if u["kind"] != "ecommerce_shop"]
    codes = [u["uscc"] for u in registered]
    assert all(is_valid_uscc(c) for c in codes) and len(set(codes)) == len(codes)
    for unit in registered:
        assert unit["uscc"][:2] == ("92" if unit["kind"] == "individual_business" else "91")
        assert unit["uscc"][2:8] == unit["division_code"]
    divisions = by_code()
    for unit in sample.units.values():
        assert divisions[unit["division_code"]].level == "district"
        assert unit["division_code"][:4] + "00" in {"330100", "110100", "510100"}
        assert (
            unit["township"] in unit["address"] and divisions[unit["division_code"]].name in unit["address"]
        )


def test_most_codes_in_the_feeds_are_valid_and_some_are_not(sample):
    def share_valid(feed: str, field: str, check) -> float:
        values = [row[field] for row in sample.rows[feed] if row.get(field)]
        return sum(map(check, values)) / len(values)

    assert 0.95 < share_valid("registration", "uscc", is_valid_uscc) < 1
    assert 0.93 < share_valid("registration", "legal_rep_id", is_valid_id_number) < 1
    assert 0.93 < share_valid("nucleic_contact", "id_number", is_valid_id_number) < 1
    assert 0.9 < share_valid("utility", "uscc", is_valid_uscc) < 1
    assert 0.97 < share_valid("tax", "taxpayer_id", is_valid_taxpayer_id) < 1
    reg_nos = [row["reg_no"] for row in sample.rows["registration"] if row.get("reg_no")]
    assert reg_nos and all(re.fullmatch(r"\d{15}", n) for n in reg_nos)


def test_legacy_taxpayer_ids_carry_the_units_organisation_code(sample):
    legacy = [row for row in sample.rows["tax"] if len(row.get("taxpayer_id") or "") == 15]
    assert len(legacy) > 20
    for row in legacy:
        unit = sample.units[sample.unit_of("tax", row["record_id"])]
        assert is_valid_legacy_taxpayer_id(row["taxpayer_id"])
        assert row["taxpayer_id"] == unit["uscc"][2:17]


def test_legal_reps_are_tested_under_the_id_they_registered_with(sample):
    hits = 0
    for feeds in sample.by_unit.values():
        rep_ids = {clean_code(r["legal_rep_id"]) for r in feeds["registration"] if r.get("legal_rep_id")}
        tested = {clean_code(r["id_number"]) for r in feeds["nucleic_contact"] if r.get("id_number")}
        hits += bool(rep_ids & tested)
    assert hits > UNITS * 0.1


def test_branches_share_the_parents_legal_rep_but_have_their_own_uscc(sample):
    branches = [u for u in sample.units.values() if u["kind"] == "branch"]
    assert len(branches) > 20
    same_rep = 0
    for branch in branches:
        parent = sample.units[branch["parent_unit_id"]]
        assert branch["name"].startswith(parent["name"]) and branch["name"] != parent["name"]
        assert branch["uscc"] != parent["uscc"]
        reps = [
            {
                clean_code(r["legal_rep_id"])
                for r in sample.by_unit[u["unit_id"]]["registration"]
                if r.get("legal_rep_id")
            }
            for u in (branch, parent)
        ]
        same_rep += bool(reps[0] & reps[1])
    assert 0.2 < same_rep / len(branches) < 0.8


def test_one_operator_with_several_licences_at_one_address(sample):
    flagged = [u for u in sample.units.values() if u["multi_licence"]]
    assert len(flagged) >= 10
    groups = defaultdict(set)
    for unit in flagged:
        street = re.match(r".*?(?:号|幢)", unit["address"])  # road and number, or compound and block
        assert street, unit["address"]
        groups[(unit["legal_rep"], street.group())].add(unit["uscc"])
    assert all(len(usccs) >= 2 for usccs in groups.values())


def test_common_trade_names_recur_in_different_districts(sample):
    districts = defaultdict(set)
    for unit in sample.units.values():
        if unit["kind"] == "company":
            districts[unit["trade_name"]].add(unit["division_code"])
    assert sum(len(d) >= 3 for d in districts.values()) >= 5


def test_multi_meter_units_have_several_meters_and_the_others_one(sample):
    meters = {
        u: {r["meter_no"] for r in f["utility"] if r.get("meter_no")} for u, f in sample.by_unit.items()
    }
    flagged = [u for u, unit in sample.units.items() if unit["multi_meter"]]
    assert len(flagged) >= 20
    assert sum(len(meters.get(u, ())) >= 2 for u in flagged) >= 0.95 * len(flagged)
    assert all(len(meters.get(u, ())) <= 1 for u, unit in sample.units.items() if not unit["multi_meter"])


def test_ecommerce_shops_are_unregistered_and_seen_mainly_in_waybills(sample):
    shops = [u for u in sample.units.values() if u["kind"] == "ecommerce_shop"]
    assert len(shops) >= 20 and all(u["ecommerce"] and u["uscc"] is None for u in shops)
    from_main_address = total = 0
    for unit in [u for u in sample.units.values() if u["ecommerce"]]:
        feeds = sample.by_unit[unit["unit_id"]]
        waybills = feeds["waybill"]
        assert len(waybills) >= 0.5 * sum(len(feeds[feed]) for feed in ORIGINAL_FEEDS)
        assert sum(r.get("parcel_count") or 0 for r in waybills) >= 60
        assert len({r["shipped_at"][:7] for r in waybills if r.get("shipped_at")}) >= 3
        main_address = Counter(r.get("sender_address") for r in waybills).most_common(1)[0][1]
        assert main_address >= 0.5 * len(waybills)
        from_main_address, total = from_main_address + main_address, total + len(waybills)
        if unit["kind"] == "ecommerce_shop":
            assert not feeds["registration"] and not feeds["tax"]
    assert from_main_address >= 0.85 * total  # one place they ship from, written the same way


def test_private_persons_belong_to_no_unit(sample):
    private = [r for r in sample.rows["waybill"] if sample.unit_of("waybill", r["record_id"]) is None]
    assert len(private) > 50 and all(r.get("sender_company") is None for r in private)
    tested = [
        r for r in sample.rows["nucleic_contact"] if sample.unit_of("nucleic_contact", r["record_id"]) is None
    ]
    assert len(tested) > 50
    assert any(r.get("work_unit") is None for r in tested) and any(r.get("work_unit") for r in tested)


def test_zombies_are_listed_long_ago_and_pay_no_tax(sample):
    zombies = [u for u in sample.units.values() if u["zombie"]]
    assert len(zombies) >= 15
    zero_filers = 0
    for unit in zombies:
        feeds = sample.by_unit[unit["unit_id"]]
        listed = [r["abnormal_since"] for r in feeds["registration"] if r.get("abnormal_since")]
        assert listed and min(date.fromisoformat(d) for d in listed) <= date(2024, 10, 1)
        assert sum(r.get("tax_paid") or 0 for r in feeds["tax"]) == 0
        zero_filers += bool(feeds["tax"])
    assert 0 < zero_filers < len(zombies)  # some file zero returns, some file nothing


def test_names_are_respelled_in_other_feeds(sample):
    pairs = [
        (sample.units[unit]["name"], row[field])
        for feed, field in (
            ("tax", "taxpayer_name"),
            ("utility", "account_name"),
            ("waybill", "sender_company"),
            ("nucleic_contact", "work_unit"),
        )
        for row in sample.rows[feed]
        if row.get(field) and (unit := sample.unit_of(feed, row["record_id"]))
    ]
    changed = [(name, written) for name, written in pairs if name != written]
    assert 0.05 < len(changed) / len(pairs) < 0.5
    assert any("有限公司" in n and "有限责任公司" in w for n, w in changed)  # organisation form
    assert any(w != n and fold(w) == fold(n) and " " not in w for n, w in changed)  # script, look-alikes
    assert any(" " in w for _, w in changed)
    assert any("(" in w and "（" in n for n, w in changed)  # bracket width
    assert any(len(w) < len(n) and n.endswith(w) for n, w in changed)  # region prefix dropped


def test_addresses_and_phones_are_written_in_many_ways(sample):
    written = [r.get("address") or "" for f in ("tax", "utility") for r in sample.rows[f]]
    written += [r.get("sender_address") or "" for r in sample.rows["waybill"]]
    assert any(re.search(r"[０-９]", a) for a in written)  # full-width digits
    assert any(re.search(r"\d+-\d+-\d+", a) for a in written)  # 90-3-501
    assert any(re.search(r"\d+[楼层]\d+", a) for a in written)  # floor added
    assert any("房" in a for a in written)
    phones = [r.get("phone") or "" for f in ("registration", "tax", "utility") for r in sample.rows[f]]
    for pattern in (
        r"^\+86",
        r"^1\d{2}-\d{4}-\d{4}$",
        r"^[(（]0\d{2,3}[)）]",
        r"^0\d{2,3}-\d{7,8}$",
        r"^0\d{10,11}$",
    ):
        assert any(re.search(pattern, p) for p in phones), pattern


def test_records_per_unit_are_realistic(sample):
    original = sum(sample.counts[feed] for feed in ORIGINAL_FEEDS) / UNITS
    assert 6 <= original <= 9
    assert sample.counts["registration"] < UNITS  # most units are registered once; shops not at all
    added = sum(sample.counts[feed] for feed in ADDED_FEEDS) / UNITS
    assert 0.8 <= added <= 2.5  # a shop's six months, a client's line
    everything = sum(sample.counts.values()) / (UNITS + len(sample.units_added))
    assert sample.records_per_unit == pytest.approx(everything)


# Batches: a first load and later deliveries (pipelines/generate/batches.py), for incremental runs.

BATCHES, BATCH_RECORDS = 3, 400


@dataclass
class Part:
    rows: list[tuple[str, dict]]  # (feed, row) in file order
    truth: list[tuple[tuple[str, str], str | None]]  # ((feed, record_id), unit_id) per line

    @property
    def keys(self) -> list[tuple[str, str]]:
        return [(feed, row["record_id"]) for feed, row in self.rows]


def _read_part(path: Path) -> Part:
    rows = [(feed, row) for feed in load_contracts() for row in _lines(path / f"{feed}.jsonl")]
    truth = [t for name in TRUTH_FILES for t in _lines(path / name)]
    return Part(rows, [((t["feed"], t["record_id"]), t["unit_id"]) for t in truth])


@pytest.fixture(scope="module")
def split(sample, tmp_path_factory) -> tuple[Part, list[Part]]:
    out = tmp_path_factory.mktemp("batches")
    result = split_batches(sample.path, out, batches=BATCHES, batch_records=BATCH_RECORDS, seed=SEED)
    assert [p.name for p in result.batches] == [batch_name(n) for n in range(1, BATCHES + 1)]
    return _read_part(result.first_load), [_read_part(p) for p in result.batches]


def _updates(first: Part, batch: Part) -> list[dict]:
    """Rows of the batch that are new versions of records the first load already holds."""
    loaded = set(first.keys)
    return [row for feed, row in batch.rows if (feed, row["record_id"]) in loaded]


def _month(feed: str, row: dict) -> str | None:
    value = row.get("shipped_at" if feed == "waybill" else "period")
    return value[:7] if value else None


def test_every_generated_record_lands_once_and_updates_are_extra_versions(sample, split):
    first, batches = split
    generated = {(feed, row["record_id"]) for feed, rows in sample.rows.items() for row in rows}
    seen = Counter(key for part in (first, *batches) for key in part.keys)
    assert set(seen) == generated
    again = {key for key, n in seen.items() if n > 1}
    assert again and all(seen[key] == 2 and key[0] == "registration" for key in again)
    assert sum(seen.values()) == len(generated) + len(again)
    assert len(first.keys) == len(set(first.keys))  # the first load holds no second versions


def test_each_part_has_truth_for_exactly_its_records(sample, split):
    first, batches = split
    for part in (first, *batches):
        assert Counter(key for key, _ in part.truth) == Counter(part.keys)
        assert all(sample.owner[key] == unit for key, unit in part.truth)


def test_batches_are_about_the_requested_size_and_mix_all_three_kinds(sample, split):
    first, batches = split
    known_units = {sample.owner[key] for key in first.keys}
    for batch in batches:
        # the plan counts the original feeds' records; the added feeds' come along with their units
        original = [key for key in batch.keys if key[0] in ORIGINAL_FEEDS]
        assert BATCH_RECORDS <= len(original) <= 1.1 * BATCH_RECORDS
        assert len(batch.keys) > len(original)
        updates = _updates(first, batch)
        units = {sample.owner[key] for key in batch.keys}
        new_units, months_of_known = units - known_units, units & known_units
        assert 0.15 * BATCH_RECORDS <= len(updates) <= 0.25 * BATCH_RECORDS
        new_records = sum(sample.owner[key] in new_units for key in original)
        assert 0.35 * BATCH_RECORDS <= new_records <= 0.5 * BATCH_RECORDS
        assert len(new_units) >= 10 and len(months_of_known) >= 10


def test_new_units_arrive_whole_and_only_once(sample, split):
    first, batches = split
    known_units = {sample.owner[key] for key in first.keys}
    records_of = defaultdict(set)
    for key, unit in sample.owner.items():
        if unit:
            records_of[unit].add(key)
    arrived = set()
    for batch in batches:
        new_units = {sample.owner[key] for key in batch.keys} - known_units
        assert new_units and not new_units & arrived
        for unit in new_units:
            assert records_of[unit] <= set(batch.keys), unit
        arrived |= new_units


def test_new_months_are_the_latest_months_of_units_already_known(sample, split):
    first, batches = split
    month = {
        (feed, row["record_id"]): _month(feed, row)
        for feed in ("tax", "utility", "waybill")
        for row in sample.rows[feed]
    }
    latest = defaultdict(str)  # (unit, feed) → the latest month in the generated sample
    for key, value in month.items():
        unit = sample.owner[key]
        if unit and value:
            latest[unit, key[0]] = max(latest[unit, key[0]], value)
    first_keys = set(first.keys)
    known_units = {sample.owner[key] for key in first_keys}
    held_back = set()  # (unit, feed, month)
    for batch in batches:
        for key in batch.keys:
            unit = sample.owner[key]
            if unit in known_units and key not in first_keys:  # a held-back record of a known unit
                assert key[0] in ("tax", "utility", "waybill"), key
                assert month[key] == latest[unit, key[0]], key
                held_back.add((unit, key[0], month[key]))
    assert len(held_back) >= 0.1 * BATCH_RECORDS * BATCHES
    for key in first_keys:  # a month held back is held back whole
        assert (sample.owner[key], key[0], month.get(key)) not in held_back, key


def test_updates_are_later_versions_of_loaded_registrations_with_a_change(sample, split):
    first, batches = split
    loaded = {row["record_id"]: row for feed, row in first.rows if feed == "registration"}
    changes = Counter()
    for batch in batches:
        for row in _updates(first, batch):
            old = loaded[row["record_id"]]
            if old.get("updated_at"):
                assert datetime.fromisoformat(row["updated_at"]) > datetime.fromisoformat(old["updated_at"])
            changed = {k for k in old.keys() | row.keys() if old.get(k) != row.get(k)} - {"updated_at"}
            assert len(changed) == 1 and changed <= {"phone", "address", "status"}, changed
            changes.update(changed)
            if "status" in changed:
                assert row["status"] == "注销"
    assert set(changes) == {"phone", "address", "status"}


def test_the_split_is_the_same_for_a_seed_and_differs_between_seeds(sample, tmp_path):
    files, held_back = {}, {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        result = split_batches(sample.path, tmp_path / name, batches=2, batch_records=300, seed=seed)
        files[name] = {
            p.relative_to(tmp_path / name): p.read_bytes() for p in (tmp_path / name).rglob("*.jsonl")
        }
        held_back[name] = {key for path in result.batches for key in _read_part(path).keys}
    assert files["a"] == files["b"]
    assert held_back["a"] != held_back["c"]


def test_a_sample_too_small_for_the_batches_is_refused(sample, tmp_path):
    with pytest.raises(ValueError, match="too few units"):
        split_batches(sample.path, tmp_path, batches=10, batch_records=len(sample.owner), seed=1)


# -- department vocabularies ---------------------------------------------------------------------------


VOCABULARY_FIELDS = {"registration": "industry_code", "utility": "customer_class"}


@pytest.fixture(scope="module")
def variant(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("variant")
    generate(units=UNITS, seed=SEED, out_dir=out, vocabulary="variant")
    return out


def test_another_vocabulary_spells_the_same_codes_differently_and_changes_nothing_else(sample, variant):
    """The same seed gives the same records, truth and units; only industry codes and customer classes are
    spelt another way, and each still means what the default's spelling means."""
    for name in OUTPUT_FILES - {f"{feed}.jsonl" for feed in VOCABULARY_FIELDS}:
        assert (variant / name).read_bytes() == (sample.path / name).read_bytes(), name
    for feed, field in VOCABULARY_FIELDS.items():
        rows = _lines(variant / f"{feed}.jsonl")
        assert len(rows) == len(sample.rows[feed])
        respelt = 0
        for default_row, variant_row in zip(sample.rows[feed], rows, strict=True):
            default_value, variant_value = default_row.get(field), variant_row.get(field)
            assert _without(variant_row, field) == _without(default_row, field)
            assert (default_value is None) == (variant_value is None)
            if default_value is None:
                continue
            respelt += default_value != variant_value
            if feed == "registration":
                assert industry_path(variant_value) == industry_path(default_value) is not None
            else:
                assert customer_kind(variant_value) == customer_kind(default_value) not in (None, UNKNOWN)
        assert respelt > len(rows) / 2, feed


def test_every_code_either_vocabulary_writes_is_known_and_accepted_by_the_suites(sample, variant):
    class_set = set(_suite_value_set("utility", "customer_class"))
    industry_regex = re.compile(_suite_kwargs("registration", "industry_code")["regex"])
    for out, letter in ((sample.path, True), (variant, False)):
        industries = [
            r["industry_code"] for r in _lines(out / "registration.jsonl") if r.get("industry_code")
        ]
        classes = [r["customer_class"] for r in _lines(out / "utility.jsonl") if r.get("customer_class")]
        assert unknown_values("industry", pa.array(industries)) == {}
        assert unknown_values("customer_class", pa.array(classes)) == {}
        assert all(code[0].isalpha() == letter for code in industries)
        assert all(industry_regex.search(code) for code in industries)
        assert set(classes) <= class_set
    default_classes = {r.get("customer_class") for r in sample.rows["utility"]} - {None}
    assert default_classes <= {*CLASS_LONG, *CLASS_LONG.values()}  # State Grid's short and long names
    variant_classes = {r.get("customer_class") for r in _lines(variant / "utility.jsonl")} - {None}
    assert variant_classes - default_classes  # the variant writes names the default never does


def test_an_unknown_vocabulary_is_refused(tmp_path):
    with pytest.raises(ValueError, match="vocabulary"):
        generate(units=10, seed=1, out_dir=tmp_path, vocabulary="martian")


def _without(row: dict, field: str) -> dict:
    return {name: value for name, value in row.items() if name != field}


def _suite_kwargs(feed: str, column: str) -> dict:
    [expectation] = [e for e in load_suite(feed)["expectations"] if e["kwargs"].get("column") == column]
    return expectation["kwargs"]


def _suite_value_set(feed: str, column: str) -> list[str]:
    return _suite_kwargs(feed, column)["value_set"]
