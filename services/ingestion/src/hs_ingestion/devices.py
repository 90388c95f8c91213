"""Wearable reading batches to hs.device.DeviceReading events. Pure.

A batch names the device and, in `patient_ref`, the patient it is bound to as the enrolling
institution numbers them ('<institution>:<patient number>', or an object with `institution`
and `patient_id`); the vendor's cloud knows the current binding, so a device handed to
someone else is bound anew by the next batch. Each reading stands alone, and its value is
converted into its metric's UCUM unit; one whose unit is unknown or cannot express the
metric keeps its value and unit as sent, marked so, and no rule uses it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hs_common.envelope import derived_envelope
from hs_common.errors import RejectedInput
from hs_ingestion.canonical import Event, Mapped, each_item
from hs_ingestion.units import normalize, to_ucum

# metric as vendors name it -> (hs.device.DeviceMetric, canonical UCUM unit, molar mass g/mol)
DEVICE_METRICS: dict[str, tuple[str, str, float | None]] = {
    "glucose": ("GLUCOSE", "mmol/L", 180.156), "systolic_bp": ("SYSTOLIC_BP", "mm[Hg]", None),
    "diastolic_bp": ("DIASTOLIC_BP", "mm[Hg]", None), "heart_rate": ("HEART_RATE", "/min", None),
    "spo2": ("SPO2", "%", None), "body_temperature": ("BODY_TEMPERATURE", "Cel", None),
    "respiratory_rate": ("RESPIRATORY_RATE", "/min", None),
}  # fmt: skip


def normalize_device_batch(payload: bytes, envelope: dict[str, Any]) -> Mapped:
    batch = json.loads(payload)
    device = str(batch["device_id"])
    institution, patient = binding(batch.get("patient_ref"))

    def reading(position: str, reading: dict[str, Any]) -> list[Event]:
        metric = DEVICE_METRICS.get(str(reading["type"]))
        if metric is None:
            raise RejectedInput(
                f"{position}/type: metric is not one ingestion maps", "code.unknown"
            )
        try:
            at = datetime.fromisoformat(str(reading["time"])).astimezone(UTC)
        except ValueError:
            raise RejectedInput(
                f"{position}/time: not an ISO 8601 date-time", "device.invalid_reading"
            ) from None
        record = _reading(envelope, device, institution, patient, metric, reading, at)
        return [
            Event("hs.device.DeviceReading", record, patient or device, institution=institution)
        ]

    return each_item([(f"/readings/{i}", r) for i, r in enumerate(batch["readings"])], reading)


def binding(patient_ref: Any) -> tuple[str | None, str | None]:
    """(enrolling institution, its patient number) from a batch's patient_ref."""
    if isinstance(patient_ref, dict):
        institution, patient = patient_ref.get("institution"), patient_ref.get("patient_id")
        return (str(institution) if institution else None, str(patient) if patient else None)
    if isinstance(patient_ref, str) and patient_ref:
        institution, found, patient = patient_ref.partition(":")
        return (institution, patient) if found and patient else (None, patient_ref)
    return None, None


def _reading(
    envelope: dict[str, Any],
    device: str,
    institution: str | None,
    patient: str | None,
    metric: tuple[str, str, float | None],
    reading: dict[str, Any],
    at: datetime,
) -> dict[str, Any]:
    name, canonical, molar_mass = metric
    sent_value, sent_unit = float(reading["value"]), str(reading["unit"])
    converted = normalize(sent_value, sent_unit, canonical, molar_mass)
    usable = converted.value is not None and converted.unit == canonical
    return {
        "envelope": derived_envelope(envelope, at),
        "binding": {"device_id": device, "local_patient_id": patient, "institution": institution},
        "measurement": {
            "metric": name,
            "value": converted.value if usable and converted.value is not None else sent_value,
            "unit": canonical if usable else (to_ucum(sent_unit) or sent_unit),
            "original_value": sent_value,
            "original_unit": sent_unit,
            "unit_status": converted.status
            if usable
            else ("UNKNOWN_UNIT" if converted.status == "NO_UNIT" else converted.status),
        },
        "measured_at": at,
    }
