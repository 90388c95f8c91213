"""Comparison levels of two standardized records, and the blocking keys that find candidates.

Each comparison gives a level index; level 0 means "missing on either side" and carries no
evidence. Names are compared on Han characters first, then on pinyin (homophones typed with
the wrong character agree there), then with family and given name swapped, then by
Jaro-Winkler similarity. Pure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rapidfuzz.distance import JaroWinkler

from hs_empi.standardize import Standard

MISSING = 0


@dataclass(frozen=True)
class Comparison:
    name: str
    levels: tuple[str, ...]  # levels[0] is "missing"
    level_of: Callable[[Standard, Standard], int]
    tf_levels: frozenset[int] = frozenset()  # levels whose weight depends on the value's frequency


def _id(a: Standard, b: Standard) -> int:
    if not a.id_number or not b.id_number:
        return MISSING
    if a.id_number == b.id_number:
        return 1
    if _one_edit(a.id_number, b.id_number):
        return 2
    return 4 if a.id_valid and b.id_valid else 3


def _one_edit(x: str, y: str) -> bool:
    """One substituted character, or two adjacent ones transposed."""
    if len(x) != len(y):
        return False
    differ = [i for i, (p, q) in enumerate(zip(x, y, strict=True)) if p != q]
    if len(differ) == 1:
        return True
    return len(differ) == 2 and differ[1] == differ[0] + 1 and x[differ[0]] == y[differ[1]]


SIMILAR = 0.88


def _name(a: Standard, b: Standard) -> int:
    x, y = a.name, b.name
    if x is None or y is None or not x.full or not y.full:
        return MISSING
    if x.family_han and y.family_han and (x.family_han, x.given_han) == (y.family_han, y.given_han):
        return 1
    if (x.family, x.given) == (y.family, y.given):
        return 2
    if (x.family, x.given) == (y.given, y.family) or x.full == y.given + y.family:
        return 3
    if _similar_parts(x.family, x.given, y.family, y.given) or _similar_parts(
        x.family, x.given, y.given, y.family
    ):
        return 4
    if x.family == y.family:
        return 5 if _one_character_differs(x.given_han, y.given_han) else 6
    if x.given and x.given == y.given:
        return 7
    return 8


def _one_character_differs(given: str | None, other: str | None) -> bool:
    """A typo in a Han given name; relatives (twins) usually differ in every character."""
    if not given or not other or len(given) != len(other) or len(given) < 2:
        return False
    return sum(a != b for a, b in zip(given, other, strict=True)) == 1


def _similar_parts(family: str, given: str, other_family: str, other_given: str) -> bool:
    """Both parts alike, each on its own: relatives share the family name, and compared whole
    their names would look alike for that alone."""
    return (
        JaroWinkler.similarity(family, other_family) >= SIMILAR
        and JaroWinkler.similarity(given, other_given) >= SIMILAR
    )


def _birth_date(a: Standard, b: Standard) -> int:
    x, y = a.birth_date, b.birth_date
    if x is None or y is None:
        return MISSING
    if x == y:
        return 1
    if (x.year, x.month, x.day) == (y.year, y.day, y.month):
        return 2
    if (x.year == y.year) + (x.month == y.month) + (x.day == y.day) == 2:
        return 3
    return 4


def _sex(a: Standard, b: Standard) -> int:
    if not a.sex or not b.sex:
        return MISSING
    return 1 if a.sex == b.sex else 2


def _contact(a: Standard, b: Standard) -> int:
    """Phone and address together: members of one household share both, so counting them as
    two independent agreements would make relatives look like one person."""
    phone = bool(set(a.phones) & set(b.phones)) if a.phones and b.phones else None
    same_address = bool(a.address and a.address == b.address)
    district = (a.district == b.district) if a.district and b.district else None
    if phone:
        if same_address:
            return 1
        return 2 if district else 3
    if same_address:
        return 4
    if district:
        return 5
    if district is False and a.city and a.city == b.city:
        return 6
    if phone is None and district is None and not (a.address and b.address):
        return MISSING
    return 7


NAME_LEVELS = (
    "missing", "exact_han", "same_pinyin", "swapped", "similar", "one_character_differs",
    "same_family", "same_given", "different",
)  # fmt: skip
CONTACT_LEVELS = (
    "missing", "phone_and_address", "phone_and_district", "phone_only", "address_only",
    "same_district", "same_city", "different",
)  # fmt: skip

COMPARISONS: tuple[Comparison, ...] = (
    Comparison(
        "id_number", ("missing", "exact", "one_edit", "different", "different_both_valid"), _id
    ),
    Comparison(
        "name",
        NAME_LEVELS,
        _name,
        frozenset({1, 2}),
    ),
    Comparison(
        "birth_date",
        ("missing", "exact", "day_month_swapped", "one_part_differs", "different"),
        _birth_date,
    ),
    Comparison("sex", ("missing", "same", "different"), _sex),
    Comparison(
        "contact",
        CONTACT_LEVELS,
        _contact,
        frozenset({1, 2, 3}),
    ),
)


def vector(a: Standard, b: Standard) -> tuple[int, ...]:
    return tuple(c.level_of(a, b) for c in COMPARISONS)


def tf_value(comparison: str, a: Standard, b: Standard) -> str | None:
    """The agreeing value whose frequency adjusts the weight (the rarer, when several)."""
    if comparison == "name" and a.name is not None:
        return a.name.full
    if comparison == "contact":
        shared = sorted(set(a.phones) & set(b.phones))
        return shared[0] if shared else None
    return None


# --- blocking: a pair is compared when any rule gives both records a common key -----------


@dataclass(frozen=True)
class BlockingRule:
    name: str
    keys: Callable[[Standard], list[str]]
    covers: frozenset[str]  # comparisons a pair found by this rule agrees on by construction
    # Whether m is trained on this rule's pairs. Rules that gather households (a shared phone
    # or address) are not: EM would learn "same household" instead of "same person".
    trains: bool = True


def _id_keys(s: Standard) -> list[str]:
    return [s.id_number] if s.id_number else []


def _phone_keys(s: Standard) -> list[str]:
    return list(s.phones)


def _name_year_keys(s: Standard) -> list[str]:
    if s.name is None or not s.name.full or s.birth_date is None:
        return []
    year = s.birth_date.year
    return sorted({f"{s.name.full}|{year}", f"{s.name.given}{s.name.family}|{year}"})


def _family_birth_keys(s: Standard) -> list[str]:
    if s.name is None or not s.name.family or s.birth_date is None:
        return []
    return [f"{s.name.family}|{s.birth_date.isoformat()}"]


def _given_birth_keys(s: Standard) -> list[str]:
    if s.name is None or not s.name.given or s.birth_date is None:
        return []
    return [f"{s.name.given}|{s.birth_date.isoformat()}"]


def _birth_place_keys(s: Standard) -> list[str]:
    if s.birth_date is None or not s.district:
        return []
    return [f"{s.birth_date.isoformat()}|{s.sex or ''}|{s.district}"]


def _name_place_keys(s: Standard) -> list[str]:
    if s.name is None or not s.name.full or not s.district:
        return []
    return [f"{s.name.full}|{s.district}"]


def _id_part_keys(s: Standard) -> list[str]:
    """Parts of the number such that one mistyped character leaves a part intact: for a
    resident ID, region + birth date, birth date + sequence, region + sequence (each part is
    shared by few people, unlike a plain half); for other numbers, either half."""
    number = s.id_number
    if not number or len(number) < 6:
        return []
    if len(number) == 18:
        return [f"rd|{number[:14]}", f"ds|{number[6:]}", f"rs|{number[:6]}{number[14:]}"]
    middle = len(number) // 2
    return [f"h1|{number[:middle]}", f"h2|{number[middle:]}"]


def _address_keys(s: Standard) -> list[str]:
    return [s.address] if s.address else []


BLOCKING_RULES: tuple[BlockingRule, ...] = (
    BlockingRule("id", _id_keys, frozenset({"id_number"})),
    BlockingRule("phone", _phone_keys, frozenset({"contact"}), trains=False),
    BlockingRule("name_year", _name_year_keys, frozenset({"name"})),
    BlockingRule("family_birth", _family_birth_keys, frozenset({"birth_date"})),
    BlockingRule("given_birth", _given_birth_keys, frozenset({"birth_date"})),
    BlockingRule("birth_place", _birth_place_keys, frozenset({"birth_date", "sex", "contact"})),
    BlockingRule("name_place", _name_place_keys, frozenset({"name", "contact"}), trains=False),
    BlockingRule("id_part", _id_part_keys, frozenset(), trains=False),
    BlockingRule("address", _address_keys, frozenset({"contact"}), trains=False),
)


def blocking_keys(s: Standard) -> list[str]:
    return [f"{rule.name}:{key}" for rule in BLOCKING_RULES for key in rule.keys(s)]
