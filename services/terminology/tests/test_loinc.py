"""The LOINC table of common codes and the suggestions for unmapped local codes."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

import pytest

from hs_terminology import loinc
from hs_terminology.loinc import LOINC_SYSTEM, is_loinc_code, lookup, suggest, table

_HAVE_UCUM = importlib.util.find_spec("hs_terminology.ucum") is not None
needs_ucum = pytest.mark.skipif(not _HAVE_UCUM, reason="hs_terminology.ucum has not landed yet")


# --- the table -------------------------------------------------------------------------------


def test_the_table_holds_a_couple_of_hundred_codes_once_each() -> None:
    codes = table()
    assert 200 <= len(codes) <= 300
    assert LOINC_SYSTEM == "http://loinc.org"


def test_every_code_in_the_table_has_a_valid_check_digit() -> None:
    bad = [code for code in table() if not is_loinc_code(code)]
    assert bad == []


def test_every_row_says_where_it_came_from_and_what_it_is() -> None:
    for code in table().values():
        assert code.long_common_name, code.code
        assert code.component, code.code
        assert code.loinc_class, code.code
        assert code.synonyms, code.code


def test_panels_have_no_unit_and_quantities_mostly_do() -> None:
    for panel in ("85353-1", "85354-9", "58410-2", "57021-8"):
        row = lookup(panel)
        assert row is not None
        assert row.ucum is None
    quantitative = [c for c in table().values() if c.scale == "Qn"]
    assert all(c.ucum for c in quantitative)


@needs_ucum
def test_every_unit_in_the_table_is_valid_ucum() -> None:
    ucum = importlib.import_module("hs_terminology.ucum")
    bad = [(c.code, c.ucum) for c in table().values() if c.ucum and not ucum.is_valid(c.ucum)]
    assert bad == []


@needs_ucum
def test_molar_masses_sit_on_mass_or_substance_concentrations_that_ucum_can_convert() -> None:
    ucum = importlib.import_module("hs_terminology.ucum")
    for code in table().values():
        if code.molar_mass is None or code.ucum is None:
            continue
        other = "mmol/L" if code.property == "MCnc" else "mg/dL"
        converted = ucum.convert(1.0, code.ucum, other, molar_mass=code.molar_mass)
        assert converted > 0, code.code


# --- the check digit (LOINC Users' Guide, "Calculating Mod 10 check digits") ----------------


@pytest.mark.parametrize("code", ["2345-7", "718-7", "8867-4", "85354-9", "10000-8", "100-8"])
def test_real_codes_pass_the_check_digit(code: str) -> None:
    assert is_loinc_code(code)


@pytest.mark.parametrize("code", ["2345-8", "718-1", "8867", "LP1234-5", "", "12-34-5", "abc-1"])
def test_wrong_check_digits_and_malformed_codes_fail(code: str) -> None:
    assert not is_loinc_code(code)


def test_the_check_digit_of_the_part_before_the_hyphen() -> None:
    assert loinc.mod10_check_digit("2345") == 7
    assert loinc.mod10_check_digit("14749") == 6


# --- lookups against facts from public sources -----------------------------------------------

# Code -> (long common name, UCUM unit). The vital signs are the table of the FHIR R4 (4.0.1)
# vital signs profile (http://hl7.org/fhir/R4/observation-vitalsigns.html; read from the mirror
# fhir-ru/fhir-ru.github.io, observation-vitalsigns.html at 73deef6284d1): "Magic Value (LOINC)",
# "LOINC Name" and the first "UCUM Unit Code". The laboratory names are LOINC's "Mapper's Guide
# to the Top 2000+ Lab Observations" v1.6 (the US and SI CSVs vendored in
# OHDSI/StudyProtocolSandbox, themis/extras/, at 334a8a3b5a40), their units LOINC's example
# units as used in that repository's THEMIS preferred-units result
# (themis/extras/results/S4-preferred_units-A.csv).
_PUBLISHED = {
    "9279-1": ("Respiratory rate", "/min"),
    "8867-4": ("Heart rate", "/min"),
    "2708-6": ("Oxygen saturation in Arterial blood", "%"),
    "8310-5": ("Body temperature", "Cel"),
    "8302-2": ("Body height", "cm"),
    "9843-4": ("Head Occipital-frontal circumference", "cm"),
    "29463-7": ("Body weight", "kg"),
    "39156-5": ("Body mass index (BMI) [Ratio]", "kg/m2"),
    "8480-6": ("Systolic blood pressure", "mm[Hg]"),
    "8462-4": ("Diastolic blood pressure", "mm[Hg]"),
    "85354-9": ("Blood pressure panel with all children optional", None),
    "2345-7": ("Glucose [Mass/volume] in Serum or Plasma", "mg/dL"),
    "14749-6": ("Glucose [Moles/volume] in Serum or Plasma", "mmol/L"),
    "2160-0": ("Creatinine [Mass/volume] in Serum or Plasma", "mg/dL"),
    "14682-9": ("Creatinine [Moles/volume] in Serum or Plasma", "umol/L"),
    "3094-0": ("Urea nitrogen [Mass/volume] in Serum or Plasma", "mg/dL"),
    "2823-3": ("Potassium [Moles/volume] in Serum or Plasma", "mmol/L"),
    "2951-2": ("Sodium [Moles/volume] in Serum or Plasma", "mmol/L"),
    "2075-0": ("Chloride [Moles/volume] in Serum or Plasma", "mmol/L"),
    "718-7": ("Hemoglobin [Mass/volume] in Blood", "g/dL"),
    "4548-4": ("Hemoglobin A1c/Hemoglobin.total in Blood", "%"),
    "2093-3": ("Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL"),
    "2571-8": ("Triglyceride [Mass/volume] in Serum or Plasma", "mg/dL"),
    "1988-5": ("C reactive protein [Mass/volume] in Serum or Plasma", "mg/L"),
    "1742-6": ("Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L"),
}


@pytest.mark.parametrize(("code", "fact"), sorted(_PUBLISHED.items()))
def test_lookup_agrees_with_the_published_name_and_unit(
    code: str, fact: tuple[str, str | None]
) -> None:
    name, unit = fact
    row = lookup(code)
    assert row is not None
    assert row.long_common_name == name
    assert row.ucum == unit


def test_vital_signs_are_marked_and_lab_codes_are_not() -> None:
    heart_rate, glucose = lookup("8867-4"), lookup("2345-7")
    assert heart_rate is not None
    assert glucose is not None
    assert heart_rate.vital_sign
    assert not glucose.vital_sign


def test_molar_masses_follow_the_conventions() -> None:
    expected = {"2345-7": 180.156, "2160-0": 113.12, "3094-0": 28.014, "2571-8": 885.7}
    for code, mass in expected.items():
        row = lookup(code)
        assert row is not None
        assert row.molar_mass == pytest.approx(mass)
    heart_rate = lookup("8867-4")
    assert heart_rate is not None
    assert heart_rate.molar_mass is None


def test_lookup_of_an_unknown_code_is_none() -> None:
    assert lookup("99999-9") is None
    assert lookup(" 2345-7 ") is not None


# --- suggestions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Unit:
    dimension: str
    magnitude: float


class _TinyUcum:
    """Just enough unit algebra to test the ranking without hs_terminology.ucum."""

    _UNITS = {  # noqa: RUF012  # a fixed test table
        "mg/dL": _Unit("M/L3", 1e-2),
        "g/dL": _Unit("M/L3", 10),
        "g/L": _Unit("M/L3", 1),
        "mg/L": _Unit("M/L3", 1e-3),
        "ng/mL": _Unit("M/L3", 1e-6),
        "pg/mL": _Unit("M/L3", 1e-9),
        "ug/dL": _Unit("M/L3", 1e-5),
        "mol/L": _Unit("N/L3", 1),
        "mmol/L": _Unit("N/L3", 1e-3),
        "umol/L": _Unit("N/L3", 1e-6),
        "10*3/uL": _Unit("1/L3", 1e9),
        "10*6/uL": _Unit("1/L3", 1e12),
        "10*9/L": _Unit("1/L3", 1e9),
        "%": _Unit("1", 1e-2),
        "/min": _Unit("1/T", 1 / 60),
        "mm[Hg]": _Unit("P", 133.3),
        "Cel": _Unit("Temp", 1),
        "U/L": _Unit("C/L3", 1),
    }

    def is_valid(self, code: str) -> bool:
        return code in self._UNITS

    def commensurable(self, a: str, b: str) -> bool:
        if a not in self._UNITS or b not in self._UNITS:
            raise ValueError(f"unknown unit {a} or {b}")
        return self._UNITS[a].dimension == self._UNITS[b].dimension

    def from_sender(self, text: str) -> str | None:
        return {"mmHg": "mm[Hg]", "bpm": "/min"}.get(text)


@pytest.fixture(params=["ucum", "tiny"])
def units(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a suggestion test with hs_terminology.ucum (when it exists) and with a tiny stand-in."""
    if request.param == "ucum":
        if not _HAVE_UCUM:
            pytest.skip("hs_terminology.ucum has not landed yet")
    else:
        monkeypatch.setattr(loinc, "_ucum", _TinyUcum)
    return str(request.param)


def _first(display: str, unit: str | None) -> str:
    found = suggest(display, unit)
    assert found, f"nothing suggested for {display!r} / {unit!r}"
    return found[0].loinc.code


@pytest.mark.usefixtures("units")
@pytest.mark.parametrize(
    ("display", "unit", "expected"),
    [
        ("血糖", "mmol/L", "14749-6"),
        ("葡萄糖", "mg/dL", "2345-7"),
        ("Hemoglobin A1c", "%", "4548-4"),
        ("WBC", "10*9/L", "6690-2"),
        ("肌酐", "umol/L", "14682-9"),
        ("Heart rate", "/min", "8867-4"),
        ("收缩压", "mm[Hg]", "8480-6"),
        ("体温", "Cel", "8310-5"),
        ("血红蛋白", "g/dL", "718-7"),
        ("谷丙转氨酶", "U/L", "1742-6"),
    ],
)
def test_display_and_unit_pick_the_right_code(display: str, unit: str, expected: str) -> None:
    assert _first(display, unit) == expected


@pytest.mark.usefixtures("units")
def test_the_unit_decides_between_mass_and_molar_variants() -> None:
    molar = [c.loinc.code for c in suggest("血糖", "mmol/L")]
    mass = [c.loinc.code for c in suggest("血糖", "mg/dL")]
    assert molar.index("14749-6") < molar.index("2345-7")
    assert mass.index("2345-7") < mass.index("14749-6")


@pytest.mark.usefixtures("units")
def test_a_unit_that_cannot_express_the_property_lowers_the_score_strongly() -> None:
    fits = suggest("血红蛋白", "g/dL")[0]
    wrong = [c for c in suggest("血红蛋白", "/min") if c.loinc.code == "718-7"]
    assert wrong
    assert wrong[0].score <= fits.score - 0.5
    assert any("cannot express" in r for r in wrong[0].reasons)


@pytest.mark.usefixtures("units")
def test_reasons_say_what_matched() -> None:
    best = suggest("血糖", "mmol/L")[0]
    assert "display matches synonym '血糖'" in best.reasons
    assert any(r.startswith("unit mmol/L fits property SCnc") for r in best.reasons)


def test_without_unit_algebra_the_unit_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loinc, "_ucum", lambda: None)
    found = suggest("肌酐", "umol/L")
    assert {c.loinc.code for c in found[:2]} == {"2160-0", "14682-9"}
    assert all(len(c.reasons) == 1 for c in found)


def test_a_nonsense_display_suggests_nothing() -> None:
    assert suggest("xyzzy qwerty", "mg/dL") == []
    assert suggest("嗯嗯啊啊", None) == []
    assert suggest("", None) == []
    assert suggest(None, None) == []


def test_suggestions_are_deterministic_and_limited() -> None:
    first = suggest("Cholesterol", "mg/dL", limit=3)
    assert len(first) <= 3
    assert first == suggest("Cholesterol", "mg/dL", limit=3)
    scores = [c.score for c in first]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_english_matching_is_case_insensitive_and_by_words() -> None:
    assert _first("hemoglobin a1c", None) == "4548-4"
    assert _first("SpO2", None) == "59408-5"
    assert _first("空腹血糖", None) in {"1558-6", "14771-0"}
