"""Institutions publishing straight to Kafka, each as its own principal: what HZ01 publishes on
hs.inbound.HZ01.v1 is kept, normalized and answered on hs.inbound.HZ01.ack.v1 (accepted, partly
accepted with the refused items, or rejected with the reason); a message claiming another
institution is refused; the answers are HZ01's alone to read."""

from __future__ import annotations

import io
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from hs_common import access, admin, topics
from hs_common.codec import Codec
from hs_common.processor import ExactlyOnceProcessor
from hs_common.schemas import SINGLE_OBJECT_MARKER, SchemaCatalogue
from hs_common.settings import Environment, RuntimeSettings
from hs_common.testing import (
    TopicFactory,
    golden_example,
    processing,
    read_all,
    repository_root,
)
from hs_ingestion.inbound import InboundStage
from hs_ingestion.kafkadoor import inbound_topics
from hs_ingestion.normalizer import Normalizer
from hs_ingestion.sources import SourceRegistry, default_sources_dir
from hs_ingestion.typed import fingerprint

pytestmark = pytest.mark.integration

HL7 = "application/hl7-v2"
EXAMPLES = repository_root() / "examples"
ORU = (
    "MSH|^~\\&|LIS|{facility}|HEALTHSTREAM|HS|20260101080000||ORU^R01^ORU_R01|{control}|P|2.5\r"
    "PID|1||HZ-{control}^^^HZ01^MR||WANG^WEI||19800101|M\r"
    "OBR|1|O{control}|O{control}-F|LAB^LAB^L|||20260101073000\r"
    "OBX|1|NM|GLU^GLUCOSE^L||6.1|mmol/L|3.9-6.1|N|||F|||20260101073000\r"
    "OBX|2|NM|CREA^CREATININE^L||{creatinine}|umol/L|44-133|N|||F|||20260101073000\r"
)


def _login(logins: Path, principal: str) -> dict[str, str | int | bool]:
    return RuntimeSettings.from_login_file(logins / f"{principal}.env").kafka_client_config()


@pytest.fixture(scope="module")
def logins(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("kafka-clients")
    settings = RuntimeSettings(HS_ENV=Environment.TEST)
    admin.dev_credentials(settings, ["HZ01", "HZC01", "BJ03"], out)
    admin.create_topics(settings, ["HZ01", "HZC01", "BJ03"])
    return out


def publish(logins: Path, code: str, messages: list[tuple[bytes, dict[str, str]]]) -> None:
    producer = Producer(_login(logins, access.institution_principal(code)) | {"acks": "all"})
    for value, headers in messages:
        producer.produce(topics.inbound_topic(code), value, headers=list(headers.items()))
    assert producer.flush(20) == 0


def answers(logins: Path, code: str, wanted: set[str], timeout: float = 90) -> dict[str, Any]:
    """The institution's own answers to the message ids in `wanted`, read as the institution."""
    principal = access.institution_principal(code)
    consumer = Consumer(
        _login(logins, principal)
        | {"group.id": f"{principal}-{uuid.uuid4().hex[:6]}", "auto.offset.reset": "earliest"}
    )
    topic = topics.inbound_ack_topic(code)
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    found: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    try:
        while wanted - set(found) and time.monotonic() < deadline:
            for message in consumer.consume(100, 0.5):
                if message.error() is None and message.value():
                    found[(message.key() or b"").decode()] = message.value()
    finally:
        consumer.close()
    return {k: v for k, v in found.items() if k in wanted}


@pytest.fixture
def doors(new_topic: TopicFactory) -> dict[str, str]:
    return {"raw": new_topic("raw", 3), "events": new_topic("events", 3), "dead": new_topic("dead")}


@contextmanager
def running(settings: RuntimeSettings, codec: Codec, doors: dict[str, str]) -> Iterator[None]:
    """The Kafka door's stage and the normalizer, on the test's own raw and event topics."""
    sources = SourceRegistry.load(default_sources_dir())
    run = uuid.uuid4().hex[:8]
    topic_of = {s.value_schema: doors["events"] for s in topics.ALL}
    door = ExactlyOnceProcessor(
        settings, stage="ingestion.kafka", group_id=f"door-{run}",
        input_topics=inbound_topics(sources),
        transform=InboundStage(codec, sources, 1 << 20, doors["raw"], doors["dead"]),
        codec=codec, dead_letter_topic=doors["dead"], poll_timeout=0.2,
    )  # fmt: skip
    normalizer = ExactlyOnceProcessor(
        settings, stage="ingestion.normalize", group_id=f"normalize-{run}",
        input_topics=[doors["raw"]],
        transform=Normalizer(codec, sources, topic_of, dead_letter_topic=doors["dead"]),
        codec=codec, dead_letter_topic=doors["dead"], poll_timeout=0.2,
    )  # fmt: skip
    with processing(door), processing(normalizer):
        yield


def test_what_an_institution_publishes_is_kept_normalized_and_answered_to_it_alone(
    runtime_settings: RuntimeSettings, codec: Codec, logins: Path, doors: dict[str, str],
    kafka_bootstrap: str,
) -> None:  # fmt: skip
    run = uuid.uuid4().hex[:8]
    ids = {name: f"{name}-{run}" for name in ("good", "partial", "claims", "untyped", "clinic")}
    publish(logins, "HZ01", [
        (ORU.format(facility="HZ01", control=ids["good"], creatinine="88").encode(),
         {"content-type": HL7}),
        (ORU.format(facility="HZ01", control=ids["partial"], creatinine="?7").encode(),
         {"content-type": HL7}),
        (ORU.format(facility="BJ03", control=ids["claims"], creatinine="88").encode(),
         {"content-type": HL7}),  # names another institution in MSH-4
        (b"MSH|^~\\&|LIS|HZ01|...", {"message-id": ids["untyped"]}),  # no content-type
    ])  # fmt: skip
    clinic = (
        '{"jgdm": "HZC01", "lx": "dj", "jmbh": "JM-'
        + run
        + '", "xm": "李佳", "csrq": "1985-08-21"}'
    )
    publish(logins, "HZC01", [
        (clinic.encode(), {"content-type": "application/json", "message-id": ids["clinic"]}),
    ])  # fmt: skip
    with running(runtime_settings, codec, doors):
        hz01 = answers(logins, "HZ01", {ids["good"], ids["partial"], ids["claims"], ids["untyped"]})
        hzc01 = answers(logins, "HZC01", {ids["clinic"]})
    decoded = {k: codec.decode(v).record for k, v in (hz01 | hzc01).items()}
    status = {k: (d["status"], [(r["item"], r["code"]) for r in d["reasons"]])
              for k, d in decoded.items()}  # fmt: skip
    assert status == {
        ids["good"]: ("ACCEPTED", []),
        ids["partial"]: ("PARTIAL", [("OBX 2", "hl7.invalid_value")]),
        ids["claims"]: ("REJECTED", [(None, "hl7.sender_mismatch")]),
        ids["untyped"]: ("REJECTED", [(None, "kafka.content_type")]),
        ids["clinic"]: ("ACCEPTED", []),
    }
    assert decoded[ids["good"]]["raw_event_id"] and decoded[ids["claims"]]["raw_event_id"] is None

    kept = [codec.decode(v).record for _, v in read_all(kafka_bootstrap, doors["raw"], idle=2)]
    assert {(r["envelope"]["source"]["institution"], r["transport"]) for r in kept} == {
        ("HZ01", "KAFKA"), ("HZC01", "KAFKA"),
    }  # fmt: skip
    events = [codec.decode(v) for _, v in read_all(kafka_bootstrap, doors["events"], idle=3)]
    results = [e.record for e in events if e.schema == "hs.clinical.Observation"]
    assert {r["envelope"]["source"]["institution"] for r in results} == {"HZ01"}
    assert len(results) == 3  # two of the good message, one of the partial one
    letters = [codec.decode(v).record for _, v in read_all(kafka_bootstrap, doors["dead"], idle=2)]
    assert sorted(d["reason_code"] for d in letters) == [
        "hl7.invalid_value", "hl7.sender_mismatch", "kafka.content_type",
    ]  # fmt: skip
    assert all(d["original"] for d in letters)  # the bytes as published, kept


def _typed(name: str, record: dict[str, Any], catalogue: SchemaCatalogue) -> bytes:
    """`record` in single-object encoding with the published (clear) schema of `name`."""
    parsed = fastavro.parse_schema(catalogue.release_document(name), named_schemas={})
    body = io.BytesIO()
    fastavro.schemaless_writer(body, parsed, record)
    return SINGLE_OBJECT_MARKER + fingerprint(parsed) + body.getvalue()


def test_typed_events_an_institution_publishes_become_its_events(
    runtime_settings: RuntimeSettings, codec: Codec, logins: Path, doors: dict[str, str],
    catalogue: SchemaCatalogue, schema_root: Path, kafka_bootstrap: str,
) -> None:  # fmt: skip
    run = uuid.uuid4().hex[:8]
    observation = golden_example(catalogue.get("hs.clinical.Observation"), schema_root)
    observation |= {"observation_id": f"TYPED-{run}"}
    decision = golden_example(catalogue.get("hs.identity.ReviewDecision"), schema_root)
    avro = "application/vnd.healthstream.avro"
    publish(logins, "HZ01", [
        (_typed("hs.clinical.Observation", observation, catalogue),
         {"content-type": avro, "message-id": f"obs-{run}"}),
        (_typed("hs.identity.ReviewDecision", decision, catalogue),
         {"content-type": avro, "message-id": f"decision-{run}"}),
    ])  # fmt: skip
    with running(runtime_settings, codec, doors):
        got = answers(logins, "HZ01", {f"obs-{run}", f"decision-{run}"})
    status = {k: (a["status"], [r["code"] for r in a["reasons"]])
              for k, a in ((k, codec.decode(v).record) for k, v in got.items())}  # fmt: skip
    assert status == {
        f"obs-{run}": ("ACCEPTED", []), f"decision-{run}": ("REJECTED", ["typed.unknown_schema"]),
    }  # fmt: skip
    events = [codec.decode(v) for _, v in read_all(kafka_bootstrap, doors["events"], idle=3)]
    [made] = [e.record for e in events if e.record.get("observation_id") == f"TYPED-{run}"]
    assert made["envelope"]["source"]["institution"] == "HZ01"  # not the example's H330102
    assert made["result"] == observation["result"]


def test_the_publisher_and_dashboard_examples_work_as_documented(
    runtime_settings: RuntimeSettings, codec: Codec, logins: Path, doors: dict[str, str],
    catalogue: SchemaCatalogue, schema_root: Path, tmp_path: Path,
) -> None:  # fmt: skip
    control_id = f"EX-{uuid.uuid4().hex[:8]}"
    message = tmp_path / "result.hl7"
    message.write_text(ORU.format(facility="HZ01", control=control_id, creatinine="?7"))
    with running(runtime_settings, codec, doors):
        published = subprocess.run(
            [sys.executable, str(EXAMPLES / "publish_to_kafka.py"), str(message),
             "--login", str(logins / "inst-HZ01.env"), "--institution", "HZ01", "--wait", "90"],
            capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
    assert published.returncode == 0, published.stderr
    assert published.stdout.splitlines()[:2] == [
        f"{control_id}: PARTIAL", "    OBX 2: hl7.invalid_value: " + published.stdout.split(
            "hl7.invalid_value: ")[1].splitlines()[0],
    ]  # fmt: skip

    alert = golden_example(catalogue.get("hs.vitals.Alert"), schema_root)
    value = codec.encode("hs.vitals.Alert", alert | {"alert_id": f"A-{control_id}"})
    producer = Producer(runtime_settings.kafka_client_config())  # as vitals would
    producer.produce(topics.VITALS_ALERT.name, value, key=alert["patient_key"])
    assert producer.flush(10) == 0
    shown = subprocess.run(
        [sys.executable, str(EXAMPLES / "dashboard_alerts.py"),
         "--login", str(logins / "dashboard.env"), "--seconds", "12"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    done = shown.stdout.strip().splitlines()[-1]
    assert done.startswith("done: ") and int(done.split()[1]) >= 1, shown.stdout
