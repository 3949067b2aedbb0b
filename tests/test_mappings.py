"""Feed mappings: every feed has one, bad ones are refused at load, the key rules, and no module outside the
generator names a department's own fields (they live in schemas/)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines import resources
from pipelines.contracts import contract, load_contracts, output_schema
from pipelines.mappings import (
    IDENTITY_ROLES,
    PERSON,
    ROLES,
    UNIT,
    EntityRule,
    MappingError,
    load_mappings,
    parse_mapping,
)
from pipelines.resolve.entities import ENTITY_SCHEMA, entity_key
from pipelines.standardise.codes import clean_code
from pipelines.standardise.text import fold

ROOT = Path(__file__).resolve().parent.parent
FIELDS = frozenset({"record_id", "name", "shop", "addr", "tel", "month", "amount", "when"})
GOOD = """
kind = "unit"
[entity]
key = ["record_id"]
key_rule = "as_is"
time = "when"
[roles]
name = "name"
address = "addr"
phone = "tel"
[figures]
amount = { field = "amount", label = "金额", active = "amount_active", above = 0 }
"""


def test_every_feed_contract_has_a_mapping_that_loads():
    mappings = load_mappings()
    assert set(mappings) == set(load_contracts())
    assert {m.kind for m in mappings.values()} <= {UNIT, PERSON}
    assert sum(m.kind == PERSON for m in mappings.values()) == 1  # the one person feed the matching reads
    assert any(m.anchor for m in mappings.values())
    for feed, found in mappings.items():
        fields = set(contract(feed).field_names)
        assert set(found.roles.values()) <= fields, feed
        assert set(found.figures.values()) <= fields, feed


def test_a_good_mapping_reads_its_roles_figures_and_activity():
    found = parse_mapping("shops", GOOD, FIELDS)
    assert found.field("name") == "name" and found.field("uscc") is None
    assert found.identity_fields == ("name", "addr", "tel")  # in IDENTITY_ROLES order
    assert found.figures == {"amount": "amount"}
    assert found.figure_info["amount"].active == "amount_active"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('name = "name"', 'nickname = "name"'), "unknown role"),
        (('address = "addr"', 'address = "street"'), "not in the shops contract"),
        (('key_rule = "as_is"', 'key_rule = "by_hand"'), "key_rule must be one of"),
        (('time = "when"', 'time = "when"\nguess = true'), "unknown [entity] option"),
        (('kind = "unit"', 'kind = "shop"'), "kind must be"),
        (('kind = "unit"', 'kind = "unit"\ncolour = "red"'), "unknown key"),
        (('label = "金额"', 'label = "金额", colour = "red"'), "unknown key"),
        (('amount = { field = "amount"', 'amount = { field = "total"'), "not in the shops contract"),
    ],
)
def test_a_mapping_naming_what_is_not_there_is_refused_at_load(change, message):
    old, new = change
    assert old in GOOD
    with pytest.raises(MappingError, match=re.escape(message)):
        parse_mapping("shops", GOOD.replace(old, new), FIELDS)


def test_a_unit_feed_without_an_entity_table_is_refused():
    without = GOOD[: GOOD.index("[entity]")] + GOOD[GOOD.index("[roles]") :]
    with pytest.raises(MappingError, match="needs an"):
        parse_mapping("shops", without, FIELDS)


_TEXT = st.text(alphabet=st.sampled_from("杭州文具店ＡＢab12３ -"), max_size=8) | st.none()


@given(first=_TEXT, second=_TEXT, third=_TEXT)
def test_key_rules(first, second, third):
    values = {"a": first, "b": second, "c": third}
    kinds = {"a": None, "b": None, "c": "phone"}

    def key(rule: str, parts: tuple) -> str:
        return entity_key(EntityRule(key=parts, key_rule=rule, time="t"), kinds, values)

    assert key("as_is", ("a",)) == first
    assert key("first_else_record", ("a", "b")) == (first or f"~{second}")
    coded = key("code_else_text", ("a", "b"))
    assert coded == (clean_code(first) or f"~{fold(second)}")
    complete = key("all_else_record", ("a", "b", "c"))
    assert complete == (f"~{third}" if not (fold(first) and fold(second)) else key("digest", ("a", "b")))
    digest = key("digest", (("a", "b"), "c"))
    assert len(digest) == 20
    # text is folded (full-width, spaces, case), a phone is hashed as imported
    refolded = {"a": fold(first), "b": fold(second), "c": third}
    assert (
        entity_key(EntityRule(key=(("a", "b"), "c"), key_rule="digest", time="t"), kinds, refolded) == digest
    )


def _feed_specific_fields() -> set[str]:
    """Contract fields that are a department's own: not a role, a figure, a contract kind, or a column of
    the register or the entity table the pass itself defines."""
    kinds = {spec.kind for c in load_contracts().values() for spec in c.fields if spec.kind}
    figures = {name for m in load_mappings().values() for name in m.figures}
    shared = (
        ROLES
        | figures
        | kinds
        | set(output_schema("register").names)
        | set(ENTITY_SCHEMA.names)
        # the contracts' own conventions, read for every feed: the record key and the source's update time
        | {"record_id", "updated_at"}
    )
    fields = {name for c in load_contracts().values() for name in c.field_names}
    return fields - shared


def test_no_module_outside_the_generator_names_a_departments_fields():
    specific = _feed_specific_fields()
    assert {"sender_company", "taxpayer_name", "account_no", "parcel_count", "sampled_at"} <= specific
    found = []
    for path in sorted((ROOT / "pipelines").rglob("*.py")):
        if "generate" in path.relative_to(ROOT).parts:
            continue
        text = path.read_text(encoding="utf-8")
        for name in specific:
            if re.search(rf"""["']{re.escape(name)}["']|\b{re.escape(name)}\s*=""", text):
                found.append(f"{path.relative_to(ROOT)}: {name}")
    assert found == []


def test_identity_roles_are_roles():
    assert set(IDENTITY_ROLES) <= ROLES
    assert resources.FEED_MAPPINGS.is_dir()


def test_a_per_kind_template_stands_for_every_member_not_documented_by_name():
    """``{feed}_records`` marked ``"per": "feed"`` is one column per feed, except a feed whose column is
    documented by name (it keeps its own doc), in the template's place among the fields."""
    from pipelines.contracts import expand_per

    fields = [
        {"name": "unit_id"},
        {"name": "tax_records", "doc": "own"},
        {"name": "{feed}_records", "per": "feed"},
        {"name": "{flag}", "per": "flag"},
    ]
    expanded = expand_per(fields, {"feed": ["registration", "tax", "waybill"], "flag": ["power_active"]})
    assert [name for name, _ in expanded] == [
        "unit_id", "tax_records", "registration_records", "waybill_records", "power_active",
    ]  # fmt: skip
    assert dict(expanded)["tax_records"]["doc"] == "own"
