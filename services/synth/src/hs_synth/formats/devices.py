"""The wearable cloud's upload: one JSON batch per device per hour."""

from __future__ import annotations

import json
from collections import defaultdict

from hs_synth.events import DeviceReading
from hs_synth.formats.clinic import iso


def batches(readings: list[DeviceReading]) -> list[tuple[str, bytes]]:
    """(first reading time ISO, batch bytes), in upload order."""
    grouped: dict[tuple[str, str], list[DeviceReading]] = defaultdict(list)
    for reading in readings:
        grouped[(reading.device_id, f"{reading.at:%Y%m%d%H}")].append(reading)
    out = []
    for (device, _hour), group in sorted(
        grouped.items(), key=lambda item: (item[1][0].at, item[0][0])
    ):
        document = {
            "vendor": "W01",
            "device_id": device,
            "patient_ref": group[0].patient_ref,
            "readings": [
                {"type": r.metric, "value": r.value, "unit": r.unit, "time": iso(r.at)}
                for r in group
            ],
        }
        out.append((iso(group[0].at), json.dumps(document, separators=(",", ":")).encode()))
    return out
