"""Typed events of our contracts published on an inbound topic: written by another Avro
implementation (Apache's `avro` package) with a published schema file, read at the Kafka door,
made ours by the normalizer (the topic's institution, a new event id); anything else refused
with what is wrong."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Any

import avro.io
import avro.schema
import fastavro
import pytest

from hs_common.crypto import Keyring
from hs_common.schemas import SINGLE_OBJECT_MARKER, SchemaCatalogue, default_schema_root
from hs_common.testing import golden_example
from hs_ingestion.kafkadoor import Inbound, Kept, Refused, receive_inbound
from hs_ingestion.normalize import normalize_raw
from hs_ingestion.sources import Source, SourceRegistry
from hs_ingestion.typed import TYPED_CONTENT_TYPE, Contracts, fingerprint

KEYS = Keyring.generate()
SOURCES = SourceRegistry({"H2": Source("H2", "hospital over Kafka", ("kafka",))})
OBSERVATION = "hs.clinical.Observation"


def published(schema_root: Path, name: str) -> list[dict[str, Any]]:
    """The schema files a publisher is given: every released version of the type."""
    return [json.loads(p.read_text()) for p in sorted((schema_root / "history" / name).glob("*"))]


def single_object(document: dict[str, Any], record: dict[str, Any]) -> bytes:
    """`record` as Apache's avro package writes it, after the single-object header."""
    body = io.BytesIO()
    avro.io.DatumWriter(avro.schema.parse(json.dumps(document))).write(
        _uuids_as_text(record), avro.io.BinaryEncoder(body)
    )
    parsed = fastavro.parse_schema(document, named_schemas={})
    return SINGLE_OBJECT_MARKER + fingerprint(parsed) + body.getvalue()


def _uuids_as_text(value: Any) -> Any:
    """The avro package takes a uuid as its text."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: _uuids_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_uuids_as_text(v) for v in value]
    return value


def door(value: bytes, content_type: str = TYPED_CONTENT_TYPE) -> Kept | Refused:
    message = Inbound("hs.inbound.H2.v1", 0, 3, b"obs-1", value, [("content-type",
                      content_type.encode())])  # fmt: skip
    [outcome] = receive_inbound(message, SOURCES, KEYS, Contracts.shipped(), 1 << 20)
    return outcome


def test_a_published_observation_becomes_the_topics_institutions_event(
    catalogue: SchemaCatalogue, schema_root: Path
) -> None:
    observation = golden_example(catalogue.get(OBSERVATION), schema_root)
    envelope = observation["envelope"]
    claimed = observation | {
        "envelope": envelope | {"source": {"institution": "BJ03", "system": "LIS"}}
    }  # another institution, as the publisher wrote it
    current = catalogue.release_document(OBSERVATION)  # the newest file in history
    kept = door(single_object(current, claimed))
    assert isinstance(kept, Kept)
    assert kept.record["envelope"]["source"] == {"institution": "H2", "system": "LIS"}
    assert kept.key == KEYS.pseudonym("H2", observation["subject"]["local_patient_id"])
    [event] = normalize_raw(kept.record, SOURCES.get("H2")).events  # type: ignore[arg-type]
    assert event.schema == OBSERVATION
    assert event.patient == observation["subject"]["local_patient_id"]
    assert event.record["envelope"]["source"]["institution"] == "H2"
    assert event.record["envelope"]["event_id"] != claimed["envelope"]["event_id"]
    assert event.record["envelope"]["occurred_at"] == observation["envelope"]["occurred_at"]
    without_envelope = {k: v for k, v in event.record.items() if k != "envelope"}
    assert without_envelope == {k: v for k, v in observation.items() if k != "envelope"}


def test_every_released_version_of_a_type_is_read(schema_root: Path) -> None:
    contracts = Contracts(SchemaCatalogue.load(schema_root))
    versions = published(schema_root, OBSERVATION)
    assert len(versions) >= 2
    fingerprints = {fingerprint(fastavro.parse_schema(d, named_schemas={})) for d in versions}
    assert len(fingerprints) == len(versions)
    for version in versions:  # the oldest one has fewer fields: defaults fill them
        example = _example_for(version)
        typed = contracts.read(single_object(version, example))
        assert typed.schema == OBSERVATION
        assert typed.patient == example["subject"]["local_patient_id"]


def _example_for(document: dict[str, Any]) -> dict[str, Any]:
    """A record of `document`'s shape, from the current golden example."""
    root = default_schema_root()
    example = golden_example(SchemaCatalogue.load(root).get(OBSERVATION), root)
    parsed = fastavro.parse_schema(document, named_schemas={})
    body = io.BytesIO()
    fastavro.schemaless_writer(body, parsed, example)
    body.seek(0)
    record = fastavro.schemaless_reader(body, parsed)
    assert isinstance(record, dict)
    return record


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (b"MSH|^~\\&|", "typed.not_single_object"),
        (SINGLE_OBJECT_MARKER + b"\x00" * 8 + b"\x02", "typed.unknown_schema"),
    ],
)
def test_what_is_no_typed_event_is_refused_with_why(value: bytes, code: str) -> None:
    refused = door(value)
    assert isinstance(refused, Refused) and refused.reason_code == code


def test_types_an_institution_may_not_write_are_refused(
    catalogue: SchemaCatalogue, schema_root: Path
) -> None:
    decision = golden_example(catalogue.get("hs.identity.ReviewDecision"), schema_root)
    [document] = published(schema_root, "hs.identity.ReviewDecision")
    refused = door(single_object(document, decision))
    assert isinstance(refused, Refused) and refused.reason_code == "typed.unknown_schema"


def test_a_truncated_body_is_refused(catalogue: SchemaCatalogue, schema_root: Path) -> None:
    observation = golden_example(catalogue.get(OBSERVATION), schema_root)
    value = single_object(catalogue.release_document(OBSERVATION), observation)
    refused = door(value[:-20])
    assert isinstance(refused, Refused) and refused.reason_code == "typed.invalid"
