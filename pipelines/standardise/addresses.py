"""Addresses split into division, township, road, number and the rest (building, floor, room)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipelines.standardise.regions import full_division_length, match_region
from pipelines.standardise.text import fold

# A 街道 may be named after a road (万寿路街道, 府青路街道); a 镇 or 乡 before a road is the road's.
_TOWNSHIP_RE = re.compile(r"^(?P<township>[^号\d]{2,6}?街道|[^路号\d]{2,6}?(?:镇|乡))")
_ROAD = r"^(?P<road>[^\d号]{1,14}?(?:大道|大街|路|街|巷|弄|胡同|道))"
# A road followed by its number, the shortest such (新街口外大街70号, not 新街 + 口外大街…); failing that, a
# road on its own.
_ROAD_AND_NUMBER_RE = re.compile(_ROAD + r"(?P<number>\d+(?:-\d+)?)(?:号)?")
_ROAD_RE = re.compile(_ROAD + r"(?P<number>)(?:号)?")
_COMPOUND_RE = re.compile(r"^(?P<compound>\D{2,12}?)(?P<number>\d+)")
# number-building-room written with hyphens, the number itself perhaps hyphenated (88-1-3-501)
_DASHED_RE = re.compile(r"^(?P<number>\d+(?:-\d+)?)-(?P<building>\d+)-(?P<room>\d+)")
_FLOOR_RE = re.compile(r"\d+(?:楼|层|F)(?=\d)|(?:楼|层)$")
_ROOM_WORDS_RE = re.compile(r"[室房]")
_BUILDING_RE = re.compile(r"(?:号楼|幢|栋|座)")


@dataclass(frozen=True)
class Address:
    division_code: str | None
    province: str | None
    city: str | None
    district: str | None
    township: str | None
    road: str | None
    number: str | None
    rest: str  # building / unit / room after folding, floors dropped, 室/房 removed

    @property
    def street_key(self) -> str | None:
        """Road and number (or, in a compound with no road, its name and building number): what two records
        of one site share however they write the rest."""
        if self.road and self.number:
            return f"{self.road}{self.number}"
        if not self.road and (found := _COMPOUND_RE.match(self.rest)):
            return f"{found['compound']}{found['number']}"
        return None


def parse_address(text: str | None, hint: str | None = None) -> Address:
    """Split an address; ``hint`` is a division code known from elsewhere in the record."""
    folded = fold(text).replace("(", "").replace(")", "")
    region = match_region(folded, hint)
    # a district name several cities have (朝阳区…) leaves the code unknown, but is no part of the street
    rest = folded[max(region.end, full_division_length(folded)) :]
    township = None
    if found := _TOWNSHIP_RE.match(rest):
        township = found["township"]
        rest = rest[found.end() :]
    road = number = None
    if found := _ROAD_AND_NUMBER_RE.match(rest) or _ROAD_RE.match(rest):
        road, number = found["road"], found["number"] or None
        rest = rest[found.end() :]
        if number and rest.startswith("-") and (dashed := _DASHED_RE.match(number + rest)):
            # 金牛大道2-8-317: number 2, building 8, room 317; 88-1-3-501: number 88-1 (47-3号 alone is one)
            number, more = dashed["number"], (number + rest)[dashed.end() :]
            rest = f"{dashed['building']}栋{dashed['room']}{more}"
    rest = _FLOOR_RE.sub("", _ROOM_WORDS_RE.sub("", _BUILDING_RE.sub("栋", rest))).strip("-,，")
    return Address(
        division_code=region.division_code,
        province=region.province.name if region.province else None,
        city=region.city.name if region.city else None,
        district=region.district.name if region.district else None,
        township=township,
        road=road,
        number=number,
        rest=rest,
    )
