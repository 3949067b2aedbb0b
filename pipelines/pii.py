"""Desensitisation of personal data at import.

Personal identifiers are replaced by keyed HMAC-SHA256 tokens. The same person gets the same token in every
feed (the domain is the field *kind*, not the field name), so resolution can still join a legal
representative's ID number in the registration feed to a nucleic-test record, but nobody without the key can
turn a token back into a number. Values are normalised first, so `+86 138-1234-5678` and `13812345678` give
one token.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import unicodedata

from pipelines.standardise.codes import clean_id_number
from pipelines.standardise.phones import normalise_phone

HMAC_KEY_ENV = "UNITFUSION_HMAC_KEY"
TOKEN_PREFIX = "t1_"
MIN_KEY_BYTES = 16

# Digit runs that look like ID numbers or mobile phones; used to scrub text we could not parse.
_ID_NUMBER_RE = re.compile(rb"(?<![0-9])[1-9][0-9]{16}[0-9Xx](?![0-9A-Za-z])")
_MOBILE_RE = re.compile(rb"(?<![0-9])(?:\+?86[- ]?)?1[3-9][0-9](?:[- ]?[0-9]{4}){2}(?![0-9])")


class MissingKeyError(RuntimeError):
    """Raised when no tokenisation key is configured: running without one would leak personal data."""


def load_key(env: dict[str, str] | os._Environ[str] = os.environ) -> bytes:
    """The HMAC key from the environment; refuse to go on without a usable one."""
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


_NORMALISERS = {
    "id_number": clean_id_number,
    "phone": normalise_phone,
    "person_name": normalise_person_name,
}


class Tokeniser:
    """Turns personal values into stable keyed tokens."""

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
        digest = hmac.new(self._key, f"{kind}\x1f{normalised}".encode(), hashlib.sha256).hexdigest()
        return TOKEN_PREFIX + digest[:32]

    def scrub_bytes(self, payload: bytes) -> bytes:
        """Replace anything in raw bytes that looks like an ID number or mobile phone by its token."""

        def swap(kind: str):
            def replace(match: re.Match[bytes]) -> bytes:
                return (self.token(kind, match.group().decode("ascii")) or "").encode()

            return replace

        payload = _ID_NUMBER_RE.sub(swap("id_number"), payload)
        return _MOBILE_RE.sub(swap("phone"), payload)
