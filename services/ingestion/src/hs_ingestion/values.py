"""Result values as senders write them, read into one shape: a number with its comparator,
a range or ratio, a code, or text. Pure.

HL7 v2 NM (`7.2`, and the common non-conformant `<7`, `>=100`), SN (HL7 v2 §2.A.74:
comparator ^ number ^ separator/suffix ^ number), ST/TX with a number or a blood pressure,
and the HL7 null `""` (v2 §2.5.3: the value is present and null). What cannot be read as its
type is a `ValueError`, so the one item goes to the dead letters, not the message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

HL7_NULL = '""'
COMPARATORS = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "≤": "<=", "≥": ">=", "=": None}
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_LIMIT = re.compile(rf"^\s*(<=|>=|≤|≥|<|>|=)?\s*({_NUMBER})\s*$")
_RANGE = re.compile(rf"^\s*({_NUMBER})\s*(?:-|\u2013|\u2014|~|\uff5e|_|to)\s*({_NUMBER})\s*$")
_BLOOD_PRESSURE = re.compile(r"^\s*(\d{2,3})\s*/\s*(\d{2,3})\s*$")


@dataclass(frozen=True)
class Value:
    """One result value; `text` is what was sent (first repetition), `others` the rest."""

    text: str
    number: float | None = None
    comparator: str | None = None
    upper: float | None = None  # a range's or ratio's second number
    coding: dict[str, Any] | None = None
    free_text: str | None = None  # the value is text (ST, TX, FT, or an SN suffix like 2+)
    others: tuple[str, ...] = field(default=())

    @property
    def is_null(self) -> bool:
        return self.number is None and self.coding is None and self.free_text is None


def numeric(text: str) -> Value:
    """An NM value: a number, optionally behind a comparator; '' and '""' are no value."""
    stripped = text.strip()
    if stripped in ("", HL7_NULL):
        return Value(text)
    match = _LIMIT.match(stripped)
    if match is None:
        raise ValueError("value of type NM is not a number (optionally after <, <=, > or >=)")
    return Value(text, float(match.group(2)), COMPARATORS[match.group(1) or "="])


def structured_numeric(components: list[str], text: str) -> Value:
    """An SN value: [comparator] ^ number [^ separator ^ number]; separators '-' (range),
    ':' and '/' (ratio), '+' (categorical, as in 2+)."""
    comparator, first, separator, second = ([*components, "", "", "", ""])[:4]
    if not first.strip():
        raise ValueError("value of type SN has no number in its second component")
    try:
        number = float(first)
        upper = float(second) if second.strip() else None
    except ValueError:
        raise ValueError("value of type SN holds something that is not a number") from None
    if comparator and comparator not in COMPARATORS:
        raise ValueError("value of type SN has a comparator other than <, <=, >, >= or =")
    suffix = separator if separator and upper is None else None
    return Value(
        text,
        number,
        COMPARATORS.get(comparator) if comparator else None,
        upper,
        free_text=f"{first}{suffix}" if suffix else None,
    )


def textual(text: str, keep_text: bool = True) -> Value:
    """ST, TX, FT and values of no declared type: the text (unless `keep_text` is False and
    it is a number), with the number read when it is one (plain, or a limit such as '<5')."""
    if text.strip() in ("", HL7_NULL):
        return Value(text)
    match = _LIMIT.match(text)
    if match is None:
        return Value(text, free_text=text)
    number, comparator = float(match.group(2)), COMPARATORS[match.group(1) or "="]
    return Value(text, number, comparator, free_text=text if keep_text else None)


# How senders name a blood pressure sent as one value (the code or its display).
BLOOD_PRESSURE_NAMES = frozenset({"BP", "NIBP", "ABP", "血压", "BLOOD PRESSURE"})


def blood_pressure(text: str) -> tuple[float, float] | None:
    """'140/90' as (systolic, diastolic), or None when the text is not one."""
    match = _BLOOD_PRESSURE.match(text)
    if match is None:
        return None
    systolic, diastolic = float(match.group(1)), float(match.group(2))
    return (systolic, diastolic) if systolic > diastolic else None


def reference_range(text: str) -> tuple[float | None, float | None] | None:
    """'3.9-6.1', '3.90 - 6.10', '3.90\uff5e6.10' (a full-width tilde), '-2-2', '<5', '<=5',
    '≥60', '70_105' (the HL7 normative example) as (low, high); None when the text is no range
    we can read (the text is kept by the caller)."""
    cleaned = text.strip()
    if not cleaned:
        return None
    match = _RANGE.match(cleaned)
    if match is not None:
        return float(match.group(1)), float(match.group(2))
    match = _LIMIT.match(cleaned)
    if match is None or match.group(1) in (None, "="):
        return None
    limit = float(match.group(2))
    return (None, limit) if COMPARATORS[match.group(1)] in ("<", "<=") else (limit, None)
