"""Find the administrative divisions a name or address starts with (浙江省杭州市西湖区…, 杭州西湖…)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache

from pipelines.standardise.divisions import Division, by_code, names_index

MUNICIPALITIES = frozenset({"11", "12", "31", "50"})  # 北京, 天津, 上海, 重庆: province and city at once


@dataclass(frozen=True)
class RegionMatch:
    province: Division | None
    city: Division | None
    district: Division | None
    end: int  # characters of the text the region prefix takes

    @property
    def division_code(self) -> str | None:
        best = self.district or self.city or self.province
        return best.code if best else None


def _consistent(candidate: Division, found: dict[str, Division], hint: str | None) -> bool:
    for division in found.values():
        depth = 2 if division.level == "province" else 4
        if candidate.code[:depth] != division.code[:depth]:
            return False
    if not found and hint and candidate.level != "province":
        return candidate.code[:2] == hint[:2]
    return True


def _pick(candidates: tuple[Division, ...], found: dict[str, Division], hint: str | None) -> Division | None:
    fitting = [d for d in candidates if d.level not in found and _consistent(d, found, hint)]
    if len(fitting) > 1 and hint:
        fitting = [d for d in fitting if d.code.startswith(hint[:4])] or [
            d for d in fitting if d.code.startswith(hint[:2])
        ]
    if len(fitting) == 1:
        return fitting[0]
    if fitting and len({d.level for d in fitting}) == len(fitting):  # 吉林: the province before the city
        return min(fitting, key=lambda d: ("province", "city", "district").index(d.level))
    return None  # ambiguous (鼓楼区 of which city?) or nothing fits


def _full_or_city_short(name: str, candidates: tuple[Division, ...]) -> tuple[Division, ...]:
    """In names, a short form counts only for provinces and cities (杭州, 浙江): short district names are
    too often trade names (西湖龙井, 阿里巴巴)."""
    return tuple(d for d in candidates if d.name == name or d.name.endswith(("省", "市")))


@cache
def _prefix_index(strict_short: bool) -> tuple[dict[str, tuple[Division, ...]], dict[str, tuple[int, ...]]]:
    """Division names a text can start with (with ``strict_short`` only the forms _full_or_city_short
    keeps), and the lengths of those names by their first two characters, longest first: the scan
    looks up only lengths that can match there."""
    index: dict[str, tuple[Division, ...]] = {}
    lengths: dict[str, set[int]] = {}
    for name, candidates in names_index().items():
        if strict_short:
            candidates = _full_or_city_short(name, candidates)
        if candidates and len(name) >= 2:
            index[name] = candidates
            lengths.setdefault(name[:2], set()).add(len(name))
    return index, {head: tuple(sorted(found, reverse=True)) for head, found in lengths.items()}


@lru_cache(maxsize=1 << 16)  # tax offices, sites and name regions come back again and again
def match_region(text: str, hint: str | None = None, *, strict_short: bool = False) -> RegionMatch:
    """Longest division names at the start of folded ``text``. ``hint`` (a division code the record
    carries elsewhere) decides between same-named districts; ``strict_short`` is for company names."""
    index, lengths_by_head = _prefix_index(strict_short)
    found: dict[str, Division] = {}
    pos = 0
    while pos < len(text):
        for length in lengths_by_head.get(text[pos : pos + 2], ()):
            candidates = index.get(text[pos : pos + length]) if pos + length <= len(text) else None
            division = _pick(candidates, found, hint) if candidates else None
            if division:
                found[division.level] = division
                if division.level == "province" and division.code[:2] in MUNICIPALITIES:
                    found.setdefault("city", by_code().get(division.code[:2] + "0100", division))
                pos += length
                break
        else:
            break
    return RegionMatch(found.get("province"), found.get("city"), found.get("district"), pos)


def full_division_length(text: str) -> int:
    """Length of a full district name the text starts with even when several cities have it (西湖区,
    朝阳区, 鼓楼区): it is still the region prefix, whichever city it is."""
    names = names_index()
    for length in range(6, 2, -1):
        head = text[:length]
        if any(division.name == head for division in names.get(head, ())):
            return length
    return 0
