"""Clinic JSON documents and CSV rows to canonical events, driven by the `[mapping]` of the
source's file: which field holds what, how the clinic writes sex and dates, which record
kinds exist. A new clinic is a new file, not new code. Pure."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from hs_common.envelope import derived_envelope
from hs_common.errors import RejectedInput
from hs_ingestion.canonical import (
    ICD10,
    Event,
    ItemFailure,
    Mapped,
    coding,
    each_item,
    observation_result,
    script_of,
    to_utc,
)
from hs_ingestion.sources import Source
from hs_ingestion.terms import resolve
from hs_ingestion.values import textual


def normalize_clinic_json(payload: bytes, envelope: dict[str, Any], source: Source) -> Mapped:
    return _records([json.loads(payload)], envelope, source)


def normalize_clinic_csv(
    payload: bytes, charset: str, envelope: dict[str, Any], source: Source
) -> Mapped:
    rows = list(csv.DictReader(io.StringIO(payload.decode(charset))))
    return _records(rows, envelope, source)


def _records(records: list[dict[str, Any]], envelope: dict[str, Any], source: Source) -> Mapped:
    """Each record on its own, and inside a results record each item on its own."""
    mapping = source.mapping
    if not mapping:
        raise RejectedInput("source file has no [mapping] for its records", "normalize.not_mapped")
    mapped = Mapped()
    for number, record in enumerate(records, start=1):
        where = f"record {number}"
        kind = mapping["kinds"].get(str(record.get(mapping["kind_field"], "")))
        patient = str(record.get(mapping["patient_id"]) or "")
        if kind is None or not patient:
            field, problem = (
                (mapping["kind_field"], "record kind is not one the mapping names")
                if kind is None
                else (mapping["patient_id"], "patient number is empty")
            )
            mapped.failures.append(
                ItemFailure(where, "clinic.invalid_field", f"{where}/{field}: {problem}")
            )
        elif kind == "results":
            mapped.add(_results(record, where, envelope, patient, source))
        else:
            mapped.add(each_item([(where, record)], _RecordEvent(kind, patient, envelope, source)))
    return mapped


@dataclass(frozen=True)
class _RecordEvent:
    """A registration or diagnosis record as its one event."""

    kind: str
    patient: str
    envelope: dict[str, Any]
    source: Source

    def __call__(self, where: str, record: dict[str, Any]) -> list[Event]:
        if self.kind == "registration":
            identity = _identity(record, where, self.envelope, self.patient, self.source)
            return [Event("hs.identity.PatientIdentity", identity, self.patient)]
        diagnosis = _diagnosis(record, where, self.envelope, self.patient, self.source)
        return [Event("hs.clinical.Condition", diagnosis, self.patient)]


def _text(record: dict[str, Any], field: str) -> str | None:
    if not field:
        return None
    value = record.get(field)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _time(record: dict[str, Any], field: str, where: str, source: Source) -> datetime | None:
    """The record's time field in the source's format, as UTC."""
    value = _text(record, field)
    if value is None:
        return None
    time_format = source.mapping["time_format"]
    try:
        parsed = (
            datetime.fromisoformat(value)
            if time_format == "iso"
            else datetime.strptime(value, time_format)
        )
    except ValueError:
        raise RejectedInput(
            f"{where}/{field}: not a date/time in the source's format", "clinic.invalid_field"
        ) from None
    return to_utc(parsed, source.zone)


def _identity(
    record: dict[str, Any],
    where: str,
    envelope: dict[str, Any],
    patient: str,
    source: Source,
) -> dict[str, Any]:
    mapping = source.mapping
    fields = mapping["person"]
    name = _text(record, fields["name"])
    names = []
    if name:
        names.append({"script": script_of(name), "family": None, "given": None, "text": name})
    birth_text = _text(record, fields["birth_date"])
    birth: date | None = None
    if birth_text:
        try:
            birth = datetime.strptime(birth_text, mapping["birth_format"]).date()
        except ValueError:
            raise RejectedInput(
                f"{where}/{fields['birth_date']}: birth date is not a valid date",
                "clinic.invalid_field",
            ) from None
    identifiers = [
        {"type": "MEDICAL_RECORD", "value": patient, "assigner": envelope["source"]["institution"]}
    ]
    id_number = _text(record, fields["id_number"])
    if id_number:
        identifiers.append({"type": "RESIDENT_ID", "value": id_number, "assigner": "CHN"})
    division = _text(record, fields["division"])
    address_text = _text(record, fields["address"])
    phone = _text(record, fields["phone"])
    return {
        "envelope": derived_envelope(
            envelope,
            _time(record, mapping["time"], where, source),
        ),
        "kind": "REGISTER",
        "person": {
            "local_patient_id": patient,
            "identifiers": identifiers,
            "names": names,
            "birth_date": birth,
            "phones": [phone] if phone else [],
            "address": {"text": address_text, "division_code": division, "postal_code": None}
            if address_text or division
            else None,
        },
        "prior": None,
        "sex": mapping["sex_codes"].get(_text(record, fields["sex"]) or "", "UNKNOWN"),
        "residence_district": division
        if division and len(division) == 6 and division.isdigit()
        else None,
    }


def _results(
    record: dict[str, Any], where: str, envelope: dict[str, Any], patient: str, source: Source
) -> Mapped:
    fields = source.mapping["results"]
    items = record.get(fields["items"]) if fields["items"] else [record]
    if not isinstance(items, list) or not items:
        problem = f"{where}/{fields['items']}: result items missing"
        return Mapped(failures=[ItemFailure(where, "clinic.invalid_field", problem)])
    try:
        effective = _time(record, fields["time"], where, source) or envelope["occurred_at"]
    except RejectedInput as error:
        return Mapped(failures=[ItemFailure(where, error.reason_code, str(error))])
    order = _text(record, fields["order"]) or f"{patient}-{effective:%Y%m%d%H%M%S}"

    def result(position: str, item: Any) -> list[Event]:
        index = position.rsplit(" ", 1)[-1]
        if not isinstance(item, dict):
            raise RejectedInput(
                f"{position}: a result item must be an object", "clinic.invalid_field"
            )
        local = _text(item, fields["code"]) or ""
        display = _text(item, fields["display"])
        value_text = _text(item, fields["value"]) or ""
        value = textual(value_text, keep_text=False)
        term = resolve(source.codes, [(local, "", display)])
        observation = {
            "envelope": derived_envelope(envelope, effective),
            "subject": {"local_patient_id": patient, "encounter_id": None},
            "observation_id": f"{order}-{index}",
            "category": "VITAL_SIGNS"
            if term.vital_sign
            else "LABORATORY"
            if term.code
            else "OTHER",
            "status": "FINAL",
            "effective_at": effective,
            "issued_at": None,
            "part_of": None,
            "result": observation_result(
                term,
                coding(f"urn:hs:local:{source.code}:obs", local, display),
                value,
                _text(item, fields["unit"]),
                _text(item, fields["range"]),
                None,
            ),
        }
        return [Event("hs.clinical.Observation", observation, patient)]

    return each_item([(f"{where} item {i}", item) for i, item in enumerate(items, start=1)], result)


def _diagnosis(
    record: dict[str, Any],
    where: str,
    envelope: dict[str, Any],
    patient: str,
    source: Source,
) -> dict[str, Any]:
    mapping = source.mapping
    fields = mapping["diagnosis"]
    code = _text(record, fields["code"])
    if not code:
        raise RejectedInput(
            f"{where}/{fields['code']}: diagnosis code is empty", "clinic.invalid_field"
        )
    recorded = _time(record, mapping["time"], where, source)
    visit = _text(record, fields["visit"])
    return {
        "envelope": derived_envelope(envelope, recorded),
        "subject": {"local_patient_id": patient, "encounter_id": visit},
        "condition_id": visit or f"{patient}-{code}-{recorded:%Y%m%d%H%M%S}"
        if recorded
        else visit or f"{patient}-{code}",
        "diagnosis": {
            "icd10": coding(ICD10, code, _text(record, fields["text"])),
            "icd11": None,
            "local_code": None,
            "text": _text(record, fields["text"]),
        },
        "verification_status": "CONFIRMED",
        "onset_at": None,
        "recorded_at": recorded,
    }
