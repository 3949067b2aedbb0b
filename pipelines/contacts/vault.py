"""The contact vault: a personal contact's clear value, sealed with AES-GCM under the vault key.

Tokens (``pii``) let the register join records without knowing a number; the vault is the one place a
number can be got back, under a key separate from the tokenisation key, so holding the register (or the HMAC
key) reveals nothing. One row per token: the token, its kind, a masked form people may see (``138****0006``),
the nonce and ciphertext, the id of the key that sealed it (so a rotation is visible) and the first ingest
run that saw it. The associated data binds token and kind: a ciphertext moved to another row fails to open.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterable, Mapping

import pyarrow as pa
import pyarrow.compute as pc
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pipelines.pii import normalise_id_number
from pipelines.standardise.phones import normalise_phone

VAULT_KEY_ENV = "UNITFUSION_VAULT_KEY"
VAULT_CONNECTION_ID = "unitfusion_vault"
KEY_BYTES = 32
NONCE_BYTES = 12
SEALED_KINDS = ("phone", "id_number")  # the personal contact values the vault keeps
# How much of a value its masked form shows: (leading, trailing) characters.
_SHOWN = {"phone": (3, 4), "id_number": (4, 4)}
_MIN_HIDDEN = 4
_NORMALISERS = {"phone": normalise_phone, "id_number": normalise_id_number}

VAULT_SCHEMA = pa.schema(
    [
        pa.field("token", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("masked", pa.string()),
        pa.field("nonce", pa.binary(), nullable=False),
        pa.field("ciphertext", pa.binary(), nullable=False),
        pa.field("key_id", pa.string(), nullable=False),
        pa.field("first_seen_run", pa.string(), nullable=False),
    ]
)


class VaultKeyError(RuntimeError):
    """The vault key is set but unusable (not 32 bytes in base64 or hex)."""


class VaultOpenError(RuntimeError):
    """A sealed value does not open: another key, or a ciphertext tampered with or moved to another row."""


def parse_vault_key(text: str) -> bytes:
    """32 bytes from their hex or base64 form; anything else is refused (a typo must not become a key)."""
    text = text.strip()
    for decode in (bytes.fromhex, lambda t: base64.b64decode(t, validate=True)):
        try:
            key = decode(text)
        except (ValueError, binascii.Error):
            continue
        if len(key) == KEY_BYTES:
            return key
    raise VaultKeyError(f"{VAULT_KEY_ENV} must be {KEY_BYTES} bytes written in hex or base64")


def load_vault_key(env: Mapping[str, str]) -> bytes | None:
    """The vault key from a mapping of settings (``os.environ`` at an entry point), or None when it is not
    set: import then seals nothing. Entry points pass it down as a value, never through the environment."""
    text = env.get(VAULT_KEY_ENV, "")
    return parse_vault_key(text) if text.strip() else None


def key_id(key: bytes) -> str:
    """A short, stable name of a key (not the key): rows sealed under another key show a rotation."""
    return hashlib.sha256(b"unitfusion-vault\x1f" + key).hexdigest()[:12]


def normalise(kind: str, value: str) -> str:
    """The value a token stands for (``pii`` tokenises the same normal form)."""
    return _NORMALISERS[kind](value)


def mask(kind: str, value: str) -> str:
    """A form people may see: the first and last few characters of the normalised value, the rest ``*``
    (``138****0006``, ``3301**********1234``). At least four characters are hidden; a value too short for
    that shows only its last quarter."""
    head, tail = _SHOWN.get(kind, (0, 4))
    if len(value) < head + tail + _MIN_HIDDEN:
        head, tail = 0, len(value) // 4
    return value[:head] + "*" * (len(value) - head - tail) + value[len(value) - tail :]


def _associated_data(token: str, kind: str) -> bytes:
    return f"unitfusion-vault\x1f{token}\x1f{kind}".encode()


class Vault:
    """Seals and opens contact values under one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise VaultKeyError(f"a vault key has {KEY_BYTES} bytes")
        self._aead = AESGCM(key)
        self.key_id = key_id(key)

    def seal(self, token: str, kind: str, value: str) -> tuple[bytes, bytes]:
        """``(nonce, ciphertext)`` of a normalised value, bound to its token and kind."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce, self._aead.encrypt(nonce, value.encode("utf-8"), _associated_data(token, kind))

    def open(self, token: str, kind: str, nonce: bytes, ciphertext: bytes) -> str:
        try:
            clear = self._aead.decrypt(nonce, ciphertext, _associated_data(token, kind))
        except InvalidTag:
            raise VaultOpenError(
                f"the sealed value of {token} does not open under key {self.key_id}: another key, or the "
                "row was altered or moved"
            ) from None
        return clear.decode("utf-8")

    def rows(self, contacts: Iterable[tuple[str, str, str]], run_id: str) -> pa.Table:
        """Vault rows of ``(token, kind, clear value)`` triples, one per token (the first seen wins)."""
        seen: dict[str, tuple[str, str]] = {}
        for token, kind, value in contacts:
            if token and token not in seen:
                seen[token] = (kind, normalise(kind, value))
        columns: dict[str, list] = {name: [] for name in VAULT_SCHEMA.names}
        for token, (kind, value) in seen.items():
            nonce, ciphertext = self.seal(token, kind, value)
            for name, item in zip(
                VAULT_SCHEMA.names,
                (token, kind, mask(kind, value), nonce, ciphertext, self.key_id, run_id),
                strict=True,
            ):
                columns[name].append(item)
        return pa.table(columns, schema=VAULT_SCHEMA)


def first_per_token(tables: Iterable[pa.Table]) -> pa.Table:
    """The vault as readers see it: the first row of each token, over runs in commit order."""
    tables = [t.select(VAULT_SCHEMA.names).cast(VAULT_SCHEMA) for t in tables if t.num_rows]
    if not tables:
        return VAULT_SCHEMA.empty_table()
    rows = pa.concat_tables(tables)
    numbered = rows.select(["token"]).append_column("i", pa.array(range(rows.num_rows), pa.int64()))
    first = numbered.group_by("token").aggregate([("i", "min")])["i_min"]
    return rows.take(first.take(pc.sort_indices(first)))
