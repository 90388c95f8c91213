"""Raw messages to canonical events, by the format the source's file names. Pure.

Each event comes with the local patient id its Kafka key is made from, so one patient's
events stay in order. Anything that cannot be mapped raises RejectedInput with a reason code
and the position, and the whole message goes to the dead-letter topic (no partial results).
"""

from __future__ import annotations

from typing import Any

from hs_common.errors import RejectedInput
from hs_ingestion import fhir, mapped
from hs_ingestion.canonical import Event
from hs_ingestion.devices import normalize_device_batch
from hs_ingestion.hl7 import parse
from hs_ingestion.hl7map import normalize_hl7
from hs_ingestion.sources import Source


def normalize_raw(raw: dict[str, Any], source: Source) -> list[Event]:
    payload = bytes(raw["payload"])
    envelope = raw["envelope"]
    if source.format == "hl7v2":
        return normalize_hl7(parse(payload.decode(raw["charset"] or "ascii")), envelope, source)
    if source.format == "device-batch":
        return normalize_device_batch(payload, envelope)
    if source.format == "clinic-json":
        return mapped.normalize_clinic_json(payload, envelope, source)
    if source.format == "clinic-csv":
        return mapped.normalize_clinic_csv(payload, raw["charset"] or "utf-8", envelope, source)
    if source.format == "fhir":
        return fhir.normalize_fhir(payload, envelope, source)
    raise RejectedInput(f"no mapping for the {source.format} format", "normalize.not_mapped")
