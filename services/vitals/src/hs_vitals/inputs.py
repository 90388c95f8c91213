"""What each source topic means to a patient's monitor, as hs.vitals.PatientInput records keyed
by the patient key (the pseudonym of the institution and the local patient id, as on every
clinical topic). Pure, apart from the keyed pseudonym.

- device readings (hs.device.reading.v1): one READING; an unbound device is its own patient;
- vital-sign observations (hs.clinical.observation.v1): one READING when charted vital signs;
- acknowledgements (hs.vitals.ack.v1): one ACKNOWLEDGEMENT;
- golden records (hs.identity.person.v1): one PERSON per linked record;
- conditions (hs.clinical.condition.v1): one COHORT when a diagnosis places the patient in one;
- the escalation clock: one CHECK when an open alert is due.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from hs_common.codec import Record
from hs_vitals.monitor import Metric, Reading
from hs_vitals.observations import observation_reading
from hs_vitals.thresholds import Cohorts

Pseudonym = Callable[[str, str], str]
NOT_A_DIAGNOSIS = ("REFUTED", "ENTERED_IN_ERROR")
USABLE_UNITS = ("UCUM_AS_SENT", "RENAMED", "CONVERTED")  # the metric's canonical unit


def patient_input(
    kind: str, patient_key: str, at: datetime, envelope: Record, **fields: Any
) -> Record:
    return {
        "patient_key": patient_key,
        "kind": kind,
        "at": at,
        "source": dict(envelope["source"]),
        "trace_id": envelope["trace_id"],
        "reading": None,
        "alert_id": None,
        "person_id": None,
        "cohort": None,
    } | fields


def reading_input(patient_key: str, reading: Reading, envelope: Record) -> Record:
    value = {"device": reading.device, "metric": reading.metric.value, "value": reading.value}
    return patient_input("READING", patient_key, reading.at, envelope, reading=value)


def from_device(reading: Record, pseudonym: Pseudonym) -> list[Record]:
    """A reading bound to a patient belongs to the patient as their enrolling institution
    numbers them (so it joins that record's person); one whose unit ingestion could not read
    or convert into its metric's unit is not used."""
    measurement, binding = reading["measurement"], reading["binding"]
    if (
        measurement["metric"] not in Metric.__members__
        or measurement.get("unit_status", "UCUM_AS_SENT") not in USABLE_UNITS
    ):
        return []
    institution = binding.get("institution") or reading["envelope"]["source"]["institution"]
    patient = binding["local_patient_id"] or f"device:{binding['device_id']}"
    observed = Reading(
        binding["device_id"], Metric(measurement["metric"]), float(measurement["value"]),
        reading["measured_at"],
    )  # fmt: skip
    return [reading_input(pseudonym(institution, patient), observed, reading["envelope"])]


def from_observation(observation: Record, pseudonym: Pseudonym) -> list[Record]:
    reading = observation_reading(observation)
    if reading is None:
        return []
    envelope = observation["envelope"]
    key = pseudonym(envelope["source"]["institution"], observation["subject"]["local_patient_id"])
    return [reading_input(key, reading, envelope)]


def from_acknowledgement(ack: Record) -> list[Record]:
    return [
        patient_input(
            "ACKNOWLEDGEMENT", ack["patient_key"], ack["at"], ack["envelope"],
            alert_id=ack["alert_id"],
        )
    ]  # fmt: skip


def from_person(person: Record) -> list[Record]:
    """Every record of an active person learns its person id; a folded person's records are
    listed again by the person they were folded into."""
    if person["status"] != "ACTIVE":
        return []
    envelope = person["envelope"]
    return [
        patient_input(
            "PERSON", record_key, envelope["occurred_at"], envelope, person_id=person["person_id"]
        )
        for record_key in person["record_keys"]
    ]


def from_condition(condition: Record, cohorts: Cohorts, pseudonym: Pseudonym) -> list[Record]:
    icd10 = condition["diagnosis"]["icd10"]
    if icd10 is None or condition["verification_status"] in NOT_A_DIAGNOSIS:
        return []
    cohort = cohorts.for_diagnosis(icd10["code"])
    if cohort is None:
        return []
    envelope = condition["envelope"]
    key = pseudonym(envelope["source"]["institution"], condition["subject"]["local_patient_id"])
    at = condition["recorded_at"] or envelope["occurred_at"]
    return [patient_input("COHORT", key, at, envelope, cohort=cohort)]
