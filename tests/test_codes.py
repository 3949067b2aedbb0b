from hypothesis import assume, given
from hypothesis import strategies as st

from pipelines.standardise import codes


def test_real_uscc_check_characters():
    # Published codes of real organisations.
    assert codes.is_valid_uscc("91350100M000100Y43")
    assert codes.is_valid_uscc("91110000100006485K")
    assert codes.is_valid_uscc("9111 0000 1000 0648 5k")  # spaces and lower case as people type them
    assert not codes.is_valid_uscc("91350100M000100Y44")
    assert not codes.is_valid_uscc("91350100M000100Y4")
    assert not codes.is_valid_uscc("91350100I000100Y43")  # I is not in the GB 32100 alphabet


def test_make_uscc_builds_valid_codes_with_valid_org_code():
    uscc = codes.make_uscc("9", "1", "330106", "MA2H1234")
    assert codes.is_valid_uscc(uscc)
    assert codes.is_valid_org_code(uscc[8:17])


def test_id_number_check_character():
    assert codes.is_valid_id_number("11010519491231002X")  # the GB 11643 example
    assert codes.is_valid_id_number("11010519491231002x")
    assert not codes.is_valid_id_number("110105194912310021")
    assert not codes.is_valid_id_number("1101051949123100")


def test_legacy_taxpayer_id_is_division_plus_org_code():
    assert codes.is_valid_taxpayer_id("110000100006485")
    assert not codes.is_valid_taxpayer_id("110000100006486")
    assert codes.is_valid_taxpayer_id("91110000100006485K")


# Property-based: codes the generator builds, and how people type them.
_org_code8 = st.text(alphabet=codes.USCC_CHARSET, min_size=8, max_size=8)  # GB 32100 letters only
_uscc_char = st.sampled_from(codes.USCC_CHARSET)
_division = st.text(alphabet="0123456789", min_size=6, max_size=6)


@st.composite
def _usccs(draw: st.DrawFn) -> str:
    return codes.make_uscc(draw(_uscc_char), draw(_uscc_char), draw(_division), draw(_org_code8))


@given(_usccs())
def test_a_made_uscc_is_valid_and_carries_its_org_code(uscc):
    assert codes.is_valid_uscc(uscc) and codes.is_valid_taxpayer_id(uscc)
    assert codes.is_valid_org_code(uscc[8:17])
    assert codes.org_code_of(uscc) == uscc[8:17] == codes.uscc_parts(uscc)["org_code"]


@given(_usccs(), st.integers(0, 17), st.sampled_from(codes.USCC_CHARSET + "IOSVZ"))
def test_any_single_character_change_of_a_uscc_is_rejected(uscc, position, replacement):
    assume(replacement != uscc[position])
    changed = uscc[:position] + replacement + uscc[position + 1 :]
    assert not codes.is_valid_uscc(changed) and codes.org_code_of(changed) is None


@given(_usccs(), st.lists(st.sampled_from([" ", "-", "\u3000", "\t"]), min_size=18, max_size=18))
def test_a_uscc_typed_in_lower_case_with_separators_is_still_accepted(uscc, separators):
    typed = "".join(ch + sep for ch, sep in zip(uscc.lower(), separators, strict=True))
    assert codes.clean_code(typed) == uscc
    assert codes.is_valid_uscc(typed) and codes.org_code_of(typed) == uscc[8:17]


@given(st.text())
def test_clean_code_keeps_the_upper_cased_letters_and_digits_in_order(value):
    cleaned = codes.clean_code(value)
    assert cleaned == "".join(filter(str.isalnum, value.upper()))
    assert codes.clean_code(cleaned) == cleaned


@given(_division, _org_code8)
def test_a_legacy_taxpayer_id_is_linked_to_the_uscc_of_its_org_code(division, org_code8):
    uscc = codes.make_uscc("9", "1", division, org_code8)
    legacy = division + uscc[8:17]
    assert codes.is_valid_taxpayer_id(legacy) and not codes.is_valid_uscc(legacy)
    assert codes.org_code_of(legacy) == codes.org_code_of(uscc)


@given(
    st.text(alphabet="0123456789", min_size=17, max_size=17),
    st.integers(0, 17),
    st.sampled_from("0123456789X"),
)
def test_an_id_number_with_one_character_changed_is_rejected(body, position, replacement):
    number = body + codes.id_check_char(body)
    assert codes.is_valid_id_number(number) and codes.is_valid_id_number(number.lower())
    assume(replacement != number[position])
    assert not codes.is_valid_id_number(number[:position] + replacement + number[position + 1 :])
