"""Avro single-object encoding with sealed sensitive fields.

Wire format (Avro specification, "Single object encoding"): `C3 01`, the 8-byte
little-endian CRC-64-AVRO fingerprint of the writer's wire schema, then the Avro binary
body. The reader finds the writer schema by fingerprint in the catalogue it ships, so no
registry server is needed.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import fastavro

from hs_common.avrowrite import AvroWriteError
from hs_common.crypto import Keyring, Sealed
from hs_common.errors import CodecError, NotSingleObjectError, UnknownSchemaError
from hs_common.schemas import (
    SINGLE_OBJECT_MARKER,
    ArrayPlan,
    EventSchema,
    NullablePlan,
    Plan,
    RecordPlan,
    SchemaCatalogue,
    SealedField,
)

HEADER_BYTES = len(SINGLE_OBJECT_MARKER) + 8

Record = dict[str, Any]


@dataclass(frozen=True)
class Decoded:
    schema: str
    record: Record


class Codec:
    """Encodes and decodes the catalogue's records, sealing and opening tagged fields."""

    def __init__(self, catalogue: SchemaCatalogue, keyring: Keyring) -> None:
        self.catalogue = catalogue
        self.keyring = keyring

    def encode(self, schema_name: str, record: Mapping[str, Any]) -> bytes:
        schema = self.catalogue.get(schema_name)
        wire_record = self._seal(schema.plan, record, record_id(record)) if schema.plan else record
        out = bytearray(schema.header)
        try:
            schema.write_wire(wire_record, out)
        except AvroWriteError as error:
            raise CodecError(f"record does not match {schema_name}: {error}") from None
        return bytes(out)

    def schema_of(self, data: bytes) -> EventSchema:
        if len(data) < HEADER_BYTES or data[:2] != SINGLE_OBJECT_MARKER:
            raise NotSingleObjectError(
                f"not Avro single-object encoding: {len(data)} bytes, starting "
                f"{data[:2].hex() or 'empty'} (expected {SINGLE_OBJECT_MARKER.hex()})"
            )
        fingerprint = data[2:HEADER_BYTES]
        schema = self.catalogue.by_fingerprint(fingerprint)
        if schema is None:
            raise UnknownSchemaError(
                f"unknown schema fingerprint {fingerprint.hex()}: written with a schema this "
                "service does not ship (newer producer, or not a HealthStream event)"
            )
        return schema

    def decode(self, data: bytes, expect: str | None = None) -> Decoded:
        schema = self.schema_of(data)
        if expect is not None and schema.name != expect:
            raise CodecError(f"expected {expect}, got {schema.name}")
        # Data written with a released older version is read into the current version's shape.
        current = self.catalogue.get(schema.name) if schema.released else schema
        reader = self.catalogue.reader_of(schema) if schema.released else None
        body = io.BytesIO(data)
        body.seek(HEADER_BYTES)
        try:
            record = fastavro.schemaless_reader(body, schema.wire_parsed, reader)
        except (
            ValueError,
            TypeError,
            EOFError,
            IndexError,
            UnicodeDecodeError,
            OverflowError,
        ) as exc:
            raise CodecError(f"body is not a valid {schema.name}: {_describe(exc)}") from None
        if body.tell() != len(data):
            raise CodecError(f"{len(data) - body.tell()} trailing bytes after a {schema.name} body")
        if not isinstance(record, dict):
            raise CodecError(f"{schema.name} body decoded to {type(record).__name__}, not a record")
        if current.plan:
            record = self._open(current.plan, record, schema.sealed_fields, record_id(record))
        return Decoded(schema.name, record)

    # sealing walks only the parts of a record that contain tagged fields
    def _seal(self, plan: RecordPlan, record: Mapping[str, Any], bound: str) -> Record:
        out = dict(record)
        for name, field_plan in plan.fields:
            if name in out:
                out[name] = self._seal_value(field_plan, out[name], bound)
        return out

    def _seal_value(self, plan: Plan, value: Any, bound: str) -> Any:
        if isinstance(plan, SealedField):
            if value is None and plan.nullable:
                return None
            if isinstance(value, Sealed):  # passing on a value this process cannot read
                return _sealed_to_wire(value)
            plain = bytearray()
            try:
                plan.write_plain({"v": value}, plain)
            except AvroWriteError as error:
                where = ".".join([plan.aad_name, *error.path[1:]])  # path[0] is the wrapper's "v"
                raise CodecError(f"{where}: {error.expected}") from None
            sealed = self.keyring.seal(plan.sensitivity, plan.aad_name, bytes(plain), bound)
            return _sealed_to_wire(sealed)
        if value is None:
            return None
        if isinstance(plan, RecordPlan):
            return self._seal(plan, value, bound)
        if isinstance(plan, NullablePlan):
            return self._seal_value(plan.inner, value, bound)
        if isinstance(plan, ArrayPlan):
            return [self._seal_value(plan.items, item, bound) for item in value]
        return {k: self._seal_value(plan.values, v, bound) for k, v in value.items()}

    def _open(
        self, plan: RecordPlan, record: Record, writers: Mapping[str, SealedField], bound: str
    ) -> Record:
        for name, field_plan in plan.fields:
            record[name] = self._open_value(field_plan, record[name], writers, bound)
        return record

    def _open_value(
        self, plan: Plan, value: Any, writers: Mapping[str, SealedField], bound: str
    ) -> Any:
        """Open sealed values; `writers` are the sealed fields of the version that wrote them."""
        if value is None:
            return None
        if isinstance(plan, SealedField):
            if plan.aad_name not in writers:  # written before the field was sealed
                return value
            sealed = Sealed(value["key_id"], value["nonce"], value["ciphertext"])
            plain = self.keyring.open(plan.aad_name, sealed, bound)
            if plain is None:
                return sealed
            writer = writers[plan.aad_name]
            reader = None if writer is plan else plan.plain_schema
            try:
                wrapper = fastavro.schemaless_reader(io.BytesIO(plain), writer.plain_schema, reader)
                return cast(Record, wrapper)["v"]
            except (ValueError, TypeError, EOFError, IndexError, UnicodeDecodeError) as exc:
                raise CodecError(
                    f"{plan.aad_name}: opened value does not decode: {_describe(exc)}"
                ) from None
        if isinstance(plan, RecordPlan):
            return self._open(plan, value, writers, bound)
        if isinstance(plan, NullablePlan):
            return self._open_value(plan.inner, value, writers, bound)
        if isinstance(plan, ArrayPlan):
            return [self._open_value(plan.items, item, writers, bound) for item in value]
        return {k: self._open_value(plan.values, v, writers, bound) for k, v in value.items()}


def record_id(record: Mapping[str, Any]) -> str:
    """What sealed values are bound to: the record's event id (envelope.event_id), or, for a
    record without an envelope (hs.vitals.PatientInput), the patient key it is about."""
    envelope = record.get("envelope")
    if isinstance(envelope, Mapping) and envelope.get("event_id") is not None:
        return str(envelope["event_id"])
    return str(record.get("patient_key") or "")


def _sealed_to_wire(sealed: Sealed) -> Record:
    return {"key_id": sealed.key_id, "nonce": sealed.nonce, "ciphertext": sealed.ciphertext}


def _describe(exc: Exception) -> str:
    """What fastavro found wrong, without the offending value (it may be personal data)."""
    text = str(exc)
    mismatch = _MISMATCH.search(text)
    if mismatch:
        return f"a value does not match {mismatch.group(1)}"
    if text.startswith("no value and no default for") or (
        text.startswith("must be ") and " on field " in text
    ):
        return text[:200]
    return f"{type(exc).__name__} (value withheld)"


_MISMATCH = re.compile(r"do not match (.*)$")
