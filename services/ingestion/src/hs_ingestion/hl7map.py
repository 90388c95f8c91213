"""HL7 v2 ADT and ORU messages to canonical events (pure).

Each event comes with the local patient id its Kafka key is made from, so one patient's
events stay in order. Anything that cannot be mapped raises RejectedInput with a reason code
and the position, and the whole message goes to the dead-letter topic (no partial results).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from hs_common.envelope import derived_envelope
from hs_ingestion.canonical import ICD10, Event, coding, observation_result, script_of
from hs_ingestion.hl7 import Hl7Error, Message, Segment, parse_timestamp
from hs_ingestion.sources import Source
from hs_ingestion.units import ANALYTES, Analyte

RESULT_STATUS = {
    "F": "FINAL", "P": "PRELIMINARY", "C": "CORRECTED", "D": "DELETED", "W": "WITHDRAWN",
    "X": "CANNOT_OBTAIN", "R": "NOT_VERIFIED", "I": "PENDING",
}  # fmt: skip
IDENTIFIER_TYPES = {
    "MR": "MEDICAL_RECORD",
    "NNCHN": "RESIDENT_ID",
    "NI": "RESIDENT_ID",
    "ID": "RESIDENT_ID",
    "SS": "INSURANCE",
    "PPN": "PASSPORT",
}


def normalize_hl7(message: Message, envelope: dict[str, Any], source: Source) -> list[Event]:
    kind, trigger, _ = message.message_type
    pid = message.segment("PID")
    if pid is None:
        raise Hl7Error("PID", "segment required for this message type", "hl7.required_missing")
    patient = _local_patient_id(pid, source)
    offset = source.utc_offset_hours
    _birth_date(
        pid.value(7), offset
    )  # an impossible birth date makes every message about the patient suspect
    if kind == "ADT" and trigger in ("A01", "A04", "A08"):
        kind_of_event = "UPDATE" if trigger == "A08" else "REGISTER"
        identity = _identity(pid, envelope, kind_of_event, patient, offset)
        events = [Event("hs.identity.PatientIdentity", identity, patient)]
        encounter = _encounter(message, envelope, patient, trigger, offset)
        if encounter is not None:
            events.append(Event("hs.clinical.Encounter", encounter, patient))
        events += [
            Event("hs.clinical.Condition", c, patient)
            for c in _conditions(message, envelope, patient, offset)
        ]
        return events
    if kind == "ADT" and trigger == "A40":
        mrg = message.segment("MRG")
        if mrg is None or not mrg.value(1):
            raise Hl7Error(
                "MRG-1", "the prior identifier is required for a merge", "hl7.required_missing"
            )
        record = _identity(pid, envelope, "MERGE", patient, offset)
        record["prior"] = {
            "local_patient_id": mrg.value(1),
            "identifiers": [_identifier(mrg, 1, i) for i in range(len(mrg.repetitions(1)))],
        }
        return [Event("hs.identity.PatientIdentity", record, patient)]
    if kind == "ORU" and trigger == "R01":
        return [
            Event("hs.clinical.Observation", o, patient)
            for o in _observations(message, envelope, patient, source)
        ]
    raise Hl7Error(
        "MSH-9", "message type is not one ingestion maps", "hl7.unsupported_message_type"
    )


def _local_patient_id(pid: Segment, source: Source) -> str:
    for index in range(len(pid.repetitions(3))):
        if pid.value(3, 5, index) == "MR" or pid.value(3, 4, index) == source.code:
            return pid.value(3, 1, index)
    if not pid.value(3):
        raise Hl7Error("PID-3", "patient identifier list is empty", "hl7.required_missing")
    return pid.value(3)


def _identifier(segment: Segment, position: int, repetition: int) -> dict[str, Any]:
    type_code = segment.value(position, 5, repetition)
    return {
        "type": IDENTIFIER_TYPES.get(type_code, "OTHER"),
        "value": segment.value(position, 1, repetition),
        "assigner": segment.value(position, 4, repetition) or None,
    }


def _identity(
    pid: Segment, envelope: dict[str, Any], kind: str, patient: str, offset: int
) -> dict[str, Any]:
    names = []
    for index in range(len(pid.repetitions(5))):
        family, given = pid.value(5, 1, index), pid.value(5, 2, index)
        if family or given:
            script = script_of(family + given)
            names.append(
                {"script": script, "family": family or None, "given": given or None, "text": None}
            )
    birth = _birth_date(pid.value(7), offset)
    phones = []
    for index in range(len(pid.repetitions(13))):
        number = pid.value(13, 1, index) or pid.value(13, 12, index)
        if number:
            phones.append(number)
    district = pid.value(11, 9)
    street, city, province, postal = (
        pid.value(11, 1),
        pid.value(11, 3),
        pid.value(11, 4),
        pid.value(11, 5),
    )
    address = None
    if street or city or district:
        text = "".join(
            part for part in (province, "" if city == province else city, street) if part
        )
        address = {
            "text": text or None,
            "division_code": district or None,
            "postal_code": postal or None,
        }
    return {
        "envelope": derived_envelope(envelope),
        "kind": kind,
        "person": {
            "local_patient_id": patient,
            "identifiers": [
                _identifier(pid, 3, i) for i in range(len(pid.repetitions(3))) if pid.value(3, 1, i)
            ],
            "names": names,
            "birth_date": birth,
            "phones": phones,
            "address": address,
        },
        "prior": None,
        "sex": {"M": "MALE", "F": "FEMALE", "U": "UNKNOWN", "O": "UNSPECIFIED"}.get(
            pid.value(8), "UNKNOWN"
        ),
        "residence_district": district if len(district) == 6 and district.isdigit() else None,
    }


def _birth_date(value: str, offset: int) -> date | None:
    if not value:
        return None
    return parse_timestamp(value, "PID-7", offset).date()


def _time(value: str, where: str, offset: int) -> datetime | None:
    return parse_timestamp(value, where, offset).astimezone(UTC) if value else None


def _encounter(
    message: Message, envelope: dict[str, Any], patient: str, trigger: str, offset: int
) -> dict[str, Any] | None:
    pv1 = message.segment("PV1")
    if pv1 is None or not pv1.value(19):
        return None
    evn = message.segment("EVN")
    started = _time(evn.value(2) if evn is not None else "", "EVN-2", offset)
    return {
        "envelope": derived_envelope(envelope),
        "subject": {"local_patient_id": patient, "encounter_id": pv1.value(19)},
        "encounter_class": {"I": "INPATIENT", "O": "OUTPATIENT", "E": "EMERGENCY"}.get(
            pv1.value(2), "OTHER"
        ),
        "status": "IN_PROGRESS" if trigger in ("A01", "A04") else "UNKNOWN",
        "started_at": started,
        "ended_at": None,
        "department": pv1.value(3) or None,
    }


def _conditions(
    message: Message, envelope: dict[str, Any], patient: str, offset: int
) -> list[dict[str, Any]]:
    pv1 = message.segment("PV1")
    visit = pv1.value(19) if pv1 is not None else ""
    conditions: list[dict[str, Any]] = []
    for dg1 in message.all("DG1"):
        code = dg1.value(3)
        if not code:
            raise Hl7Error(
                f"DG1-3 (set {dg1.value(1)})", "diagnosis code is empty", "hl7.required_missing"
            )
        coding = {
            "system": ICD10
            if dg1.value(3, 3) in ("I10", "ICD10", "I10C")
            else f"urn:hs:local:{envelope['source']['institution']}:dx",
            "code": code,
            "display": dg1.value(3, 2) or None,
            "version": None,
        }
        is_icd10 = coding["system"] == ICD10
        conditions.append(
            {
                "envelope": derived_envelope(envelope),
                "subject": {"local_patient_id": patient, "encounter_id": visit or None},
                "condition_id": f"{visit or message.control_id}-DG1-{dg1.value(1) or len(conditions)}",
                "diagnosis": {
                    "icd10": coding if is_icd10 else None,
                    "icd11": None,
                    "local_code": None if is_icd10 else coding,
                    "text": dg1.value(3, 2) or None,
                },
                "verification_status": {
                    "F": "CONFIRMED",
                    "A": "PROVISIONAL",
                    "W": "PROVISIONAL",
                }.get(dg1.value(6), "UNCONFIRMED"),
                "onset_at": None,
                "recorded_at": _time(dg1.value(5), "DG1-5", offset),
            }
        )
    return conditions


def _observations(
    message: Message, envelope: dict[str, Any], patient: str, source: Source
) -> list[dict[str, Any]]:
    offset = source.utc_offset_hours
    obr = message.segment("OBR")
    order = (obr.value(3) or obr.value(2)) if obr is not None else message.control_id
    default_time = obr.value(7) if obr is not None else ""
    pv1 = message.segment("PV1")
    visit = pv1.value(19) if pv1 is not None else ""
    observations: list[dict[str, Any]] = []
    for obx in message.all("OBX"):
        set_id = obx.value(1) or str(len(observations) + 1)
        where = f"OBX-3 (set {set_id})"
        local = obx.value(3)
        analyte_key = source.codes.get(local)
        if analyte_key is None:
            raise Hl7Error(where, "local code has no mapping for this source", "code.unknown")
        analyte = ANALYTES[analyte_key]
        effective = (
            _time(obx.value(14) or default_time, f"OBX-14 (set {set_id})", offset)
            or envelope["occurred_at"]
        )
        observations.append(
            {
                "envelope": derived_envelope(envelope, effective),
                "subject": {"local_patient_id": patient, "encounter_id": visit or None},
                "observation_id": f"{order}-{set_id}",
                "category": "VITAL_SIGNS" if analyte.vital_sign else "LABORATORY",
                "status": RESULT_STATUS.get(obx.value(11), "UNKNOWN"),
                "effective_at": effective,
                "issued_at": None,
                "result": _result(obx, analyte, envelope["source"]["institution"], set_id),
            }
        )
    return observations


def _result(obx: Segment, analyte: Analyte, institution: str, set_id: str) -> dict[str, Any]:
    value_type, text, flag = obx.value(2), obx.value(5), obx.value(8) or None
    local = coding(f"urn:hs:local:{institution}:obs", obx.value(3), obx.value(3, 2))
    if value_type == "NM":
        try:
            number = float(text)
        except ValueError:
            raise Hl7Error(
                f"OBX-5 (set {set_id})", "value of type NM is not a number", "hl7.invalid_value"
            ) from None
        return observation_result(
            analyte, local, text, number, obx.value(6) or None, obx.value(7) or None, flag
        )
    result = observation_result(analyte, local, text, None, obx.value(6) or None, None, flag)
    if value_type in ("CE", "CWE", "CNE"):
        result["value_coding"] = coding(
            f"urn:hs:local:{institution}:answers", obx.value(5, 1), obx.value(5, 2)
        )
    else:
        result["value_text"] = text
    return result
