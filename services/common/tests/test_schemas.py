"""The catalogue: every contract loads, has a golden example, and derives its wire form."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from avro.schema import parse as parse_avro

from hs_common.codec import Codec
from hs_common.errors import SchemaCatalogueError
from hs_common.schemas import SEALED_TYPE, SchemaCatalogue, crc64_avro
from hs_common.testing import golden_example

EVENT_TYPES = [
    "hs.ingest.RawMessage",
    "hs.identity.PatientIdentity",
    "hs.clinical.Encounter",
    "hs.clinical.Condition",
    "hs.clinical.Observation",
    "hs.device.DeviceReading",
    "hs.ops.DeadLetter",
]


def test_every_schema_file_has_a_golden_example(
    catalogue: SchemaCatalogue, schema_root: Path
) -> None:
    missing = [
        s.name for s in catalogue if not (schema_root / "examples" / f"{s.name}.json").exists()
    ]
    assert missing == []


@pytest.mark.parametrize("name", EVENT_TYPES)
def test_event_types_carry_the_common_envelope(catalogue: SchemaCatalogue, name: str) -> None:
    fields = catalogue.get(name).wire["fields"]
    assert fields[0]["name"] == "envelope"
    envelope_fields = [f["name"] for f in fields[0]["type"]["fields"]]
    assert envelope_fields == ["event_id", "source", "occurred_at", "received_at", "trace_id"]


def test_golden_examples_round_trip_through_the_codec(
    catalogue: SchemaCatalogue, codec: Codec, schema_root: Path
) -> None:
    for schema in catalogue:
        example = golden_example(schema, schema_root)
        decoded = codec.decode(codec.encode(schema.name, example))
        assert decoded.schema == schema.name
        assert decoded.record == example, schema.name


def _is_sealed(wire_type: object) -> bool:
    if isinstance(wire_type, list):
        return wire_type[0] == "null" and _is_sealed(wire_type[1])
    if isinstance(wire_type, dict):
        return wire_type.get("name") == SEALED_TYPE
    return wire_type == SEALED_TYPE


@pytest.mark.parametrize(
    ("name", "sealed"),
    [
        ("hs.identity.PatientIdentity", {"person", "prior"}),
        ("hs.clinical.Observation", {"subject", "result"}),
        ("hs.clinical.Condition", {"subject", "diagnosis"}),
        ("hs.clinical.Encounter", {"subject", "department"}),
        ("hs.vitals.Alert", {"rule_id", "readings", "score", "cohort"}),
        ("hs.vitals.Acknowledgement", {"rule_id"}),
        ("hs.vitals.ReadingFlag", {"metric", "reading"}),
        ("hs.device.DeviceReading", {"binding", "measurement"}),
        ("hs.ingest.RawMessage", {"payload"}),
        ("hs.ops.DeadLetter", {"original"}),
    ],
)
def test_tagged_fields_are_sealed_on_the_wire(
    catalogue: SchemaCatalogue, name: str, sealed: set[str]
) -> None:
    schema = catalogue.get(name)
    on_wire = {f["name"] for f in schema.wire["fields"] if _is_sealed(f["type"])}
    assert on_wire == sealed
    assert set(schema.sensitive_fields) == sealed
    assert "hs.sensitivity" not in json.dumps(schema.wire)


# Rabin fingerprints from the Avro specification's test data (share/test/data/schema-tests.txt),
# as signed 64-bit integers.
@pytest.mark.parametrize(
    ("canonical", "fingerprint"),
    [
        ('"null"', 7195948357588979594),
        ('"boolean"', -6970731678124411036),
        ('"int"', 8247732601305521295),
    ],
)
def test_crc64_avro_matches_the_specification_s_vectors(canonical: str, fingerprint: int) -> None:
    assert crc64_avro(canonical.encode()) == fingerprint & 0xFFFFFFFFFFFFFFFF


def test_fingerprint_agrees_with_the_avro_package_where_it_follows_the_spec(
    catalogue: SchemaCatalogue,
) -> None:
    # The avro package keeps {"type": "string"} for logical types in its canonical form, against
    # the spec's [PRIMITIVES] rule, so compare on a type without logical types.
    coding = catalogue.get("hs.common.Coding")
    assert coding.fingerprint == bytes(
        parse_avro(json.dumps(coding.wire)).fingerprint("CRC-64-AVRO")
    )


def test_fingerprints_are_unique(catalogue: SchemaCatalogue) -> None:
    fingerprints = [s.fingerprint for s in catalogue]
    assert len(set(fingerprints)) == len(fingerprints)


def _catalogue_of(*documents: Any) -> SchemaCatalogue:
    return SchemaCatalogue.from_documents({Path(f"{i}.avsc"): d for i, d in enumerate(documents)})


SEALED = json.loads((Path(__file__).parents[3] / "schemas" / "common" / "Sealed.avsc").read_text())


def test_references_across_files_resolve_in_any_order() -> None:
    outer = {"type": "record", "name": "t.Outer", "fields": [{"name": "inner", "type": "t.Inner"}]}
    inner = {"type": "record", "name": "t.Inner", "fields": [{"name": "x", "type": "int"}]}
    catalogue = _catalogue_of(outer, inner)
    assert catalogue.get("t.Outer").wire["fields"][0]["type"]["name"] == "t.Inner"


def test_an_unresolvable_reference_names_the_file() -> None:
    broken = {"type": "record", "name": "t.Broken", "fields": [{"name": "x", "type": "t.Missing"}]}
    with pytest.raises(SchemaCatalogueError, match=r"unresolved type references in: 0\.avsc"):
        _catalogue_of(broken)


def test_an_unknown_sensitivity_is_refused() -> None:
    bad = {
        "type": "record",
        "name": "t.Bad",
        "fields": [{"name": "x", "type": "string", "hs.sensitivity": "secret"}],
    }
    with pytest.raises(SchemaCatalogueError, match=r"t\.Bad\.x: hs\.sensitivity must be one of"):
        _catalogue_of(SEALED, bad)


def test_a_nullable_tagged_field_stays_nullable_on_the_wire() -> None:
    doc = {
        "type": "record",
        "name": "t.P",
        "fields": [
            {"name": "x", "type": ["null", "string"], "default": None, "hs.sensitivity": "health"}
        ],
    }
    wire_field = _catalogue_of(SEALED, doc).get("t.P").wire["fields"][0]
    assert wire_field["type"][0] == "null"
    assert wire_field["type"][1]["name"] == SEALED_TYPE
    assert wire_field["default"] is None
