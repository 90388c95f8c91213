"""People: names with pinyin, ID numbers that agree with them, phones, addresses, households
sharing an address and a phone, twins, and people without an ID number."""

from __future__ import annotations

import random
from bisect import bisect_right
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import accumulate

from hs_synth.idcard import make_id_number
from hs_synth.reference import (
    BIRTH_REGIONS,
    DISTRICTS,
    GIVEN_CHARS,
    MOBILE_PREFIXES,
    STREETS,
    SURNAMES,
    District,
)

_SURNAME_CUMULATIVE = list(accumulate(w for _, _, w in SURNAMES))
_DISTRICT_CUMULATIVE = list(accumulate(d.weight for d in DISTRICTS))


@dataclass(frozen=True)
class Address:
    district: District
    street: str
    street_pinyin: str
    number: int

    @property
    def text(self) -> str:
        d = self.district
        city = "" if d.city == d.province else d.city
        return f"{d.province}{city}{d.district}{self.street}{self.number}号"

    @property
    def text_pinyin(self) -> str:
        return f"{self.number} {self.street_pinyin}, {self.district.city_pinyin}"


@dataclass(frozen=True)
class Person:
    person_id: str
    family: str
    given: str
    family_pinyin: str
    given_pinyin: str
    male: bool
    birth_date: date
    id_number: str | None
    phone: str
    address: Address
    household_id: str
    twin_of: str | None = None

    @property
    def name(self) -> str:
        return self.family + self.given

    def age_on(self, day: date) -> int:
        years = day.year - self.birth_date.year
        return years - ((day.month, day.day) < (self.birth_date.month, self.birth_date.day))


@dataclass(frozen=True)
class PeopleConfig:
    no_id_rate: float = 0.04  # people whose records never carry an ID number
    twin_rate: float = 0.01  # share of births that are twins
    shared_phone_rate: float = 0.35  # members who give the head of household's phone
    reference_day: date = date(2026, 1, 1)


def generate_people(
    count: int, seed: int, first_index: int = 0, config: PeopleConfig | None = None
) -> list[Person]:
    """`count` people, numbered from `first_index`. The same arguments give the same people."""
    config = config or PeopleConfig()
    rng = random.Random(f"people:{seed}:{first_index}")
    people: list[Person] = []
    index = first_index
    while len(people) < count:
        household = _household(
            rng, index, min(count - len(people), rng.choice((1, 1, 2, 2, 3, 3, 4, 5))), config
        )
        people.extend(household)
        index += len(household)
    return people


def _household(
    rng: random.Random, first_index: int, size: int, config: PeopleConfig
) -> list[Person]:
    district = DISTRICTS[_weighted_index(rng, _DISTRICT_CUMULATIVE)]
    street, street_pinyin = rng.choice(STREETS)
    address = Address(district, street, street_pinyin, rng.randint(1, 399))
    household_id = f"H{first_index:08d}"
    household_phone = _mobile(rng)
    head_age = rng.randint(25, 85)
    members: list[Person] = []
    for position in range(size):
        twin_of: Person | None = None
        if position == 0:
            family, family_pinyin = _surname(rng)
            birth = _birth(rng, config, head_age)
        elif position == 1:  # a spouse keeps their own surname
            family, family_pinyin = _surname(rng)
            birth = _birth(rng, config, max(18, head_age + rng.randint(-6, 6)))
        else:  # children take the head's surname
            family, family_pinyin = members[0].family, members[0].family_pinyin
            if position >= 3 and rng.random() < config.twin_rate * 10:
                twin_of = members[-1]
                birth = twin_of.birth_date
            else:
                birth = _birth(rng, config, max(0, head_age - rng.randint(20, 35)))
        male = rng.random() < 0.5
        given, given_pinyin = _given_name(rng)
        birth_region = district.code if rng.random() < 0.7 else rng.choice(BIRTH_REGIONS)
        sequence = rng.randrange(0, 999, 2) + (1 if male else 0)
        has_id = rng.random() >= config.no_id_rate
        shares_phone = position == 0 or rng.random() < config.shared_phone_rate
        members.append(
            Person(
                person_id=f"P{first_index + position:08d}",
                family=family,
                given=given,
                family_pinyin=family_pinyin,
                given_pinyin=given_pinyin,
                male=male,
                birth_date=birth,
                id_number=make_id_number(birth_region, birth, sequence) if has_id else None,
                phone=household_phone if shares_phone else _mobile(rng),
                address=address,
                household_id=household_id,
                twin_of=twin_of.person_id if twin_of else None,
            )
        )
    return members


def _birth(rng: random.Random, config: PeopleConfig, age: int) -> date:
    return config.reference_day - timedelta(days=age * 365 + rng.randint(1, 364))


def _weighted_index(rng: random.Random, cumulative: list[float]) -> int:
    return min(bisect_right(cumulative, rng.random() * cumulative[-1]), len(cumulative) - 1)


def _surname(rng: random.Random) -> tuple[str, str]:
    family, pinyin, _ = SURNAMES[_weighted_index(rng, _SURNAME_CUMULATIVE)]
    return family, pinyin


def _given_name(rng: random.Random) -> tuple[str, str]:
    chars = [rng.choice(GIVEN_CHARS) for _ in range(1 if rng.random() < 0.25 else 2)]
    return "".join(c for c, _ in chars), "".join(p for _, p in chars)


def _mobile(rng: random.Random) -> str:
    return rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"
