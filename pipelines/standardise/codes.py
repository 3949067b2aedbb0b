"""Check characters of Chinese identification codes.

Pure functions: the unified social credit code (GB 32100-2015), the organisation code inside it
(GB 11714-1997) and the resident ID number (GB 11643-1999). Ingest uses them to record validity before
personal identifiers are tokenised; resolution uses them to trust a code before linking on it.
"""

from __future__ import annotations

import re

USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # GB 32100: no I, O, S, V, Z
_USCC_RE = re.compile(f"[{USCC_CHARSET}]{{18}}")
_NOT_ALNUM_RE = re.compile(r"[\W_]+")  # exactly the characters str.isalnum() rejects
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def clean_code(value: str | None) -> str:
    """Upper-case and strip separators that people type into codes (anything but letters and digits)."""
    if not value:
        return ""
    return _NOT_ALNUM_RE.sub("", value.upper())


def uscc_check_char(first17: str) -> str:
    """The 18th character of a USCC whose first 17 characters are given."""
    total = sum(USCC_CHARSET.index(ch) * w for ch, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return USCC_CHARSET[(31 - total % 31) % 31]


def org_code_check_char(first8: str) -> str:
    """The 9th character of an organisation code (digits and letters A=10 … Z=35)."""
    total = sum(int(ch, 36) * w for ch, w in zip(first8, _ORG_WEIGHTS, strict=True))
    check = 11 - total % 11
    return {10: "X", 11: "0"}.get(check, str(check))


# The checks below take a code clean_code has already cleaned, so that a code is cleaned once per call.
def _is_org_code(code: str) -> bool:
    return (
        len(code) == 9
        and code[:8].isascii()
        and code[:8].isalnum()
        and org_code_check_char(code[:8]) == code[8]
    )


def _is_uscc(code: str) -> bool:
    return _USCC_RE.fullmatch(code) is not None and uscc_check_char(code[:17]) == code[17]


def _is_legacy_taxpayer_id(code: str) -> bool:
    return len(code) == 15 and code[:6].isdigit() and _is_org_code(code[6:])


def is_valid_org_code(code: str | None) -> bool:
    return _is_org_code(clean_code(code))


def is_valid_uscc(code: str | None) -> bool:
    """True for an 18-character USCC with a correct check character (GB 32100)."""
    return _is_uscc(clean_code(code))


def make_uscc(authority: str, org_type: str, division: str, org_code8: str) -> str:
    """Build a valid USCC from its parts (used by the sample-data generator and tests)."""
    org_code = org_code8 + org_code_check_char(org_code8)
    body = f"{authority}{org_type}{division}{org_code}"
    return body + uscc_check_char(body)


def id_check_char(first17: str) -> str:
    total = sum(int(ch) * w for ch, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def clean_id_number(value: str | None) -> str:
    """Canonical form of an ID number before it is checked or tokenised: no spaces, upper-case X."""
    return clean_code(value)


def is_valid_id_number(value: str | None) -> bool:
    """True for an 18-digit resident ID number with a correct check character (GB 11643)."""
    number = clean_id_number(value)
    if len(number) != 18 or not number[:17].isdigit():
        return False
    return id_check_char(number[:17]) == number[17]


def is_valid_legacy_taxpayer_id(value: str | None) -> bool:
    """A 15-character taxpayer id: 6-digit division code followed by a valid organisation code."""
    return _is_legacy_taxpayer_id(clean_code(value))


def is_valid_taxpayer_id(value: str | None) -> bool:
    """A taxpayer id is either a USCC or a legacy 15-character number."""
    code = clean_code(value)
    return _is_uscc(code) or _is_legacy_taxpayer_id(code)


def uscc_parts(code: str | None) -> dict[str, str] | None:
    """Registration authority, organisation type, division code and organisation code of a valid USCC."""
    code = clean_code(code)
    if not _is_uscc(code):
        return None
    return {"authority": code[0], "org_type": code[1], "division": code[2:8], "org_code": code[8:17]}


def org_code_of(code: str | None) -> str | None:
    """The 9-character organisation code inside a valid USCC or legacy 15-character taxpayer id: the link
    between a taxpayer filing under its old number and its registration."""
    code = clean_code(code)
    if _is_uscc(code):
        return code[8:17]
    if _is_legacy_taxpayer_id(code):
        return code[6:15]
    return None
