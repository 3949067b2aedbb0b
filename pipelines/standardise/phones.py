"""Phone numbers as mobile or area-code landline, whatever way they were written."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_MOBILE_RE = re.compile(r"^1[3-9]\d{9}$")
# Area codes: 010 and 02x are three digits, the others four.
_LANDLINE_RE = re.compile(r"^(?P<area>0(?:10|2\d|[3-9]\d{2}))(?P<local>[2-9]\d{6,7})$")


def normalise_phone(value: str) -> str:
    """Digits of a phone number without the +86/0086 country prefix."""
    digits = "".join(ch for ch in unicodedata.normalize("NFKC", value) if ch.isdigit())
    for prefix in ("0086", "86"):
        if digits.startswith(prefix) and len(digits) - len(prefix) in (11, 10, 12):
            digits = digits[len(prefix) :]
            break
    return digits


@dataclass(frozen=True)
class Phone:
    kind: str  # mobile / landline / unknown
    number: str  # digits: 11-digit mobile, or area code + local number
    area_code: str | None = None


def parse_phone(text: str | None, default_area_code: str | None = None) -> Phone | None:
    """``default_area_code`` completes a landline written without its area code."""
    if not text:
        return None
    first = re.split(r"[/,;，；、]", text)[0]  # "0571-88889999/13812345678": the first is the main one
    digits = normalise_phone(first)
    if not digits:
        return None
    if _MOBILE_RE.match(digits):
        return Phone("mobile", digits)
    if found := _LANDLINE_RE.match(digits):
        return Phone("landline", digits, found["area"])
    if default_area_code and re.fullmatch(r"[2-9]\d{6,7}", digits):
        return Phone("landline", default_area_code + digits, default_area_code)
    return Phone("unknown", digits)
