"""People (legal representatives, employees, private senders): names, ID numbers, phones as written."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

from pipelines.generate.geography import City, District, Site, new_site
from pipelines.generate.names import person_name
from pipelines.standardise.codes import id_check_char

# Birthplaces of people who moved to our cities. 330103/330104 (下城区, 江干区) were abolished in 2021, but
# ID numbers issued there stay valid.
BIRTHPLACES_ELSEWHERE = tuple(
    "330103 330104 330302 330282 330681 330522 340104 360102 410105 420106 430104 370102 130104 "
    "350102 500103 610113 320106 440305 310115 411302 412702 342201 362201 513701".split()
)
MOBILE_PREFIXES = tuple(
    "130 131 132 133 135 136 137 138 139 150 151 152 153 155 156 157 158 159 166 173 175 176 177 "
    "180 181 182 183 185 186 187 188 189 191 195 198 199".split()
)
REFERENCE_YEAR = 2026


@dataclass
class Person:
    name: str
    id_number: str  # always valid here; feeds may write it with a typo
    mobile: str
    city: City
    mobile2: str | None = None  # a second number some people give instead
    _home: Site | None = None

    def home(self, rng: random.Random, district: District | None = None) -> Site:
        """Where the person lives: made on first use (in ``district`` if given), then fixed."""
        if self._home is None:
            self._home = new_site(rng, self.city, "home", district)
        return self._home


def id_number(rng: random.Random, division: str, birth: date, male: bool) -> str:
    """An 18-character resident ID number (GB 11643) with a correct check character."""
    sequence = rng.randrange(0, 50) * 2 + (1 if male else 0) + rng.randrange(0, 9) * 100
    body = f"{division}{birth:%Y%m%d}{sequence:03d}"
    return body + id_check_char(body)


def new_person(rng: random.Random, city: City, min_age: int = 20, max_age: int = 62) -> Person:
    if rng.random() < 0.62:
        birthplace = rng.choice(city.districts).code
    else:
        birthplace = rng.choice(BIRTHPLACES_ELSEWHERE)
    birth = date(REFERENCE_YEAR - rng.randint(min_age, max_age), 1, 1) + timedelta(days=rng.randrange(365))
    return Person(
        name=person_name(rng),
        id_number=id_number(rng, birthplace, birth, rng.random() < 0.55),
        mobile=mobile(rng),
        city=city,
        mobile2=mobile(rng) if rng.random() < 0.25 else None,
    )


def mobile(rng: random.Random) -> str:
    return rng.choice(MOBILE_PREFIXES) + f"{int(rng.random() * 10**8):08d}"


def landline(rng: random.Random, city: City) -> str:
    """Canonical ``area-local`` form, e.g. 0571-88231234."""
    return f"{city.area_code}-{rng.choice(city.local_prefixes)}{int(rng.random() * 10**7):07d}"


def written_id(rng: random.Random, number: str, typo: float) -> str:
    """An ID number as typed: a wrong check character now and then, sometimes a lower-case x."""
    if rng.random() < typo:
        wrong = rng.choice([c for c in "0123456789X" if c != number[-1]])
        return number[:-1] + wrong
    if number.endswith("X") and rng.random() < 0.3:
        return number[:-1] + "x"
    return number


def written_phone(rng: random.Random, phone: str, liberty: float) -> str:
    """A phone as written: canonical most of the time, else one of the ways people format it."""
    if rng.random() >= liberty:
        return phone
    if "-" not in phone:  # mobile
        return rng.choice(
            (
                f"+86 {phone}",
                f"+86{phone}",
                f"{phone[:3]}-{phone[3:7]}-{phone[7:]}",
                f"{phone[:3]} {phone[3:7]} {phone[7:]}",
                f"86-{phone}",
            )
        )
    area, local = phone.split("-")
    return rng.choice(
        (
            f"({area}){local}",
            f"（{area}）{local}",
            f"{area}{local}",
            f"{area} {local}",
            local,
            f"{area}-{local}转{rng.randint(800, 899)}",
        )
    )
