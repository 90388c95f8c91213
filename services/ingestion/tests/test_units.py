from __future__ import annotations

import pytest

from hs_ingestion.units import ANALYTES, normalize, parse_range, to_ucum


@pytest.mark.parametrize(
    ("analyte", "value", "unit", "expected", "status"),
    [
        ("glucose", 126.0, "mg/dL", 6.9938, "CONVERTED"),
        ("glucose", 5.4, "mmol/L", 5.4, "UCUM_AS_SENT"),
        ("glucose", 5.4, "mmol/l", 5.4, "RENAMED"),
        ("creatinine", 1.2, "mg/dL", 106.08, "CONVERTED"),
        ("creatinine", 97.0, "μmol/L", 97.0, "RENAMED"),
        ("hba1c", 53.0, "mmol/mol", 7.0004, "CONVERTED"),
        ("body_temperature", 98.6, "°F", 37.0, "CONVERTED"),
        ("body_temperature", 37.2, "℃", 37.2, "RENAMED"),
    ],
)
def test_conversions_keep_the_quantity(
    analyte: str, value: float, unit: str, expected: float, status: str
) -> None:
    result = normalize(value, unit, ANALYTES[analyte])
    assert result.value == pytest.approx(expected, abs=1e-3)
    assert result.unit == ANALYTES[analyte].unit
    assert result.status == status


def test_a_unit_that_cannot_express_the_analyte_is_flagged_not_converted() -> None:
    assert normalize(7.0, "%", ANALYTES["glucose"]).status == "INCOMPATIBLE"
    assert normalize(7.0, "%", ANALYTES["glucose"]).value is None
    assert normalize(7.0, "furlongs", ANALYTES["glucose"]).status == "UNKNOWN_UNIT"
    assert normalize(7.0, None, ANALYTES["glucose"]).status == "NO_UNIT"


@pytest.mark.parametrize(
    ("text", "limits"),
    [
        ("3.9-6.1", (3.9, 6.1)),
        ("3.90 - 6.10", (3.9, 6.1)),
        ("<5", (None, 5.0)),
        ("<=6.5", (None, 6.5)),
        (">60", (60.0, None)),
        ("70_105", (70.0, 105.0)),
        ("3.5～5.3", (3.5, 5.3)),
        ("negative", None),
        ("", None),
    ],
)
def test_reference_ranges_as_senders_write_them(
    text: str, limits: tuple[float | None, float | None] | None
) -> None:
    assert parse_range(text) == limits


def test_ucum_spellings() -> None:
    assert to_ucum("MMHG") == "mm[Hg]"
    assert to_ucum("bpm") == "/min"
    assert to_ucum(" ") is None
