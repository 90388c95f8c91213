"""Raw messages through the exactly-once normalizer on a real broker."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from hs_common.codec import Codec
from hs_common.kafka import make_producer
from hs_common.processor import ExactlyOnceProcessor
from hs_common.settings import RuntimeSettings
from hs_common.testing import TopicFactory, processing, read_all
from hs_ingestion.intake import Kept, receive_hl7
from hs_ingestion.normalizer import Normalizer
from hs_ingestion.recent import read_recent
from hs_ingestion.sources import SourceRegistry, default_sources_dir

pytestmark = pytest.mark.integration

ORU = (
    "MSH|^~\\&|LIS|BJ03|HEALTHSTREAM|HS|20260101080000||ORU^R01^ORU_R01|{control}|P|2.3.1\n"
    "PID|1||BJ-{patient}^^^BJ03^MR||WANG^WEI||19800101|M\n"
    "OBR|1|O{control}|O{control}-F|LAB^LAB^L|||20260101073000\n"
    "OBX|1|NM|GLU-S^GLUCOSE SERUM^L||126.1|mg/dL|70-110|H|||F|||20260101073000\n"
    "OBX|2|NM|CR^CREATININE^L||1.1|mg/dL|0.6-1.3|N|||F|||20260101073000\n"
)


@pytest.fixture
def topics_for_test(new_topic: TopicFactory) -> dict[str, str]:
    return {
        "raw": new_topic("raw", 3),
        "observation": new_topic("obs", 3),
        "identity": new_topic("id", 3),
        "dead": new_topic("dead", 1),
    }


@pytest.fixture
def normalizer(
    runtime_settings: RuntimeSettings, codec: Codec, topics_for_test: dict[str, str]
) -> Iterator[None]:
    topic_of = {
        "hs.clinical.Observation": topics_for_test["observation"],
        "hs.identity.PatientIdentity": topics_for_test["identity"],
        "hs.clinical.Encounter": topics_for_test["identity"],
        "hs.clinical.Condition": topics_for_test["identity"],
    }
    processor = ExactlyOnceProcessor(
        runtime_settings,
        stage="ingestion.normalize",
        group_id=f"normalize-{runtime_settings.instance_id}",
        input_topics=[topics_for_test["raw"]],
        transform=Normalizer(
            codec,
            SourceRegistry.load(default_sources_dir()),
            topic_of,
            dead_letter_topic=topics_for_test["dead"],
        ),
        codec=codec,
        dead_letter_topic=topics_for_test["dead"],
        poll_timeout=0.2,
    )
    with processing(processor):
        yield


def _raw(codec: Codec, control: str, patient: int, body: str = ORU) -> tuple[str, bytes]:
    kept = receive_hl7(
        body.format(control=control, patient=patient).encode(),
        SourceRegistry.load(default_sources_dir()),
        codec.keyring,
    )
    assert isinstance(kept, Kept)
    return kept.key, codec.encode("hs.ingest.RawMessage", kept.record)


def test_raw_messages_become_keyed_observations_once_and_bad_ones_dead_letters(
    normalizer: None,
    runtime_settings: RuntimeSettings,
    codec: Codec,
    topics_for_test: dict[str, str],
    kafka_bootstrap: str,
) -> None:
    producer = make_producer(runtime_settings, "raw-feeder")
    for number in range(20):
        key, value = _raw(codec, f"C{number}", number % 4)
        producer.produce(topics_for_test["raw"], value=value, key=key)
    key, duplicate = _raw(codec, "C0", 0)
    producer.produce(
        topics_for_test["raw"], value=duplicate, key=key
    )  # stored twice, e.g. a resend
    key, one_bad = _raw(codec, "BAD1", 9, ORU.replace("||126.1|", "||?7|"))
    producer.produce(topics_for_test["raw"], value=one_bad, key=key)
    key, unmapped = _raw(codec, "NEW1", 9, ORU.replace("GLU-S^", "ZZZ999^"))
    producer.produce(topics_for_test["raw"], value=unmapped, key=key)
    assert producer.flush(10) == 0

    observations = read_all(
        kafka_bootstrap, topics_for_test["observation"], expected=43, timeout=60, idle=10
    )
    assert len(observations) == 43  # 20 x 2, BAD1's good result, NEW1's two
    ids = Counter(codec.decode(value).record["observation_id"] for _, value in observations)
    assert all(count == 1 for count in ids.values())
    by_patient: dict[bytes, set[str]] = {}
    for key_bytes, value in observations:
        record = codec.decode(value).record
        if record["result"]["code_origin"] == "UNMAPPED":
            assert record["observation_id"] == "ONEW1-F-1"
            assert (record["result"]["local_code"]["code"], record["result"]["unit"]) == (
                "ZZZ999",
                "mg/dL",
            )
            continue
        assert record["result"]["unit"] in ("mmol/L", "umol/L")
        by_patient.setdefault(key_bytes or b"", set()).add(record["subject"]["local_patient_id"])
    assert all(len(patients) == 1 for patients in by_patient.values())  # one patient per key

    [(_, letter)] = read_all(kafka_bootstrap, topics_for_test["dead"], expected=1, timeout=30)
    dead = codec.decode(letter).record
    assert (dead["reason_code"], dead["stage"], dead["item"]) == (
        "hl7.invalid_value",
        "ingestion.normalize",
        "OBX 1",
    )
    assert "OBX-5 (set 1)" in dead["reason"]
    assert codec.decode(dead["original"]).record["sender_message_id"] == "BAD1"


def test_a_message_stored_again_after_a_restart_is_not_normalized_again(
    runtime_settings: RuntimeSettings,
    codec: Codec,
    topics_for_test: dict[str, str],
    kafka_bootstrap: str,
) -> None:
    topic_of = {
        "hs.clinical.Observation": topics_for_test["observation"],
        "hs.identity.PatientIdentity": topics_for_test["identity"],
    }
    group = f"normalize-restart-{runtime_settings.instance_id}"
    sources = SourceRegistry.load(default_sources_dir())

    def run_normalizer(expected_observations: int) -> None:
        normalizer = Normalizer(codec, sources, topic_of, dead_letter_topic=topics_for_test["dead"])
        normalizer.recent.remember(
            read_recent(
                runtime_settings, codec.catalogue, 1000, topics_for_test["raw"], group_id=group
            )
        )
        processor = ExactlyOnceProcessor(
            runtime_settings,
            stage="ingestion.normalize",
            group_id=group,
            input_topics=[topics_for_test["raw"]],
            transform=normalizer,
            codec=codec,
            dead_letter_topic=topics_for_test["dead"],
            poll_timeout=0.2,
        )
        with processing(processor):
            read_all(
                kafka_bootstrap,
                topics_for_test["observation"],
                expected=expected_observations,
                timeout=60,
                idle=10,
            )

    producer = make_producer(runtime_settings, "raw-feeder")
    key, value = _raw(codec, "RS1", 1)
    producer.produce(topics_for_test["raw"], value=value, key=key)
    assert producer.flush(10) == 0
    run_normalizer(expected_observations=2)

    # the same message stored again (a resend after a lost acknowledgement), then a new one
    producer.produce(topics_for_test["raw"], value=_raw(codec, "RS1", 1)[1], key=key)
    producer.produce(topics_for_test["raw"], value=_raw(codec, "RS2", 1)[1], key=key)
    assert producer.flush(10) == 0
    run_normalizer(expected_observations=4)

    observations = read_all(kafka_bootstrap, topics_for_test["observation"], idle=3)
    ids = Counter(codec.decode(value).record["observation_id"] for _, value in observations)
    assert ids == {"ORS1-F-1": 1, "ORS1-F-2": 1, "ORS2-F-1": 1, "ORS2-F-2": 1}
