"""Wearable reading batches to hs.device.DeviceReading events. Pure."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hs_common.envelope import derived_envelope
from hs_common.errors import RejectedInput
from hs_ingestion.canonical import Event
from hs_ingestion.units import to_ucum

DEVICE_METRICS = {
    "glucose": "GLUCOSE", "systolic_bp": "SYSTOLIC_BP", "diastolic_bp": "DIASTOLIC_BP",
    "heart_rate": "HEART_RATE", "spo2": "SPO2", "body_temperature": "BODY_TEMPERATURE", "respiratory_rate": "RESPIRATORY_RATE",
}  # fmt: skip


def normalize_device_batch(payload: bytes, envelope: dict[str, Any]) -> list[Event]:
    batch = json.loads(payload)
    device = str(batch["device_id"])
    patient = batch.get("patient_ref")
    events = []
    for index, reading in enumerate(batch["readings"]):
        metric = DEVICE_METRICS.get(str(reading["type"]))
        if metric is None:
            raise RejectedInput(
                f"/readings/{index}/type: metric is not one ingestion maps", "code.unknown"
            )
        try:
            at = datetime.fromisoformat(str(reading["time"])).astimezone(UTC)
        except ValueError:
            raise RejectedInput(
                f"/readings/{index}/time: not an ISO 8601 date-time", "device.invalid_reading"
            ) from None
        unit = to_ucum(str(reading["unit"])) or str(reading["unit"])
        events.append(
            Event(
                "hs.device.DeviceReading",
                {
                    "envelope": derived_envelope(envelope, at),
                    "binding": {"device_id": device, "local_patient_id": patient},
                    "measurement": {
                        "metric": metric,
                        "value": float(reading["value"]),
                        "unit": unit,
                    },
                    "measured_at": at,
                },
                str(patient or device),
            )
        )
    return events
