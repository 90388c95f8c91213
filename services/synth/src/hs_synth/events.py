"""Clinical facts the generator emits, before any institution's format is applied."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hs_synth.registrations import Registration


@dataclass(frozen=True)
class LabResult:
    registration: Registration
    test: str  # key of institutions.LOINC: glucose, creatinine, hba1c, potassium
    value: float  # canonical unit
    at: datetime
    order_id: str
    # defects (hs_synth.defects)
    unit_sent: str | None = None  # a unit other than the institution's own for the test
    copies: int = 1  # the order's message sent this many times
    sent_late: timedelta = timedelta(0)  # the report sent this long after it was issued


# a lab result is analysed half an hour after the specimen is taken, and its report sent
# five minutes later
ANALYSED_AFTER = timedelta(minutes=30)
REPORTED_AFTER = timedelta(minutes=35)


def report_sent_at(result: LabResult) -> datetime:
    return result.at + REPORTED_AFTER + result.sent_late


@dataclass(frozen=True)
class VitalSigns:
    """One set of observations at the bedside (NEWS2 parameters)."""

    registration: Registration
    at: datetime
    respiratory_rate: int
    spo2: int
    on_oxygen: bool
    systolic: int
    diastolic: int
    pulse: int
    consciousness: str  # A, C, V, P, U
    temperature: float
    visit_id: str
    admitted_at: datetime | None = None  # the stay's start
    copies: int = 1  # defects (hs_synth.defects): the message sent this many times
    upgraded_codes: bool = False  # sent under new local codes nobody mapped


@dataclass(frozen=True)
class Diagnosis:
    registration: Registration
    icd10: str
    display: str
    at: datetime
    visit_id: str
    final: bool = True


@dataclass(frozen=True)
class Admission:
    registration: Registration
    at: datetime
    visit_id: str
    ward: str


@dataclass(frozen=True)
class DeviceReading:
    device_id: str
    patient_ref: str
    metric: str  # glucose, systolic_bp, diastolic_bp, heart_rate, spo2
    value: float
    unit: str
    at: datetime


@dataclass
class Feed:
    """Everything generated, in the order it happened per source."""

    registrations: list[Registration] = field(default_factory=list)
    updates: list[Registration] = field(default_factory=list)  # A08 with changed contact details
    admissions: list[Admission] = field(default_factory=list)
    labs: list[LabResult] = field(default_factory=list)
    vitals: list[VitalSigns] = field(default_factory=list)
    diagnoses: list[Diagnosis] = field(default_factory=list)
    readings: list[DeviceReading] = field(default_factory=list)
