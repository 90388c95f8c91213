"""Raw messages to canonical events, by the format the source's file names. Pure.

Each item of a message (an OBX, a Bundle entry, a reading, a clinic record) is mapped on its
own: the result is the events of the items that could be mapped and a failure for each one
that could not. RejectedInput means the message as a whole could not be read.
"""

from __future__ import annotations

from typing import Any

from hs_common.errors import RejectedInput
from hs_ingestion import fhir, mapped
from hs_ingestion.canonical import Mapped
from hs_ingestion.devices import normalize_device_batch
from hs_ingestion.hl7 import parse
from hs_ingestion.hl7map import normalize_hl7
from hs_ingestion.sources import Source
from hs_ingestion.typed import TYPED_CONTENT_TYPE, Contracts, normalize_typed

EVERY_ITEM = "*"


def normalize_raw(
    raw: dict[str, Any], source: Source, contracts: Contracts | None = None
) -> Mapped:
    """`contracts`: the schemas typed events are read with (default: the shipped ones)."""
    result = _by_format(raw, source, contracts or Contracts.shipped())
    wanted = set(raw.get("only_items") or ())
    if not wanted or EVERY_ITEM in wanted:
        return result
    return Mapped(
        [e for e in result.events if e.item in wanted],
        [f for f in result.failures if f.item in wanted],
    )


def _by_format(raw: dict[str, Any], source: Source, contracts: Contracts) -> Mapped:
    payload = bytes(raw["payload"])
    envelope = raw["envelope"]
    if raw.get("content_type") == TYPED_CONTENT_TYPE:  # typed events: any source may publish them
        return normalize_typed(payload, envelope, contracts)
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
