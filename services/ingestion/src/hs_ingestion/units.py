"""Analytes, UCUM units and the conversions ingestion applies, always keeping the value and
unit as sent. A unit that cannot express the analyte's quantity is flagged INCOMPATIBLE and
the value left unconverted (null), never converted silently."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

GLUCOSE_MG_PER_MMOL = 18.016  # mg/dL per mmol/L (molar mass 180.16 g/mol)
CREATININE_UMOL_PER_MG = 88.4  # umol/L per mg/dL


@dataclass(frozen=True)
class Analyte:
    key: str
    loinc: str
    display: str
    unit: str  # canonical UCUM unit
    vital_sign: bool = False
    from_units: dict[str, Callable[[float], float]] = field(default_factory=dict)


ANALYTES: dict[str, Analyte] = {
    a.key: a
    for a in (
        Analyte("glucose", "14749-6", "Glucose [Moles/volume] in Serum or Plasma", "mmol/L",
                from_units={"mg/dL": lambda v: v / GLUCOSE_MG_PER_MMOL}),
        Analyte("creatinine", "14682-9", "Creatinine [Moles/volume] in Serum or Plasma", "umol/L",
                from_units={"mg/dL": lambda v: v * CREATININE_UMOL_PER_MG}),
        # NGSP % from IFCC mmol/mol (master equation: NGSP = 0.09148 x IFCC + 2.152)
        Analyte("hba1c", "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%",
                from_units={"mmol/mol": lambda v: 0.09148 * v + 2.152}),
        Analyte("potassium", "2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L"),
        Analyte("heart_rate", "8867-4", "Heart rate", "/min", vital_sign=True),
        Analyte("respiratory_rate", "9279-1", "Respiratory rate", "/min", vital_sign=True),
        Analyte("spo2", "59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%", vital_sign=True),
        Analyte("systolic_bp", "8480-6", "Systolic blood pressure", "mm[Hg]", vital_sign=True),
        Analyte("diastolic_bp", "8462-4", "Diastolic blood pressure", "mm[Hg]", vital_sign=True),
        Analyte("body_temperature", "8310-5", "Body temperature", "Cel", vital_sign=True,
                from_units={"[degF]": lambda v: (v - 32) * 5 / 9}),
        Analyte("consciousness", "80288-4", "Level of consciousness", "", vital_sign=True),
        Analyte("supplemental_oxygen", "", "Supplemental oxygen", "", vital_sign=True),
    )
}  # fmt: skip

# Spellings senders use, to UCUM. Case matters in UCUM (mg/dL), not in what senders type.
UCUM: dict[str, str] = {
    "mmol/l": "mmol/L", "mg/dl": "mg/dL", "umol/l": "umol/L", "µmol/l": "umol/L", "μmol/l": "umol/L",
    "%": "%", "mmol/mol": "mmol/mol", "mmhg": "mm[Hg]", "mm[hg]": "mm[Hg]", "/min": "/min",
    "bpm": "/min", "次/分": "/min", "cel": "Cel", "°c": "Cel", "℃": "Cel", "c": "Cel",
    "[degf]": "[degF]", "°f": "[degF]", "degf": "[degF]", "f": "[degF]", "mg/l": "mg/L",
}  # fmt: skip


@dataclass(frozen=True)
class Normalized:
    value: float | None
    unit: str | None
    status: str  # hs.clinical.UnitStatus symbol
    factor: Callable[[float], float] | None  # applied to reference range limits too


def to_ucum(unit: str | None) -> str | None:
    if unit is None or not unit.strip():
        return None
    return UCUM.get(unit.strip().lower())


def normalize(value: float, unit_as_sent: str | None, analyte: Analyte) -> Normalized:
    if not analyte.unit:
        return Normalized(value, None, "NO_UNIT", None)
    if unit_as_sent is None or not unit_as_sent.strip():
        return Normalized(value, analyte.unit, "NO_UNIT", None)
    ucum = to_ucum(unit_as_sent)
    if ucum is None:
        return Normalized(None, None, "UNKNOWN_UNIT", None)
    if ucum == analyte.unit:
        return Normalized(
            value, ucum, "UCUM_AS_SENT" if ucum == unit_as_sent.strip() else "RENAMED", None
        )
    convert = analyte.from_units.get(ucum)
    if convert is None:
        return Normalized(None, None, "INCOMPATIBLE", None)
    return Normalized(round(convert(value), 4), analyte.unit, "CONVERTED", convert)


def parse_range(text: str) -> tuple[float | None, float | None] | None:
    """'3.9-6.1', '3.90 - 6.10', '<5', '<=5', '>60', '70_105' (HL7 normative example)."""
    cleaned = text.strip().replace(" ", "").replace("～", "-").replace("~", "-")
    if not cleaned:
        return None
    try:
        for prefix in ("<=", "≤", "<"):
            if cleaned.startswith(prefix):
                return None, float(cleaned[len(prefix) :])
        for prefix in (">=", "≥", ">"):
            if cleaned.startswith(prefix):
                return float(cleaned[len(prefix) :]), None
        for separator in ("_", "-"):
            low, found, high = cleaned.partition(separator)
            if found and low:
                return float(low), float(high)
    except ValueError:
        return None
    return None
