"""Identity fields put into comparable form. Pure.

- Names: NFKC (full-width to half-width), spaces and middle dots removed inside Han names,
  case folded; Han names read into pinyin with the surname's own reading (单 is Shan as a
  surname, not Dan) and compound surnames kept whole; both orders of family and given name
  are compared later, for romanised sources that put the given name first.
- Resident ID numbers (GB 11643): 15-digit numbers upgraded, the MOD 11-2 check digit and the
  embedded birth date verified; birth date and sex read from the number are cross-checked
  with the record's. Region codes are historical and only compared softly.
- Phones to E.164 (`phonenumbers`, region CN); addresses NFKC without spaces; division codes
  kept to their 6 digits.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import date
from functools import lru_cache

import phonenumbers
from pypinyin import Style, lazy_pinyin

# Surnames whose reading differs from the character's everyday reading.
SURNAME_READINGS = {
    "单": "shan", "曾": "zeng", "解": "xie", "仇": "qiu", "区": "ou", "查": "zha", "覃": "qin",
    "朴": "piao", "盖": "ge", "缪": "miao", "翟": "zhai", "乐": "yue", "员": "yun", "冼": "xian",
    "洗": "xian", "万": "wan", "尉": "yu", "召": "shao", "种": "chong", "秘": "bi", "繁": "po",
    "句": "gou", "能": "nai", "宓": "mi", "隗": "wei", "沈": "shen", "任": "ren", "纪": "ji",
}  # fmt: skip
COMPOUND_SURNAMES = {
    "欧阳": "ouyang", "司马": "sima", "诸葛": "zhuge", "上官": "shangguan", "尉迟": "yuchi",
    "长孙": "zhangsun", "万俟": "moqi", "皇甫": "huangfu", "司徒": "situ", "东方": "dongfang",
    "夏侯": "xiahou", "公孙": "gongsun", "慕容": "murong", "令狐": "linghu", "宇文": "yuwen",
    "端木": "duanmu", "西门": "ximen", "南宫": "nangong", "独孤": "dugu", "轩辕": "xuanyuan",
    "呼延": "huyan", "澹台": "tantai", "申屠": "shentu", "钟离": "zhongli", "司空": "sikong",
}  # fmt: skip

HAN = re.compile(r"[\u3400-\u9fff]")
NOT_LETTER = re.compile(r"[^a-z]")
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"


@dataclass(frozen=True, slots=True)
class Name:
    family_han: str | None
    given_han: str | None
    family: str  # pinyin (or the romanised name as sent), lower case letters only
    given: str

    @property
    def full(self) -> str:
        return self.family + self.given


@dataclass(frozen=True, slots=True)
class ResidentId:
    number: str  # 18 characters, upper-case X
    birth_date: date | None
    sex: str | None  # "M" or "F"
    valid: bool  # check digit and embedded birth date both correct


@dataclass(frozen=True, slots=True)
class Standard:
    """One source record in the form the matcher compares."""

    record_id: str  # "<institution>:<local patient id>"
    institution: str
    name: Name | None
    id_number: str | None  # a resident ID (possibly invalid), or another document's number
    id_valid: bool
    birth_date: date | None
    sex: str | None
    phones: tuple[str, ...]
    address: str | None
    district: str | None  # 6-digit GB/T 2260 code (or a postcode for other data)
    city: str | None  # 4-digit prefix of the district (or a locality name)
    flags: tuple[str, ...] = field(default=())  # data-quality findings, e.g. id_birth_date_mismatch

    @property
    def has_identifier(self) -> bool:
        """Enough to be found again: an ID, a phone, or a name with a birth date."""
        return bool(self.id_number or self.phones or (self.name and self.birth_date))


def fold(text: str) -> str:
    """NFKC (full-width letters and digits to half-width), trimmed, case-folded."""
    return unicodedata.normalize("NFKC", text).strip().casefold()


def han_name(text: str) -> str:
    return re.sub(r"[\s·•・.]", "", unicodedata.normalize("NFKC", text))


def split_han(full: str) -> tuple[str, str]:
    """(family, given) of a Han name written as one string."""
    if full[:2] in COMPOUND_SURNAMES:
        return full[:2], full[2:]
    return full[:1], full[1:]


@lru_cache(maxsize=65536)
def surname_pinyin(family: str) -> str:
    if family in COMPOUND_SURNAMES:
        return COMPOUND_SURNAMES[family]
    return "".join(SURNAME_READINGS.get(c) or _pinyin(c) for c in family)


@lru_cache(maxsize=262144)
def given_pinyin(given: str) -> str:
    return _pinyin(given)


def _pinyin(text: str) -> str:
    return NOT_LETTER.sub("", "".join(lazy_pinyin(text, style=Style.NORMAL, v_to_u=False)).lower())


def latin(text: str) -> str:
    """A romanised name part: letters only (hyphens, spaces, apostrophes dropped), ü as v."""
    folded = fold(text).replace("ü", "v")
    decomposed = unicodedata.normalize("NFKD", folded)
    return NOT_LETTER.sub("", "".join(c for c in decomposed if not unicodedata.combining(c)))


def standard_name(family: str | None, given: str | None, text: str | None) -> Name | None:
    """A name from its parts (or its full text, Han written family first)."""
    family, given = (family or "").strip(), (given or "").strip()
    if not family and not given and text:
        if HAN.search(text):
            family, given = split_han(han_name(text))
        else:
            parts = fold(text).split()
            family, given = (parts[0], "".join(parts[1:])) if parts else ("", "")
    if not family and not given:
        return None
    if HAN.search(family + given):
        family_han, given_han = han_name(family), han_name(given)
        if not given_han and len(family_han) > 1:
            family_han, given_han = split_han(family_han)
        return Name(family_han, given_han, surname_pinyin(family_han), given_pinyin(given_han))
    return Name(None, None, latin(family), latin(given))


def resident_id(value: str) -> ResidentId | None:
    """A GB 11643 number read and checked; None when it is not shaped like one."""
    number = fold(value).upper().replace(" ", "")
    if len(number) == 15 and number.isdigit():
        number = upgrade_15(number)
    if len(number) != 18 or not number[:17].isdigit() or number[17] not in "0123456789X":
        return None
    birth = _date(number[6:14])
    sex = "M" if int(number[16]) % 2 else "F"
    valid = check_digit(number[:17]) == number[17] and birth is not None
    return ResidentId(number, birth, sex, valid)


def check_digit(first17: str) -> str:
    return ID_CHECK[sum(int(d) * w for d, w in zip(first17, ID_WEIGHTS, strict=True)) % 11]


def upgrade_15(number: str) -> str:
    """A first-generation 15-digit number as its 18-digit form (century 19, check digit)."""
    first17 = number[:6] + "19" + number[6:]
    return first17 + check_digit(first17)


def _date(digits: str) -> date | None:
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return None


def e164(value: str) -> str | None:
    try:
        parsed = phonenumbers.parse(value, "CN")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def address_text(value: str | None) -> str | None:
    if not value:
        return None
    text = re.sub(r"\s+", "", unicodedata.normalize("NFKC", value)).casefold()
    return text or None


@dataclass(frozen=True)
class IdentityFields:
    """What the matcher reads from an identity event (or a benchmark row)."""

    institution: str
    local_id: str
    family: str | None = None
    given: str | None = None
    name_text: str | None = None
    resident_id: str | None = None
    other_id: str | None = None
    birth_date: date | None = None
    sex: str | None = None  # "M", "F" or None
    phones: tuple[str, ...] = ()
    address: str | None = None
    district: str | None = None
    city: str | None = None


def standardize(fields: IdentityFields) -> Standard:
    flags: list[str] = []
    name = standard_name(fields.family, fields.given, fields.name_text)
    id_number, id_valid = fields.other_id or None, False
    birth_date, sex = fields.birth_date, fields.sex
    if fields.resident_id:
        parsed = resident_id(fields.resident_id)
        if parsed is None:
            flags.append("id_malformed")
        else:
            id_number, id_valid = parsed.number, parsed.valid
            if not parsed.valid:
                flags.append("id_check_failed")
            else:
                if birth_date is not None and parsed.birth_date != birth_date:
                    flags.append("id_birth_date_mismatch")
                if sex is not None and parsed.sex != sex:
                    flags.append("id_sex_mismatch")
                birth_date = birth_date or parsed.birth_date
                sex = sex or parsed.sex
    phones = tuple(sorted({p for p in (e164(raw) for raw in fields.phones) if p}))
    if len(phones) < len(fields.phones):
        flags.append("phone_unreadable")
    district = fields.district.strip() if fields.district else None
    city = fields.city or (district[:4] if district and district.isdigit() else None)
    standard = Standard(
        record_id=f"{fields.institution}:{fields.local_id}",
        institution=fields.institution,
        name=name,
        id_number=id_number,
        id_valid=id_valid,
        birth_date=birth_date,
        sex=sex,
        phones=phones,
        address=address_text(fields.address),
        district=district or None,
        city=city,
        flags=tuple(flags),
    )
    if not standard.has_identifier:
        return replace(standard, flags=(*flags, "no_usable_identifier"))
    return standard
