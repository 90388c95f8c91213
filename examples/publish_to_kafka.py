"""An institution publishing straight to HealthStream's Kafka, and reading the answers.

    python examples/publish_to_kafka.py --login .local/kafka-clients/inst-HZ01.env \
        --institution HZ01 --content-type application/hl7-v2 message1.hl7 message2.hl7

Each file is one message: HL7 v2 (application/hl7-v2), FHIR R4 JSON (application/fhir+json),
clinic JSON or CSV, or a device batch, as the institution's source file says, or a typed event
of our contracts (application/vnd.healthstream.avro, see docs/institutions.md). It is written to
`hs.inbound.<code>.v1` with acks=all, a `content-type` header and a `message-id` header (the file
name; for HL7 v2, MSH-10 is the id the answer carries). The answers are then read from
`hs.inbound.<code>.ack.v1`, which only the institution may read, until each message is answered
or --wait seconds pass: ACCEPTED, PARTIAL (the refused items and why) or REJECTED (why).
Exit status 0 when every message was answered and none was rejected.

The login file holds HS_KAFKA_* variables (`make dev-credentials` writes one per institution;
in production the platform's operators issue it: a SCRAM login, or a client certificate).
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from hs_common import topics
from hs_common.codec import Codec
from hs_common.crypto import Keyring
from hs_common.schemas import SchemaCatalogue, default_schema_root
from hs_common.settings import RuntimeSettings


def message_id(body: bytes, path: Path, content_type: str) -> str:
    """MSH-10 for HL7 v2 (what the platform answers with), else the file name."""
    if content_type == "application/hl7-v2" and body.startswith(b"MSH"):
        header = body.split(b"\r", 1)[0].split(b"\n", 1)[0]
        fields = header.split(header[3:4])
        if len(fields) > 9 and fields[9]:
            return fields[9].decode(errors="replace")
    return path.name


def publish(login: dict[str, str | int | bool], institution: str, content_type: str,
            files: list[Path]) -> list[str]:  # fmt: skip
    producer = Producer(login | {"acks": "all", "enable.idempotence": True})
    ids = []
    failures: list[str] = []
    for path in files:
        body = path.read_bytes()
        ids.append(message_id(body, path, content_type))
        headers: list[tuple[str, str | bytes]] = [
            ("content-type", content_type),
            ("message-id", ids[-1]),
        ]
        producer.produce(
            topics.inbound_topic(institution), body, key=ids[-1], headers=headers,
            on_delivery=lambda err, _msg: failures.append(str(err)) if err else None,
        )  # fmt: skip
    if producer.flush(30) or failures:
        raise SystemExit(f"not stored by the broker: {failures or 'no confirmation in 30 s'}")
    return ids


def answers(login: dict[str, str | int | bool], institution: str, ids: list[str],
            wait: float) -> dict[str, dict[str, object]]:  # fmt: skip
    codec = Codec(SchemaCatalogue.load(default_schema_root()), Keyring.empty())
    topic = topics.inbound_ack_topic(institution)
    group = f"inst-{institution}-publisher-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(login | {"group.id": group, "auto.offset.reset": "earliest"})
    found: dict[str, dict[str, object]] = {}
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        deadline = time.monotonic() + wait
        while set(ids) - set(found) and time.monotonic() < deadline:
            for message in consumer.consume(100, 0.5):
                if message.error() is None and message.value():
                    answer = codec.decode(message.value() or b"").record
                    if answer["message_id"] in ids:
                        found[answer["message_id"]] = answer
    finally:
        consumer.close()
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--login", type=Path, required=True)
    parser.add_argument("--institution", required=True)
    parser.add_argument("--content-type", default="application/hl7-v2")
    parser.add_argument("--wait", type=float, default=60.0)
    args = parser.parse_args(argv)
    login = RuntimeSettings.from_login_file(args.login).kafka_client_config()
    ids = publish(login, args.institution, args.content_type, args.files)
    found = answers(login, args.institution, ids, args.wait)
    for message in ids:
        answer = found.get(message)
        if answer is None:
            print(f"{message}: no answer within {args.wait:.0f} s")
            continue
        reasons = answer["reasons"]
        assert isinstance(reasons, list)
        print(f"{message}: {answer['status']}")
        for reason in reasons:
            print(f"    {reason['item'] or 'message'}: {reason['code']}: {reason['reason']}")
    rejected = any(a["status"] == "REJECTED" for a in found.values())
    return 0 if len(found) == len(ids) and not rejected else 1


if __name__ == "__main__":
    sys.exit(main())
