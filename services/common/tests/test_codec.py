"""Single-object encoding and sealed fields, without a broker."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hs_common.codec import HEADER_BYTES, Codec
from hs_common.crypto import Keyring, Sealed
from hs_common.errors import (
    CodecError,
    KeyringError,
    NotSingleObjectError,
    SealedFieldError,
    UnknownSchemaError,
)
from hs_common.schemas import SchemaCatalogue
from hs_common.testing import golden_example

IDENTITY = "hs.identity.PatientIdentity"
OBSERVATION = "hs.clinical.Observation"


@pytest.fixture(scope="module")
def identity(catalogue: SchemaCatalogue, schema_root: Path) -> dict[str, Any]:
    return golden_example(catalogue.get(IDENTITY), schema_root)


@pytest.fixture(scope="module")
def observation(catalogue: SchemaCatalogue, schema_root: Path) -> dict[str, Any]:
    return golden_example(catalogue.get(OBSERVATION), schema_root)


def test_encoding_starts_with_the_single_object_header(
    codec: Codec, catalogue: SchemaCatalogue, identity: dict[str, Any]
) -> None:
    data = codec.encode(IDENTITY, identity)
    assert data[:2] == b"\xc3\x01"
    assert data[2:HEADER_BYTES] == catalogue.get(IDENTITY).fingerprint


def test_sensitive_values_are_not_in_the_bytes(codec: Codec, identity: dict[str, Any]) -> None:
    data = codec.encode(IDENTITY, identity)
    for plaintext in [
        "王",
        "小明",
        "XIAOMING",
        "330102198703150023",
        "13812345678",
        "解放路",
        "MRN0012345",
    ]:
        assert plaintext.encode() not in data, plaintext
    assert b"H330102" in data  # the envelope's source stays readable for routing


def test_encoding_does_not_change_the_caller_s_record(
    codec: Codec, identity: dict[str, Any]
) -> None:
    before = copy.deepcopy(identity)
    codec.encode(IDENTITY, identity)
    assert identity == before


def test_a_consumer_without_the_class_key_sees_sealed_values_only(
    catalogue: SchemaCatalogue, keyring: Keyring, codec: Codec, observation: dict[str, Any]
) -> None:
    data = codec.encode(OBSERVATION, observation)
    public_health = Codec(catalogue, keyring.restricted_to("health")).decode(data).record
    assert isinstance(public_health["subject"], Sealed)
    assert public_health["result"] == observation["result"]
    nobody = Codec(catalogue, Keyring.empty()).decode(data).record
    assert isinstance(nobody["result"], Sealed)
    assert nobody["status"] == "FINAL"


def test_a_sealed_value_passes_through_a_consumer_that_cannot_read_it(
    catalogue: SchemaCatalogue, keyring: Keyring, codec: Codec, observation: dict[str, Any]
) -> None:
    relay = Codec(catalogue, keyring.restricted_to("health"))
    relayed = relay.encode(OBSERVATION, relay.decode(codec.encode(OBSERVATION, observation)).record)
    assert codec.decode(relayed).record["subject"] == observation["subject"]


def test_writing_a_class_without_its_key_is_refused(
    catalogue: SchemaCatalogue, keyring: Keyring, observation: dict[str, Any]
) -> None:
    with pytest.raises(KeyringError, match=r"no active identifying key: .*Observation\.subject"):
        Codec(catalogue, keyring.restricted_to("health")).encode(OBSERVATION, observation)


def test_old_keys_still_open_after_rotation(
    catalogue: SchemaCatalogue, keyring: Keyring, observation: dict[str, Any]
) -> None:
    old = Codec(catalogue, keyring).encode(OBSERVATION, observation)
    rotated = Keyring.generate()
    both = Keyring(keys={**keyring.keys, **rotated.keys}, active=rotated.active)
    new = Codec(catalogue, both).encode(OBSERVATION, observation)
    assert Codec(catalogue, both).decode(old).record == observation
    assert Codec(catalogue, both).decode(new).record == observation
    assert isinstance(Codec(catalogue, keyring).decode(new).record["result"], Sealed)


def test_a_sealed_value_moved_to_another_field_fails_authentication(
    codec: Codec, catalogue: SchemaCatalogue, keyring: Keyring, observation: dict[str, Any]
) -> None:
    # seal a SubjectRef-shaped value as Encounter.subject, then splice it into Observation.subject
    sealed = keyring.seal("identifying", "hs.clinical.Encounter.subject", b"\x02A\x00")
    blind = Codec(catalogue, Keyring.empty())
    record = blind.decode(codec.encode(OBSERVATION, observation)).record
    record["subject"] = sealed
    with pytest.raises(
        SealedFieldError, match=r"Observation\.subject: sealed value failed authentication"
    ):
        codec.decode(blind.encode(OBSERVATION, record))


def test_a_tampered_ciphertext_fails_authentication(
    codec: Codec, observation: dict[str, Any]
) -> None:
    data = bytearray(codec.encode(OBSERVATION, observation))
    data[-5] ^= 0x01  # inside the last sealed field's tag or ciphertext
    with pytest.raises(CodecError):
        codec.decode(bytes(data))


def test_an_unknown_fingerprint_is_a_clear_error(codec: Codec, identity: dict[str, Any]) -> None:
    data = codec.encode(IDENTITY, identity)
    forged = data[:2] + bytes(8) + data[HEADER_BYTES:]
    with pytest.raises(
        UnknownSchemaError, match=r"unknown schema fingerprint 0000000000000000"
    ) as raised:
        codec.decode(forged)
    assert raised.value.reason_code == "codec.unknown_schema"


@pytest.mark.parametrize("data", [b"", b"{}", b"\xc3", b"\x00\x00\x00\x01\x02\x03\x04\x05\x06\x07"])
def test_bytes_that_are_not_single_object_encoded_are_named_so(codec: Codec, data: bytes) -> None:
    with pytest.raises(NotSingleObjectError, match="not Avro single-object encoding"):
        codec.decode(data)


def test_truncated_and_overlong_bodies_are_refused(codec: Codec, identity: dict[str, Any]) -> None:
    data = codec.encode(IDENTITY, identity)
    with pytest.raises(CodecError, match=r"body is not a valid hs\.identity\.PatientIdentity"):
        codec.decode(data[:-10])
    with pytest.raises(CodecError, match="trailing bytes"):
        codec.decode(data + b"\x00")


def test_a_record_that_does_not_match_names_the_field_not_the_value(
    codec: Codec, observation: dict[str, Any]
) -> None:
    bad = copy.deepcopy(observation)
    bad["result"]["value_quantity"] = "secret-value-42"
    with pytest.raises(CodecError) as raised:
        codec.encode(OBSERVATION, bad)
    assert "value_quantity" in str(raised.value)
    assert "secret-value-42" not in str(raised.value)


def test_decoding_can_insist_on_a_type(codec: Codec, identity: dict[str, Any]) -> None:
    with pytest.raises(
        CodecError, match=r"expected hs\.clinical\.Observation, got hs\.identity\.PatientIdentity"
    ):
        codec.decode(codec.encode(IDENTITY, identity), expect=OBSERVATION)


@settings(
    max_examples=500, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_crash_the_decoder(codec: Codec, data: bytes) -> None:
    with contextlib.suppress(CodecError):
        codec.decode(data)


@settings(
    max_examples=500, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(st.data())
def test_corrupted_events_never_crash_the_decoder(
    codec: Codec, identity: dict[str, Any], data: st.DataObject
) -> None:
    encoded = bytearray(codec.encode(IDENTITY, identity))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(HEADER_BYTES, len(encoded) - 1))
        encoded[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(HEADER_BYTES, len(encoded)))
    with contextlib.suppress(CodecError):
        codec.decode(bytes(encoded[:cut]))


def test_a_sealed_value_moved_to_another_record_fails_authentication(
    codec: Codec, catalogue: SchemaCatalogue, observation: dict[str, Any]
) -> None:
    """The security review's swap: Observation.subject (whose patient it is) copied from one
    record into another, by a relay that cannot read it. The value is bound to its record."""
    blind = Codec(catalogue, Keyring.empty())
    other = observation | {"envelope": observation["envelope"] | {"event_id": str(uuid.uuid4())}}
    donor = blind.decode(codec.encode(OBSERVATION, other)).record
    target = blind.decode(codec.encode(OBSERVATION, observation)).record
    target["subject"] = donor["subject"]
    with pytest.raises(SealedFieldError, match=r"moved from another field or record"):
        codec.decode(blind.encode(OBSERVATION, target))


def test_keys_made_before_binding_still_open_what_they_sealed(
    catalogue: SchemaCatalogue, keyring: Keyring, observation: dict[str, Any]
) -> None:
    legacy = Keyring(
        keys={i: dataclasses.replace(k, binds_record=False) for i, k in keyring.keys.items()},
        active=keyring.active,
    )
    sealed = Codec(catalogue, legacy).encode(OBSERVATION, observation)
    assert Codec(catalogue, legacy).decode(sealed).record == observation
    assert not any(k.binds_record for k in legacy.keys.values())
    assert all(k.binds_record for k in Keyring.generate().keys.values())
