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
