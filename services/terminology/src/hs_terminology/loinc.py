"""A table of common LOINC codes, and LOINC suggestions for local codes nobody mapped yet.

The table is data (``data/loinc.csv``, its sources in ``data/LOINC-SOURCES.md``): about two
hundred codes a Chinese hospital or clinic sends every day, each with its LOINC axes, the UCUM
unit LOINC gives as its example, the molar mass where the platform converts mass to moles, and
the words senders put in display texts for it (Chinese names used by LIS and the usual English
abbreviations).

``suggest`` ranks the table for a local code from its display text and its unit: the display
decides which analyte it is, the unit decides between the mass and the molar (or the count and
the percentage) variant and rules out codes it cannot express. Units are read with
``hs_terminology.ucum`` when that module is there; without it a unit is treated as unknown.
"""

from __future__ import annotations

import csv
import importlib
import io
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import ModuleType
from typing import Protocol, cast

LOINC_SYSTEM = "http://loinc.org"

_TABLE = "loinc.csv"
_LOINC_CODE = re.compile(r"^(\d{1,7})-(\d)$")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"[a-z0-9%#+]+")
_STOPWORDS = frozenset({"in", "of", "by", "or", "and", "the", "a", "to", "at", "on", "for"})

_TEXT_WEIGHT = 0.7
_UNIT_FITS = 0.3
_UNIT_CONVERTS = 0.15
_UNIT_CANNOT_EXPRESS = -0.5
_EXACT = 1.0
_CONTAINED_BASE = 0.4
_CONTAINED_SPAN = 0.5
_NAME_WORDS = 0.5

# What a property's values are measured in, as a UCUM unit of that dimension, for the other
# side of a mass<->moles conversion.
_MOLAR_COUNTERPART = {"MCnc": "mol/L", "SCnc": "g/L"}
_PROPERTY_NAMES = {
    "MCnc": "mass concentration",
    "SCnc": "substance concentration",
    "NCnc": "number concentration",
    "ACnc": "arbitrary concentration",
    "CCnc": "catalytic concentration",
    "NFr": "number fraction",
    "MFr": "mass fraction",
    "VFr": "volume fraction",
    "NRat": "number rate",
    "VRat": "volume rate",
    "ArVRat": "volume rate per area",
    "Pres": "pressure",
    "PPres": "partial pressure",
    "Temp": "temperature",
    "Len": "length",
    "Mass": "mass",
    "Time": "time",
    "EntVol": "entitic volume",
    "EntMass": "entitic mass",
}


@dataclass(frozen=True)
class LoincCode:
    """One row of the table: a LOINC code with its axes, unit and sender synonyms."""

    code: str
    long_common_name: str
    component: str
    property: str
    time: str
    system: str
    scale: str
    loinc_class: str
    vital_sign: bool
    ucum: str | None
    molar_mass: float | None
    synonyms: tuple[str, ...]


@dataclass(frozen=True)
class Candidate:
    """A code suggested for a local code, how well it fits (0..1) and why."""

    loinc: LoincCode
    score: float
    reasons: tuple[str, ...]


class _UnitAlgebra(Protocol):
    def is_valid(self, code: str) -> bool: ...

    def commensurable(self, a: str, b: str) -> bool: ...

    def from_sender(self, text: str) -> str | None: ...


_ucum_module: ModuleType | None = None


def _ucum() -> _UnitAlgebra | None:
    """``hs_terminology.ucum`` once it is importable; looked for again until it is."""
    global _ucum_module  # noqa: PLW0603  # the module is looked up once it exists
    if _ucum_module is None:
        try:
            _ucum_module = importlib.import_module("hs_terminology.ucum")
        except ImportError:
            return None
    return cast(_UnitAlgebra, _ucum_module)


# --- the table -------------------------------------------------------------------------------


def _optional_float(text: str) -> float | None:
    return float(text) if text.strip() else None


def _row_to_code(row: dict[str, str]) -> LoincCode:
    return LoincCode(
        code=row["loinc"],
        long_common_name=row["long_common_name"],
        component=row["component"],
        property=row["property"],
        time=row["time"],
        system=row["system"],
        scale=row["scale"],
        loinc_class=row["class"],
        vital_sign=row["category"] == "vital-signs",
        ucum=row["ucum"] or None,
        molar_mass=_optional_float(row["molar_mass"]),
        synonyms=tuple(s for s in row["synonyms"].split("|") if s),
    )


@cache
def table() -> dict[str, LoincCode]:
    """Every code of the table by its LOINC number, read once from the package data."""
    text = resources.files("hs_terminology").joinpath("data", _TABLE).read_text(encoding="utf-8")
    rows = csv.DictReader(io.StringIO(text))
    return {row["loinc"]: _row_to_code(row) for row in rows}


def lookup(code: str) -> LoincCode | None:
    """The table's row for a LOINC code, or None when the table does not hold it."""
    return table().get(code.strip())


# --- the check digit -------------------------------------------------------------------------


def mod10_check_digit(number: str) -> int:
    """LOINC's mod-10 check digit of the part before the hyphen (LOINC Users' Guide).

    From the rightmost digit leftwards, every other digit (starting with the rightmost) is
    doubled; the digits of those products and the undoubled digits are summed; the check
    digit brings the sum to the next multiple of ten.
    """
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = int(char)
        if position % 2 == 0:
            doubled = digit * 2
            total += doubled // 10 + doubled % 10
        else:
            total += digit
    return (10 - total % 10) % 10


def is_loinc_code(code: str) -> bool:
    """Whether a text is a LOINC code in form: digits, a hyphen and the right check digit."""
    match = _LOINC_CODE.match(code.strip())
    if match is None:
        return False
    return mod10_check_digit(match.group(1)) == int(match.group(2))


# --- matching display texts ------------------------------------------------------------------


def _normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold().strip()


def _compact(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _words(text: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(text))


def _contains_run(words: tuple[str, ...], run: tuple[str, ...]) -> bool:
    width = len(run)
    return any(words[i : i + width] == run for i in range(len(words) - width + 1))


@dataclass(frozen=True)
class _Display:
    compact: str
    words: tuple[str, ...]


def _display(text: str) -> _Display:
    normal = _normalise(text)
    return _Display(compact=_compact(normal), words=_words(normal))


def _synonym_score(display: _Display, synonym: str) -> float:
    normal = _normalise(synonym)
    if _CJK.search(normal):
        compact = _compact(normal)
        if compact == display.compact:
            return _EXACT
        if compact and compact in display.compact:
            return _CONTAINED_BASE + _CONTAINED_SPAN * len(compact) / len(display.compact)
        return 0.0
    run = _words(normal)
    if not run or not display.words:
        return 0.0
    if run == display.words:
        return _EXACT
    if _contains_run(display.words, run):
        return _CONTAINED_BASE + _CONTAINED_SPAN * len(run) / len(display.words)
    return 0.0


def _name_score(display: _Display, code: LoincCode) -> tuple[float, tuple[str, ...]]:
    asked = [w for w in display.words if w not in _STOPWORDS]
    if not asked:
        return 0.0, ()
    named = set(_words(_normalise(f"{code.long_common_name} {code.component}")))
    found = tuple(w for w in asked if w in named)
    return _NAME_WORDS * len(found) / len(asked), found


def _text_evidence(display: _Display, code: LoincCode) -> tuple[float, str | None]:
    best, reason = 0.0, None
    for synonym in code.synonyms:
        score = _synonym_score(display, synonym)
        if score > best:
            best, reason = score, f"display matches synonym '{synonym}'"
    name_score, found = _name_score(display, code)
    if name_score > best:
        best, reason = name_score, f"display words found in the long name: {', '.join(found)}"
    return best, reason


# --- matching units --------------------------------------------------------------------------


def _as_ucum(algebra: _UnitAlgebra, unit: str) -> str | None:
    text = unit.strip()
    if not text:
        return None
    try:
        if algebra.is_valid(text):
            return text
        return algebra.from_sender(text)
    except ValueError:
        return None


def _commensurable(algebra: _UnitAlgebra, a: str, b: str) -> bool:
    try:
        return algebra.commensurable(a, b)
    except ValueError:
        return False


def _property_name(code: LoincCode) -> str:
    name = _PROPERTY_NAMES.get(code.property)
    return f"{code.property} ({name})" if name else code.property


def _unit_evidence(unit: str | None, code: LoincCode) -> tuple[float, str | None]:
    """How a sender's unit bears on a code: fits, converts with the molar mass, or cannot."""
    algebra = _ucum()
    if unit is None or code.ucum is None or algebra is None:
        return 0.0, None
    sent = _as_ucum(algebra, unit)
    if sent is None:
        return 0.0, f"unit {unit} not understood"
    if _commensurable(algebra, sent, code.ucum):
        return _UNIT_FITS, f"unit {unit} fits property {_property_name(code)}"
    counterpart = _MOLAR_COUNTERPART.get(code.property)
    if code.molar_mass is not None and counterpart and _commensurable(algebra, sent, counterpart):
        molar_mass = f"molar mass {code.molar_mass} g/mol"
        return _UNIT_CONVERTS, f"unit {unit} converts to {_property_name(code)} with {molar_mass}"
    return _UNIT_CANNOT_EXPRESS, f"unit {unit} cannot express property {_property_name(code)}"


# --- suggestions -----------------------------------------------------------------------------


def _candidate(display: _Display | None, unit: str | None, code: LoincCode) -> Candidate | None:
    reasons: list[str] = []
    text_score = 0.0
    if display is not None:
        text_score, text_reason = _text_evidence(display, code)
        if text_reason is None:
            return None
        reasons.append(text_reason)
    unit_score, unit_reason = _unit_evidence(unit, code)
    if unit_reason is not None:
        reasons.append(unit_reason)
    if display is None and unit_score <= 0:
        return None
    score = min(1.0, max(0.0, _TEXT_WEIGHT * text_score + unit_score))
    return Candidate(loinc=code, score=round(score, 4), reasons=tuple(reasons))


def suggest(display: str | None, unit: str | None, limit: int = 5) -> list[Candidate]:
    """The table's codes that best fit a local code's display text and unit, best first.

    A display has to match something (a synonym, or words of the long common name) for a code
    to be suggested; without a display, codes whose unit fits are suggested with low scores.
    Ordering is deterministic: score, then code.
    """
    asked = _display(display) if display and display.strip() else None
    if asked is None and not (unit and unit.strip()):
        return []
    found = [c for c in (_candidate(asked, unit, code) for code in table().values()) if c]
    found.sort(key=lambda c: (-c.score, c.loinc.code))
    return found[: max(limit, 0)]
