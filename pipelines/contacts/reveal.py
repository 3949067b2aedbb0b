"""Revealing sealed contacts: only to a named person, for a stated purpose, within the scopes the reviewed
configuration grants, and each act (granted or refused) on the audit log before any value is handed over.

Two acts: ``reveal`` opens given tokens; ``export`` makes a township's call list from the latest register
(its units with their best contact's clear value and masked form, its source and grade: ``best``). The
clear values go back to the caller only; the audit line holds who, why, what and how many.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.contacts import audit
from pipelines.contacts.vault import VAULT_SCHEMA, Vault, VaultOpenError, first_per_token
from pipelines.store import RunStore, utc_now

CALL_LIST_COLUMNS = (
    "unit_id",
    "name",
    "division_code",
    "township",
    "phone_masked",
    "phone",
    "phone_token",
    "phone_source",
    "phone_grade",
)
_CALL_UNIT = ("unit_id", "name", "division_code", "township")
_BEST_CONTACT = ("contact_token", "contact_masked", "contact_source", "contact_grade")  # register columns


class ContactsError(RuntimeError):
    """A reveal or export that did not happen (the audit log says why)."""


class RefusedError(ContactsError):
    """Outside the person's scopes (or no such person): refused, and the refusal audited."""


@dataclass(frozen=True)
class Grant:
    """What one person may reveal: kinds of single tokens, and townships' call lists."""

    who: str
    reveal: frozenset[str] = frozenset()
    export: tuple[str, ...] = ()


def parse_scopes(text: str) -> dict[str, Grant]:
    """Person → grant, from the scopes file (``schemas/contacts/scopes.toml``)."""
    people = tomllib.loads(text).get("people", {})
    return {
        who: Grant(who, frozenset(entry.get("reveal", [])), tuple(str(s) for s in entry.get("export", [])))
        for who, entry in people.items()
    }


def load_scopes(path: Path) -> dict[str, Grant]:
    return parse_scopes(path.read_text(encoding="utf-8"))


def in_township(table: pa.Table, selector: str) -> pa.ChunkedArray:
    """Which register rows a township selector names: ``<division>/<township>``, a division code or prefix
    (digits), or a township name."""
    division = pc.fill_null(table["division_code"], "")
    township = pc.fill_null(table["township"], "")
    if "/" in selector:
        code, name = selector.split("/", 1)
        return pc.and_(pc.starts_with(division, code), pc.equal(township, name))
    if selector.isdigit():
        return pc.starts_with(division, selector)
    return pc.equal(township, selector)


def read_vault(store: RunStore) -> pa.Table:
    """The vault of all committed runs, one row per token (its first)."""
    return first_per_token(pq.read_table(f, schema=VAULT_SCHEMA) for f in store.vault_files())


def read_call_register(store: RunStore) -> tuple[str, pa.Table]:
    """The latest register run's id and its units' township and best contact (``phone``: its token,
    ``masked``, ``source``, ``grade``). A register from before best contacts gives its registered phone."""
    latest = store.register_latest()
    if latest is None:
        raise ContactsError(f"{store.root} has no register yet: run a pass first")
    path = latest / "register.parquet"
    if "contact_token" in pq.read_schema(path).names:
        table = pq.read_table(path, columns=[*_CALL_UNIT, *_BEST_CONTACT])
    else:  # an older register: the registered phone, nothing said of its source
        table = pq.read_table(path, columns=[*_CALL_UNIT, "phone"])
        for name in _BEST_CONTACT[1:]:
            table = table.append_column(name, pa.nulls(table.num_rows, pa.string()))
    return latest.name, table.rename_columns([*_CALL_UNIT, "phone", "masked", "source", "grade"])


@dataclass(frozen=True)
class Request:
    """Who asks and why; the audit log's first fields."""

    who: str
    purpose: str


def _audited(store: RunStore, request: Request, record: dict[str, Any], now: Callable[[], str]) -> None:
    audit.append(store.audit_log, {"time": now(), "who": request.who, "purpose": request.purpose, **record})


def _grant(
    store: RunStore,
    scopes: Mapping[str, Grant],
    request: Request,
    record: dict[str, Any],
    now: Callable[[], str],
) -> Grant:
    """The person's grant, or a refusal (audited) for an unknown person or an empty purpose."""
    grant = scopes.get(request.who)
    reason = (
        f"{request.who!r} is not in the scopes file"
        if grant is None
        else "no purpose given"
        if not request.purpose.strip()
        else None
    )
    if reason:
        _refuse(store, request, record, reason, now)
    return grant  # type: ignore[return-value]


def _refuse(
    store: RunStore, request: Request, record: dict[str, Any], reason: str, now: Callable[[], str]
) -> None:
    _audited(store, request, {**record, "count": 0, "result": "refused", "reason": reason}, now)
    raise RefusedError(f"refused: {reason} (audited in {store.audit_log})")


def _open_all(vault: Vault, rows: pa.Table) -> list[str]:
    """Clear values of vault rows, in order; the first row that does not open stops everything."""
    if rows.num_rows and set(rows["key_id"].to_pylist()) - {vault.key_id}:
        other = sorted(set(rows["key_id"].to_pylist()) - {vault.key_id})
        raise VaultOpenError(f"sealed under key {', '.join(other)}, not the given key {vault.key_id}")
    return [
        vault.open(row["token"], row["kind"], row["nonce"], row["ciphertext"])
        for row in rows.select(["token", "kind", "nonce", "ciphertext"]).to_pylist()
    ]


def reveal(
    store: RunStore,
    vault: Vault,
    scopes: Mapping[str, Grant],
    request: Request,
    tokens: list[str],
    now: Callable[[], str] = utc_now,
) -> list[dict[str, str]]:
    """The clear values of these tokens (token, kind, masked, value), for a person allowed to reveal their
    kinds; tokens the vault does not hold come back without a value."""
    record: dict[str, Any] = {"action": "reveal", "tokens": sorted(set(tokens))}
    grant = _grant(store, scopes, request, {**record, "scope": None}, now)
    if not grant.reveal:
        _refuse(store, request, {**record, "scope": None}, f"{request.who} may not reveal single tokens", now)
    found = read_vault(store)
    found = found.filter(pc.is_in(found["token"], pa.array(record["tokens"], pa.string())))
    kinds = sorted(set(found["kind"].to_pylist()))
    record["scope"] = "reveal:" + ",".join(sorted(grant.reveal))
    refused = [kind for kind in kinds if kind not in grant.reveal]
    if refused:
        _refuse(store, request, record, f"{request.who} may not reveal {', '.join(refused)}", now)
    try:
        values = _open_all(vault, found)
    except VaultOpenError as error:
        _audited(store, request, {**record, "count": 0, "result": "failed", "reason": str(error)}, now)
        raise ContactsError(str(error)) from None
    _audited(store, request, {**record, "count": len(values), "result": "granted"}, now)
    opened = {
        row["token"]: {**row, "value": value}
        for row, value in zip(found.select(["token", "kind", "masked"]).to_pylist(), values, strict=True)
    }
    return [opened.get(t, {"token": t, "kind": "", "masked": "", "value": ""}) for t in record["tokens"]]


def export(
    store: RunStore,
    vault: Vault,
    scopes: Mapping[str, Grant],
    request: Request,
    township: str,
    to: str,
    now: Callable[[], str] = utc_now,
) -> pa.Table:
    """A township's call list (``CALL_LIST_COLUMNS``) from the latest register, for a person whose export
    scope covers every unit of it. ``to`` (where the list goes) is only recorded."""
    record: dict[str, Any] = {"action": "export", "township": township, "to": to}
    grant = _grant(store, scopes, request, {**record, "scope": None}, now)
    run, register = read_call_register(store)
    record |= {"register_run": run, "scope": "export:" + ",".join(grant.export)}
    units = register.filter(in_township(register, township))
    if not units.num_rows:
        _refuse(store, request, record, f"no unit of register {run} is in township {township!r}", now)
    if not pc.all(_covered(units, grant)).as_py():
        _refuse(store, request, record, f"township {township!r} is outside {request.who}'s export scope", now)
    sealed = read_vault(store)
    sealed = sealed.filter(pc.equal(sealed["kind"], "phone"))
    sealed = sealed.rename_columns(["sealed_masked" if n == "masked" else n for n in sealed.column_names])
    listed = units.join(sealed, "phone", "token", join_type="left outer").sort_by("unit_id")
    listed = listed.append_column("token", listed["phone"])  # the join keeps the key once, as ``phone``
    with_phone = listed.filter(pc.is_valid(listed["ciphertext"]))
    try:
        values = dict(zip(with_phone["unit_id"].to_pylist(), _open_all(vault, with_phone), strict=True))
    except VaultOpenError as error:
        _audited(store, request, {**record, "count": 0, "result": "failed", "reason": str(error)}, now)
        raise ContactsError(str(error)) from None
    _audited(
        store, request, {**record, "units": units.num_rows, "count": len(values), "result": "granted"}, now
    )
    return pa.table(
        {
            "unit_id": listed["unit_id"],
            "name": listed["name"],
            "division_code": listed["division_code"],
            "township": listed["township"],
            "phone_masked": pc.coalesce(listed["sealed_masked"], listed["masked"]),
            "phone": pa.array([values.get(u) for u in listed["unit_id"].to_pylist()], pa.string()),
            "phone_token": listed["phone"],
            "phone_source": listed["source"],
            "phone_grade": listed["grade"],
        }
    )


def _covered(units: pa.Table, grant: Grant) -> pa.ChunkedArray | pa.Array:
    """Which units some entry of the grant's export scope names."""
    covered = pa.array([False] * units.num_rows)
    for selector in grant.export:
        covered = pc.or_(covered, in_township(units, selector))
    return covered
