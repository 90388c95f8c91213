"""UCUM (Unified Code for Units of Measure) parsing and conversion, driven by the official
definitions file ``data/ucum-essence.xml`` (see ``data/SOURCES.md``).

A unit expression (spec §2-§4) is parsed into a :class:`Unit`: a magnitude times a product of
powers of the seven base units m, s, g, rad, K, C, cd. Defined units are resolved through their
definitions in the XML; special (non-ratio) units such as ``Cel``, ``[degF]`` or ``[pH]`` keep
the name of their conversion function; arbitrary units such as ``[IU]`` are commensurable only
with expressions of the same arbitrary units.
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import cache, lru_cache
from importlib import resources

BASE_UNITS = ("m", "s", "g", "rad", "K", "C", "cd")
_NS = "{http://unitsofmeasure.org/ucum-essence}"
_NO_DIMENSION = (0,) * len(BASE_UNITS)
_MASS = tuple(1 if base == "g" else 0 for base in BASE_UNITS)


class UcumError(ValueError):
    """A unit expression that is not valid UCUM, or a conversion UCUM cannot make."""


class IncompatibleUnits(UcumError):
    """Two valid units that do not measure the same kind of quantity."""


@dataclass(frozen=True)
class Unit:
    """A parsed UCUM expression.

    For a special unit, ``magnitude`` and ``dimension`` are those of the unit its function
    is defined on (e.g. K for Cel, 5/9 K for [degF]) and ``special_scale`` is the prefix
    factor applied before the function (0.1 for dB).
    """

    code: str
    magnitude: float
    dimension: tuple[int, ...]
    special: str | None
    arbitrary: tuple[tuple[str, int], ...] = ()
    mole_exponent: int = 0
    equivalent_exponent: int = 0
    special_scale: float = 1.0


_ONE = Unit("1", 1.0, _NO_DIMENSION, None)

# A special unit's function maps a value in the special unit to a multiple of the unit it is
# defined on (``to_ratio``) and back (``from_ratio``), spec §4.3.
_Function = tuple[Callable[[float], float], Callable[[float], float]]


def _log_base(base: float) -> Callable[[float], float]:
    return lambda ratio: math.log(ratio) / math.log(base)


SPECIAL_FUNCTIONS: Mapping[str, _Function] = {
    "Cel": (lambda v: v + 273.15, lambda r: r - 273.15),
    # degF is defined on 5/9 K: 0 degF is 459.67 of those above absolute zero.
    "degF": (lambda v: v + 459.67, lambda r: r - 459.67),
    # degRe is defined on 5/4 K: 0 degRe (the freezing point) is 273.15 x 4/5 of those.
    "degRe": (lambda v: v + 218.52, lambda r: r - 218.52),
    "pH": (lambda v: 10.0**-v, lambda r: -math.log10(r)),
    "ln": (math.exp, math.log),
    "lg": (lambda v: 10.0**v, math.log10),
    "lgTimes2": (lambda v: 10.0 ** (v / 2), lambda r: 2 * math.log10(r)),
    "ld": (lambda v: 2.0**v, math.log2),
    "sqrt": (lambda v: v * v, math.sqrt),
    "tanTimes100": (lambda v: math.atan(v / 100), lambda r: 100 * math.tan(r)),
    "100tan": (
        lambda v: math.degrees(math.atan(v / 100)),
        lambda r: 100 * math.tan(math.radians(r)),
    ),
    "hpX": (lambda v: 10.0**-v, lambda r: -math.log10(r)),
    "hpC": (lambda v: 100.0**-v, lambda r: -_log_base(100)(r)),
    "hpM": (lambda v: 1000.0**-v, lambda r: -_log_base(1000)(r)),
    "hpQ": (lambda v: 50000.0**-v, lambda r: -_log_base(50000)(r)),
}


# --- the definitions file ------------------------------------------------------------------


@dataclass(frozen=True)
class _AtomDefinition:
    code: str
    ci_code: str
    is_metric: bool
    is_special: bool
    is_arbitrary: bool
    unit: str  # UCUM expression of the definition (the function's unit for special units)
    value: float
    function: str | None


@dataclass(frozen=True)
class _Essence:
    version: str
    revision_date: str
    prefixes: Mapping[str, float]
    ci_prefixes: Mapping[str, str]  # case-insensitive code -> case-sensitive code
    base_units: tuple[str, ...]
    atoms: Mapping[str, _AtomDefinition]
    ci_atoms: Mapping[str, str]


def _definition_of(element: ET.Element) -> _AtomDefinition:
    value = element.find(f"{_NS}value")
    if value is None:
        raise UcumError(f"unit {element.get('Code')!r} has no value in ucum-essence.xml")
    function = value.find(f"{_NS}function")
    carrier = function if function is not None else value
    unit, magnitude = carrier.get("Unit", "1"), carrier.get("value", "1")
    name = function.get("name") if function is not None else None
    return _AtomDefinition(
        code=element.get("Code", ""),
        ci_code=element.get("CODE", ""),
        is_metric=element.get("isMetric") == "yes",
        is_special=element.get("isSpecial") == "yes",
        is_arbitrary=element.get("isArbitrary") == "yes",
        unit=unit,
        value=float(magnitude),
        function=name,
    )


@lru_cache(maxsize=1)
def _essence() -> _Essence:
    """The prefixes and units of ucum-essence.xml, read once."""
    data = resources.files("hs_terminology").joinpath("data", "ucum-essence.xml").read_bytes()
    root = ET.fromstring(data)  # noqa: S314 - our own vendored file, not untrusted input
    prefixes = {p.get("Code", ""): p for p in root.iter(f"{_NS}prefix")}
    base_units = tuple(b.get("Code", "") for b in root.iter(f"{_NS}base-unit"))
    if base_units != BASE_UNITS:
        raise UcumError(f"unexpected base units {base_units} in ucum-essence.xml")
    atoms = {d.code: d for d in map(_definition_of, root.iter(f"{_NS}unit"))}
    ci_atoms = {b.get("CODE", ""): b.get("Code", "") for b in root.iter(f"{_NS}base-unit")}
    # Two atoms share a c/i code (l and L, [iU] and [IU]); the later, customary one wins.
    ci_atoms |= {d.ci_code: d.code for d in atoms.values()}
    return _Essence(
        version=root.get("version", ""),
        revision_date=root.get("revision-date", ""),
        prefixes={code: _prefix_value(p) for code, p in prefixes.items()},
        ci_prefixes={p.get("CODE", ""): code for code, p in prefixes.items()},
        base_units=base_units,
        atoms=atoms,
        ci_atoms=ci_atoms,
    )


def _prefix_value(prefix: ET.Element) -> float:
    value = prefix.find(f"{_NS}value")
    return float(value.get("value", "1")) if value is not None else 1.0


def essence_version() -> str:
    """The UCUM version and revision date of the definitions in use, e.g. '2.2 (2024-06-17)'."""
    essence = _essence()
    return f"{essence.version} ({essence.revision_date})"


# --- unit algebra --------------------------------------------------------------------------


def _multiply(left: Unit, right: Unit, *, divide: bool = False) -> Unit:
    if left.special or right.special:
        special = left.code if left.special else right.code
        action = "divide" if divide else "multiply"
        raise UcumError(
            f"special unit {special!r} is on a non-ratio scale: UCUM forbids to {action} it"
        )
    sign = -1 if divide else 1
    return Unit(
        code="",
        magnitude=_checked_magnitude(lambda: left.magnitude * right.magnitude**sign),
        dimension=tuple(a + sign * b for a, b in zip(left.dimension, right.dimension, strict=True)),
        special=None,
        arbitrary=_combine_arbitrary(left.arbitrary, right.arbitrary, sign),
        mole_exponent=left.mole_exponent + sign * right.mole_exponent,
        equivalent_exponent=left.equivalent_exponent + sign * right.equivalent_exponent,
    )


def _checked_magnitude(compute: Callable[[], float]) -> float:
    """A product's magnitude, refused when a float cannot hold it (10*999, 10*-999, 1/0)."""
    try:
        magnitude = compute()
    except (OverflowError, ZeroDivisionError) as error:
        raise UcumError(f"unit magnitude out of range ({error})") from error
    if magnitude == 0 or not math.isfinite(magnitude):
        raise UcumError(f"unit magnitude out of range ({magnitude})")
    return magnitude


def _combine_arbitrary(
    left: tuple[tuple[str, int], ...], right: tuple[tuple[str, int], ...], sign: int
) -> tuple[tuple[str, int], ...]:
    exponents = dict(left)
    for atom, exponent in right:
        exponents[atom] = exponents.get(atom, 0) + sign * exponent
    return tuple(sorted((a, e) for a, e in exponents.items() if e))


def _power(unit: Unit, exponent: int) -> Unit:
    if exponent == 1:
        return unit
    if unit.special:
        raise UcumError(f"special unit {unit.code!r} cannot take an exponent")
    return Unit(
        code="",
        magnitude=_checked_magnitude(lambda: unit.magnitude**exponent),
        dimension=tuple(d * exponent for d in unit.dimension),
        special=None,
        arbitrary=tuple((a, e * exponent) for a, e in unit.arbitrary),
        mole_exponent=unit.mole_exponent * exponent,
        equivalent_exponent=unit.equivalent_exponent * exponent,
    )


def _scaled(unit: Unit, factor: float) -> Unit:
    if unit.special:
        return replace(unit, special_scale=unit.special_scale * factor)
    return replace(unit, magnitude=unit.magnitude * factor)


@cache
def _atom_unit(code: str) -> Unit:
    """The value of one atom (base or defined unit), its definition resolved recursively."""
    essence = _essence()
    if code in essence.base_units:
        dimension = tuple(1 if base == code else 0 for base in BASE_UNITS)
        return Unit(code, 1.0, dimension, None)
    definition = essence.atoms[code]
    unit = _scaled(_evaluate(definition.unit), definition.value)
    if definition.is_special:
        unit = replace(unit, special=definition.function)
    if definition.is_arbitrary and not unit.arbitrary:
        unit = replace(unit, arbitrary=((code, 1),))
    if code == "mol":
        unit = replace(unit, mole_exponent=1)
    if code == "eq":
        unit = replace(unit, equivalent_exponent=1)
    return replace(unit, code=code)


# --- parsing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # "operator", "open", "close", "symbol", "annotation"
    text: str
    position: int


_DELIMITERS = "./(){}"
_EXPONENT = re.compile(r"(?P<atom>.+?)(?P<exponent>[+-]?\d+)?")


def _where(code: str, position: int) -> str:
    return f"at position {position} in {code!r}"


def _check_character(code: str, position: int) -> None:
    character = code[position]
    if character.isspace():
        raise UcumError(f"spaces are not allowed in UCUM ({_where(code, position)})")
    if not 33 <= ord(character) <= 126:
        raise UcumError(
            f"character {character!r} is not allowed in UCUM ({_where(code, position)})"
        )


def _annotation_end(code: str, start: int) -> int:
    end = code.find("}", start)
    if end < 0:
        raise UcumError(f"annotation '{{' is not closed ({_where(code, start)})")
    for position in range(start + 1, end):
        if code[position] == "{":
            raise UcumError(f"annotations cannot be nested ({_where(code, position)})")
        _check_character(code, position)
    return end + 1


def _symbol_end(code: str, start: int) -> int:
    position = start
    while position < len(code) and code[position] not in _DELIMITERS:
        if code[position] == "[":
            close = code.find("]", position)
            if close < 0:
                raise UcumError(f"'[' is not closed ({_where(code, position)})")
            for inner in range(position + 1, close):
                _check_character(code, inner)
            position = close + 1
            continue
        if code[position] == "]":
            raise UcumError(f"']' without '[' ({_where(code, position)})")
        _check_character(code, position)
        position += 1
    return position


def _tokens(code: str) -> list[_Token]:
    """Split an expression into operators, parentheses, unit symbols and annotations."""
    tokens: list[_Token] = []
    position = 0
    while position < len(code):
        character = code[position]
        if character in "./":
            tokens.append(_Token("operator", character, position))
            position += 1
        elif character in "()":
            tokens.append(_Token("open" if character == "(" else "close", character, position))
            position += 1
        elif character == "{":
            end = _annotation_end(code, position)
            tokens.append(_Token("annotation", code[position:end], position))
            position = end
        elif character == "}":
            raise UcumError(f"'}}' without '{{' ({_where(code, position)})")
        else:
            end = _symbol_end(code, position)
            tokens.append(_Token("symbol", code[position:end], position))
            position = end
    return tokens


def _is_atom(code: str) -> bool:
    essence = _essence()
    return code in essence.atoms or code in essence.base_units


def _is_metric(code: str) -> bool:
    """Whether an atom takes prefixes (spec §2.2: base units and units marked metric)."""
    essence = _essence()
    return code in essence.base_units or (code in essence.atoms and essence.atoms[code].is_metric)


def _split_prefix(symbol: str) -> tuple[str, str] | None:
    """(prefix, atom) for a prefixed metric atom, e.g. 'mm[Hg]' -> ('m', 'm[Hg]')."""
    for prefix in sorted(_essence().prefixes, key=len, reverse=True):
        atom = symbol[len(prefix) :]
        if symbol.startswith(prefix) and _is_metric(atom):
            return prefix, atom
    return None


def _simple_unit(token: _Token, code: str) -> Unit:
    """A factor (``1000``) or an atom with optional prefix and exponent (``cm3``, ``10*-3``)."""
    if token.text.isdigit():
        return replace(_ONE, magnitude=_checked_magnitude(lambda: float(int(token.text))))
    match = _EXPONENT.fullmatch(token.text)
    if match is None:  # pragma: no cover - the pattern matches any non-empty text
        raise UcumError(f"cannot read {token.text!r} ({_where(code, token.position)})")
    symbol, exponent = match["atom"], int(match["exponent"] or 1)
    essence = _essence()
    if _is_atom(symbol):
        unit = _atom_unit(symbol)
    elif (split := _split_prefix(symbol)) is not None:
        prefix, atom = split
        unit = replace(_scaled(_atom_unit(atom), essence.prefixes[prefix]), code=symbol)
    else:
        raise UcumError(f"unknown unit atom {symbol!r} ({_where(code, token.position)})")
    return _power(unit, exponent)


class _Parser:
    """Recursive descent over the grammar of spec §2: main-term, term, component."""

    def __init__(self, code: str) -> None:
        self.code = code
        self.tokens = _tokens(code)
        self.index = 0

    def _peek(self) -> _Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def _next(self) -> _Token:
        token = self._peek()
        if token is None:
            raise UcumError(f"expected a unit at the end of {self.code!r}")
        self.index += 1
        return token

    def main_term(self) -> Unit:
        first = self._peek()
        if first is not None and first.kind == "operator" and first.text == "/":
            self.index += 1
            unit = _multiply(_ONE, self.term(), divide=True)
        else:
            unit = self.term()
        leftover = self._peek()
        if leftover is not None:
            if leftover.kind == "close":
                raise UcumError(f"')' without '(' ({_where(self.code, leftover.position)})")
            raise UcumError(
                f"expected '.' or '/' before {leftover.text!r} "
                f"({_where(self.code, leftover.position)})"
            )
        return unit

    def term(self) -> Unit:
        unit = self.component()
        while (token := self._peek()) is not None and token.kind == "operator":
            self.index += 1
            unit = _multiply(unit, self.component(), divide=token.text == "/")
        return unit

    def component(self) -> Unit:
        token = self._next()
        if token.kind == "annotation":
            return _ONE
        if token.kind == "open":
            unit = self.term()
            close = self._peek()
            if close is None or close.kind != "close":
                raise UcumError(f"'(' is not closed ({_where(self.code, token.position)})")
            self.index += 1
            return unit
        if token.kind == "symbol":
            unit = _simple_unit(token, self.code)
            following = self._peek()
            if following is not None and following.kind == "annotation":
                self.index += 1
            return unit
        raise UcumError(
            f"expected a unit, not {token.text!r} ({_where(self.code, token.position)})"
        )


def _evaluate(code: str) -> Unit:
    if not code:
        raise UcumError("empty unit expression")
    return _Parser(code).main_term()


@lru_cache(maxsize=8192)
def parse(code: str) -> Unit:
    """The unit a UCUM expression (case-sensitive form) denotes; raises UcumError."""
    return replace(_evaluate(code), code=code)


def is_valid(code: str) -> bool:
    """Whether ``code`` is a valid case-sensitive UCUM expression."""
    try:
        parse(code)
    except UcumError:
        return False
    return True


def _same_kind(a: Unit, b: Unit) -> bool:
    return a.dimension == b.dimension and a.arbitrary == b.arbitrary


def commensurable(a: str, b: str) -> bool:
    """Whether two expressions measure the same kind of quantity (False if either is invalid).

    Arbitrary units count as their own dimension: [IU]/L and m[IU]/mL are commensurable,
    [IU]/L and [arb'U]/L or /L are not.
    """
    try:
        return _same_kind(parse(a), parse(b))
    except UcumError:
        return False


# --- conversion ----------------------------------------------------------------------------


def _to_base(value: float, unit: Unit) -> float:
    if unit.special is None:
        return value * unit.magnitude
    to_ratio, _ = _special_function(unit)
    return to_ratio(value * unit.special_scale) * unit.magnitude


def _from_base(value: float, unit: Unit) -> float:
    if unit.special is None:
        return value / unit.magnitude
    _, from_ratio = _special_function(unit)
    return from_ratio(value / unit.magnitude) / unit.special_scale


def _special_function(unit: Unit) -> _Function:
    function = SPECIAL_FUNCTIONS.get(unit.special or "")
    if function is None:
        raise UcumError(f"conversion function {unit.special!r} of {unit.code!r} is not supported")
    return function


def _avogadro() -> float:
    return _atom_unit("mol").magnitude


def _mass_to_amount_direction(source: Unit, target: Unit) -> int:
    """+1 when source is mass based and target amount based, -1 the other way, 0 neither."""
    if source.special or target.special or source.arbitrary != target.arbitrary:
        return 0
    if source.equivalent_exponent or target.equivalent_exponent:
        return 0
    difference = tuple(a - b for a, b in zip(source.dimension, target.dimension, strict=True))
    moles = target.mole_exponent - source.mole_exponent
    if difference == _MASS and moles == 1:
        return 1
    if difference == tuple(-d for d in _MASS) and moles == -1:
        return -1
    return 0


def _convert_with_molar_mass(
    value: float, source: Unit, target: Unit, molar_mass: float, direction: int
) -> float:
    if not (math.isfinite(molar_mass) and molar_mass > 0):
        raise UcumError(f"molar mass must be a positive number of g/mol, not {molar_mass!r}")
    base = value * source.magnitude
    if direction > 0:
        return base / molar_mass * _avogadro() / target.magnitude
    return base / _avogadro() * molar_mass / target.magnitude


def _checked_value(compute: Callable[[], float], value: float, source: str) -> float:
    """The converted value, or UcumError when it is outside a special unit's function domain
    (a negative concentration has no pH) or beyond what a float holds."""
    try:
        result = compute()
    except (ValueError, OverflowError, ZeroDivisionError) as error:
        if isinstance(error, UcumError):
            raise
        raise UcumError(f"{value!r} {source} cannot be converted ({error})") from error
    if math.isfinite(value) and not math.isfinite(result):
        raise UcumError(f"{value!r} {source} converts to {result}, beyond a float's range")
    return result


def convert(value: float, source: str, target: str, molar_mass: float | None = None) -> float:
    """``value`` in ``source`` expressed in ``target``.

    With ``molar_mass`` (g/mol) also converts between mass and amount-of-substance based
    units (mg/dL <-> mmol/L). Raises UcumError for invalid expressions and IncompatibleUnits
    when the units do not measure the same kind of quantity.
    """
    source_unit, target_unit = parse(source), parse(target)
    if _same_kind(source_unit, target_unit):
        if source_unit.equivalent_exponent != target_unit.equivalent_exponent:
            raise IncompatibleUnits(
                f"cannot convert {source!r} to {target!r}: between equivalents and moles "
                "the factor depends on the charge of the substance"
            )
        return _checked_value(
            lambda: _from_base(_to_base(value, source_unit), target_unit), value, source
        )
    if molar_mass is not None:
        direction = _mass_to_amount_direction(source_unit, target_unit)
        if direction:
            return _checked_value(
                lambda: _convert_with_molar_mass(
                    value, source_unit, target_unit, molar_mass, direction
                ),
                value,
                source,
            )
    raise IncompatibleUnits(f"{source!r} and {target!r} are not commensurable")


# --- units as senders write them -----------------------------------------------------------


@lru_cache(maxsize=1)
def _sender_table() -> tuple[Mapping[str, str], Mapping[str, str]]:
    """(over_ucum, spellings) from data/sender-units.json, keys in lower case."""
    text = resources.files("hs_terminology").joinpath("data", "sender-units.json").read_text()
    table = json.loads(text)
    over_ucum = {k.lower(): v for k, v in table["over_ucum"].items()}
    spellings = {k.lower(): v for k, v in table["spellings"].items()}
    return over_ucum, spellings


def _sender_key(text: str) -> str:
    return " ".join(text.split()).lower()


def _is_single_case(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return all(c.isupper() for c in letters) or all(c.islower() for c in letters)


def _ci_symbol(symbol: str) -> str | None:
    """The case-sensitive form of one case-insensitive symbol ('MMOL' -> 'mmol')."""
    if symbol.isdigit():
        return symbol
    match = _EXPONENT.fullmatch(symbol)
    if match is None:  # pragma: no cover - the pattern matches any non-empty text
        return None
    atom, exponent = match["atom"], match["exponent"] or ""
    essence = _essence()
    if atom in essence.ci_atoms:
        return essence.ci_atoms[atom] + exponent
    for ci_prefix in sorted(essence.ci_prefixes, key=len, reverse=True):
        rest = atom[len(ci_prefix) :]
        if atom.startswith(ci_prefix) and rest in essence.ci_atoms:
            code = essence.ci_atoms[rest]
            if _is_metric(code):
                return essence.ci_prefixes[ci_prefix] + code + exponent
    return None


def from_case_insensitive(text: str) -> str | None:
    """The case-sensitive UCUM code of a case-insensitive one ('MG/DL' -> 'mg/dL'), or None."""
    try:
        tokens = _tokens(text.upper())
    except UcumError:
        return None
    parts: list[str] = []
    for token in tokens:
        if token.kind != "symbol":
            # Annotations keep the sender's case: they carry no meaning to UCUM.
            parts.append(text[token.position : token.position + len(token.text)])
            continue
        symbol = _ci_symbol(token.text)
        if symbol is None:
            return None
        parts.append(symbol)
    code = "".join(parts)
    return code if is_valid(code) else None


_POWER_OF_TEN = re.compile(r"[x\u00d7*]?\s*10\s*(?:\^|\*\*|\*|e|E)\s*([+-]?\d+)\s*/\s*(\S+)")


def _power_of_ten_count(text: str) -> str | None:
    """'x10E9/L', 'x10^9/L' (also with the multiplication sign) -> '10*9/L'."""
    match = _POWER_OF_TEN.fullmatch(text)
    if match is None:
        return None
    per = _readable(match[2])
    return f"10*{int(match[1])}/{per}" if per is not None and "/" not in per else None


def _readable(text: str) -> str | None:
    """Valid UCUM as written, else its case-insensitive reading when written in one case."""
    if is_valid(text):
        return text
    if _is_single_case(text):
        return from_case_insensitive(text)
    return None


def from_sender(text: str) -> str | None:
    """A unit as senders write it -> a valid UCUM code, or None when it is not one we can read.

    In order: sender spellings that are valid UCUM but mean something else in clinical
    messages ('C' is Celsius, not coulomb); the text itself when valid UCUM; the table of
    sender spellings; powers of ten as 'x10^9/L'; the UCUM case-insensitive codes, for text
    written in one case only (in mixed case 'mM' is not 'MM', millimetre).
    """
    stripped = text.strip()
    if not stripped:
        return None
    over_ucum, spellings = _sender_table()
    key = _sender_key(stripped)
    if key in over_ucum:
        return over_ucum[key]
    if is_valid(stripped):
        return stripped
    micro = stripped.replace("µ", "u").replace("μ", "u")
    if key in spellings or _sender_key(micro) in spellings:
        return spellings.get(key) or spellings[_sender_key(micro)]
    return _power_of_ten_count(micro) or _readable(micro)
