"""Resident identity card numbers (GB 11643-1999): 6-digit region, YYYYMMDD birth date,
3-digit sequence (odd for men, even for women), ISO 7064 MOD 11-2 check character."""

from __future__ import annotations

from datetime import date

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARACTERS = "10X98765432"


def check_character(first17: str) -> str:
    return CHECK_CHARACTERS[sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True)) % 11]


def make_id_number(region: str, birth: date, sequence: int) -> str:
    """`sequence` is 0-999; its parity must already match the sex (odd male, even female)."""
    first17 = f"{region}{birth:%Y%m%d}{sequence:03d}"
    return first17 + check_character(first17)


def is_valid(number: str) -> bool:
    if len(number) != 18 or not number[:17].isdigit():
        return False
    if check_character(number[:17]) != number[17].upper():
        return False
    try:
        date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    return True


def birth_date_of(number: str) -> date:
    return date(int(number[6:10]), int(number[10:12]), int(number[12:14]))


def is_male(number: str) -> bool:
    return int(number[16]) % 2 == 1
