"""Phone numbers as mobile or area-code landline, whatever way they were written."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_MOBILE_RE = re.compile(r"^1[3-9]\d{9}$")
# Area codes: 010 and 02x are three digits, the others four.
_LANDLINE_RE = re.compile(r"^(?P<area>0(?:10|2\d|[3-9]\d{2}))(?P<local>[2-9]\d{6,7})$")
_LOCAL_NUMBER_RE = re.compile(r"[2-9]\d{6,7}")
_SEPARATORS_RE = re.compile(r"[/,;，；、]")
# An extension after the number: 0571-88889999转801, 分机801, ext. 801, or 0571-88889999-801
_EXTENSION_RE = re.compile(r"(?:\s*(?:转|分机|ext\.?|x|#)\s*\d{1,5}|(?<=\d{7})-\d{1,5})$", re.IGNORECASE)


def normalise_phone(value: str) -> str:
    """Digits of a phone number without the +86/0086 country prefix."""
    digits = "".join(filter(str.isdigit, unicodedata.normalize("NFKC", value)))
    for prefix in ("0086", "86"):
        if digits.startswith(prefix) and len(digits) - len(prefix) in (11, 10, 12):
            digits = digits[len(prefix) :]
            break
    return digits


# Long-distance area codes of cities (by the first four digits of their division code), to complete a
# landline written without one. Public numbering-plan data; extend as the register grows.
AREA_CODES = {
    "1101": "010", "1201": "022", "3101": "021", "5001": "023", "3301": "0571", "3302": "0574",
    "3303": "0577", "3201": "025", "3205": "0512", "4401": "020", "4403": "0755", "5101": "028",
    "4201": "027", "6101": "029", "4101": "0371", "3701": "0531", "3702": "0532", "2101": "024",
    "2102": "0411", "4301": "0731", "3501": "0591", "3502": "0592", "3401": "0551", "3601": "0791",
    "5301": "0871", "5201": "0851", "4501": "0771", "1301": "0311", "1401": "0351", "2201": "0431",
    "2301": "0451", "6201": "0931", "6501": "0991", "1501": "0471", "6401": "0951", "6301": "0971",
    "4601": "0898", "5401": "0891",
}  # fmt: skip


def area_code_of(division_code: str | None) -> str | None:
    return AREA_CODES.get(division_code[:4]) if division_code else None


@dataclass(frozen=True)
class Phone:
    kind: str  # mobile / landline / unknown
    number: str  # digits: 11-digit mobile, or area code + local number
    area_code: str | None = None


def parse_phone(text: str | None, default_area_code: str | None = None) -> Phone | None:
    """``default_area_code`` completes a landline written without its area code."""
    if not text:
        return None
    # "0571-88889999/13812345678": the first is the main one
    first = _SEPARATORS_RE.split(text, maxsplit=1)[0]
    digits = normalise_phone(_EXTENSION_RE.sub("", first.strip()))
    if not digits:
        return None
    if _MOBILE_RE.match(digits):
        return Phone("mobile", digits)
    if found := _LANDLINE_RE.match(digits):
        return Phone("landline", digits, found["area"])
    if default_area_code and _LOCAL_NUMBER_RE.fullmatch(digits):
        return Phone("landline", default_area_code + digits, default_area_code)
    return Phone("unknown", digits)
