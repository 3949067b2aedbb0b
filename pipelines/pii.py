"""Desensitisation of personal data at import.

Personal identifiers are replaced by keyed HMAC-SHA256 tokens. The same person gets the same token in every
feed (the domain is the field *kind*, not the field name), so resolution can still join a legal
representative's ID number in the registration feed to a nucleic-test record, but nobody without the key can
turn a token back into a number. Values are normalised first, so `+86 138-1234-5678` and `13812345678` give
one token.

People also type ID numbers and mobiles where no contract expects them (a work unit, an address, a record
id, a field the contract does not know). ``Tokeniser.scrub`` finds them by their shape, however they are
written (spaces, dashes, dots, full-width digits, +86), and puts the token of the personal field in their
place; ``Tokeniser.scrub_bytes`` does the same to raw payloads and also tokenises the values of the fields it
is told name a person.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import json
import re
import tomllib
import unicodedata
from collections.abc import Mapping
from functools import cache, lru_cache

from pipelines import resources
from pipelines.standardise.codes import clean_id_number
from pipelines.standardise.phones import normalise_phone

HMAC_KEY_ENV = "UNITFUSION_HMAC_KEY"
TOKEN_PREFIX = "t1_"
MIN_KEY_BYTES = 16

# -- shapes of ID numbers and mobiles in text --------------------------------------------------------------

_DIGIT = "0-9\uff10-\uff19"  # ASCII and full-width
_SEPARATOR = " \u00a0\u3000.\\-\u2010-\u2015\uff0d\uff0e"  # spaces, dots and dashes, also full-width
_X = "Xx\uff38\uff58"  # the check character of an ID number
_TOKEN = TOKEN_PREFIX + "[0-9a-f]{32}"
# A token (left alone: its hex holds digit runs), or digit groups joined by single separators, with an
# optional + before (+86) and an X after (an ID number's check character, maybe after a space).
_RUN_RE = re.compile(
    rf"(?P<token>{_TOKEN})|\+?[{_DIGIT}]+(?:[{_SEPARATOR}][{_DIGIT}]+)*(?:[{_SEPARATOR}]?[{_X}])?"
)
_GROUP_RE = re.compile(f"[{_DIGIT}]+")
_DIGIT_RE = re.compile(f"[{_DIGIT}]")
_TO_ASCII = str.maketrans("０１２３４５６７８９ｘＸx", "0123456789XXX")
_MOBILE_RE = re.compile(r"1[3-9]\d{9}")
_COUNTRY_PREFIXES = ("", "86", "0086")
# First two digits of an ID number: the province (GB/T 2260), Taiwan, Hong Kong, Macao.
_PROVINCES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 "
    "61 62 63 64 65 71 81 82 83".split()
)
MIN_SHAPE_DIGITS = 11  # a mobile; ID numbers are longer
_SHAPE_LENGTHS = frozenset({11, 13, 15, 18})  # mobile, 86 + mobile, old ID number or 0086 + mobile, ID number


def _is_id_start(region: str, birth: str) -> bool:
    """A province and a real birth date (YYYYMMDD): what keeps amounts, dates and counters from being taken
    for ID numbers. The check character is not required: people mistype it."""
    year, month, day = int(birth[:4]), int(birth[4:6]), int(birth[6:8])
    return (
        region[:2] in _PROVINCES
        and 1900 <= year <= 2099
        and 1 <= month <= 12
        and 1 <= day <= calendar.monthrange(year, month)[1]
    )


def _is_mobile(digits: str, groups: list[int]) -> bool:
    """11 digits of a mobile, after an optional 86/0086. Each group of the number has at least 3 digits
    (138 1234 5678): shorter groups are amounts or lists (15 000 000 000), not a phone as people write it."""
    for prefix in _COUNTRY_PREFIXES:
        if len(digits) == len(prefix) + 11 and digits.startswith(prefix):
            if not _MOBILE_RE.fullmatch(digits[len(prefix) :]):
                return False
            number_groups = groups[1:] if prefix and groups[0] == len(prefix) else groups
            return min(number_groups) >= 3
    return False


def shape_kind(digits: str, groups: list[int]) -> str | None:
    """``id_number`` or ``phone`` when ASCII digits (with an ID's X), written in groups of these sizes, have
    the shape of one; else None."""
    if len(digits) not in _SHAPE_LENGTHS:
        return None
    if len(digits) == 18 and digits[:17].isdigit() and _is_id_start(digits[:6], digits[6:14]):
        return "id_number"
    if len(digits) == 15 and digits.isdigit() and _is_id_start(digits[:6], "19" + digits[6:12]):
        return "id_number"  # the 15-digit number issued before 1999: YYMMDD of a birth in the 1900s
    return "phone" if digits.isdigit() and _is_mobile(digits, groups) else None


def has_enough_digits(text: str) -> bool:
    """The cheap test that lets most values skip the scrub: no shape has fewer than 11 digits."""
    return len(text) >= MIN_SHAPE_DIGITS and len(_DIGIT_RE.findall(text)) >= MIN_SHAPE_DIGITS


# -- names of persons ---------------------------------------------------------------------------------------


@cache
def _business_marker_re() -> re.Pattern[str]:
    data = tomllib.loads(resources.BUSINESS_MARKERS.read_text(encoding="utf-8"))
    markers = sorted({m.casefold() for words in data.values() for m in words}, key=len, reverse=True)
    return re.compile("|".join(map(re.escape, markers)))


def is_private_name(name: str) -> bool:
    """A name without any business marker (公司, 店, 厂, … in ``business_markers.toml``) is a person's."""
    return _business_marker_re().search(unicodedata.normalize("NFKC", name).casefold()) is None


# -- tokens -------------------------------------------------------------------------------------------------


def _utf8(text: str) -> bytes:
    """UTF-8 bytes of any Python string: a lone surrogate (from a ``\\ud800`` escape or undecodable bytes)
    is kept as such, so such a value still gets a token instead of an error."""
    return text.encode("utf-8", "surrogatepass")


class MissingKeyError(RuntimeError):
    """Raised when no tokenisation key is configured: running without one would leak personal data."""


def load_key(env: Mapping[str, str]) -> bytes:
    """The HMAC key from a mapping of settings (``os.environ`` at an entry point); refuse to go on without a
    usable one. Only entry points call this: they pass the key down as a value, never through the
    environment."""
    value = env.get(HMAC_KEY_ENV, "")
    if len(value.encode()) < MIN_KEY_BYTES:
        raise MissingKeyError(
            f"{HMAC_KEY_ENV} is not set (or shorter than {MIN_KEY_BYTES} bytes): refusing to import personal "
            "data without a tokenisation key. Set it, or store it as the password of the Airflow connection "
            "'unitfusion_hmac'."
        )
    return value.encode()


def normalise_person_name(value: str) -> str:
    return "".join(unicodedata.normalize("NFKC", value).split())


def normalise_id_number(value: str) -> str:
    """Full-width digits as ASCII, then the canonical form: one token however the number was typed."""
    return clean_id_number(unicodedata.normalize("NFKC", value))


_NORMALISERS = {
    "id_number": normalise_id_number,
    "phone": normalise_phone,
    "person_name": normalise_person_name,
}


def is_token(value: str) -> bool:
    return re.fullmatch(_TOKEN, value) is not None


@lru_cache(maxsize=64)
def _named_value_re(names: tuple[str, ...]) -> re.Pattern[str]:
    """``"name": "value"`` of these fields in JSON text, also when the text stops inside the value."""
    alternatives = "|".join(map(re.escape, names))
    return re.compile(rf'"(?P<name>{alternatives})"\s*:\s*"(?P<value>(?:[^"\\]|\\.)*)')


def _decode(payload: bytes) -> tuple[str, str, str]:
    """Text of a payload and how to encode it back byte for byte: UTF-8, else GB 18030 (what Chinese systems
    send when they are not UTF-8), else UTF-8 with the undecodable bytes kept as they are."""
    for encoding, errors in (("utf-8", "strict"), ("gb18030", "strict")):
        try:
            return payload.decode(encoding, errors), encoding, errors
        except UnicodeDecodeError:
            pass
    return payload.decode("utf-8", "surrogateescape"), "utf-8", "surrogateescape"


class Tokeniser:
    """Turns personal values into stable keyed tokens, and finds them in text by their shape."""

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise MissingKeyError(f"tokenisation key must be at least {MIN_KEY_BYTES} bytes")
        self._key = key

    def token(self, kind: str, value: str | None) -> str | None:
        if value is None:
            return None
        normalised = _NORMALISERS.get(kind, str.strip)(value)
        if not normalised:
            return None
        digest = hmac.new(self._key, _utf8(f"{kind}\x1f{normalised}"), hashlib.sha256).hexdigest()
        return TOKEN_PREFIX + digest[:32]

    def scrub(self, text: str) -> str:
        """The text with every ID number and mobile in it replaced by its token (the token of the same
        number in a personal field); text without such a shape comes back unchanged."""
        if not has_enough_digits(text):
            return text
        return _RUN_RE.sub(self._scrub_run, text)

    def _scrub_run(self, match: re.Match[str]) -> str:
        """Within a run of digit groups (``2024-01-15 138 1234 5678``), the groups that together have the
        shape of an ID number or a mobile, longest first from the left."""
        run = match[0]
        if match["token"] or len(_DIGIT_RE.findall(run)) < MIN_SHAPE_DIGITS:
            return run
        groups = [(g.start(), g.end(), g[0].translate(_TO_ASCII)) for g in _GROUP_RE.finditer(run)]
        ends_in_x = run[-1] in _X  # an ID's check character, or a letter after a mobile
        pieces, done, i = [], 0, 0
        while i < len(groups):
            found, digits = None, ""
            for j in range(i, len(groups)):
                digits += groups[j][2]
                if len(digits) > 18:
                    break
                sizes = [len(g[2]) for g in groups[i : j + 1]]
                if kind := shape_kind(digits, sizes):
                    found = (j, groups[j][1], kind, digits)
                if j == len(groups) - 1 and ends_in_x and (kind := shape_kind(digits + "X", sizes)):
                    found = (j, len(run), kind, digits + "X")
            if found is None:
                i += 1
                continue
            j, end, kind, digits = found
            start = 0 if i == 0 else groups[i][0]  # a leading + goes with the number
            pieces += [run[done:start], self.token(kind, digits) or ""]
            done, i = end, j + 1
        return "".join([*pieces, run[done:]])

    def scrub_bytes(self, payload: bytes, named: Mapping[str, str] | None = None) -> bytes:
        """A raw payload (JSON or not) scrubbed of shapes, with the string values of the fields in ``named``
        (field name → token kind) tokenised wherever they appear; other bytes are kept as they were."""
        text, encoding, errors = _decode(payload)
        if named:
            text = self._tokenise_named(text, named)
        return self.scrub(text).encode(encoding, errors)

    def _tokenise_named(self, text: str, named: Mapping[str, str]) -> str:
        def replace(match: re.Match[str]) -> str:
            raw = match["value"]
            try:
                value = json.loads(f'"{raw}"')
            except ValueError:  # cut off inside an escape
                value = raw
            if is_token(value):
                return match[0]
            head = match[0][: match.start("value") - match.start()]
            return head + (self.token(named[match["name"]], value) or "")

        return _named_value_re(tuple(sorted(named))).sub(replace, text)
