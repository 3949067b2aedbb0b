"""Each department's records of a family of units, and of private persons who belong to no unit.

Every department keeps its own master data per unit (a tax office writes a taxpayer's name one way in all of
its filings), so names, addresses and phones vary between feeds more than within one. Field names come from
the contracts; ``emit`` receives records without ``record_id`` (the writer numbers them).
"""

from __future__ import annotations

import math
import random
from bisect import bisect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from typing import Any

from pipelines.generate.difficulty import Difficulty, chance
from pipelines.generate.geography import (
    COMMUNITY_PREFIXES,
    City,
    Site,
    new_site,
    render_address,
)
from pipelines.generate.names import (
    SHOP_ENDINGS,
    SHOP_GOODS,
    SHOP_TRADE_NAMES,
    Weighted,
    name_variant,
    nickname,
    person_name_variant,
)
from pipelines.generate.people import Person, new_person, written_id, written_phone
from pipelines.generate.units import (
    AS_OF,
    NUCLEIC_END,
    NUCLEIC_START,
    TAX_WINDOW_START,
    ZOMBIE_LISTED_BY,
    Unit,
)
from pipelines.standardise.codes import USCC_CHARSET

Record = dict[str, Any]
Emit = Callable[[str, Record, str | None], None]


def _months(first: date, count: int) -> tuple[str, ...]:
    index = first.year * 12 + first.month - 1
    return tuple(f"{(index + i) // 12:04d}-{(index + i) % 12 + 1:02d}" for i in range(count))


TAX_MONTHS = _months(TAX_WINDOW_START, 11)  # 2025-11 … 2026-09, filed by 2026-10-15
TAX_QUARTERS = ("2025-12", "2026-03", "2026-06", "2026-09")
POWER_MONTHS = _months(date(2026, 7, 1), 4)  # 2026-07 … 2026-10
WAYBILL_MONTHS = _months(TAX_WINDOW_START, 12)  # 2025-11 … 2026-10

# Share of fields left out (missing or null) per feed: extracts lose a few values everywhere (the
# difficulty scales them).
BLANKS = {
    "registration": (
        ("phone", 0.06), ("industry_code", 0.02), ("address", 0.01), ("name", 0.005), ("legal_rep_id", 0.03),
        ("legal_rep_name", 0.01), ("division_code", 0.02), ("established_on", 0.01), ("status", 0.01),
        ("registered_capital", 0.02), ("updated_at", 0.01),
    ),
    "tax": (
        ("phone", 0.08), ("address", 0.03), ("legal_rep_name", 0.05), ("tax_office", 0.02), ("sales", 0.02),
        ("taxpayer_name", 0.01), ("updated_at", 0.01), ("taxpayer_id", 0.005),
    ),
    "utility": (
        ("phone", 0.08), ("address", 0.02), ("kwh", 0.01), ("account_name", 0.01), ("meter_no", 0.01),
        ("customer_class", 0.02), ("updated_at", 0.01), ("account_no", 0.005),
    ),
    "waybill": (
        ("sender_address", 0.03), ("sender_phone", 0.03), ("carrier", 0.01), ("sender_name", 0.02),
        ("parcel_count", 0.01), ("shipped_at", 0.005),
    ),
    "nucleic_contact": (
        ("phone", 0.05), ("address", 0.1), ("site", 0.03), ("id_number", 0.03), ("person_name", 0.01),
        ("sampled_at", 0.005),
    ),
    # The feeds added later (added.py).
    "platform_merchant": (
        ("address", 0.03), ("phone", 0.05), ("operator_name", 0.02), ("shop_name", 0.005), ("orders", 0.01),
        ("sales", 0.01), ("updated_at", 0.01), ("platform", 0.003), ("shop_id", 0.003), ("period", 0.003),
    ),
    "bookkeeping_client": (
        ("address", 0.05), ("phone", 0.05), ("contact_person", 0.03), ("uscc", 0.02), ("client_name", 0.005),
        ("bookkeeping_firm", 0.01), ("updated_at", 0.01),
    ),
}  # fmt: skip

CARRIERS = Weighted(
    (
        "中通快递",
        "圆通速递",
        "韵达快递",
        "申通快递",
        "顺丰速运",
        "极兔速递",
        "京东物流",
        "邮政EMS",
        "德邦快递",
    ),
    (22, 18, 16, 11, 10, 9, 7, 5, 2),
)
# Quarterly sales (yuan) of a typical unit per sector; size scales it.
SECTOR_SALES = {
    "office": 180_000, "retail": 150_000, "restaurant": 240_000, "service": 90_000, "factory": 900_000,
    "logistics": 400_000, "construction": 600_000, "online": 260_000, "farm": 120_000,
}  # fmt: skip
# Monthly kWh of a typical account per sector, on the general commercial tariff.
SECTOR_KWH = {
    "office": 1_800, "retail": 1_200, "restaurant": 4_500, "service": 1_000, "factory": 9_000,
    "logistics": 5_000, "construction": 1_500, "online": 500, "farm": 3_000,
}  # fmt: skip
POWER_SHARE = {
    "office": 0.3, "retail": 0.55, "restaurant": 0.7, "service": 0.5, "factory": 0.85, "logistics": 0.6,
    "construction": 0.25, "online": 0.2, "farm": 0.6,
}  # fmt: skip
SEASON = {"07": 1.3, "08": 1.35, "09": 1.1, "10": 0.95}  # summer cooling
CLASS_LONG = {
    "大工业": "大工业用电",
    "一般工商业": "一般工商业用电",
    "居民": "居民生活用电",
    "农业": "农业生产用电",
}


@dataclass(frozen=True)
class DepartmentVocabulary:
    """How the departments of a sample spell their codes, so that the pipeline can be tried on spellings
    it was not built on. A spelling is chosen by a draw the default makes anyway, so every vocabulary gives
    the same records, units and ids for a seed: only these codes read differently."""

    industry_letter: bool  # registrations write the GB/T 4754 section letter (F5199) or not (5199)
    # The generator's customer class → (spelling, share of draws below which it is chosen), shares rising.
    customer_classes: dict[str, tuple[tuple[str, float], ...]]

    def industry_code(self, code: str) -> str:
        return code if self.industry_letter else code[1:]

    def customer_class(self, customer_class: str, draw: float) -> str:
        spellings = self.customer_classes[customer_class]
        return spellings[bisect([share for _, share in spellings], draw)][0]


DEPARTMENT_VOCABULARIES = {
    # State Grid's catalogue, short names and now and then the full ones.
    "default": DepartmentVocabulary(
        industry_letter=True,
        customer_classes={short: ((long, 0.05), (short, 1.0)) for short, long in CLASS_LONG.items()},
    ),
    # Registration codes without the section letter; a power company with China Southern Grid's and the
    # post-reform names (工商业用电 单一制/两部制), older accounts still under the pre-2018 classes. Every
    # spelling is one the vocabulary lists, so the utility suite's value set accepts it.
    "variant": DepartmentVocabulary(
        industry_letter=False,
        customer_classes={
            "大工业": (("大工业用电", 0.5), ("工商业用电（两部制）", 1.0)),
            "一般工商业": (
                ("工商业及其他用电", 0.4),
                ("工商业用电（单一制）", 0.6),
                ("非居民照明", 0.75),
                ("商业用电", 0.9),
                ("普通工业", 1.0),
            ),
            "居民": (("城乡居民生活用电", 0.6), ("居民生活用电", 0.8), ("居民合表用户", 1.0)),
            "农业": (("农业生产用电", 0.7), ("农业排灌", 1.0)),
        },
    ),
}
STEADY_MIN_PARCELS = 100  # over the months an online seller ships; the resolver looks for 60 or more
NO_WORK_UNIT = ("无", "退休", "学生", "自由职业", "待业", "灵活就业", "个体")


def _stamp(day: date, rng: random.Random, first_hour: int = 8, last_hour: int = 19) -> str:
    """ISO 8601 in China Standard Time, as the departments' systems write it."""
    second = first_hour * 3600 + int(rng.random() * (last_hour - first_hour + 1) * 3600)
    return f"{day.isoformat()}T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}+08:00"


@cache
def _month_start(period: str) -> date:
    return date(int(period[:4]), int(period[5:7]), 1)


@cache
def _month_end(period: str) -> date:
    year, month = int(period[:4]), int(period[5:7])
    return date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)


def _blank(record: Record, rng: random.Random, feed: str, scale: float) -> Record:
    for name, rate in BLANKS[feed]:
        if rng.random() < rate * scale and name in record:
            if rng.random() < 0.5:
                del record[name]
            else:
                record[name] = None
    return record


def written_uscc(rng: random.Random, code: str, typo: float) -> str:
    """A USCC as typed: now and then a wrong check character or two characters swapped."""
    if rng.random() >= typo:
        return code
    if rng.random() < 0.3:
        at = rng.randrange(8, 16)
        if code[at] != code[at + 1]:
            return code[:at] + code[at + 1] + code[at] + code[at + 2 :]
    return code[:-1] + rng.choice([c for c in USCC_CHARSET if c != code[-1]])


def _geometric(rng: random.Random, p: float) -> int:
    count = 0
    while rng.random() < p:
        count += 1
    return count


def existed_during_tests(unit: Unit) -> bool:
    return unit.established_on <= date(2022, 9, 30) and (
        unit.closed_on is None or unit.closed_on >= date(2021, 6, 1)
    )


class FeedMaker:
    """Writes every feed's records of one family at a time through ``emit``."""

    def __init__(
        self, rng: random.Random, emit: Emit, vocabulary: DepartmentVocabulary, difficulty: Difficulty
    ) -> None:
        self.rng = rng
        self.emit = emit
        self.vocabulary = vocabulary
        self.difficulty = difficulty
        self.sign_names: dict[str, str] = {}  # unit → the name on its shop sign (hard waybills)
        self.account_nos: set[str] = set()
        self.meter_nos: set[str] = set()

    def family(self, family: list[Unit]) -> dict[str, float]:
        """All records of a family and of some private persons around it; returns tax paid per unit."""
        tax_paid = {}
        tested = self._nucleic_family(family)
        for unit in family:
            others = tested.get(unit.unit_id, 0)
            if unit.registered:
                others += self.registration(unit)
            paid, filings = self.tax(unit)
            tax_paid[unit.unit_id] = paid
            others += filings + self.utility(unit)
            self.waybills(unit, others)
            self.private_persons(unit.city)
        return tax_paid

    # -- registration ------------------------------------------------------------------------------------

    def registration(self, unit: Unit) -> int:
        rng = self.rng
        assert unit.uscc is not None
        span = (AS_OF - unit.established_on).days
        updated = AS_OF - timedelta(days=int(rng.random() ** 2 * span))
        updated = max(updated, unit.closed_on or updated, unit.abnormal_since or updated)  # changes logged
        versions = [(unit.parts, updated, unit.status, unit.abnormal_since)]
        if unit.former_parts:
            earlier = unit.established_on + timedelta(
                days=rng.randint(0, max(0, (updated - unit.established_on).days))
            )
            versions.insert(0, (unit.former_parts, earlier, "存续", None))
        division = rng.random()
        for parts, moment, status, abnormal in versions:
            uscc: str | None = written_uscc(rng, unit.uscc, 0.015)
            if unit.reg_no and rng.random() < 0.06:
                uscc = None  # an old record that only carries the registration number
            record = {
                "uscc": uscc,
                "reg_no": unit.reg_no,
                "name": parts.full,
                "entity_type": unit.entity_type.replace("（", "(").replace("）", ")")
                if unit.entity_type and rng.random() < 0.3
                else unit.entity_type,
                "legal_rep_name": unit.legal_rep.name,
                "legal_rep_id": written_id(rng, unit.legal_rep.id_number, 0.02),
                "industry_code": self.vocabulary.industry_code(
                    unit.industry.code if rng.random() > 0.05 else unit.industry.code[:3]
                ),
                "address": render_address(unit.site, rng, self.difficulty.registration_address),
                "division_code": unit.district.code
                if division < 0.84
                else unit.site.township_code
                if division < 0.96
                else unit.city.code,
                "phone": written_phone(rng, unit.phone, 0.12),
                "established_on": unit.established_on.isoformat(),
                "status": status,
                "abnormal_since": abnormal.isoformat() if abnormal else None,
                "registered_capital": unit.capital,
                "updated_at": _stamp(moment, rng),
            }
            self.emit(
                "registration", _blank(record, rng, "registration", self.difficulty.blanks), unit.unit_id
            )
        return len(versions)

    # -- tax ---------------------------------------------------------------------------------------------

    def _tax_regime(self, unit: Unit) -> str | None:
        rng = self.rng
        if not unit.registered or (unit.closed_on and unit.closed_on < TAX_WINDOW_START):
            return None
        roll = rng.random()
        if unit.abnormal_since and unit.abnormal_since <= ZOMBIE_LISTED_BY:
            return "zero" if roll < 0.3 else None if roll < 0.85 else "quarterly"
        monthly, quarterly = {
            "company": (0.22, 0.55),
            "branch": (0.1, 0.3),
            "individual_business": (0.0, 0.38),
            "sole_proprietorship": (0.0, 0.6),
        }[unit.kind]
        if unit.online:
            monthly, quarterly = (0.3, 0.6) if unit.kind == "company" else (0.0, 0.6)
        return "monthly" if roll < monthly else "quarterly" if roll < monthly + quarterly else None

    def _taxpayer_id(self, unit: Unit) -> str:
        rng = self.rng
        assert unit.uscc is not None
        if not unit.modern and unit.uscc[8].isdigit() and rng.random() < 0.3:
            return unit.uscc[2:8] + unit.uscc[8:17]  # legacy: division + organisation code
        return written_uscc(rng, unit.uscc, 0.01)

    def tax(self, unit: Unit) -> tuple[float, int]:
        """Filings in the tax window; returns tax paid in total and the number of filings."""
        rng = self.rng
        regime = self._tax_regime(unit)
        if regime is None:
            return 0.0, 0
        taxpayer_id = self._taxpayer_id(unit)
        name = name_variant(unit.parts, rng, self.difficulty.tax_name)
        address = render_address(unit.ops_site, rng, self.difficulty.tax_address)
        contact = unit.agency_phone or (unit.phone if rng.random() < 0.7 else unit.legal_rep.mobile)
        phone = written_phone(rng, contact, 0.2)
        rep_name = person_name_variant(unit.legal_rep.name, rng, 0.01)
        office = f"国家税务总局{unit.city.name}{unit.district.name}税务局"
        if rng.random() < 0.15:
            office += rng.choice(("第一税务所", "第二税务所", "第三税务所"))
        status = "正常"
        if unit.abnormal_since and rng.random() < 0.5:
            status = "非正常"
        elif unit.status == "停业":
            status = "停业"
        periods = TAX_MONTHS if regime == "monthly" else TAX_QUARTERS
        scale = SECTOR_SALES[unit.industry.sector] * unit.size * (0.8 if regime == "monthly" else 1.0)
        if regime == "monthly":
            scale *= 2.5  # general taxpayers are the larger units
        total, filings = 0.0, 0
        for period in periods:
            start = _month_start(period) - timedelta(days=62 if regime != "monthly" else 0)
            end = _month_end(period)
            if unit.established_on > end or (unit.closed_on and unit.closed_on < start):
                continue
            if regime == "zero":
                sales = paid = 0.0
            else:
                sales = round(scale * rng.lognormvariate(0, 0.35), 2)
                if rng.random() < 0.003:
                    sales = -round(sales * rng.uniform(0.01, 0.2), 2)  # red-letter invoices
                rate = rng.uniform(0.01, 0.03) if regime == "quarterly" else rng.uniform(0.02, 0.06)
                zero = rng.random() < (0.2 if regime == "quarterly" else 0.05)
                paid = 0.0 if zero or sales <= 0 else round(sales * rate, 2)
            closing = unit.closed_on is not None and unit.closed_on <= end + timedelta(days=92)
            record = {
                "taxpayer_id": taxpayer_id,
                "taxpayer_name": name,
                "legal_rep_name": rep_name,
                "address": address,
                "phone": phone,
                "tax_office": office,
                "period": period,
                "tax_paid": paid,
                "sales": sales,
                "taxpayer_status": "注销" if closing else status,
                "updated_at": _stamp(end + timedelta(days=rng.randint(1, 15)), rng),
            }
            self.emit("tax", _blank(record, rng, "tax", self.difficulty.blanks), unit.unit_id)
            total += paid
            filings += 1
        return total, filings

    # -- electricity -------------------------------------------------------------------------------------

    def _account_no(self, unit: Unit) -> str:
        while True:
            number = f"{unit.city.code[:2]}{self.rng.randrange(10**8):08d}"
            if number not in self.account_nos:
                self.account_nos.add(number)
                return number

    def _meter_no(self, unit: Unit) -> str:
        while True:
            number = f"{unit.city.code[:2]}00{self.rng.randrange(10**10):010d}"
            if number not in self.meter_nos:
                self.meter_nos.add(number)
                return number

    def _customer_class(self, unit: Unit, site: Site) -> str:
        if site.kind == "home":
            return "居民"
        if unit.industry.sector == "farm":
            return "农业"
        if unit.industry.sector == "factory" and unit.size > 1.5:
            return "大工业"
        if unit.kind == "individual_business" and self.rng.random() < 0.06:
            return "居民"  # a shop front on the household tariff, in the operator's name
        return "一般工商业"

    def _account_holder(self, unit: Unit, site: Site) -> Person | None:
        """The person a business account at a shop front or office is in, if not the unit: its landlord
        (who let the premises with the meter) or its owner. The account still meters the unit's premises,
        so its records are the unit's."""
        difficulty = self.difficulty
        if site.kind not in ("shop", "office") or not (
            difficulty.landlord_account or difficulty.owner_account
        ):
            return None  # no draw: the default's stream stays as it was
        roll = self.rng.random()
        if roll < difficulty.landlord_account:
            return new_person(self.rng, unit.city, 35, 75)
        if roll < difficulty.landlord_account + difficulty.owner_account:
            return unit.legal_rep
        return None

    def utility(self, unit: Unit) -> int:
        """Power accounts and their monthly consumption; returns the number of records."""
        rng = self.rng
        first_month = _month_start(POWER_MONTHS[0])
        if unit.closed_on and unit.closed_on < first_month:
            return 0
        if unit.registered:
            share = 0.5 if unit.kind == "branch" else POWER_SHARE[unit.industry.sector]
            if unit.abnormal_since and unit.abnormal_since <= ZOMBIE_LISTED_BY:
                share = 0.1
        else:
            share = 0.05
        if rng.random() >= share:
            return 0
        meters = 1 if rng.random() < 0.88 else rng.choice((2, 2, 3, 4))
        unit.meters = meters
        shared_account = meters > 1 and rng.random() < 0.5
        accounts: list[tuple[Record, str, list[str]]] = []
        for index in range(1 if shared_account else meters):
            site = unit.ops_site
            if index and rng.random() < 0.3:
                site = new_site(
                    rng,
                    unit.city,
                    "factory" if unit.industry.sector == "factory" else "office",
                    unit.district,
                )
            customer_class = self._customer_class(unit, site)
            household = customer_class == "居民"
            uscc = None
            if unit.uscc and not household and rng.random() < 0.35:
                uscc = written_uscc(rng, unit.uscc, 0.04)
            phone = unit.phone if rng.random() < 0.55 else unit.legal_rep.mobile
            holder = None if household else self._account_holder(unit, site)
            if holder is not None:  # a person holds it: no USCC, often that person's phone
                uscc = None
                phone = holder.mobile if holder is unit.legal_rep or rng.random() < 0.6 else phone
            master = {
                "account_no": self._account_no(unit),
                "account_name": unit.legal_rep.name
                if household
                else person_name_variant(holder.name, rng, 0.02)
                if holder is not None
                else name_variant(unit.parts, rng, self.difficulty.power_name),
                "uscc": uscc,
                "address": render_address(site, rng, self.difficulty.power_address),
                "phone": written_phone(rng, phone, 0.3),
                "customer_class": self.vocabulary.customer_class(customer_class, rng.random()),
            }
            meter_nos = [self._meter_no(unit) for _ in range(meters if shared_account else 1)]
            accounts.append((master, customer_class, meter_nos))
        dormant = unit.abnormal_since is not None and unit.abnormal_since <= ZOMBIE_LISTED_BY
        records = 0
        for master, customer_class, meter_nos in accounts:
            base = SECTOR_KWH[unit.industry.sector] * unit.size
            if customer_class == "大工业":
                base *= 15
            elif customer_class == "居民":
                base = 280
            if dormant:
                base *= 0.01
            for meter_no in meter_nos:
                meter_base = base * rng.uniform(0.3, 1.0) if len(meter_nos) > 1 else base
                for period in POWER_MONTHS:
                    if not unit.active_on(_month_start(period)) or rng.random() < 0.07:
                        continue
                    kwh = meter_base * SEASON[period[5:]] * rng.lognormvariate(0, 0.2)
                    record = {
                        **master,
                        "meter_no": meter_no,
                        "period": period,
                        "kwh": round(kwh) if kwh >= 10 else round(kwh, 1),
                        "updated_at": _stamp(_month_start(period) + timedelta(days=rng.randint(19, 26)), rng),
                    }
                    self.emit("utility", _blank(record, rng, "utility", self.difficulty.blanks), unit.unit_id)
                    records += 1
        return records

    # -- waybills ----------------------------------------------------------------------------------------

    def _sign_name(self, unit: Unit) -> str:
        """The name over a unit's door or on its online shop, made on first use: a shop's trade and line
        (张记面馆（文三路店）), another company's brand (小鹿家居旗舰店, 鑫源数码专营店)."""
        if unit.unit_id not in self.sign_names:
            rng = self.rng
            if unit.kind == "ecommerce_shop":
                sign = unit.name
            elif unit.kind == "individual_business":
                road = unit.ops_site.road
                sign = unit.parts.trade + unit.parts.industry
                sign += f"（{road}店）" if road and rng.random() < 0.3 else ""
            else:
                trade = unit.parts.trade if rng.random() < 0.5 else rng.choice(SHOP_TRADE_NAMES)
                sign = trade + rng.choice(SHOP_GOODS) + rng.choice(SHOP_ENDINGS)
            self.sign_names[unit.unit_id] = sign
        return self.sign_names[unit.unit_id]

    def _company_as_given(self, unit: Unit, way: str) -> str | None:
        """A waybill's sender company: the registered name as the courier typed it, the sign, the owner's
        name or nickname, or nothing."""
        rng = self.rng
        if way == "registered":
            return name_variant(unit.parts, rng, self.difficulty.waybill_name)
        if way == "sign":
            return self._sign_name(unit)
        if way == "owner":
            return person_name_variant(unit.legal_rep.name, rng, 0.02)
        if way == "nickname":
            return nickname(rng, unit.legal_rep.name)
        return None

    def _sender(self, unit: Unit, person: Person) -> Record:
        rng = self.rng
        use_landline = "-" in unit.phone and rng.random() < 0.3
        ways = self.difficulty.sender_company
        return {
            "sender_name": person_name_variant(person.name, rng, 0.02),
            "sender_company": self._company_as_given(
                unit, ways[bisect([share for _, share in ways], rng.random())][0]
            ),
            "sender_phone": written_phone(rng, unit.phone if use_landline else person.mobile, 0.3),
            "sender_address": render_address(unit.ops_site, rng, self.difficulty.waybill_address),
        }

    def _waybill(self, sender: Record, carrier: str, day: date, parcels: int, unit_id: str | None) -> None:
        rng = self.rng
        record = {
            "carrier": carrier,
            **sender,
            "shipped_at": _stamp(day, rng, 9, 20),
            "parcel_count": parcels,
        }
        self.emit("waybill", _blank(record, rng, "waybill", self.difficulty.blanks), unit_id)

    def waybills(self, unit: Unit, others: int) -> None:
        """Occasional parcels for most units; steady volume from one address for online sellers."""
        rng = self.rng
        months = [m for m in WAYBILL_MONTHS if unit.active_on(_month_end(m))]
        if not months:
            return
        if unit.online and len(months) >= 4:
            self._steady(unit, months, others)
            return
        unit.online = False
        share = {"company": 0.25, "branch": 0.2, "individual_business": 0.12}.get(unit.kind, 0.15)
        if rng.random() >= share:
            return
        for _ in range(rng.choice((1, 1, 2, 3))):
            person = unit.contact(rng, rng.randrange(2)) if rng.random() < 0.7 else unit.legal_rep
            day = _between_month(rng, rng.choice(months))
            self._waybill(self._sender(unit, person), CARRIERS.pick(rng), day, _parcels(rng), unit.unit_id)

    def _steady(self, unit: Unit, months: list[str], others: int) -> None:
        rng = self.rng
        span = rng.randint(4, len(months))
        end = len(months) if rng.random() < 0.85 else rng.randint(span, len(months))
        active = months[end - span : end]
        pickups = [(month, max(3, min(300, int(rng.lognormvariate(math.log(12), 0.6))))) for month in active]
        pickups += [
            (month, max(3, min(300, int(rng.lognormvariate(math.log(12), 0.6)))))
            for month in active
            if rng.random() < 0.8
        ]
        while len(pickups) < others + 2:  # parcels must outnumber the unit's other records
            pickups.append((rng.choice(active), rng.randint(3, 30)))
        volume = sum(count for _, count in pickups)
        if volume < STEADY_MIN_PARCELS:  # spread, so that a lost count does not sink the volume
            pickups = [(month, math.ceil(count * STEADY_MIN_PARCELS / volume)) for month, count in pickups]
        carriers = [CARRIERS.pick(rng) for _ in range(rng.choice((1, 1, 2)))]
        operator = unit.legal_rep
        template = {
            "sender_name": operator.name
            if rng.random() < 0.7
            else unit.parts.trade + rng.choice(("", "客服", "店")),
            "sender_company": self._company_as_given(unit, rng.choice(("sign", "owner", "nickname")))
            if chance(rng, self.difficulty.steady_informal)
            else unit.name,
            "sender_phone": written_phone(rng, operator.mobile, 0.2),
            "sender_address": render_address(unit.ops_site, rng, self.difficulty.waybill_address),
        }
        for month, parcels in pickups:
            sender = template
            roll = rng.random()
            if roll < 0.04:
                sender = {
                    **template,
                    "sender_company": name_variant(unit.parts, rng, self.difficulty.waybill_name),
                }
            elif roll < 0.07:
                sender = {
                    **template,
                    "sender_address": render_address(unit.ops_site, rng, self.difficulty.waybill_address),
                }
            elif roll < 0.08:
                sender = {**template, "sender_company": None}
            self._waybill(sender, rng.choice(carriers), _between_month(rng, month), parcels, unit.unit_id)

    # -- nucleic-test contact records ----------------------------------------------------------------------

    def _test(self, person: Person, work_unit: str | None, address: str | None, unit_id: str | None) -> None:
        rng = self.rng
        home = person.home(rng)
        day = NUCLEIC_START + timedelta(days=rng.randint(0, (NUCLEIC_END - NUCLEIC_START).days))
        phone = person.mobile2 if person.mobile2 and rng.random() < 0.5 else person.mobile
        roll = rng.random()
        if roll < 0.6:
            site = f"{home.township}{rng.choice(COMMUNITY_PREFIXES)}社区核酸采样点"
        elif roll < 0.85:
            site = f"{home.district.name}{rng.choice(('人民医院', '中医院', '妇幼保健院'))}采样点"
        else:
            site = f"{home.district.short}{rng.choice(('文化广场', '体育中心', '地铁站'))}便民采样点"
        record = {
            "person_name": person_name_variant(person.name, rng, 0.02),
            "id_number": written_id(rng, person.id_number, 0.03),
            "phone": written_phone(rng, phone, 0.15),
            "work_unit": work_unit,
            "address": address
            if address is not None
            else render_address(home, rng, self.difficulty.nucleic_address),
            "sampled_at": _stamp(day, rng, 7, 20),
            "site": site,
        }
        self.emit("nucleic_contact", _blank(record, rng, "nucleic_contact", self.difficulty.blanks), unit_id)

    def _nucleic_family(self, family: list[Unit]) -> dict[str, int]:
        """Legal reps (once per person) and employees, most naming their work unit; returns records per unit.

        A rep's test is the unit's whatever it names (the ID number on the licence ties it). An employee's
        test that names no work unit is the unit's only when its address is the workplace; tested at home it
        is a private person's record (truth null): nothing in it points at the unit."""
        rng = self.rng
        difficulty = self.difficulty
        counts: dict[str, int] = {}
        existing = [u for u in family if existed_during_tests(u)]
        reps: dict[str, list[Unit]] = {}
        for unit in existing:
            reps.setdefault(unit.legal_rep.id_number, []).append(unit)
        for units in reps.values():
            if rng.random() >= 0.3:
                continue
            unit = rng.choice(units)
            for _ in range(rng.choice((1, 1, 2))):
                roll = rng.random()
                if roll < difficulty.rep_names_unit:
                    work_unit = name_variant(unit.parts, rng, difficulty.nucleic_name)
                elif roll < difficulty.rep_self_employed and unit.kind in (
                    "individual_business",
                    "ecommerce_shop",
                ):
                    work_unit = rng.choice(("个体", "自营", "自由职业"))
                else:
                    work_unit = None
                self._test(unit.legal_rep, work_unit, None, unit.unit_id)
                counts[unit.unit_id] = counts.get(unit.unit_id, 0) + 1
        for unit in existing:
            mean_share = {"company": 0.42, "branch": 0.35, "sole_proprietorship": 0.25}.get(unit.kind, 0.18)
            for index in range(_geometric(rng, mean_share)):
                person = unit.contact(rng, index)
                for _ in range(1 if rng.random() < 0.8 else 2):
                    address = (
                        render_address(unit.ops_site, rng, difficulty.nucleic_address)
                        if rng.random() < 0.1
                        else None
                    )
                    named = chance(rng, difficulty.employee_names_unit)
                    if named:
                        work_unit: str | None = name_variant(unit.parts, rng, difficulty.nucleic_name)
                    else:
                        work_unit = None if rng.random() < 0.7 else "无"
                    owner = unit.unit_id if named or address is not None else None
                    self._test(person, work_unit, address, owner)
                    if owner:
                        counts[owner] = counts.get(owner, 0) + 1
        return counts

    # -- private persons ---------------------------------------------------------------------------------

    def private_persons(self, city: City) -> None:
        """People who belong to no business unit: private senders and people tested."""
        rng = self.rng
        if rng.random() < 0.22:
            person = new_person(rng, city, 18, 75)
            home = person.home(rng)
            for _ in range(rng.choice((1, 1, 1, 2, 3))):
                sender = {
                    "sender_name": person_name_variant(person.name, rng, 0.02),
                    "sender_company": None,
                    "sender_phone": written_phone(rng, person.mobile, 0.3),
                    "sender_address": render_address(home, rng, self.difficulty.waybill_address),
                }
                day = _between_month(rng, rng.choice(WAYBILL_MONTHS))
                self._waybill(sender, CARRIERS.pick(rng), day, 1 if rng.random() < 0.85 else 2, None)
        if rng.random() < 0.2:
            person = new_person(rng, city, 21, 80)
            roll = rng.random()
            if roll < 0.5:
                work_unit = None
            elif roll < 0.8:
                work_unit = rng.choice(NO_WORK_UNIT[:-1])
            else:
                work_unit = _public_body(rng, city, person.home(rng))
            for _ in range(1 if rng.random() < 0.75 else 2):
                self._test(person, work_unit, None, None)


def _public_body(rng: random.Random, city: City, home: Site) -> str:
    """Employers that are not business units: hospitals, schools, offices."""
    return rng.choice(
        (
            f"{city.name}第{rng.choice('一二三四五六七')}人民医院",
            f"{city.name}{rng.choice(COMMUNITY_PREFIXES)}小学",
            f"{home.district.name}{home.township}办事处",
            f"{home.district.name}人民法院",
            f"{city.name}公安局{home.district.name}分局",
        )
    )


def _between_month(rng: random.Random, period: str) -> date:
    start = _month_start(period)
    return start + timedelta(days=rng.randrange((_month_end(period) - start).days + 1))


def _parcels(rng: random.Random) -> int:
    return 1 if rng.random() < 0.7 else rng.randint(2, 5)
