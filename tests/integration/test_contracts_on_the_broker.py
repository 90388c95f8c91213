"""Every contract through a real Kafka broker, and what the bytes on a topic reveal."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Producer

from hs_common.codec import Codec
from hs_common.crypto import Keyring, Sealed
from hs_common.kafka import make_producer, produce_durably
from hs_common.schemas import SchemaCatalogue
from hs_common.settings import RuntimeSettings
from hs_common.testing import TopicFactory, golden_example, read_all

pytestmark = pytest.mark.integration


@pytest.fixture
def producer(runtime_settings: RuntimeSettings) -> Producer:
    return make_producer(runtime_settings, "contracts-test")


def test_every_schema_round_trips_through_the_broker(
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    producer: Producer,
    catalogue: SchemaCatalogue,
    codec: Codec,
    schema_root: Path,
) -> None:
    topic = new_topic("contracts")
    examples = {s.name: golden_example(s, schema_root) for s in catalogue}
    for name, example in examples.items():
        produce_durably(producer, topic, codec.encode(name, example), key=name)
    received = read_all(kafka_bootstrap, topic, expected=len(examples))
    assert len(received) == len(examples)
    for key, value in received:
        assert key is not None
        decoded = codec.decode(value)
        assert decoded.schema == key.decode()
        assert decoded.record == examples[decoded.schema]


SENSITIVE_PLAINTEXTS = {
    "hs.identity.PatientIdentity": [
        "王",
        "小明",
        "XIAOMING",
        "330102198703150023",
        "13812345678",
        "解放路",
        "MRN0012345",
    ],
    "hs.clinical.Observation": ["MRN0012345", "140.5", "mg/dL", "2345-7", "葡萄糖", "70-110"],
    "hs.clinical.Condition": ["MRN0012345", "E11.9", "5A11", "糖尿病"],
    "hs.device.DeviceReading": ["CGM-8F3A21", "U778812", "mmol/L"],
    "hs.ingest.RawMessage": ["MSH|", "王", "330102198703150023", "MRN0012345"],
    "hs.ops.DeadLetter": ["PID|1", "MRN0012345"],
}


def test_bytes_on_the_topic_hold_no_plaintext_of_tagged_fields(
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    producer: Producer,
    catalogue: SchemaCatalogue,
    keyring: Keyring,
    codec: Codec,
    schema_root: Path,
) -> None:
    topic = new_topic("sealed")
    for schema_name in SENSITIVE_PLAINTEXTS:
        record = golden_example(catalogue.get(schema_name), schema_root)
        key = keyring.pseudonym(record["envelope"]["source"]["institution"], schema_name)
        produce_durably(producer, topic, codec.encode(schema_name, record), key=key)
    received = read_all(kafka_bootstrap, topic, expected=len(SENSITIVE_PLAINTEXTS))
    assert len(received) == len(SENSITIVE_PLAINTEXTS)
    blind = Codec(catalogue, Keyring.empty())
    for wire_key, value in received:
        name = blind.decode(value).schema
        for plaintext in SENSITIVE_PLAINTEXTS[name]:
            assert plaintext.encode() not in value, (name, plaintext)
            assert plaintext.encode() not in (wire_key or b""), (name, plaintext)
        assert b"H330102" in value or b"CGMVENDOR" in value  # envelope stays readable
        opened = blind.decode(value).record
        assert all(
            isinstance(opened[f], Sealed) for f in catalogue.get(name).sensitive_fields if opened[f]
        )
        assert codec.decode(value).record == golden_example(catalogue.get(name), schema_root)
