"""Values into the UCUM unit their code is reported in, by the official UCUM definitions
(hs_terminology.ucum), always keeping the value and unit as sent. A unit nobody can read is
UNKNOWN_UNIT and one that cannot express the code's quantity INCOMPATIBLE: the value is then
left unconverted (null), never taken as if it were in the canonical unit."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from hs_terminology import ucum

Conversion = Callable[[float], float]

# Conversions UCUM cannot know because the two units measure different quantities under one
# name: HbA1c in IFCC mmol/mol to NGSP % (master equation, NGSP = 0.09148 x IFCC + 2.152).
BY_CODE: dict[tuple[str, str], Conversion] = {
    ("4548-4", "mmol/mol"): lambda v: 0.09148 * v + 2.152,
    ("17856-6", "mmol/mol"): lambda v: 0.09148 * v + 2.152,
}


@dataclass(frozen=True)
class Normalized:
    value: float | None
    unit: str | None
    status: str  # hs.clinical.UnitStatus symbol
    convert: Conversion | None  # applied to reference range limits too


@lru_cache(maxsize=4096)
def to_ucum(unit: str | None) -> str | None:
    """The UCUM code of a unit as a sender wrote it, or None when it is none we can read."""
    if unit is None or not unit.strip():
        return None
    found: str | None = ucum.from_sender(unit.strip())
    return found


def normalize(
    value: float,
    unit_as_sent: str | None,
    canonical: str | None,
    molar_mass: float | None = None,
    code: str | None = None,
) -> Normalized:
    """`canonical`: the code's UCUM unit; '' for a code reported without a unit (an ordinal
    score), None when the code's unit is not known (the value stays in the sender's unit)."""
    if canonical == "":
        return Normalized(value, None, "NO_UNIT", None)
    if unit_as_sent is None or not unit_as_sent.strip():
        return Normalized(value, None, "NO_UNIT", None)
    sent = to_ucum(unit_as_sent)
    if sent is None:
        return Normalized(None, None, "UNKNOWN_UNIT", None)
    if canonical is None or sent == canonical:
        return Normalized(
            value, sent, "UCUM_AS_SENT" if sent == unit_as_sent.strip() else "RENAMED", None
        )
    convert = conversion(sent, canonical, molar_mass, code)
    if convert is None:
        return Normalized(None, None, "INCOMPATIBLE", None)
    if convert is _SAME:  # another spelling of the same unit (mmol/l, 10^9/L)
        return Normalized(value, canonical, "RENAMED", None)
    return Normalized(round(convert(value), 6), canonical, "CONVERTED", convert)


@lru_cache(maxsize=4096)
def conversion(
    source: str, target: str, molar_mass: float | None = None, code: str | None = None
) -> Conversion | None:
    """The function from `source` to `target` units, or None when they are incommensurable."""
    special = BY_CODE.get((code or "", source))
    if special is not None:
        return special
    try:
        ucum.convert(1.0, source, target, molar_mass)
    except ucum.UcumError:
        return None
    if ucum.parse(source).special or ucum.parse(target).special:
        return lambda v: ucum.convert(v, source, target, molar_mass)
    factor = ucum.convert(1.0, source, target, molar_mass)
    if abs(factor - 1.0) < 1e-12:
        return _SAME
    return lambda v: v * factor


def _SAME(value: float) -> float:  # noqa: N802  (a sentinel conversion, compared by identity)
    return value
