"""Malformed input of the kinds senders really produce, each with the reason code the
platform is expected to answer with (the dead-letter reason_code)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

from hs_synth.formats.clinic import CSV_COLUMNS, csv_batch
from hs_synth.formats.hl7 import END_BLOCK, START_BLOCK


@dataclass(frozen=True)
class BadInput:
    kind: str
    expected_reason: str
    payload: bytes


def bad_hl7(rng: random.Random, good: bytes, segment_end: str) -> BadInput:
    """A broken variant of a well-framed message."""
    body = good[len(START_BLOCK) : -len(END_BLOCK)]
    end = segment_end.encode()
    segments = body.split(end)
    kind = rng.choice(
        (
            "mllp_no_end",
            "mllp_no_start",
            "wrong_delimiters",
            "msh_missing",
            "impossible_date",
            "not_a_number",
            "unsupported_type",
        )
    )
    if kind == "mllp_no_end":
        return BadInput(kind, "mllp.framing", START_BLOCK + body)
    if kind == "mllp_no_start":
        return BadInput(kind, "mllp.framing", body + END_BLOCK)
    if kind == "wrong_delimiters":
        broken = [segments[0]] + [s.replace(b"|", b"#") for s in segments[1:]]
        return BadInput(kind, "hl7.delimiters", START_BLOCK + end.join(broken) + END_BLOCK)
    if kind == "msh_missing":
        return BadInput(kind, "hl7.msh_missing", START_BLOCK + end.join(segments[1:]) + END_BLOCK)
    if kind == "impossible_date":
        fixed = [_with_field(s, 7, b"19871332") if s.startswith(b"PID|") else s for s in segments]
        return BadInput(kind, "hl7.invalid_date", START_BLOCK + end.join(fixed) + END_BLOCK)
    if kind == "not_a_number":  # one result of the message, the others still good
        numeric = [i for i, s in enumerate(segments) if s.startswith(b"OBX|") and b"|NM|" in s]
        if not numeric:  # no numeric OBX: an unknown event type instead
            return _unsupported(segments, end)
        fixed = list(segments)
        fixed[numeric[0]] = _with_field(fixed[numeric[0]], 5, b"?7")
        return BadInput(kind, "hl7.invalid_value", START_BLOCK + end.join(fixed) + END_BLOCK)
    return _unsupported(segments, end)


def _unsupported(segments: list[bytes], end: bytes) -> BadInput:
    msh = segments[0].split(b"|")
    msh[8] = b"ADT^Z99^ADT_A01"
    return BadInput(
        "unsupported_type",
        "hl7.unsupported_message_type",
        START_BLOCK + end.join([b"|".join(msh), *segments[1:]]) + END_BLOCK,
    )


def _with_field(segment: bytes, position: int, value: bytes) -> bytes:
    fields = segment.split(b"|")
    if len(fields) > position:
        fields[position] = value
    return b"|".join(fields)


def bad_json(rng: random.Random, good: bytes) -> BadInput:
    if rng.random() < 0.5:
        return BadInput("json_truncated", "json.malformed", good[: max(1, len(good) // 2)])
    document = json.loads(good)
    document["csrq"] = "1987-02-30"
    return BadInput(
        "json_invalid_date",
        "clinic.invalid_field",
        json.dumps(document, ensure_ascii=False).encode(),
    )


def bad_csv(rng: random.Random, rows: list[dict[str, str]]) -> BadInput:
    missing = {"id_card", "birthday"} if rng.random() < 0.5 else {"patient_no"}
    columns = tuple(c for c in CSV_COLUMNS if c not in missing)
    return BadInput("csv_missing_columns", "csv.missing_columns", csv_batch(rows, columns))


def bad_fhir(rng: random.Random, good: bytes) -> BadInput:
    bundle = json.loads(good)
    resource = bundle["entry"][0]["resource"]
    if resource["resourceType"] == "Patient" and rng.random() < 0.5:
        resource["birthDate"] = "1987-13-01"
        return BadInput(
            "fhir_invalid_date", "fhir.invalid", json.dumps(bundle, ensure_ascii=False).encode()
        )
    resource.pop("resourceType")
    return BadInput(
        "fhir_no_resource_type", "fhir.invalid", json.dumps(bundle, ensure_ascii=False).encode()
    )


def bad_device_batch(good: bytes) -> BadInput:
    batch = json.loads(good)
    batch["readings"][0]["value"] = "high"
    return BadInput("device_non_numeric", "device.invalid_reading", json.dumps(batch).encode())
