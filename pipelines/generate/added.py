"""Feeds of departments that joined the data port later: platform merchants and bookkeeping clients.

They are views of the same true units as the other feeds, made right after each family's other records from a
``random.Random`` of their own and never from the main one, so the original feeds, ``truth.jsonl``,
``units.jsonl`` and ``anomalies.jsonl`` stay byte for byte what they were for a (units, seed, vocabulary,
difficulty). Their ground truth goes to ``truth_added.jsonl`` (the same lines: feed, record_id, unit_id or
null), and the units only they show go to ``units_added.jsonl``, numbered after the others.

What the census pilots saw, and what the data holds:

- Platform merchants: shops selling online (most online sellers, the unregistered shops), restaurants on
  the takeaway platforms, some shops and services on the local-life ones. One record per shop and month with
  its orders and turnover. The shop name is the sign or a trade name + 旗舰店/专营店 (the same sign the
  waybills carry), now and then the owner's nickname, less often the registered name. The operator is the
  legal representative (the platform verifies the licence holder); a USCC shows where the shop showed its
  licence.
- Units only on a platform: home-based shops that never registered and ship through the platform's own
  logistics. Private persons selling a few things of their own are no unit (truth null).
- Bookkeeping clients: small companies and sole proprietorships, few individual businesses; a unit that gave
  the tax office an agency's phone is that agency's client. One line per client and firm.
- Units only in bookkeeping lists: companies registered in another county (their USCC carries its division
  code) that operate in the city, which its own departments do not see.
"""

from __future__ import annotations

import random
from bisect import bisect
from collections import defaultdict
from collections.abc import Callable
from datetime import date, timedelta
from typing import IO, Any

from pipelines.generate.difficulty import Difficulty, chance
from pipelines.generate.feeds import Emit, _blank, _month_end, _months, _stamp, written_uscc
from pipelines.generate.geography import City, render_address
from pipelines.generate.names import (
    SHOP_ENDINGS,
    SHOP_GOODS,
    SHOP_TRADE_NAMES,
    NameParts,
    Weighted,
    name_variant,
    nickname,
    person_name_variant,
    trade_name,
)
from pipelines.generate.people import Person, new_person, written_phone
from pipelines.generate.units import AS_OF, CITY_PICK, ZOMBIE_LISTED_BY, Population, Unit
from pipelines.generate.writer import write_jsonl_line
from pipelines.standardise.codes import make_uscc

PLATFORM, BOOKKEEPING = "platform_merchant", "bookkeeping_client"
ADDED_FEEDS = (PLATFORM, BOOKKEEPING)
PLATFORM_MONTHS = _months(date(2026, 5, 1), 6)  # 2026-05 … 2026-10: the platforms' half-year extract

# Where each sector trades (platform: weight).
PLATFORMS = {
    "restaurant": Weighted(("美团", "饿了么", "抖音"), (5, 3, 2)),
    "service": Weighted(("美团", "抖音", "小红书"), (5, 4, 1)),
    "retail": Weighted(("淘宝", "拼多多", "抖音", "美团", "京东", "快手", "微店"), (3, 2, 2, 2, 1, 1, 1)),
    "online": Weighted(
        ("淘宝", "天猫", "拼多多", "抖音", "京东", "快手", "小红书", "微店"), (30, 8, 20, 25, 7, 10, 5, 3)
    ),
    "brand": Weighted(("天猫", "京东", "拼多多", "抖音"), (4, 3, 2, 2)),  # a maker's flagship store
}
PRIVATE_PLATFORMS = Weighted(("拼多多", "抖音", "小红书", "微店", "闲鱼"), (2, 3, 2, 1, 2))
RESTAURANT_SIGNS = ("餐厅", "小馆", "酒楼", "食堂", "面馆")
FLAGSHIP_PLATFORMS = {"天猫", "京东"}  # where a shop with a brand is a 旗舰店/专营店
LOCAL_PLATFORMS = {"美团", "饿了么"}  # a store front's address, the sign with its road
SHOP_ID_DIGITS = {
    "淘宝": 9, "天猫": 10, "拼多多": 9, "抖音": 8, "京东": 8, "快手": 9, "小红书": 8, "微店": 10,
}  # fmt: skip
# Share of units with a platform shop: online sellers and unregistered shops, then by kind and sector.
ONLINE_SHOP_SHARE = 0.92
SHOP_SHARE = {
    "individual_business": {"restaurant": 0.45, "retail": 0.3, "service": 0.3},
    "company": {"restaurant": 0.25, "retail": 0.2, "service": 0.1, "factory": 0.05, "farm": 0.08},
    "sole_proprietorship": {"restaurant": 0.15, "retail": 0.15, "service": 0.1},
    "branch": {"restaurant": 0.2, "retail": 0.15},
}
OTHER_SHOP_SHARE = 0.02
SECOND_PLATFORM = 0.2  # an online seller also trades on a second platform
SKIPPED_MONTH = 0.06  # a month the extract has no line for
# Orders a month of a typical shop per sector, and the mean order value (yuan); size scales orders.
ORDERS = {"restaurant": 900, "retail": 120, "service": 60, "online": 350, "brand": 400}
ORDER_VALUE = {"restaurant": 38, "retail": 95, "service": 150, "online": 70, "brand": 180}
PRIVATE_SELLER_SHARE = 0.02  # per family: a person selling a few things of their own (no unit)

# Share of units on a bookkeeping firm's list, by kind; a unit whose tax filings carry an agency's phone is
# that agency's client nearly always.
BOOKKEEPING_SHARE = {"company": 0.4, "sole_proprietorship": 0.35, "branch": 0.12, "individual_business": 0.06}
AGENCY_CLIENT_SHARE = 0.85
LARGE_UNIT_SIZE = 3.0  # larger units keep their own accountants
SECOND_FIRM = 0.06  # a client that changed firms shows on both lists
FIRM_ENDINGS = (
    "财务咨询有限公司", "代理记账有限公司", "会计服务有限公司", "财税服务有限公司", "企业管理咨询有限公司",
)  # fmt: skip
LISTS_SINCE = date(2024, 1, 1)  # the oldest entry a list still carries

# Units only the added feeds show, per 1,000 units of the sample.
PLATFORM_ONLY_PER_1000 = 30
BOOKKEEPING_ONLY_PER_1000 = 15
# Counties near each city (by province code) where companies that operate in the city register.
REGISTERED_ELSEWHERE = {
    "33": (
        ("330282", "慈溪"),
        ("330681", "诸暨"),
        ("330522", "长兴"),
        ("330481", "海宁"),
        ("330783", "东阳"),
    ),
    "11": (("131082", "三河"), ("130682", "定州"), ("120116", "天津")),
    "51": (("510181", "都江堰"), ("510681", "广汉")),
}


Record = dict[str, Any]
UnitLine = Callable[[Unit, str], Record]  # a unit only this feed shows → its line of units_added.jsonl


def _pick(ways: tuple[tuple[str, float], ...], draw: float) -> str:
    return ways[bisect([share for _, share in ways], draw)][0]


class AddedFeedMaker:
    """Platform and bookkeeping records of each family (``family``), then of the units only they show
    (``finish``). Draws only from ``rng``; reads the units, never changes what the other feeds see."""

    def __init__(
        self, rng: random.Random, emit: Emit, difficulty: Difficulty, sign_names: dict[str, str]
    ) -> None:
        self.rng = rng
        self.emit = emit
        self.difficulty = difficulty
        self.sign_names = sign_names  # the signs the waybills carry (read only: a shop shows the same)
        self.shop_ids: dict[str, set[str]] = defaultdict(set)
        self.firms: dict[str, list[tuple[str, str | None]]] = defaultdict(list)  # city → (firm, phone)
        self.agency_firms: dict[str, str] = {}  # an agency's phone → its firm's name

    def family(self, family: list[Unit]) -> None:
        rng = self.rng
        for unit in family:
            if self._has_shop(unit):
                self.platform_shops(unit)
            if self._is_client(unit):
                self.bookkeeping(unit)
        if rng.random() < PRIVATE_SELLER_SHARE:
            self.private_seller(family[0])

    # -- platform merchants ------------------------------------------------------------------------------

    def _has_shop(self, unit: Unit) -> bool:
        if unit.online or unit.kind == "ecommerce_shop":
            return self.rng.random() < ONLINE_SHOP_SHARE
        share = SHOP_SHARE.get(unit.kind, {}).get(unit.industry.sector, OTHER_SHOP_SHARE)
        return self.rng.random() < share

    def _market(self, unit: Unit) -> str:
        """Which platforms' list of sectors the unit trades in."""
        sector = unit.industry.sector
        if unit.online or unit.kind == "ecommerce_shop":
            return "online"
        if sector in ("factory", "farm"):
            return "brand"
        return sector if sector in PLATFORMS else "online"

    def _shop_id(self, platform: str) -> str:
        digits = SHOP_ID_DIGITS.get(platform, 8)
        taken = self.shop_ids[platform]
        while (shop_id := str(self.rng.randrange(10 ** (digits - 1), 10**digits))) in taken:
            pass
        taken.add(shop_id)
        return shop_id

    def _sign(self, unit: Unit, platform: str) -> str:
        """The shop's sign: the one its waybills carry if it has one, else a trade name and line."""
        rng = self.rng
        if unit.kind == "ecommerce_shop":
            return unit.name
        if platform in LOCAL_PLATFORMS or unit.industry.sector in ("restaurant", "service"):
            road = unit.ops_site.road
            line = unit.parts.industry
            if unit.kind != "individual_business" and unit.industry.sector == "restaurant":
                line = rng.choice(RESTAURANT_SIGNS)  # a catering company's sign is not 餐饮管理
            return unit.parts.trade + line + (f"（{road}店）" if road and rng.random() < 0.5 else "")
        if unit.unit_id in self.sign_names and rng.random() < 0.7:
            return self.sign_names[unit.unit_id]
        trade = unit.parts.trade if rng.random() < 0.6 else rng.choice(SHOP_TRADE_NAMES)
        flagship = platform in FLAGSHIP_PLATFORMS
        ending = rng.choice(("旗舰店", "专营店")) if flagship else rng.choice(SHOP_ENDINGS)
        line = ""  # a shop front sells online what it sells over the counter (水果店 → 恒达水果小店)
        if unit.kind == "individual_business" and unit.industry.sector != "online":
            line = unit.parts.industry.removesuffix("商行").removesuffix("店")
        return trade + (line or rng.choice(SHOP_GOODS)) + ending

    def _shop_name(self, unit: Unit, platform: str) -> str:
        rng = self.rng
        way = _pick(self.difficulty.shop_name, rng.random())
        if way == "registered" and unit.registered:
            return name_variant(unit.parts, rng, self.difficulty.platform_name)
        if way == "nickname" and platform not in FLAGSHIP_PLATFORMS:
            return nickname(rng, unit.legal_rep.name) + rng.choice(("的小店", "家", "小铺", "好物"))
        return self._sign(unit, platform)

    def platform_shops(self, unit: Unit) -> int:
        """The unit's shops (an online seller's now and then on two platforms); returns records written."""
        rng = self.rng
        market = self._market(unit)
        platforms = [PLATFORMS[market].pick(rng)]
        if market == "online" and rng.random() < SECOND_PLATFORM:
            second = PLATFORMS[market].pick(rng)
            if second != platforms[0]:
                platforms.append(second)
        return sum(self._shop(unit, platform, market) for platform in platforms)

    def _shop(self, unit: Unit, platform: str, market: str) -> int:
        rng = self.rng
        opened = unit.established_on + timedelta(days=int(rng.expovariate(1 / 200)))
        months = [m for m in PLATFORM_MONTHS if unit.active_on(_month_end(m)) and opened <= _month_end(m)]
        if not months:
            return 0
        licence = None
        if unit.uscc and chance(rng, self.difficulty.platform_licence):
            licence = written_uscc(rng, unit.uscc, 0.01)
        given_address = platform in LOCAL_PLATFORMS or rng.random() < 0.9
        phone = unit.legal_rep.mobile if rng.random() < 0.8 else unit.phone
        master = {
            "platform": platform,
            "shop_id": self._shop_id(platform),
            "shop_name": self._shop_name(unit, platform),
            "operator_name": person_name_variant(unit.legal_rep.name, rng, 0.01),
            "uscc": licence,
            "address": render_address(unit.ops_site, rng, self.difficulty.platform_address)
            if given_address
            else None,
            "phone": written_phone(rng, phone, 0.1),
        }
        dormant = unit.abnormal_since is not None and unit.abnormal_since <= ZOMBIE_LISTED_BY
        orders_base = ORDERS[market] * unit.size**0.7 * (0.03 if dormant else 1.0)
        written = 0
        for period in months:
            if rng.random() < SKIPPED_MONTH:
                continue
            written += 1
            orders = max(0, round(orders_base * rng.lognormvariate(0, 0.35)))
            if rng.random() < 0.02:
                orders = 0  # a month without a sale
            sales = round(orders * ORDER_VALUE[market] * rng.lognormvariate(0, 0.15), 2)
            self._month(master, period, orders, sales, unit.unit_id)
        return written

    def _month(self, master: Record, period: str, orders: int, sales: float, unit_id: str | None) -> None:
        rng = self.rng
        settled = min(_month_end(period) + timedelta(days=rng.randint(1, 5)), AS_OF)
        record = {**master, "period": period, "orders": orders, "sales": sales}
        record["updated_at"] = _stamp(settled, rng)
        self.emit(PLATFORM, _blank(record, rng, PLATFORM, self.difficulty.blanks), unit_id)

    def private_seller(self, near: Unit) -> None:
        """A person selling a few things of their own now and then: no business unit (truth null)."""
        rng = self.rng
        person = new_person(rng, near.city, 18, 60)
        platform = PRIVATE_PLATFORMS.pick(rng)
        name = rng.choice((nickname(rng, person.name) + "的闲置", rng.choice(SHOP_TRADE_NAMES) + "小铺"))
        master = {
            "platform": platform,
            "shop_id": self._shop_id(platform),
            "shop_name": name,
            "operator_name": person_name_variant(person.name, rng, 0.01),
            "uscc": None,
            "address": render_address(person.home(rng), rng, self.difficulty.platform_address)
            if rng.random() < 0.5
            else None,
            "phone": written_phone(rng, person.mobile, 0.1),
        }
        for period in rng.sample(PLATFORM_MONTHS, rng.randint(1, 3)):
            orders = rng.randint(1, 8)
            self._month(master, period, orders, round(orders * rng.uniform(15, 120), 2), None)

    # -- bookkeeping clients -----------------------------------------------------------------------------

    def _is_client(self, unit: Unit) -> bool:
        rng = self.rng
        if not unit.registered or (unit.closed_on and unit.closed_on < LISTS_SINCE):
            return False
        if unit.agency_phone:
            return rng.random() < AGENCY_CLIENT_SHARE
        share = BOOKKEEPING_SHARE.get(unit.kind, 0.0) * (0.3 if unit.size > LARGE_UNIT_SIZE else 1.0)
        return rng.random() < share

    def _firm(self, unit: Unit) -> str:
        """The agency whose phone the unit gave the tax office, else one of the city's firms."""
        rng = self.rng
        if unit.agency_phone and unit.agency_phone in self.agency_firms:
            return self.agency_firms[unit.agency_phone]
        pool = self.firms[unit.city.code]
        if unit.agency_phone or len(pool) < 5 or rng.random() < 0.03:
            firm = unit.city.short + trade_name(rng) + rng.choice(FIRM_ENDINGS)
            pool.append((firm, unit.agency_phone))
            if unit.agency_phone:
                self.agency_firms[unit.agency_phone] = firm
            return firm
        return rng.choice(pool)[0]

    def bookkeeping(self, unit: Unit) -> None:
        rng = self.rng
        firms = [self._firm(unit)]
        if rng.random() < SECOND_FIRM:  # it changed firms: the old one's list still carries it
            others = [firm for firm, _ in self.firms[unit.city.code] if firm != firms[0]]
            firms += [rng.choice(others)] if others else []
        for firm in firms:
            owner_keeps = unit.kind in ("individual_business", "sole_proprietorship") or rng.random() < 0.45
            contact: Person = unit.legal_rep if owner_keeps else unit.contact(rng, 0)
            uscc = None
            if unit.uscc and rng.random() < (0.8 if unit.kind == "individual_business" else 0.96):
                uscc = written_uscc(rng, unit.uscc, 0.01)
            start = max(unit.established_on, LISTS_SINCE)
            updated = start + timedelta(days=rng.randint(0, max(0, (AS_OF - start).days)))
            record = {
                "client_name": name_variant(unit.parts, rng, self.difficulty.bookkeeping_name),
                "uscc": uscc,
                "contact_person": person_name_variant(contact.name, rng, 0.01),
                "phone": written_phone(rng, contact.mobile if rng.random() < 0.8 else unit.phone, 0.15),
                "bookkeeping_firm": firm,
                "address": render_address(unit.site, rng, self.difficulty.bookkeeping_address),
                "updated_at": _stamp(updated, rng),
            }
            self.emit(BOOKKEEPING, _blank(record, rng, BOOKKEEPING, self.difficulty.blanks), unit.unit_id)

    # -- units only the added feeds show -----------------------------------------------------------------

    def finish(
        self, population: Population, first_id: int, units: int, unit_file: IO[str], row: UnitLine
    ) -> int:
        """Make the units only these feeds show for a sample of ``units`` (``population`` draws from this
        maker's generator; ids from ``first_id``), their records, and their lines of ``units_added.jsonl``
        (``row``: the line of a unit only ``feed`` shows); returns how many."""
        rng = self.rng
        count = 0
        plan = [PLATFORM] * round(units * PLATFORM_ONLY_PER_1000 / 1000)
        plan += [BOOKKEEPING] * round(units * BOOKKEEPING_ONLY_PER_1000 / 1000)
        for feed in plan:
            city = CITY_PICK.pick(rng)
            rep = new_person(rng, city, 22, 60)
            if feed == PLATFORM:
                unit = population._shop(city, rep)
            else:
                unit = self._registered_elsewhere(population, city, rep)
            unit.unit_id = f"U{first_id + count:06d}"
            count += 1
            if feed == PLATFORM:
                while not self.platform_shops(unit):
                    unit.established_on -= timedelta(days=180)  # opened too late for the extract
            else:
                self.bookkeeping(unit)
            write_jsonl_line(unit_file, row(unit, feed))
        return count

    def _registered_elsewhere(self, population: Population, city: City, rep: Person) -> Unit:
        """A small company run in the city but registered in a county nearby: its USCC and its name carry that
        county; none of the city's departments holds it."""
        rng = self.rng
        district = rng.choice(city.districts)
        unit = population._company(city, district, rep)
        code, region = rng.choice(REGISTERED_ELSEWHERE[city.code[:2]])
        unit.parts = NameParts(region, unit.parts.trade, unit.parts.industry, unit.parts.form or "有限公司")
        assert unit.uscc is not None
        unit.uscc = make_uscc("9", "1", code, unit.uscc[8:16])
        population.usccs.add(unit.uscc)
        unit.status, unit.closed_on, unit.abnormal_since, unit.former_parts = "存续", None, None, None
        unit.size = min(unit.size, LARGE_UNIT_SIZE)
        return unit
