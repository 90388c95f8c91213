"""Every contract through a real Kafka broker, and what the bytes on a topic reveal."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Message, Producer

from hs_common.codec import Codec
from hs_common.crypto import Keyring, Sealed
from hs_common.kafka import make_producer, produce_durably
from hs_common.schemas import SchemaCatalogue
from hs_common.settings import RuntimeSettings
from hs_common.testing import TopicFactory, client_config, golden_example, read_all

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


def test_a_key_lands_in_the_partition_every_kafka_client_puts_it_in(
    runtime_settings: RuntimeSettings, new_topic: TopicFactory, kafka_bootstrap: str
) -> None:
    """Our producers and Quix Streams (the Java partitioner) place a key alike, so that a
    service's own writes meet the records of that key in one partition and one state store."""
    topic = new_topic("partitioning", 6)
    ours = make_producer(runtime_settings, "ours")
    java_like = Producer(client_config(kafka_bootstrap, {"partitioner": "murmur2"}))
    placed: dict[object, list[object]] = {}
    keys = [f"patient-{n}" for n in range(60)]

    def delivered(_error: object, message: Message) -> None:
        placed.setdefault(message.key(), []).append(message.partition())

    for producer in (ours, java_like):
        for key in keys:
            producer.produce(topic, b"x", key, on_delivery=delivered)
        assert producer.flush(10) == 0
    assert all(len(set(placed[key.encode()])) == 1 for key in keys)
    assert len({placed[key.encode()][0] for key in keys}) == 6  # and the keys do spread
