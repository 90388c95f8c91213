"""Conversions into a code's UCUM unit. Expected values from the definitions: glucose
180.156 g/mol (so 1 mmol/L = 18.0156 mg/dL), creatinine 113.12 g/mol (1 mg/dL = 88.40 umol/L),
the NGSP/IFCC master equation for HbA1c (NGSP % = 0.09148 x IFCC mmol/mol + 2.152), and
UCUM's definition of [degF] (5/9 K, offset 459.67)."""

from __future__ import annotations

import pytest

from hs_ingestion.units import normalize, to_ucum
from hs_ingestion.values import reference_range


@pytest.mark.parametrize(
    ("value", "unit", "canonical", "molar_mass", "code", "expected", "status"),
    [
        (126.0, "mg/dL", "mmol/L", 180.156, "14749-6", 126 / 18.0156, "CONVERTED"),
        (5.4, "mmol/L", "mmol/L", 180.156, "14749-6", 5.4, "UCUM_AS_SENT"),
        (5.4, "mmol/l", "mmol/L", 180.156, "14749-6", 5.4, "RENAMED"),
        (1.2, "mg/dL", "umol/L", 113.12, "14682-9", 1.2 * 88.4017, "CONVERTED"),
        (97.0, "μmol/L", "umol/L", 113.12, "14682-9", 97.0, "RENAMED"),
        (53.0, "mmol/mol", "%", None, "4548-4", 0.09148 * 53 + 2.152, "CONVERTED"),
        (98.6, "°F", "Cel", None, "8310-5", 37.0, "CONVERTED"),
        (37.2, "℃", "Cel", None, "8310-5", 37.2, "RENAMED"),
        (4.5, "10^9/L", "10*9/L", None, "6690-2", 4.5, "RENAMED"),
        (4500.0, "/uL", "10*9/L", None, "6690-2", 4.5, "CONVERTED"),
    ],
)
def test_conversions_keep_the_quantity(
    value: float,
    unit: str,
    canonical: str,
    molar_mass: float | None,
    code: str,
    expected: float,
    status: str,
) -> None:
    result = normalize(value, unit, canonical, molar_mass, code)
    assert result.value == pytest.approx(expected, rel=1e-4)
    assert result.unit == canonical
    assert result.status == status


def test_a_unit_that_cannot_express_the_code_is_flagged_not_converted() -> None:
    assert normalize(7.0, "%", "mmol/L", 180.156).status == "INCOMPATIBLE"
    assert normalize(7.0, "%", "mmol/L", 180.156).value is None
    assert normalize(7.0, "mg/dL", "mmol/L").status == "INCOMPATIBLE"  # no molar mass known
    assert normalize(7.0, "furlongs", "mmol/L").status == "UNKNOWN_UNIT"
    assert normalize(7.0, None, "mmol/L").status == "NO_UNIT"
    assert normalize(7.0, "U/L", None).status == "UCUM_AS_SENT"  # unknown code: as sent


@pytest.mark.parametrize(
    ("text", "limits"),
    [
        ("3.9-6.1", (3.9, 6.1)),
        ("3.90 - 6.10", (3.9, 6.1)),
        ("<5", (None, 5.0)),
        ("<=6.5", (None, 6.5)),
        (">60", (60.0, None)),
        ("70_105", (70.0, 105.0)),
        ("3.5\uff5e5.3", (3.5, 5.3)),
        ("-2-2", (-2.0, 2.0)),
        ("0-2-7.2", None),
        ("negative", None),
        ("", None),
    ],
)
def test_reference_ranges_as_senders_write_them(
    text: str, limits: tuple[float | None, float | None] | None
) -> None:
    assert reference_range(text) == limits


def test_sender_spellings() -> None:
    assert to_ucum("MMHG") == "mm[Hg]"
    assert to_ucum("bpm") == "/min"
    assert to_ucum(" ") is None
    assert to_ucum("furlongs") is None
