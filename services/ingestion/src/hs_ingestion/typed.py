"""Typed events of our contracts, published straight to an inbound topic. Pure.

An institution that already produces canonical events writes them with any Avro library:
single-object encoding (`C3 01`, the CRC-64-AVRO fingerprint of the writer schema's parsing
canonical form, the binary body) with one of the published logical schemas (a file of
`schemas/history/`, fields in the clear; the inbound topic is the institution's alone), and
the content-type `application/vnd.healthstream.avro`. Only the clinical, identity and device
types may be published; what an institution says is its own (the envelope's institution is the
topic's) and gets a new event id, as events made from any other format do.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache
from typing import Any

import fastavro
from fastavro.schema import to_parsing_canonical_form

from hs_common.envelope import derived_envelope
from hs_common.errors import RejectedInput
from hs_common.schemas import (
    SINGLE_OBJECT_MARKER,
    SchemaCatalogue,
    crc64_avro,
    default_schema_root,
)
from hs_ingestion.canonical import Event, Mapped

TYPED_CONTENT_TYPE = "application/vnd.healthstream.avro"
# the types an institution may publish, with the part naming whom the event is about
PUBLISHABLE = {
    "hs.identity.PatientIdentity": "person",
    "hs.clinical.Encounter": "subject",
    "hs.clinical.Condition": "subject",
    "hs.clinical.Observation": "subject",
    "hs.clinical.Immunization": "subject",
    "hs.device.DeviceReading": "binding",
}
_HEADER = len(SINGLE_OBJECT_MARKER) + 8


@dataclass(frozen=True)
class Typed:
    schema: str
    record: dict[str, Any]  # in the current version's shape, fields in the clear

    @property
    def patient(self) -> str:
        """The patient number its key is made of (an unbound device: the device id)."""
        about = self.record[PUBLISHABLE[self.schema]]
        return str(about.get("local_patient_id") or about.get("device_id") or "")

    @property
    def patient_institution(self) -> str | None:
        """For a device bound to another institution's patient: that institution."""
        return self.record["binding"].get("institution") if "binding" in self.record else None


class Contracts:
    """The logical schemas publishers write with: every released version of a publishable
    type, by its standard single-object fingerprint, each read into the current shape."""

    def __init__(self, catalogue: SchemaCatalogue) -> None:
        self._readers = {
            name: fastavro.parse_schema(catalogue.release_document(name), named_schemas={})
            for name in PUBLISHABLE
        }
        self._writers: dict[bytes, tuple[str, Any]] = {}
        for version in catalogue.released():
            if version.name in PUBLISHABLE:
                parsed = fastavro.parse_schema(version.logical, named_schemas={})
                self._writers[fingerprint(parsed)] = (version.name, parsed)

    @staticmethod
    @cache
    def shipped() -> Contracts:
        return Contracts(SchemaCatalogue.load(default_schema_root()))

    def read(self, payload: bytes) -> Typed:
        """The event in `payload`, or RejectedInput saying what is wrong with it."""
        if len(payload) < _HEADER or payload[:2] != SINGLE_OBJECT_MARKER:
            raise RejectedInput(
                "not Avro single-object encoding (it starts with C3 01 and the schema's "
                "8-byte fingerprint)",
                "typed.not_single_object",
            )
        writer = self._writers.get(payload[2:_HEADER])
        if writer is None:
            raise RejectedInput(
                f"schema fingerprint {payload[2:_HEADER].hex()} is no published version of "
                f"{', '.join(PUBLISHABLE)}",
                "typed.unknown_schema",
            )
        name, parsed = writer
        body = io.BytesIO(payload)
        body.seek(_HEADER)
        try:
            record = fastavro.schemaless_reader(body, parsed, self._readers[name])
        except (ValueError, TypeError, EOFError, IndexError, UnicodeDecodeError) as error:
            raise RejectedInput(
                f"body is not a valid {name} ({type(error).__name__})", "typed.invalid"
            ) from None
        if body.tell() != len(payload):
            raise RejectedInput(f"trailing bytes after the {name} body", "typed.invalid")
        if not isinstance(record, dict):
            raise RejectedInput(f"{name} body is not a record", "typed.invalid")
        typed = Typed(name, record)
        if not typed.patient:
            raise RejectedInput(f"{name} names no patient (or device)", "typed.no_patient")
        return typed


def fingerprint(parsed: Any) -> bytes:
    """The Avro specification's single-object fingerprint of a parsed schema."""
    return crc64_avro(to_parsing_canonical_form(parsed).encode()).to_bytes(8, "little")


def normalize_typed(payload: bytes, envelope: dict[str, Any], contracts: Contracts) -> Mapped:
    """The published event as ours: the raw message's source and receipt, its own times."""
    typed = contracts.read(payload)
    record = typed.record | {
        "envelope": derived_envelope(envelope, typed.record["envelope"]["occurred_at"])
    }
    return Mapped(
        [Event(typed.schema, record, typed.patient, institution=typed.patient_institution)]
    )
