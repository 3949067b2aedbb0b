"""From staged records to comparable *entities*: one row per thing a department knows as one business.

Tax filings repeat per period and electricity bills per month, so records are first grouped where the
department's own key says they are one (a taxpayer id, a power account, a sender with one name, address and
phone), then standardised once per group. Entities are what the model compares; every record keeps the
entity it came from, so links can be reported per record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import pandas as pd
import pyarrow as pa

from pipelines.pii import TOKEN_PREFIX, Tokeniser
from pipelines.staging import latest_records
from pipelines.standardise.addresses import Address, parse_address
from pipelines.standardise.codes import clean_code, is_valid_uscc, org_code_of
from pipelines.standardise.names import CompanyName, parse_company_name
from pipelines.standardise.phones import area_code_of, parse_phone
from pipelines.standardise.regions import match_region
from pipelines.standardise.text import fold
from pipelines.store import RunStore


@dataclass
class Entity:
    entity_id: str
    feed: str
    record_ids: list[str] = field(default_factory=list)
    uscc: str | None = None  # only when its check character is right
    org_code: str | None = None
    name: str | None = None
    name_core: str | None = None
    trade_name: str | None = None
    trade_pinyin: str | None = None
    industry: str | None = None
    organisation_form: str | None = None
    branch: str | None = None
    district_code: str | None = None
    township: str | None = None
    road: str | None = None
    street_key: str | None = None
    address_rest: str | None = None
    address: str | None = None
    phone: str | None = None  # keyed token of the normalised number: comparable with tokenised feeds
    phone_display: str | None = None  # the clear number, only where a business registered it itself
    phone_kind: str | None = None
    legal_rep_name: str | None = None
    legal_rep_token: str | None = None
    entity_type: str | None = None
    is_person: bool = False  # a private sender or residential account rather than a business

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


@lru_cache(maxsize=200_000)
def _name(text: str, hint: str) -> CompanyName:
    return parse_company_name(text, hint or None)


@lru_cache(maxsize=200_000)
def _address(text: str, hint: str) -> Address:
    return parse_address(text, hint or None)


def _district_hint(*codes: str | None) -> str:
    """The first usable 6-digit division code among the given ones (division codes, USCC parts, …)."""
    for code in codes:
        if code and len(code) >= 6 and code[:6].isdigit() and not code[:6].endswith("0000"):
            return code[:6]
    return ""


def _region_hint(name: str | None) -> str:
    """The city a company name starts with (北京…, 杭州…): tells which 通州区 or 鼓楼区 an address without a
    city means."""
    if not name:
        return ""
    region = _name(name, "").region
    return (match_region(region).division_code or "") if region else ""


def registered_name_key(entity: Entity) -> tuple[str, ...] | None:
    """A name with its region spelt out (北京… / 杭州市西湖区…) and any organisation form: a registration
    authority registers such a name once."""
    if not entity.name or entity.is_person:
        return None
    region, name = _region_hint(entity.name), _name(entity.name, "")
    if not region or not name.trade_name:
        return None
    return (region, name.trade_name, name.industry, name.branch)


def _fill(
    entity: Entity, name: str | None, address: str | None, phone: str | None, hint: str, tokens: Tokeniser
) -> Entity:
    if name and entity.is_person:
        entity.name = name
        entity.legal_rep_name = entity.legal_rep_name or fold(name) or None
    elif name:
        parsed = _name(name, hint)
        entity.name = name
        entity.name_core = parsed.core or None
        entity.trade_name = parsed.trade_name or None
        entity.trade_pinyin = parsed.trade_name_phonetic or None
        entity.industry = parsed.industry or None
        entity.organisation_form = parsed.organisation_form or None
        entity.branch = parsed.branch or None
    if address:
        city_hint = "" if hint or entity.is_person else _region_hint(entity.name)
        parsed_address = _address(address, hint or city_hint)
        entity.address = address
        entity.district_code = parsed_address.division_code if parsed_address.district else None
        entity.township = parsed_address.township
        entity.road = parsed_address.road
        entity.street_key = parsed_address.street_key
        entity.address_rest = parsed_address.rest or None
    if entity.district_code is None and hint:
        entity.district_code = hint
    if phone and not phone.startswith(TOKEN_PREFIX):
        parsed_phone = parse_phone(phone, area_code_of(entity.district_code))
        if parsed_phone:
            entity.phone = tokens.token("phone", parsed_phone.number)
            entity.phone_display, entity.phone_kind = parsed_phone.number, parsed_phone.kind
    elif phone:
        entity.phone, entity.phone_kind = phone, "token"
    return entity


def _valid_uscc(code: str | None) -> str | None:
    return clean_code(code) if is_valid_uscc(code) else None


def _groups(rows: Iterable[dict[str, Any]], key: Callable[[dict[str, Any]], str]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(key(row), []).append(row)
    return grouped


def _newest(rows: list[dict[str, Any]], time_field: str) -> dict[str, Any]:
    return max(rows, key=lambda r: (r.get(time_field) is not None, r.get(time_field) or 0, r["record_id"]))


def registration_entities(table: pa.Table, tokens: Tokeniser) -> list[Entity]:
    entities = []
    for row in table.to_pylist():
        uscc = _valid_uscc(row["uscc"])
        hint = _district_hint(row["division_code"], uscc[2:8] if uscc else None)
        entity = Entity(
            entity_id=f"registration:{row['record_id']}",
            feed="registration",
            record_ids=[row["record_id"]],
            uscc=uscc,
            org_code=org_code_of(uscc),
            legal_rep_name=fold(row["legal_rep_name"]) or None,
            legal_rep_token=row["legal_rep_id"],
            entity_type=row["entity_type"],
        )
        entities.append(_fill(entity, row["name"], row["address"], row["phone"], hint, tokens))
    return entities


def tax_entities(table: pa.Table, tokens: Tokeniser) -> list[Entity]:
    """One entity per taxpayer id (or per name and address where the id is missing)."""

    def key(row: dict[str, Any]) -> str:
        return clean_code(row["taxpayer_id"]) or f"~{fold(row['taxpayer_name'])}|{fold(row['address'])}"

    entities = []
    for group_key, rows in _groups(table.to_pylist(), key).items():
        row = _newest(rows, "updated_at")
        taxpayer_id = clean_code(row["taxpayer_id"])
        uscc = _valid_uscc(taxpayer_id)
        office = match_region(fold(row["tax_office"]).removeprefix("国家税务总局")).division_code
        hint = _district_hint(uscc[2:8] if uscc else None, taxpayer_id[:6] if not uscc else None, office)
        entity = Entity(
            entity_id=f"tax:{group_key}",
            feed="tax",
            record_ids=sorted(r["record_id"] for r in rows),
            uscc=uscc,
            org_code=org_code_of(taxpayer_id),
            legal_rep_name=fold(row["legal_rep_name"]) or None,
        )
        entities.append(_fill(entity, row["taxpayer_name"], row["address"], row["phone"], hint, tokens))
    return entities


RESIDENTIAL = "居民"


def utility_entities(table: pa.Table, tokens: Tokeniser) -> list[Entity]:
    """One entity per power account (a unit with several meters has several accounts or meters)."""
    entities = []
    for group_key, rows in _groups(
        table.to_pylist(), lambda r: r["account_no"] or f"~{r['record_id']}"
    ).items():
        row = _newest(rows, "updated_at")
        uscc = next((u for u in (_valid_uscc(r["uscc"]) for r in rows) if u), None)
        entity = Entity(
            entity_id=f"utility:{group_key}",
            feed="utility",
            record_ids=sorted(r["record_id"] for r in rows),
            uscc=uscc,
            org_code=org_code_of(uscc),
            is_person=(row["customer_class"] or "").startswith(RESIDENTIAL) and not uscc,
        )
        hint = _district_hint(uscc[2:8] if uscc else None)
        entities.append(_fill(entity, row["account_name"], row["address"], row["phone"], hint, tokens))
    return entities


def waybill_entities(table: pa.Table, tokens: Tokeniser) -> list[Entity]:
    """One entity per sender: company (or name), address and phone token together."""

    def key(row: dict[str, Any]) -> str:
        who = fold(row["sender_company"]) or fold(row["sender_name"])
        return f"{who}|{fold(row['sender_address'])}|{row['sender_phone'] or ''}"

    entities = []
    for index, (_, rows) in enumerate(sorted(_groups(table.to_pylist(), key).items())):
        row = rows[0]
        entity = Entity(
            entity_id=f"waybill:{index:07d}:{min(r['record_id'] for r in rows)}",
            feed="waybill",
            record_ids=sorted(r["record_id"] for r in rows),
            is_person=not row["sender_company"],
        )
        name = row["sender_company"] or row["sender_name"]
        entities.append(_fill(entity, name, row["sender_address"], row["sender_phone"], "", tokens))
    return entities


BUILDERS: dict[str, Callable[[pa.Table, Tokeniser], list[Entity]]] = {
    "registration": registration_entities,
    "tax": tax_entities,
    "utility": utility_entities,
    "waybill": waybill_entities,
}


def entity_frame(store: RunStore, tokens: Tokeniser) -> pd.DataFrame:
    """All entities of a run store's committed staging, as the model's input frame."""
    rows = [
        e.as_row() for feed, build in BUILDERS.items() for e in build(latest_records(store, feed), tokens)
    ]
    return pd.DataFrame(rows)
