"""The true business units, generated in families: what the feeds are noisy views of.

A family is a group of units that look alike for a reason: a company and its branches, sibling companies of
one owner, one operator with several licences at one address. Families are generated one at a time, so the
population streams and memory stays flat however many units are asked for.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta

from pipelines.generate.difficulty import DEFAULT, Difficulty
from pipelines.generate.geography import CITIES, CITY_WEIGHTS, City, District, Site, new_site, other_room
from pipelines.generate.names import (
    COMPANY_INDUSTRIES,
    INDIVIDUAL_TRADES,
    SOLE_PROPRIETORSHIP_FORMS,
    Industry,
    NameParts,
    Weighted,
    branch_parts,
    company_name,
    individual_name,
    individual_trade,
    shop_name,
    trade_name,
)
from pipelines.generate.people import Person, landline, new_person
from pipelines.standardise.codes import USCC_CHARSET, make_uscc

AS_OF = date(2026, 10, 31)  # the extract date: nothing in the feeds happens later
USCC_ERA = date(2015, 10, 1)  # units registered since carry a USCC only; older ones also a 15-digit number
EARLIEST = date(1998, 1, 1)
# The resolver's zombie rule: listed as abnormal at least two years before the latest period (2026-10).
ZOMBIE_LISTED_BY = date(2024, 10, 1)
TAX_WINDOW_START = date(2025, 11, 1)
NUCLEIC_START, NUCLEIC_END = date(2021, 3, 1), date(2022, 11, 30)

ACTIVE_STATUSES = {
    "company": Weighted(("存续", "在业"), (0.85, 0.15)),
    "individual_business": Weighted(("在业", "存续", "在营"), (0.5, 0.4, 0.1)),
}
REVOKED_STATUSES = Weighted(("吊销", "吊销，未注销", "吊销未注销"), (0.5, 0.3, 0.2))
CAPITALS = Weighted(
    (3.0, 10.0, 30.0, 50.0, 100.0, 200.0, 300.0, 500.0, 1000.0, 5000.0), (2, 8, 6, 10, 14, 7, 5, 6, 4, 1)
)
ENTITY_TYPES = {
    "company": Weighted(
        (
            "有限责任公司（自然人投资或控股）",
            "有限责任公司（自然人独资）",
            "有限责任公司（非自然人投资或控股的法人独资）",
        ),
        (0.7, 0.25, 0.05),
    ),
    "joint_stock": "股份有限公司（非上市、自然人投资或控股）",
    "branch": "有限责任公司分公司（自然人投资或控股）",
    "individual_business": "个体工商户",
    "sole_proprietorship": "个人独资企业",
}
SHOP_INDUSTRY = Industry("电子商务", "F5292", "online")
CITY_PICK = Weighted(CITIES, CITY_WEIGHTS)
FACTORY_SECTORS = {"factory", "farm"}
SHOP_SECTORS = {"retail", "restaurant", "service"}

# Family kinds and their shares.
FAMILIES = Weighted(
    ("company", "group", "siblings", "individual", "multi_licence", "sole", "shop", "online_seller"),
    (0.44, 0.035, 0.025, 0.34, 0.012, 0.02, 0.045, 0.02),
)


@dataclass
class Unit:
    kind: str  # company / branch / individual_business / sole_proprietorship / ecommerce_shop
    parts: NameParts
    city: City
    district: District
    site: Site  # registered address (an online shop: where it ships from)
    ops_site: Site  # where it operates: differs from ``site`` for units registered at an incubator
    legal_rep: Person  # legal representative, operator, or the branch's head
    industry: Industry
    established_on: date
    phone: str  # the unit's own phone, canonical
    entity_type: str | None = None
    uscc: str | None = None
    reg_no: str | None = None
    status: str | None = None
    closed_on: date | None = None  # deregistered, revoked or moved away: no activity after
    abnormal_since: date | None = None
    capital: float | None = None
    size: float = 1.0
    parent: Unit | None = None
    former_parts: NameParts | None = None  # an earlier registered name, still in the change log
    online: bool = False  # sells online: steady parcel volume
    agency_phone: str | None = None  # the accounting agency's phone, given to the tax office
    unit_id: str = ""
    multi_licence: bool = False
    meters: int = 0  # filled in by the utility feed
    contacts: list[Person] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.parts.full

    @property
    def registered(self) -> bool:
        return self.kind != "ecommerce_shop"

    @property
    def modern(self) -> bool:
        return self.established_on >= USCC_ERA

    def active_on(self, day: date) -> bool:
        return self.established_on <= day and (self.closed_on is None or self.closed_on > day)

    def contact(self, rng: random.Random, index: int) -> Person:
        """The index-th employee who shows up in the feeds (made on first use)."""
        while len(self.contacts) <= index:
            self.contacts.append(new_person(rng, self.city, 24, 58))
        return self.contacts[index]


def _between(rng: random.Random, start: date, end: date) -> date:
    return start + timedelta(days=rng.randint(0, max(0, (end - start).days)))


def _established(rng: random.Random, earliest: date = EARLIEST, latest: date = date(2026, 9, 30)) -> date:
    """Registration dates skewed to recent years, as since the 2014 registration reform."""
    return latest - timedelta(days=int((latest - earliest).days * rng.random() ** 1.7))


def _mod11_10(digits: str) -> str:
    """ISO 7064 MOD 11,10 check digit of the old 15-digit registration number (GB/T 17710)."""
    product = 10
    for ch in digits:
        total = (product + int(ch)) % 10 or 10
        product = total * 2 % 11
    return str((11 - product) % 10)


class Population:
    """Makes families of units; keeps only what must be unique or shared across families."""

    def __init__(self, rng: random.Random, difficulty: Difficulty = DEFAULT) -> None:
        self.rng = rng
        self.difficulty = difficulty
        self.usccs: set[str] = set()
        self.names: set[tuple[str, str, str, str]] = set()  # names taken per registration authority
        self.agencies: dict[str, list[str]] = defaultdict(list)  # city → accounting agencies' phones
        self.incubators: dict[str, list[Site]] = defaultdict(list)  # district → shared registration addresses

    # -- codes -------------------------------------------------------------------------------------------

    def _uscc(self, unit: Unit) -> str:
        rng = self.rng
        org_type = "2" if unit.kind == "individual_business" else "1"
        while True:
            if unit.modern:
                org8 = "MA" + "".join(rng.choice(USCC_CHARSET) for _ in range(6))
            elif unit.kind == "individual_business":
                org8 = "L" + f"{rng.randrange(10**7):07d}"
            else:
                org8 = str(rng.randint(5, 7)) + f"{rng.randrange(10**7):07d}"
            code = make_uscc("9", org_type, unit.district.code, org8)
            if code not in self.usccs:
                self.usccs.add(code)
                return code

    def _reg_no(self, unit: Unit) -> str:
        kind_digit = self.rng.choice("6789" if unit.kind == "individual_business" else "0123")
        body = f"{unit.district.code}{kind_digit}{self.rng.randrange(10**7):07d}"
        return body + _mod11_10(body)

    def _agency_phone(self, city: City) -> str:
        pool = self.agencies[city.code]
        if len(pool) < 3 or self.rng.random() < 0.06:
            pool.append(landline(self.rng, city))
        return self.rng.choice(pool)

    def _incubator_site(self, city: City, district: District) -> Site:
        pool = self.incubators[district.code]
        if len(pool) < 2 or (len(pool) < 6 and self.rng.random() < 0.05):
            pool.append(new_site(self.rng, city, "office", district))
        return other_room(self.rng, self.rng.choice(pool))

    # -- one registered unit -----------------------------------------------------------------------------

    def _site_kind(self, unit_kind: str, industry: Industry) -> str:
        if industry.sector in FACTORY_SECTORS:
            return "factory"
        shop_front = unit_kind == "individual_business" and industry.sector != "online"
        if industry.sector in SHOP_SECTORS or shop_front:
            return "shop"
        if industry.sector == "online" and (unit_kind == "individual_business" or self.rng.random() < 0.4):
            return "home"
        return "office"

    def _registered(
        self,
        kind: str,
        city: City,
        district: District,
        rep: Person,
        industry: Industry,
        parts: NameParts,
        site: Site | None = None,
        established_on: date | None = None,
    ) -> Unit:
        rng = self.rng
        parts = self._unique_name(city, district, parts)
        if site is None:
            site_kind = self._site_kind(kind, industry)
            if site_kind == "home":
                site = rep.home(rng, district)
            else:
                site = new_site(rng, city, site_kind, district)
        district = site.district
        established_on = established_on or _established(rng)
        if kind == "individual_business":
            phone = rep.mobile if rng.random() < self.difficulty.individual_mobile else landline(rng, city)
        else:
            phone = landline(rng, city) if rng.random() < self.difficulty.company_landline else rep.mobile
        unit = Unit(kind, parts, city, district, site, site, rep, industry, established_on, phone)
        unit.size = rng.lognormvariate(0, 0.8) * (3.0 if industry.sector == "factory" else 1.0)
        if kind == "company" and parts.form == "股份有限公司":
            unit.entity_type = ENTITY_TYPES["joint_stock"]
        elif kind == "company":
            unit.entity_type = ENTITY_TYPES["company"].pick(rng)
        else:
            unit.entity_type = ENTITY_TYPES[kind]
        if kind in ("company", "sole_proprietorship"):
            unit.capital = CAPITALS.pick(rng) * (1 if kind == "company" else 0.1)
        elif kind == "individual_business" and rng.random() < 0.4:
            unit.capital = float(rng.choice((1, 2, 3, 5, 10, 20)))
        if kind == "company" and site.kind == "office" and unit.modern and rng.random() < 0.06:
            unit.site = self._incubator_site(city, district)  # registered at an incubator, works elsewhere
        if kind != "individual_business" and rng.random() < 0.05:
            unit.phone = self._agency_phone(city)  # the agency that registered it gave its own number
        if rng.random() < 0.12:
            unit.agency_phone = self._agency_phone(city)
        unit.uscc = self._uscc(unit)
        if not unit.modern and rng.random() < 0.8:
            unit.reg_no = self._reg_no(unit)
        self._status(unit)
        if kind == "company" and rng.random() < 0.015:
            unit.former_parts = self._former_name(city, district, parts)
        return unit

    def _unique_name(self, city: City, district: District, parts: NameParts) -> NameParts:
        """A registration authority does not register the same name twice (企业名称登记管理规定; names that
        differ only in organisation form count as the same): a trade name + line of business already taken
        in the city (in the district, for names that carry the district) gets another trade name."""
        scope = district.code if district.name in parts.region else city.code
        while (key := (scope, parts.trade, parts.industry, parts.branch)) in self.names:
            trade = trade_name(self.rng)
            parts = NameParts(parts.region, trade, parts.industry, parts.form, parts.bracket, parts.branch)
        self.names.add(key)
        return parts

    def _former_name(self, city: City, district: District, parts: NameParts) -> NameParts:
        """A name changed after registration: usually the line of business or the region, now and then all
        of it (the change log keeps the old record)."""
        rng = self.rng
        if rng.random() < 0.7:
            region = parts.region if rng.random() < 0.5 else city.short
            industry = COMPANY_INDUSTRIES.pick(rng).word
            return NameParts(region, parts.trade, industry, parts.form, parts.bracket)
        return company_name(rng, city, district, COMPANY_INDUSTRIES.pick(rng), parts.form)

    def _status(self, unit: Unit) -> None:
        """Registration status, closure and abnormal-operations listing."""
        rng = self.rng
        roll = rng.random()
        start = max(unit.established_on + timedelta(days=90), date(2019, 1, 1))
        if roll < 0.05 and start < AS_OF - timedelta(days=30):
            unit.status, unit.closed_on = "注销", _between(rng, start, AS_OF - timedelta(days=30))
            return
        if roll < 0.08 and start < date(2025, 6, 30):
            unit.closed_on = _between(rng, start + timedelta(days=180), date(2026, 6, 30))
            unit.status = REVOKED_STATUSES.pick(rng)
            unit.abnormal_since = _between(rng, start, unit.closed_on - timedelta(days=120))
            return
        if roll < 0.085 and start < AS_OF - timedelta(days=30):
            unit.status, unit.closed_on = "迁出", _between(rng, start, AS_OF - timedelta(days=30))
            return
        if roll < 0.09 and unit.kind == "individual_business":
            unit.status = "停业"
            return
        family = "individual_business" if unit.kind == "individual_business" else "company"
        unit.status = ACTIVE_STATUSES[family].pick(rng)
        if rng.random() < 0.08:
            if rng.random() < 0.55 and start < date(2024, 6, 30):
                unit.abnormal_since = _between(rng, start, date(2024, 6, 30))
            elif start < date(2026, 9, 1):
                unit.abnormal_since = _between(rng, max(start, date(2024, 11, 1)), date(2026, 9, 1))

    # -- families ----------------------------------------------------------------------------------------

    def family(self) -> list[Unit]:
        rng = self.rng
        city: City = CITY_PICK.pick(rng)
        district = rng.choice(city.districts)
        kind = FAMILIES.pick(rng)
        rep = new_person(rng, city, 22, 66)
        if kind == "company":
            return [self._company(city, district, rep)]
        if kind == "group":
            return self._group(city, district, rep)
        if kind == "siblings":
            return self._siblings(city, district, rep)
        if kind == "individual":
            return [self._individual(city, district, rep)]
        if kind == "multi_licence":
            return self._multi_licence(city, district, rep)
        if kind == "sole":
            industry = COMPANY_INDUSTRIES.pick(rng)
            while industry.sector in FACTORY_SECTORS:
                industry = COMPANY_INDUSTRIES.pick(rng)
            parts = NameParts(
                city.short if rng.random() < 0.7 else city.name + district.name,
                trade_name(rng),
                industry.word,
                rng.choice(SOLE_PROPRIETORSHIP_FORMS),
            )
            return [self._registered("sole_proprietorship", city, district, rep, industry, parts)]
        if kind == "shop":
            return [self._shop(city, rep)]
        return [self._online_seller(city, district, rep)]

    def _company(self, city: City, district: District, rep: Person, industry: Industry | None = None) -> Unit:
        rng = self.rng
        industry = industry or COMPANY_INDUSTRIES.pick(rng)
        if industry.sector in FACTORY_SECTORS and rng.random() < 0.7:
            district = rng.choice(city.districts[-3:])  # factories sit in the outer districts
        form = "有限公司" if rng.random() < 0.8 else "有限责任公司" if rng.random() < 0.8 else "股份有限公司"
        parts = company_name(rng, city, district, industry, form)
        return self._registered("company", city, district, rep, industry, parts)

    def _individual(
        self, city: City, district: District, rep: Person, industry: Industry | None = None
    ) -> Unit:
        rng = self.rng
        industry = industry or INDIVIDUAL_TRADES.pick(rng)
        parts = individual_name(rng, city, district, individual_trade(rng, rep.name), industry.word)
        return self._registered("individual_business", city, district, rep, industry, parts)

    def _group(self, city: City, district: District, rep: Person) -> list[Unit]:
        """A company and its branches (分公司): own USCCs, often the parent's legal rep or phone."""
        rng = self.rng
        parent = self._company(city, district, rep)
        units = [parent]
        used: set[str] = set()
        for index in range(rng.choice((1, 1, 1, 2, 2, 3))):
            away = rng.random() < 0.3
            branch_city = rng.choice([c for c in CITIES if c is not city]) if away else city
            branch_district = rng.choice(branch_city.districts)
            site_kind = (
                "shop"
                if parent.industry.sector in SHOP_SECTORS
                else self._site_kind("branch", parent.industry)
            )
            site = new_site(rng, branch_city, "office" if site_kind == "home" else site_kind, branch_district)
            if parent.industry.sector in ("restaurant", "retail") and rng.random() < 0.5:
                suffix = f"{site.road}店" if rng.random() < 0.5 else f"{branch_district.short}分店"
            elif away:
                suffix = f"{branch_city.short}分公司"
            else:
                suffix = f"{branch_district.short}分公司"
            if suffix in used:
                suffix = ("第一", "第二", "第三", "第四")[index] + "分公司"
            used.add(suffix)
            head = rep if rng.random() < 0.5 else new_person(rng, branch_city, 25, 60)
            branch = self._registered(
                "branch",
                branch_city,
                branch_district,
                head,
                parent.industry,
                branch_parts(parent.parts, suffix),
                site=site,
                established_on=_established(rng, max(parent.established_on, EARLIEST)),
            )
            branch.parent, branch.capital = parent, None
            if parent.parts.form == "股份有限公司":
                branch.entity_type = "股份有限公司分公司（非上市、自然人投资或控股）"
            if rng.random() < 0.3:
                branch.phone = parent.phone
            if parent.closed_on and (branch.closed_on is None or branch.closed_on > parent.closed_on):
                branch.status, branch.closed_on, branch.abnormal_since = parent.status, parent.closed_on, None
            units.append(branch)
        if rng.random() < 0.3:
            units += self._siblings(city, district, rep, first=parent)[1:]
        return units

    def _siblings(self, city: City, district: District, rep: Person, first: Unit | None = None) -> list[Unit]:
        """Companies of one owner: same legal rep, often the same phone or building, different USCCs."""
        rng = self.rng
        first = first or self._company(city, district, rep)
        units = [first]
        for _ in range(rng.choice((1, 1, 2))):
            if rng.random() < 0.5:  # same 字号, another line of business
                industry = COMPANY_INDUSTRIES.pick(rng)
                parts = NameParts(
                    first.parts.region, first.parts.trade, industry.word, first.parts.form or "有限公司"
                )
                if parts.industry == first.parts.industry:
                    parts = NameParts(parts.region, parts.trade, "商贸", parts.form)
            else:
                industry = COMPANY_INDUSTRIES.pick(rng)
                parts = company_name(rng, city, district, industry, "有限公司")
            roll = rng.random()
            site = first.site if roll < 0.1 else other_room(rng, first.site) if roll < 0.35 else None
            sibling = self._registered("company", city, district, rep, industry, parts, site=site)
            if rng.random() < 0.5:
                sibling.phone = first.phone
            units.append(sibling)
        return units

    def _multi_licence(self, city: City, district: District, rep: Person) -> list[Unit]:
        """One operator, several licences at one address (a noodle shop and a snack bar in one front)."""
        rng = self.rng
        first = self._individual(city, district, rep)
        units = [first]
        for _ in range(rng.choice((1, 1, 2))):
            industry = INDIVIDUAL_TRADES.pick(rng)
            trade = first.parts.trade if rng.random() < 0.6 else individual_trade(rng, rep.name)
            parts = NameParts(first.parts.region, trade, industry.word, "")
            if parts.full == first.parts.full:
                parts = NameParts(
                    parts.region, trade, "便利店" if industry.word != "便利店" else "水果店", ""
                )
            kind = "individual_business" if rng.random() < 0.85 else "company"
            if kind == "company":
                industry = COMPANY_INDUSTRIES.pick(rng)
                parts = NameParts(city.short, trade_name(rng), industry.word, "有限公司")
            unit = self._registered(kind, city, district, rep, industry, parts, site=first.site)
            unit.phone = first.phone if rng.random() < 0.7 else unit.phone
            units.append(unit)
        return units

    def _shop(self, city: City, rep: Person) -> Unit:
        """An unregistered online shop: no USCC, seen mainly through its waybills."""
        rng = self.rng
        site = rep.home(rng)
        unit = Unit(
            "ecommerce_shop", shop_name(rng), city, site.district, site, site, rep, SHOP_INDUSTRY,
            _established(rng, date(2018, 1, 1), date(2026, 4, 30)), rep.mobile,
        )  # fmt: skip
        unit.online = True
        return unit

    def _online_seller(self, city: City, district: District, rep: Person) -> Unit:
        """A registered business that sells online: its parcels outnumber its other records."""
        rng = self.rng
        if rng.random() < 0.6:
            industry = next(i for i in INDIVIDUAL_TRADES.items if i.sector == "online")
            unit = self._individual(city, district, rep, industry)
        else:
            unit = self._company(
                city, district, rep, next(i for i in COMPANY_INDUSTRIES.items if i.sector == "online")
            )
        unit.online = unit.closed_on is None
        return unit

    def units(self, count: int) -> Iterator[list[Unit]]:
        """Families until ``count`` units exist (the last family cut short), with ids and flags set."""
        made = 0
        while made < count:
            family = self.family()[: count - made]
            for unit in family:
                made += 1
                unit.unit_id = f"U{made:06d}"
            _flag_multi_licence(family)
            yield family


def _flag_multi_licence(family: list[Unit]) -> None:
    """Distinct registered units with the same legal rep at the same street address."""
    groups: dict[tuple[str, str, str], list[Unit]] = defaultdict(list)
    for unit in family:
        if unit.registered:
            groups[(unit.legal_rep.id_number, unit.site.district.code, unit.site.street)].append(unit)
    for members in groups.values():
        for unit in members:
            unit.multi_licence = len(members) > 1
