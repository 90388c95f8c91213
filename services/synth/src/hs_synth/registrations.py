"""What each institution records of a person, with the noise that makes matching hard.

Every registration keeps the list of noise kinds applied to it, for the truth files only.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from hs_synth import institutions as inst
from hs_synth.institutions import Institution
from hs_synth.people import Address, Person
from hs_synth.reference import DISTRICTS, GIVEN_CHARS, STREETS

HOMOPHONES: dict[str, list[str]] = {}
for _char, _pinyin in GIVEN_CHARS:
    HOMOPHONES.setdefault(_pinyin, []).append(_char)
PINYIN_OF = dict(GIVEN_CHARS)
SURNAME_HOMOPHONES = {
    "王": "汪",
    "汪": "王",
    "徐": "许",
    "许": "徐",
    "于": "余",
    "余": "于",
    "谢": "解",
}

CATCHMENT: dict[str, tuple[tuple[Institution, float], ...]] = {
    "Hangzhou": ((inst.HZ01, 0.5), (inst.HZC01, 0.35), (inst.F01, 0.15)),
    "Shanghai": ((inst.SH02, 0.6), (inst.SHC02, 0.4)),
    "Beijing": ((inst.BJ03, 1.0),),
}
HOSPITALS = (inst.HZ01, inst.SH02, inst.BJ03)


@dataclass(frozen=True)
class NoiseConfig:
    """Per-registration rates at scale 1.0 (the default noise level)."""

    scale: float = 1.0
    typo: float = 0.02
    homophone: float = 0.04
    surname_homophone: float = 0.01
    pinyin_only: float = 0.02
    swapped_names: float = 0.02
    dob_transposed: float = 0.02
    id_missing: float = 0.05
    id_mistyped: float = 0.01
    moved: float = 0.03
    phone_missing: float = 0.03
    reregistered: float = 0.02

    def rate(self, name: str) -> float:
        return min(1.0, float(getattr(self, name)) * self.scale)


@dataclass(frozen=True)
class Registration:
    institution: Institution
    local_id: str
    person: Person
    family: str | None
    given: str | None
    family_pinyin: str | None
    given_pinyin: str | None
    names_swapped: bool
    birth_date: date | None
    male: bool
    id_number: str | None
    phone: str | None
    address: Address
    registered_at: datetime
    noise: tuple[str, ...]
    prior_local_id: str | None = None  # set on a re-registration the hospital later merges (A40)


def registrations_for(
    people: list[Person], seed: int, noise: NoiseConfig, start: datetime, days: int
) -> list[Registration]:
    registrations: list[Registration] = []
    for person in people:
        rng = random.Random(f"registrations:{seed}:{person.person_id}")
        for institution in _institutions_of(rng, person):
            at = start + timedelta(seconds=rng.randrange(days * 86400))
            registration = _register(rng, person, institution, at, noise, ordinal=0)
            registrations.append(registration)
            if institution.channel is inst.Channel.HL7 and rng.random() < noise.rate(
                "reregistered"
            ):
                later = at + timedelta(days=rng.randint(1, 20))
                again = _register(rng, person, institution, later, noise, ordinal=1)
                registrations.append(
                    replace(
                        again,
                        noise=(*again.noise, "reregistered"),
                        prior_local_id=registration.local_id,
                    )
                )
    return registrations


def _institutions_of(rng: random.Random, person: Person) -> list[Institution]:
    catchment = CATCHMENT[person.address.district.city_pinyin]
    chosen = [_weighted(rng, catchment)]
    if rng.random() < 0.5:
        second = _weighted(rng, catchment)
        if second not in chosen:
            chosen.append(second)
    if rng.random() < 0.08:
        elsewhere = rng.choice(HOSPITALS)
        if elsewhere not in chosen:
            chosen.append(elsewhere)
    return chosen


def _weighted(rng: random.Random, options: tuple[tuple[Institution, float], ...]) -> Institution:
    target = rng.random() * sum(w for _, w in options)
    for institution, weight in options:
        target -= weight
        if target < 0:
            return institution
    return options[-1][0]


def _register(
    rng: random.Random,
    person: Person,
    institution: Institution,
    at: datetime,
    noise: NoiseConfig,
    ordinal: int,
) -> Registration:
    kinds: list[str] = []

    def happens(kind: str) -> bool:
        if rng.random() < noise.rate(kind):
            kinds.append(kind)
            return True
        return False

    family, given = person.family, person.given
    if family in SURNAME_HOMOPHONES and happens("surname_homophone"):
        family = SURNAME_HOMOPHONES[family]
    if happens("homophone"):
        given = _replace_char(rng, given, same_reading=True)
    elif happens("typo"):
        given = _replace_char(rng, given, same_reading=False)
    family_pinyin = person.family_pinyin
    given_pinyin = "".join(PINYIN_OF.get(c, "") for c in given) or person.given_pinyin
    han = institution.han_names and not happens("pinyin_only")
    pinyin = institution.pinyin_names or not han
    swapped = happens("swapped_names")

    birth: date | None = person.birth_date
    if happens("dob_transposed"):
        birth = _transposed(rng, person.birth_date)
    id_number = person.id_number
    if id_number is not None and happens("id_missing"):
        id_number = None
    elif id_number is not None and happens("id_mistyped"):
        position = rng.randrange(17)
        id_number = (
            id_number[:position]
            + str((int(id_number[position]) + rng.randint(1, 9)) % 10)
            + id_number[position + 1 :]
        )
    phone: str | None = person.phone
    if happens("phone_missing"):
        phone = None
    address = person.address
    if happens("moved"):
        district = rng.choice(
            [d for d in DISTRICTS if d.city_pinyin == address.district.city_pinyin]
        )
        street, street_pinyin = rng.choice(STREETS)
        address = Address(district, street, street_pinyin, rng.randint(1, 399))
    return Registration(
        institution=institution,
        local_id=local_id(institution, person, ordinal),
        person=person,
        family=family if han else None,
        given=given if han else None,
        family_pinyin=family_pinyin if pinyin else None,
        given_pinyin=given_pinyin if pinyin else None,
        names_swapped=swapped,
        birth_date=birth,
        male=person.male,
        id_number=id_number,
        phone=phone,
        address=address,
        registered_at=at,
        noise=tuple(kinds),
    )


def _replace_char(rng: random.Random, given: str, same_reading: bool) -> str:
    position = rng.randrange(len(given))
    original = given[position]
    reading = PINYIN_OF.get(original)
    if same_reading:
        candidates = [c for c in HOMOPHONES.get(reading or "", []) if c != original]
    else:
        candidates = [c for c, p in GIVEN_CHARS if p != reading]
    if not candidates:
        return given
    return given[:position] + rng.choice(candidates) + given[position + 1 :]


def _transposed(rng: random.Random, birth: date) -> date:
    """Two adjacent digits of YYYYMMDD swapped; where that is no date, day and month swapped."""
    digits = list(f"{birth:%Y%m%d}")
    for _ in range(6):
        i = rng.randrange(2, 7)
        if digits[i] != digits[i + 1]:
            swapped = digits.copy()
            swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
            text = "".join(swapped)
            try:
                return date(int(text[:4]), int(text[4:6]), int(text[6:]))
            except ValueError:
                continue
    if birth.day <= 12 and birth.day != birth.month:
        return date(birth.year, birth.day, birth.month)
    return birth + timedelta(days=1)


def local_id(institution: Institution, person: Person, ordinal: int) -> str:
    """Unique per (person, ordinal) at an institution and unrelated to the person number: the
    number is scrambled by a multiplication that is a bijection modulo 10^10."""
    serial = int(person.person_id[1:]) * 4 + ordinal + 1
    number = serial * 6_700_417 % 10**10
    if institution.channel is inst.Channel.FHIR:
        return f"{serial * 0x9E3779B97F4A7C15 % 2**64:016x}"
    if institution is inst.SH02 or institution is inst.SHC02:
        return f"{number:010d}"
    return f"{institution.local_id_prefix}{number:010d}"
