"""What every format's mapping produces: canonical events with their keys, and the
observation result shared by HL7, clinic and FHIR mappings. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hs_ingestion.units import Analyte, normalize, parse_range

HAN = re.compile(r"[\u3400-\u9fff]")
LOINC = "http://loinc.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
HS_ANALYTE = (
    "urn:hs:analyte"  # for an analyte LOINC has no single code for (e.g. on oxygen: yes/no)
)

INTERPRETATIONS = {
    "N": "NORMAL", "L": "LOW", "H": "HIGH", "LL": "CRITICAL_LOW", "HH": "CRITICAL_HIGH", "A": "ABNORMAL",
    "AA": "CRITICAL_ABNORMAL", "<": "BELOW_SCALE", ">": "ABOVE_SCALE", "POS": "POSITIVE", "NEG": "NEGATIVE",
    "DET": "DETECTED", "ND": "NOT_DETECTED",
}  # fmt: skip


@dataclass(frozen=True)
class Event:
    schema: str
    record: dict[str, Any]
    patient: str  # local patient id (or device id) the key is made from


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    return {"system": system, "code": code, "display": display or None, "version": None}


def observation_result(
    analyte: Analyte,
    local_code: dict[str, Any],
    original_value: str,
    number: float | None,
    unit_as_sent: str | None,
    range_text: str | None,
    flag: str | None,
) -> dict[str, Any]:
    """hs.clinical.ObservationResult: the value converted to the analyte's UCUM unit where a
    conversion is known, the range converted alike, the flag from the sender or computed."""
    result: dict[str, Any] = {
        "code": coding(LOINC, analyte.loinc, analyte.display)
        if analyte.loinc
        else coding(HS_ANALYTE, analyte.key, analyte.display),
        "local_code": local_code,
        "value_quantity": None, "unit": None, "value_coding": None, "value_text": None,
        "original_value": original_value, "original_unit": unit_as_sent, "unit_status": "NO_UNIT",
        "reference_range": None, "interpretation": "NONE", "interpretation_origin": "NONE",
        "original_flag": flag,
    }  # fmt: skip
    if number is not None:
        converted = normalize(number, unit_as_sent, analyte)
        result.update(
            value_quantity=converted.value, unit=converted.unit, unit_status=converted.status
        )
        limits = parse_range(range_text) if range_text else None
        if limits is not None:
            low, high = limits
            if converted.factor is not None:
                low = None if low is None else round(converted.factor(low), 4)
                high = None if high is None else round(converted.factor(high), 4)
            result["reference_range"] = {"low": low, "high": high, "text": range_text}
            if not flag and converted.value is not None:
                result.update(
                    interpretation=_computed(converted.value, low, high),
                    interpretation_origin="COMPUTED",
                )
    if flag:
        result.update(
            interpretation=INTERPRETATIONS.get(flag, "OTHER"), interpretation_origin="SENDER"
        )
    return result


def _computed(value: float, low: float | None, high: float | None) -> str:
    if low is not None and value < low:
        return "LOW"
    if high is not None and value > high:
        return "HIGH"
    return "NORMAL"


def script_of(name: str) -> str:
    """hs.identity.NameScript of a name as written."""
    return "HAN" if HAN.search(name) else "LATIN"


def to_utc(moment: datetime, utc_offset_hours: int) -> datetime:
    """An aware UTC time; a time sent without an offset is the source's local time."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone(timedelta(hours=utc_offset_hours)))
    return moment.astimezone(UTC)
