"""hs_terminology.ucum against data nobody here wrote: answers of the reference implementation
@lhncbc/ucum-lhc (tests/oracle/), and values stated in the UCUM specification text."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from hs_terminology import ucum

ORACLE = json.loads((Path(__file__).parent / "oracle" / "ucum_lhc_cases.json").read_text())

# Where we answer otherwise than ucum-lhc 7.1.10, on purpose; each with the value we give.
CONVERSION_DIVERGENCES: dict[tuple[float, str, str], tuple[float, str]] = {
    # ucum-lhc's tables carry the UCUM 2.1 constants; our ucum-essence.xml is UCUM 2.2 (2024),
    # which takes the CODATA 2018 values (spec §4.3, table 6: u, [e]).
    (1, "u", "g"): (1.66053906660e-24, "UCUM 2.2 atomic mass unit"),
    (1, "eV", "J"): (1.602176634e-19, "UCUM 2.2 elementary charge"),
    # ucum-lhc does not convert [pH]; UCUM defines it as pH(1 mol/l) = -lg(c / (mol/l)).
    (7.4, "[pH]", "mol/L"): (10**-7.4, "pH is -lg of the molar concentration"),
    (1e-07, "mol/L", "[pH]"): (7.0, "pH is -lg of the molar concentration"),
    (4e-05, "mmol/L", "[pH]"): (-math.log10(4e-08), "pH is -lg of the molar concentration"),
    # ucum-lhc answers 25.37 and 168.2875: 100 Cel is 80 degRe (Reaumur: water boils at 80).
    (100, "Cel", "[degRe]"): (80.0, "Reaumur scale, 0 at freezing and 80 at boiling water"),
    (80, "[degRe]", "Cel"): (100.0, "Reaumur scale, 0 at freezing and 80 at boiling water"),
    # ucum-lhc refuses every conversion of arbitrary units; between prefixed forms of the
    # same arbitrary unit the factor is the prefix alone (spec §4.4.3 forbids only mixing
    # arbitrary units with other units).
    (1, "[IU]/L", "m[IU]/mL"): (1.0, "same arbitrary unit"),
    (1, "m[IU]/mL", "[IU]/L"): (1.0, "same arbitrary unit"),
    (1, "[IU]", "[iU]"): (1.0, "[IU] is defined as [iU]"),
    (1, "k[IU]/L", "[IU]/mL"): (1.0, "same arbitrary unit"),
    (1, "[arb'U]/mL", "[arb'U]/L"): (1000.0, "same arbitrary unit"),
    (1, "[CFU]/mL", "[CFU]/L"): (1000.0, "same arbitrary unit"),
    # ucum-essence.xml defines [LPF] as 100 (<value Unit="1" value="100">), [HPF] as 1;
    # ucum-lhc's tables give both the magnitude 1.
    (1, "/[HPF]", "/[LPF]"): (100.0, "[LPF] = 100 in ucum-essence.xml"),
}
# ucum-lhc trims surrounding spaces before validating; parse() takes the code as given
# (from_sender strips).
VALIDATION_DIVERGENCES = {"mg/dL ": False}


def conversion_id(case: dict[str, Any]) -> str:
    return f"{case['value']} {case['from']} -> {case['to']} mw={case['molar_mass']}"


def test_oracle_has_enough_cases() -> None:
    assert ORACLE["generator"] == "@lhncbc/ucum-lhc 7.1.10"
    assert len(ORACLE["conversions"]) + len(ORACLE["validations"]) >= 150


@pytest.mark.parametrize("case", ORACLE["conversions"], ids=conversion_id)
def test_conversion_agrees_with_ucum_lhc(case: dict[str, Any]) -> None:
    value, source, target = case["value"], case["from"], case["to"]
    divergence = CONVERSION_DIVERGENCES.get((value, source, target))
    expected = divergence[0] if divergence else case["result"]
    if expected is None:
        with pytest.raises(ucum.UcumError):
            ucum.convert(value, source, target, case["molar_mass"])
        return
    assert ucum.convert(value, source, target, case["molar_mass"]) == pytest.approx(
        expected, rel=1e-9, abs=1e-300
    )


@pytest.mark.parametrize("case", ORACLE["validations"], ids=lambda c: repr(c["code"]))
def test_validation_agrees_with_ucum_lhc(case: dict[str, Any]) -> None:
    code = case["code"]
    expected = VALIDATION_DIVERGENCES.get(code, case["status"] == "valid")
    assert ucum.is_valid(code) is expected


def test_divergences_are_still_cases_of_the_oracle() -> None:
    keys = {(c["value"], c["from"], c["to"]) for c in ORACLE["conversions"]}
    assert set(CONVERSION_DIVERGENCES) <= keys
    assert set(VALIDATION_DIVERGENCES) <= {c["code"] for c in ORACLE["validations"]}


# --- values stated in the UCUM specification (https://ucum.org/ucum, version 2.2) -----------


@pytest.mark.parametrize(
    ("value", "source", "target", "expected"),
    [
        (1, "[in_i]", "cm", 2.54),  # §4.4 table 13: international inch = 2.54 cm
        (1, "[ft_i]", "[in_i]", 12),  # table 13: foot = 12 [in_i]
        (1, "[lb_av]", "g", 453.59237),  # table 18: avoirdupois pound = 7000 [gr], [gr] 64.79891 mg
        (1, "[gal_us]", "[in_i]3", 231),  # table 16: US gallon = 231 cubic inches
        (1, "[nmi_i]", "m", 1852),  # table 13: nautical mile = 1852 m
        (1, "atm", "Pa", 101325),  # table 6: standard atmosphere = 101325 Pa
        (1, "m[Hg]", "kPa", 133.322),  # table 20: meter of mercury column = 133.3220 kPa
        (1, "L", "dm3", 1),  # table 5: liter = 1 dm3
        (1, "h", "s", 3600),  # table 5: h = 60 min, min = 60 s
        (1, "a_j", "d", 365.25),  # table 5: mean Julian year = 365.25 d
        (1, "[Cal]", "kJ", 4.184),  # table 19: nutrition label Calorie = 1 kcal_th = 4.184 kJ
        (1, "U", "umol/min", 1),  # table 22: enzyme unit = 1 umol/min
        (1, "%", "1", 0.01),  # table 3: percent = 10*-2
        (1, "10*3", "1", 1000),  # table 3: the number ten for arbitrary powers
        (37, "Cel", "K", 310.15),  # table 5 / §4.3: Cel(1 K), 0 Cel = 273.15 K
        (37, "Cel", "[degF]", 98.6),  # table 19: degF(5 K/9), 0 degF = 459.67 x 5/9 K
        (-40, "[degF]", "Cel", -40),
        (20, "dB", "B", 2),  # §2.2 prefixes apply to special units: deci-bel
    ],
)
def test_values_from_the_specification(
    value: float, source: str, target: str, expected: float
) -> None:
    assert ucum.convert(value, source, target) == pytest.approx(expected, rel=1e-12)


def test_glucose_mass_and_molar_concentration() -> None:
    # 100 mg/dL glucose (180.156 g/mol) = 5.55 mmol/L, and back.
    assert ucum.convert(100, "mg/dL", "mmol/L", molar_mass=180.156) == pytest.approx(
        5.5507, rel=1e-4
    )
    assert ucum.convert(5.5507449, "mmol/L", "mg/dL", 180.156) == pytest.approx(100, rel=1e-7)
    assert ucum.convert(88.4, "umol/L", "mg/dL", 113.12) == pytest.approx(1.0, rel=1e-4)
    assert ucum.convert(48, "mmol/mol", "%", molar_mass=180.156) == pytest.approx(4.8)


def test_molar_mass_is_needed_and_must_be_positive() -> None:
    with pytest.raises(ucum.IncompatibleUnits):
        ucum.convert(100, "mg/dL", "mmol/L")
    with pytest.raises(ucum.UcumError, match="molar mass"):
        ucum.convert(100, "mg/dL", "mmol/L", molar_mass=0)
    with pytest.raises(ucum.IncompatibleUnits):
        ucum.convert(1, "mg", "mmol/L", molar_mass=180.156)


# --- the parsed unit ---------------------------------------------------------------------


def test_parse_gives_magnitude_dimension_and_special() -> None:
    newton = ucum.parse("kg.m/s2")
    assert newton.code == "kg.m/s2"
    assert newton.magnitude == pytest.approx(1000)
    assert newton.dimension == (1, -2, 1, 0, 0, 0, 0)
    assert newton.special is None
    assert ucum.parse("Cel").special == "Cel"
    assert ucum.parse("[degF]").special == "degF"
    assert ucum.parse("[pH]").special == "pH"
    assert ucum.parse("{cells}").magnitude == 1
    assert ucum.parse("{cells}").dimension == (0,) * 7
    assert ucum.parse("mol").dimension == (0,) * 7  # mol is a number, 6.02214076e23 (§4.3)
    assert ucum.parse("mol").magnitude == pytest.approx(6.02214076e23)


def test_grammar() -> None:
    assert ucum.parse("/min").dimension == (0, -1, 0, 0, 0, 0, 0)
    assert ucum.parse("m/s/s").dimension == ucum.parse("m.s-2").dimension  # left-associative
    assert ucum.parse("m/(s.s)").dimension == ucum.parse("m/s2").dimension
    assert ucum.parse("10*3/uL").magnitude == pytest.approx(1e12)
    assert ucum.parse("10^3").magnitude == pytest.approx(1000)
    assert ucum.parse("4.[pi]").magnitude == pytest.approx(4 * math.pi)
    assert ucum.parse("mL/min/{1.73_m2}").magnitude == pytest.approx(ucum.parse("mL/min").magnitude)
    assert ucum.parse("cm3").magnitude == pytest.approx(1e-6)
    assert ucum.parse("m+2").dimension == (2, 0, 0, 0, 0, 0, 0)


def test_parse_is_cached() -> None:
    assert ucum.parse("mg/dL") is ucum.parse("mg/dL")


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("furlongs", "unknown unit atom 'furlongs'"),
        ("mg/dl/", "expected a unit at the end"),
        ("10**", "unknown unit atom '10\\*\\*'"),
        ("mmHg", "unknown unit atom 'mmHg'"),
        ("Cel/h", "special unit 'Cel'"),
        ("Cel.m", "special unit 'Cel'"),
        ("Cel2", "cannot take an exponent"),
        ("(mg/dL", "'\\(' is not closed"),
        ("mg/dL)", "'\\)' without '\\('"),
        ("mg dL", "spaces are not allowed"),
        ("µmol/L", "character 'µ'"),
        ("m[in_i]", "unknown unit atom"),  # [in_i] is not metric: no prefix (§2.2)
        ("", "empty"),
        ("{a", "not closed"),
    ],
)
def test_errors_say_what_and_where(code: str, message: str) -> None:
    with pytest.raises(ucum.UcumError, match=message):
        ucum.parse(code)


def test_special_units_inside_products_cannot_be_converted() -> None:
    with pytest.raises(ucum.UcumError, match="non-ratio"):
        ucum.convert(1, "Cel/h", "K/h")


def test_commensurable() -> None:
    assert ucum.commensurable("mg/dL", "g/L")
    assert ucum.commensurable("Cel", "K")
    assert ucum.commensurable("[IU]/L", "m[IU]/mL")
    assert not ucum.commensurable("[IU]/L", "[arb'U]/L")
    assert not ucum.commensurable("[IU]/L", "/L")
    assert not ucum.commensurable("mg", "mL")
    assert not ucum.commensurable("furlongs", "m")


def test_incompatible_units_is_a_ucum_error() -> None:
    with pytest.raises(ucum.IncompatibleUnits):
        ucum.convert(1, "kg", "m")
    with pytest.raises(ucum.IncompatibleUnits, match="charge"):
        ucum.convert(1, "meq/L", "mmol/L")
    assert issubclass(ucum.IncompatibleUnits, ucum.UcumError)


def test_definitions_file_version() -> None:
    assert ucum.essence_version() == "2.2 (2024-06-17)"


# --- units as senders write them -----------------------------------------------------------


@pytest.mark.parametrize(
    ("sender", "code"),
    [
        ("mg/dL", "mg/dL"),
        ("mg/dl", "mg/dl"),
        ("MG/DL", "mg/dL"),
        ("MMOL/L", "mmol/L"),
        ("umol/l", "umol/l"),
        ("µmol/L", "umol/L"),
        ("μmol/L", "umol/L"),
        ("mmHg", "mm[Hg]"),
        ("MMHG", "mm[Hg]"),
        ("bpm", "/min"),
        ("beats/min", "/min"),
        ("次/分", "/min"),
        ("次/min", "/min"),
        ("°C", "Cel"),
        ("℃", "Cel"),
        ("C", "Cel"),
        ("CEL", "Cel"),
        ("°F", "[degF]"),
        ("F", "[degF]"),
        ("degF", "[degF]"),
        ("10^9/L", "10^9/L"),
        ("10*9/L", "10*9/L"),
        ("×10^9/L", "10*9/L"),
        ("x10E9/L", "10*9/L"),
        ("10^12/L", "10^12/L"),
        ("x10^12/l", "10*12/l"),
        ("g/l", "g/l"),
        ("IU/L", "[IU]/L"),
        ("U/L", "U/L"),
        ("u/l", "U/L"),
        ("mIU/mL", "m[IU]/mL"),
        ("%", "%"),
        ("fl", "fl"),
        ("fL", "fL"),
        ("pg", "pg"),
        ("mEq/L", "meq/L"),
        ("meq/L", "meq/L"),
        ("MEQ/L", "meq/L"),
        ("kg", "kg"),
        ("cm", "cm"),
        ("in", "[in_i]"),
        ("lb", "[lb_av]"),
        ("mL/min/1.73m2", "mL/min/{1.73_m2}"),
        ("mL/min/{1.73_m2}", "mL/min/{1.73_m2}"),
        ("ng/ml", "ng/ml"),
        ("pmol/L", "pmol/L"),
        ("sec", "s"),
        ("s", "s"),
        ("mm/h", "mm/h"),
        ("mm/hr", "mm/h"),
        ("  kg  ", "kg"),
        ("[IN_I]", "[in_i]"),
        ("pH", "[pH]"),
        ("KPAL", "kPa"),
    ],
)
def test_from_sender(sender: str, code: str) -> None:
    assert ucum.from_sender(sender) == code
    assert ucum.is_valid(code)


@pytest.mark.parametrize("sender", ["furlongs", "", "   ", "abc", "次", "mM", "beats", "units"])
def test_from_sender_does_not_guess(sender: str) -> None:
    assert ucum.from_sender(sender) is None


@pytest.mark.parametrize(
    ("value", "source", "target"),
    [(-1, "mol/L", "[pH]"), (1e308, "km", "mm"), (1, "10*999", "1"), (1, "m/0", "m")],
)
def test_out_of_range_is_a_ucum_error(value: float, source: str, target: str) -> None:
    with pytest.raises(ucum.UcumError):
        ucum.convert(value, source, target)
