"""HL7 v2 messages to canonical events (pure): ADT (registrations, visits, merges), ORU^R01 and
ORU^R30 (results, and the identity in their PID), VXU^V04 (vaccinations).

Each event comes with the local patient id its Kafka key is made from, so one patient's
events stay in order, and with its position in the message. Each OBX, DG1 and RXA stands
alone: one that cannot be mapped is an ItemFailure (its own dead letter), the others become
events. Only what makes the whole message meaningless (no PID, no patient id, an unknown
message type) raises RejectedInput.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, tzinfo
from typing import Any

from hs_common.envelope import derived_envelope
from hs_ingestion import values
from hs_ingestion.canonical import (
    ICD10,
    Event,
    ItemFailure,
    Mapped,
    coding,
    each_item,
    observation_result,
    script_of,
)
from hs_ingestion.hl7 import Hl7Error, Message, Segment, parse_timestamp
from hs_ingestion.sources import Source
from hs_ingestion.terms import LOINC, UNMAPPED, Term, of_code, resolve
from hs_ingestion.units import to_ucum
from hs_terminology.vocab import RESULT_STATUS_OF_HL7

# PID-3.5 (HL7 table 0203) to hs.identity.IdentifierType.
IDENTIFIER_TYPES = {
    "MR": "MEDICAL_RECORD", "PI": "MEDICAL_RECORD", "PT": "MEDICAL_RECORD",
    "NNCHN": "RESIDENT_ID", "NI": "RESIDENT_ID", "ID": "RESIDENT_ID", "CZ": "RESIDENT_ID",
    "SS": "INSURANCE", "HC": "INSURANCE", "PPN": "PASSPORT",
}  # fmt: skip
PERSON_ID_TYPES = {"NNCHN", "NI", "ID", "CZ", "SS", "HC", "PPN", "DL", "NH"}  # not a patient number
NOT_CURRENT_NAMES = {"M", "BAD"}  # XPN-7 (table 0200): maiden name, bad name
# XTN-2 use codes (table 0201) and XTN-3 equipment types (table 0202) of no phone number.
NOT_PHONES = {"NET", "X.400", "INTERNET", "FX", "BP"}
REGISTER = {"A01", "A04", "A05", "A28"}
UPDATE = {"A02", "A03", "A06", "A07", "A08", "A11", "A12", "A13", "A31"}
MERGES = {"A34", "A39", "A40", "A47"}
PERSON_ONLY = {"A28", "A31"}  # person information: a PV1 there is a placeholder, no visit
ENCOUNTER_STATUS = {
    "A01": "IN_PROGRESS", "A04": "IN_PROGRESS", "A02": "IN_PROGRESS", "A06": "IN_PROGRESS",
    "A07": "IN_PROGRESS", "A13": "IN_PROGRESS", "A03": "FINISHED", "A11": "CANCELLED",
    "A05": "PLANNED",
}  # fmt: skip
BLOOD_PRESSURE_PANELS = {"85354-9", "55284-4", "35094-2"}
SYSTOLIC, DIASTOLIC = "8480-6", "8462-4"


def normalize_hl7(message: Message, envelope: dict[str, Any], source: Source) -> Mapped:
    kind, trigger, _ = message.message_type
    pid = message.segment("PID")
    if pid is None:
        raise Hl7Error("PID", "segment required for this message type", "hl7.required_missing")
    patient = local_patient_id(pid, source)
    zone = source.zone
    mapped = Mapped()
    if kind == "ADT" and trigger in MERGES:
        return _merges(message, envelope, zone, source)
    if kind == "ADT" and trigger in REGISTER | UPDATE:
        event_kind = "REGISTER" if trigger in REGISTER else "UPDATE"
        mapped.add(_identity_events(pid, envelope, event_kind, patient, zone, source))
        mapped.add(_visit(message, envelope, patient, trigger, zone))
        mapped.add(_conditions(message, envelope, patient, zone))
        return mapped
    if kind == "ORU" and trigger in ("R01", "R30"):
        mapped.add(_identity_events(pid, envelope, "REGISTER", patient, zone, source))
        mapped.add(_visit(message, envelope, patient, trigger, zone))
        mapped.add(_observations(message, envelope, patient, source))
        return mapped
    if kind == "VXU" and trigger == "V04":
        mapped.add(_identity_events(pid, envelope, "REGISTER", patient, zone, source))
        mapped.add(_immunizations(message, envelope, patient, zone))
        mapped.add(_observations(message, envelope, patient, source))
        return mapped
    raise Hl7Error(
        "MSH-9", "message type is not one ingestion maps", "hl7.unsupported_message_type"
    )


def _merges(message: Message, envelope: dict[str, Any], zone: tzinfo, source: Source) -> Mapped:
    """Each PID with the MRG after it (a message may merge several pairs): the prior record
    (MRG-1) merged into the surviving one (PID)."""
    mapped = Mapped()
    pid: Segment | None = None
    for segment in message.segments:
        if segment.name == "PID":
            pid = segment
        elif segment.name == "MRG" and pid is not None and segment.value(1):
            patient = local_patient_id(pid, source)
            merge = _identity_events(pid, envelope, "MERGE", patient, zone, source)
            merge.events[0].record["prior"] = {
                "local_patient_id": segment.value(1),
                "identifiers": [
                    _identifier(segment, 1, i) for i in range(len(segment.repetitions(1)))
                ],
            }
            position = f"PID {len(mapped.events) + 1}"
            mapped.add(Mapped([replace(e, item=position) for e in merge.events], merge.failures))
            pid = None
    if not mapped.events:
        raise Hl7Error(
            "MRG-1", "the prior identifier is required for a merge", "hl7.required_missing"
        )
    return mapped


def local_patient_id(pid: Segment, source: Source) -> str:
    """The institution's own patient number among PID-3's identifiers: by identifier type in
    the source's order of preference, then one the source itself assigned, then the first
    that is not a person identifier (resident ID, insurance, passport), then PID-2."""
    listed = [
        (pid.value(3, 1, i), pid.value(3, 4, i), pid.value(3, 5, i))
        for i in range(len(pid.repetitions(3)))
        if pid.value(3, 1, i)
    ]
    for wanted in source.local_id_types:
        for value, _, kind in listed:
            if kind == wanted:
                return value
    for value, assigner, kind in listed:
        if assigner in (source.code, source.facility) and kind not in PERSON_ID_TYPES:
            return value
    for value, _, kind in listed:
        if kind not in PERSON_ID_TYPES:
            return value
    if pid.value(2):
        return pid.value(2)
    if listed:
        return listed[0][0]
    raise Hl7Error("PID-3", "patient identifier list is empty", "hl7.required_missing")


def _identifier(segment: Segment, position: int, repetition: int) -> dict[str, Any]:
    return {
        "type": IDENTIFIER_TYPES.get(segment.value(position, 5, repetition), "OTHER"),
        "value": segment.value(position, 1, repetition),
        "assigner": segment.value(position, 4, repetition) or None,
    }


def _identity_events(
    pid: Segment,
    envelope: dict[str, Any],
    kind: str,
    patient: str,
    zone: tzinfo,
    source: Source,
) -> Mapped:
    """The identity in PID; a birth date that is no date is left out and reported as its own
    failure (PID-7), so the person and the message's results still arrive."""
    mapped = Mapped()
    try:
        birth = _birth_date(pid.value(7), zone)
    except Hl7Error as error:
        birth = None
        mapped.failures.append(ItemFailure("PID-7", error.reason_code, str(error)))
    record = _identity(pid, envelope, kind, patient, birth, _today(envelope, zone))
    mapped.events.append(Event("hs.identity.PatientIdentity", record, patient, "PID"))
    return mapped


def _today(envelope: dict[str, Any], zone: tzinfo) -> date:
    """The day the identity is current on: when it was received (an old message replayed
    today does not make an ended phone current again)."""
    moment = envelope["received_at"]
    return moment.astimezone(zone).date() if isinstance(moment, datetime) else date.today()


def _expired(segment: Segment, field: int, component: int, index: int, today: date) -> bool:
    """An XPN-13 / XTN-14 expiration date before the message's day."""
    text = segment.value(field, component, index)
    try:
        return bool(text) and parse_timestamp(text, "expiration").date() < today
    except Hl7Error:
        return False


def _identity(
    pid: Segment,
    envelope: dict[str, Any],
    kind: str,
    patient: str,
    birth: date | None,
    today: date,
) -> dict[str, Any]:
    names = []
    for index in range(len(pid.repetitions(5))):
        family, given = pid.value(5, 1, index), pid.value(5, 2, index)
        current = pid.value(5, 7, index) not in NOT_CURRENT_NAMES
        if (family or given) and current and not _expired(pid, 5, 13, index, today):
            names.append(
                {
                    "script": script_of(family + given),
                    "family": family or None,
                    "given": given or None,
                    "text": None,
                }
            )
    phones = []
    for field in (13, 14):
        for index in range(len(pid.repetitions(field))):
            number = _phone(pid, field, index)
            kinds = {pid.value(field, 2, index).upper(), pid.value(field, 3, index).upper()}
            if (
                any(c.isdigit() for c in number)
                and not kinds & NOT_PHONES
                and not _expired(pid, field, 14, index, today)
            ):
                phones.append(number)
    district = pid.value(11, 9)
    street, city, province, postal = (pid.value(11, c) for c in (1, 3, 4, 5))
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


def _phone(pid: Segment, field: int, index: int) -> str:
    """XTN: the number as written (XTN-1, before v2.5 and still common), else XTN-12, else
    composed from country, area and local number (XTN-5..7)."""
    written = pid.value(field, 1, index) or pid.value(field, 12, index)
    if written:
        return written
    return "".join(pid.value(field, c, index) for c in (5, 6, 7))


def _birth_date(value: str, zone: tzinfo) -> date | None:
    if not value or value == values.HL7_NULL:
        return None
    return parse_timestamp(value, "PID-7", zone).date()


def _time(value: str, where: str, zone: tzinfo) -> datetime | None:
    if not value or value == values.HL7_NULL:
        return None
    return parse_timestamp(value, where, zone).astimezone(UTC)


def _visit(
    message: Message, envelope: dict[str, Any], patient: str, trigger: str, zone: tzinfo
) -> Mapped:
    """The visit in PV1 as an item of its own."""
    return each_item(
        [("PV1", message)], lambda _, m: _encounter(m, envelope, patient, trigger, zone)
    )


def _encounter(
    message: Message, envelope: dict[str, Any], patient: str, trigger: str, zone: tzinfo
) -> list[Event]:
    pv1 = message.segment("PV1")
    if pv1 is None or trigger in PERSON_ONLY:
        return []
    evn = message.segment("EVN")
    event_time = _time(evn.value(2) if evn is not None else "", "EVN-2", zone)
    admitted = _time(pv1.value(44), "PV1-44", zone) or (event_time if trigger != "A03" else None)
    discharged = _time(pv1.value(45), "PV1-45", zone) or (event_time if trigger == "A03" else None)
    record = {
        "envelope": derived_envelope(envelope),
        "subject": {"local_patient_id": patient, "encounter_id": pv1.value(19) or None},
        "encounter_class": {"I": "INPATIENT", "O": "OUTPATIENT", "E": "EMERGENCY"}.get(
            pv1.value(2), "OTHER"
        ),
        "status": ENCOUNTER_STATUS.get(trigger, "UNKNOWN"),
        "started_at": admitted,
        "ended_at": discharged,
        "department": pv1.value(3) or None,
    }
    return [Event("hs.clinical.Encounter", record, patient)]


def _conditions(message: Message, envelope: dict[str, Any], patient: str, zone: tzinfo) -> Mapped:
    pv1 = message.segment("PV1")
    visit = pv1.value(19) if pv1 is not None else ""
    institution = envelope["source"]["institution"]

    def condition(position: str, dg1: Segment) -> list[Event]:
        code = dg1.value(3)
        set_id = dg1.value(1) or position.rsplit(maxsplit=1)[-1]
        if not code:
            raise Hl7Error(
                f"DG1-3 (set {set_id})", "diagnosis code is empty", "hl7.required_missing"
            )
        system = dg1.value(3, 3).upper()
        is_icd10 = system in ("I10", "ICD10", "I10C", "ICD-10", "ICD10CN", "GB/T14396")
        diagnosis = coding(
            ICD10 if is_icd10 else f"urn:hs:local:{institution}:dx", code, dg1.value(3, 2)
        )
        record = {
            "envelope": derived_envelope(envelope),
            "subject": {"local_patient_id": patient, "encounter_id": visit or None},
            "condition_id": f"{visit or message.control_id}-DG1-{set_id}",
            "diagnosis": {
                "icd10": diagnosis if is_icd10 else None,
                "icd11": None,
                "local_code": None if is_icd10 else diagnosis,
                "text": dg1.value(3, 2) or dg1.value(4) or None,
            },
            "verification_status": {"F": "CONFIRMED", "A": "PROVISIONAL", "W": "PROVISIONAL"}.get(
                dg1.value(6), "UNCONFIRMED"
            ),
            "onset_at": None,
            "recorded_at": _time(dg1.value(5), f"DG1-5 (set {set_id})", zone),
        }
        return [Event("hs.clinical.Condition", record, patient)]

    return each_item(
        [(f"DG1 {i}", s) for i, s in enumerate(message.all("DG1"), start=1)], condition
    )


def _observations(
    message: Message, envelope: dict[str, Any], patient: str, source: Source
) -> Mapped:
    """Every OBX with the OBR it belongs to and the NTE segments that follow it."""
    pv1 = message.segment("PV1")
    visit = pv1.value(19) if pv1 is not None else ""
    results: list[tuple[str, tuple[Segment | None, int, Segment, list[str]]]] = []
    obr: Segment | None = None
    obr_number = obx_number = 0
    for segment in message.segments:
        if segment.name == "OBR":
            obr, obr_number = segment, obr_number + 1
        elif segment.name == "OBX":
            obx_number += 1
            results.append((f"OBX {obx_number}", (obr, obr_number, segment, [])))
        elif segment.name == "NTE" and results and results[-1][1][0] is obr:
            results[-1][1][3].append(segment.value(3))

    def observation(
        position: str, item: tuple[Segment | None, int, Segment, list[str]]
    ) -> list[Event]:
        order, number, obx, notes = item
        return _observation(message, envelope, patient, visit, source, order, number, obx, notes)

    return each_item(results, observation)


def _observation(
    message: Message,
    envelope: dict[str, Any],
    patient: str,
    visit: str,
    source: Source,
    obr: Segment | None,
    obr_number: int,
    obx: Segment,
    notes: list[str],
) -> list[Event]:
    set_id = obx.value(1)
    where = f"OBX-{{}} (set {set_id or '?'}{f' of OBR {obr_number}' if obr_number > 1 else ''})"
    order = (obr.value(3) or obr.value(2)) if obr is not None else ""
    observation_id = (
        f"{order}-{set_id}" if order and set_id else f"{message.control_id}-{obr_number}-{set_id}"
    )
    first = 1 if obx.value(3, 1) or not obx.value(3, 4) else 4  # else only the alternate
    system = obx.value(3, first + 2)
    local = coding(
        system if system and system != "L" else f"urn:hs:local:{source.code}:obs",
        obx.value(3, first),
        obx.value(3, first + 1),
    )
    term = resolve(
        source.codes,
        [
            (obx.value(3, 1), obx.value(3, 3), obx.value(3, 2)),
            (obx.value(3, 4), obx.value(3, 6), obx.value(3, 5)),
        ],
    )
    value = _value(obx, where.format(5), source.code)
    zone = source.zone
    default_time = obr.value(7) if obr is not None else ""
    effective = (
        _time(obx.value(14) or default_time, where.format(14), zone) or envelope["occurred_at"]
    )
    unit = _unit(obx)
    record = {
        "envelope": derived_envelope(envelope, effective),
        "subject": {"local_patient_id": patient, "encounter_id": visit or None},
        "observation_id": observation_id,
        "category": _category(term),
        "status": RESULT_STATUS_OF_HL7.get(obx.value(11), "UNKNOWN"),
        "effective_at": effective,
        "issued_at": _time(obx.value(19), where.format(19), zone),
        "part_of": None,
        "result": observation_result(
            term,
            local,
            value,
            None if unit == values.HL7_NULL else unit,
            obx.value(7),
            obx.value(8) or None,
            notes,
        ),
    }
    pressure = values.blood_pressure(value.text)
    named = {str(local["code"]).upper(), str(local["display"] or "").upper()}
    is_pressure = term.code_value in BLOOD_PRESSURE_PANELS or (
        term.code is None and bool(named & values.BLOOD_PRESSURE_NAMES)
    )
    if is_pressure and pressure is not None:
        return _blood_pressure_parts(record, term, local, value, unit, pressure, patient)
    return [Event("hs.clinical.Observation", record, patient)]


def _unit(obx: Segment) -> str:
    """OBX-6 as the sender meant it: the identifier, else the text; a unit whose '^' was not
    escaped ('10^9/L', read as two components) is taken whole."""
    whole = obx.text(6)
    if obx.value(6, 2) and not obx.value(6, 3) and to_ucum(whole) is not None:
        return whole
    return obx.value(6) or obx.value(6, 2)


def _category(term: Term) -> str:
    if term.vital_sign:
        return "VITAL_SIGNS"
    return "LABORATORY" if term.code is not None else "OTHER"


def _value(obx: Segment, where: str, institution: str) -> values.Value:
    value_type = obx.value(2)
    text = obx.value(5)
    as_sent = obx.text(5)
    repetitions = obx.repetitions(5)
    others = tuple(obx.value(5, 1, i) for i in range(1, len(repetitions)) if obx.value(5, 1, i))
    try:
        if value_type == "NM":
            read = values.numeric(text)
        elif value_type == "SN":
            components = [obx.value(5, c) for c in (1, 2, 3, 4)]
            read = values.structured_numeric(components, obx.text(5))
        elif value_type in ("CE", "CWE", "CNE", "CF") and text not in ("", values.HL7_NULL):
            system = obx.value(5, 3)
            answer = coding(
                system if system and system != "L" else f"urn:hs:local:{institution}:answers",
                obx.value(5, 1),
                obx.value(5, 2),
            )
            read = values.Value(text, coding=answer)
        else:
            read = values.textual(as_sent)
    except ValueError as error:
        raise Hl7Error(where, str(error), "hl7.invalid_value") from None
    return values.Value(
        as_sent, read.number, read.comparator, read.upper, read.coding, read.free_text, others
    )


def _blood_pressure_parts(
    panel: dict[str, Any],
    term: Term,
    local: dict[str, Any],
    value: values.Value,
    unit: str,
    pressure: tuple[float, float],
    patient: str,
) -> list[Event]:
    """A blood pressure sent as one value ('140/90' under a panel code, or a local code named
    so): one observation per part, each naming the panel it came from. The parts carry their
    LOINC codes only when the panel's code is mapped."""
    events = []
    for code, number in ((SYSTOLIC, pressure[0]), (DIASTOLIC, pressure[1])):
        part = of_code(LOINC, code, None, term.origin) if term.code else UNMAPPED
        reading = values.Value(value.text, number, free_text=value.free_text)
        notes = panel["result"]["notes"]
        result = observation_result(part, local, reading, unit or "mm[Hg]", None, None, notes)
        record = panel | {
            "observation_id": f"{panel['observation_id']}-{code}",
            "category": "VITAL_SIGNS",
            "part_of": {"observation_id": panel["observation_id"], "code": term.code},
            "result": result,
        }
        events.append(Event("hs.clinical.Observation", record, patient))
    return events


def _immunizations(
    message: Message, envelope: dict[str, Any], patient: str, zone: tzinfo
) -> Mapped:
    """RXA segments (HL7 v2.5.1 immunization messaging): vaccine (RXA-5, CVX or local),
    administered at (RXA-3), lot (RXA-15), completion status (RXA-20)."""
    institution = envelope["source"]["institution"]

    def immunization(position: str, rxa: Segment) -> list[Event]:
        code = rxa.value(5)
        if not code:
            raise Hl7Error(
                f"RXA-5 ({position})", "administered vaccine code is empty", "hl7.required_missing"
            )
        system = rxa.value(5, 3).upper()
        administered = _time(rxa.value(3), f"RXA-3 ({position})", zone)
        if administered is None:
            raise Hl7Error(
                f"RXA-3 ({position})", "administration time is empty", "hl7.required_missing"
            )
        record = {
            "envelope": derived_envelope(envelope, administered),
            "subject": {"local_patient_id": patient, "encounter_id": None},
            "immunization_id": f"{message.control_id}-{position.rsplit(maxsplit=1)[-1]}",
            "status": {
                "CP": "COMPLETED",
                "PA": "COMPLETED",
                "RE": "NOT_DONE",
                "NA": "NOT_DONE",
            }.get(rxa.value(20) or "CP", "UNKNOWN"),
            "vaccine": coding(
                "http://hl7.org/fhir/sid/cvx"
                if system == "CVX"
                else f"urn:hs:local:{institution}:vaccine",
                code,
                rxa.value(5, 2),
            ),
            "occurred_at": administered,
            "lot_number": rxa.value(15) or None,
            "dose_number": None,
            "site": None,
            "route": None,
        }
        return [Event("hs.clinical.Immunization", record, patient)]

    return each_item(
        [(f"RXA {i}", s) for i, s in enumerate(message.all("RXA"), start=1)], immunization
    )
