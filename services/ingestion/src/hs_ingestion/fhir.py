"""FHIR R4 resources and Bundles to canonical events: Patient, Encounter, Observation,
Condition. Observations coded in LOINC are matched to the platform's analytes by code; their
UCUM units are checked and converted like any other. Pure."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from hs_common.envelope import derived_envelope
from hs_common.errors import RejectedInput
from hs_ingestion.canonical import (
    ICD10,
    LOINC,
    Event,
    coding,
    observation_result,
    script_of,
    to_utc,
)
from hs_ingestion.sources import Source
from hs_ingestion.units import ANALYTES

# WS/T 500 names the resident ID card number 2.16.156.10011.1.3; 1.2 (the health record
# number there) is accepted too, as sources (and our generator, before) used it for the ID
RESIDENT_ID_SYSTEMS = {"urn:oid:2.16.156.10011.1.3", "urn:oid:2.16.156.10011.1.2"}
BY_LOINC = {a.loinc: a for a in ANALYTES.values() if a.loinc}
ENCOUNTER_CLASSES = {"IMP": "INPATIENT", "AMB": "OUTPATIENT", "EMER": "EMERGENCY"}
VERIFICATION = {
    "confirmed": "CONFIRMED",
    "provisional": "PROVISIONAL",
    "differential": "DIFFERENTIAL",
    "refuted": "REFUTED",
    "entered-in-error": "ENTERED_IN_ERROR",
    "unconfirmed": "UNCONFIRMED",
}
STATUS = {
    "final": "FINAL",
    "preliminary": "PRELIMINARY",
    "corrected": "CORRECTED",
    "amended": "CORRECTED",
    "cancelled": "CANCELLED",
    "entered-in-error": "WITHDRAWN",
    "registered": "PENDING",
}


def normalize_fhir(payload: bytes, envelope: dict[str, Any], source: Source) -> list[Event]:
    document = json.loads(payload)
    if document.get("resourceType") == "Bundle":
        resources = [
            (f"/entry/{i}/resource", e["resource"]) for i, e in enumerate(document.get("entry", []))
        ]
    else:
        resources = [("", document)]
    events = []
    for pointer, resource in resources:
        kind = resource.get("resourceType")
        if kind == "Patient":
            events.append(
                Event(
                    "hs.identity.PatientIdentity",
                    _patient(resource, pointer, envelope, source),
                    str(resource["id"]),
                )
            )
        elif kind == "Observation":
            observation = _observation(resource, pointer, envelope, source)
            events.append(
                Event(
                    "hs.clinical.Observation",
                    observation,
                    observation["subject"]["local_patient_id"],
                )
            )
        elif kind == "Condition":
            condition = _condition(resource, pointer, envelope, source.utc_offset_hours)
            events.append(
                Event("hs.clinical.Condition", condition, condition["subject"]["local_patient_id"])
            )
        elif kind == "Encounter":
            encounter = _encounter(resource, pointer, envelope, source.utc_offset_hours)
            events.append(
                Event("hs.clinical.Encounter", encounter, encounter["subject"]["local_patient_id"])
            )
    return events


def _instant(value: str | None, where: str, utc_offset_hours: int) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise RejectedInput(f"{where}: not a FHIR dateTime", "fhir.invalid") from None
    return to_utc(parsed, utc_offset_hours)


def _subject(resource: dict[str, Any], pointer: str) -> str:
    reference = (resource.get("subject") or {}).get("reference", "")
    if not reference.startswith("Patient/"):
        raise RejectedInput(
            f"{pointer}/subject/reference: must reference a Patient", "fhir.invalid"
        )
    return str(reference.removeprefix("Patient/"))


def _subject_ref(resource: dict[str, Any], pointer: str) -> dict[str, Any]:
    encounter = (resource.get("encounter") or {}).get("reference", "")
    return {
        "local_patient_id": _subject(resource, pointer),
        "encounter_id": encounter.removeprefix("Encounter/") or None,
    }


def _patient(
    resource: dict[str, Any], pointer: str, envelope: dict[str, Any], source: Source
) -> dict[str, Any]:
    identifiers = []
    for identifier in resource.get("identifier", []):
        kind = (
            "RESIDENT_ID"
            if identifier.get("system") in RESIDENT_ID_SYSTEMS
            else "MEDICAL_RECORD"
            if identifier.get("use") == "usual"
            else "OTHER"
        )
        identifiers.append(
            {
                "type": kind,
                "value": str(identifier.get("value", "")),
                "assigner": "CHN" if kind == "RESIDENT_ID" else source.code,
            }
        )
    names = []
    for name in resource.get("name", []):
        text = name.get("text") or ""
        script = script_of(text + (name.get("family") or ""))
        names.append(
            {
                "script": script,
                "family": name.get("family"),
                "given": " ".join(name.get("given", [])) or None,
                "text": text or None,
            }
        )
    birth: date | None = None
    if resource.get("birthDate"):
        try:
            birth = date.fromisoformat(resource["birthDate"])
        except ValueError:
            raise RejectedInput(f"{pointer}/birthDate: not a valid date", "fhir.invalid") from None
    address = (resource.get("address") or [None])[0]
    division = None
    if address:
        division = next(
            (
                e.get("valueCode")
                for e in address.get("extension", [])
                if e.get("url") == "urn:hs:ext:division-code"
            ),
            None,
        )
    return {
        "envelope": derived_envelope(envelope),
        "kind": "REGISTER",
        "person": {
            "local_patient_id": str(resource["id"]),
            "identifiers": identifiers,
            "names": names,
            "birth_date": birth,
            "phones": [
                t["value"]
                for t in resource.get("telecom", [])
                if t.get("system") == "phone" and t.get("value")
            ],
            "address": {
                "text": address.get("text"),
                "division_code": division,
                "postal_code": address.get("postalCode"),
            }
            if address
            else None,
        },
        "prior": None,
        "sex": {"male": "MALE", "female": "FEMALE", "other": "UNSPECIFIED"}.get(
            resource.get("gender", ""), "UNKNOWN"
        ),
        "residence_district": division,
    }


def _observation(
    resource: dict[str, Any], pointer: str, envelope: dict[str, Any], source: Source
) -> dict[str, Any]:
    offset = source.utc_offset_hours
    codings = resource.get("code", {}).get("coding", [])
    loinc = next((c for c in codings if c.get("system") == LOINC), None)
    analyte = BY_LOINC.get(loinc.get("code", "")) if loinc else None
    if analyte is None:
        raise RejectedInput(f"{pointer}/code: no LOINC code the platform maps", "code.unknown")
    effective = (
        _instant(resource.get("effectiveDateTime"), f"{pointer}/effectiveDateTime", offset)
        or envelope["occurred_at"]
    )
    quantity = resource.get("valueQuantity") or {}
    value = quantity.get("value")
    if not isinstance(value, int | float):
        raise RejectedInput(f"{pointer}/valueQuantity/value: a number is required", "fhir.invalid")
    local = coding(LOINC, str(loinc["code"]), loinc.get("display")) if loinc else coding(LOINC, "")
    range_text = None
    for limits in resource.get("referenceRange", [])[:1]:
        low, high = limits.get("low", {}).get("value"), limits.get("high", {}).get("value")
        range_text = (
            f"{low}-{high}"
            if low is not None and high is not None
            else f">{low}"
            if low is not None
            else f"<{high}"
            if high is not None
            else None
        )
    interpretation = next(
        (c.get("code") for i in resource.get("interpretation", []) for c in i.get("coding", [])),
        None,
    )
    return {
        "envelope": derived_envelope(envelope, effective),
        "subject": _subject_ref(resource, pointer),
        "observation_id": str(resource["id"]),
        "category": "VITAL_SIGNS" if analyte.vital_sign else "LABORATORY",
        "status": STATUS.get(resource.get("status", ""), "UNKNOWN"),
        "effective_at": effective,
        "issued_at": _instant(resource.get("issued"), f"{pointer}/issued", offset),
        "result": observation_result(
            analyte,
            local,
            str(value),
            float(value),
            quantity.get("code") or quantity.get("unit"),
            range_text,
            interpretation,
        ),
    }


def _condition(
    resource: dict[str, Any], pointer: str, envelope: dict[str, Any], offset: int
) -> dict[str, Any]:
    codings = resource.get("code", {}).get("coding", [])
    icd10 = next((c for c in codings if c.get("system") == ICD10), None)
    if icd10 is None:
        raise RejectedInput(f"{pointer}/code: an ICD-10 coding is required", "code.unknown")
    status = next(
        (c.get("code") for c in resource.get("verificationStatus", {}).get("coding", [])),
        "unconfirmed",
    )
    recorded = _instant(resource.get("recordedDate"), f"{pointer}/recordedDate", offset)
    return {
        "envelope": derived_envelope(envelope, recorded),
        "subject": _subject_ref(resource, pointer),
        "condition_id": str(resource["id"]),
        "diagnosis": {
            "icd10": coding(ICD10, str(icd10["code"]), icd10.get("display")),
            "icd11": None,
            "local_code": None,
            "text": resource.get("code", {}).get("text"),
        },
        "verification_status": VERIFICATION.get(str(status), "UNCONFIRMED"),
        "onset_at": _instant(resource.get("onsetDateTime"), f"{pointer}/onsetDateTime", offset),
        "recorded_at": recorded,
    }


def _encounter(
    resource: dict[str, Any], pointer: str, envelope: dict[str, Any], offset: int
) -> dict[str, Any]:
    period = resource.get("period", {})
    return {
        "envelope": derived_envelope(envelope),
        "subject": {
            "local_patient_id": _subject(resource, pointer),
            "encounter_id": str(resource["id"]),
        },
        "encounter_class": ENCOUNTER_CLASSES.get(
            resource.get("class", {}).get("code", ""), "OTHER"
        ),
        "status": {
            "planned": "PLANNED",
            "in-progress": "IN_PROGRESS",
            "finished": "FINISHED",
            "cancelled": "CANCELLED",
        }.get(resource.get("status", ""), "UNKNOWN"),
        "started_at": _instant(period.get("start"), f"{pointer}/period/start", offset),
        "ended_at": _instant(period.get("end"), f"{pointer}/period/end", offset),
        "department": None,
    }
