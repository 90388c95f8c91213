"""The broker as an attacker meets it: no login, no access; each service and institution may
touch only what hs_common.access grants it (the forged Person, ReviewDecision and Acknowledgement
of the security review are refused by the broker itself); institution A can neither write B's
inbound topic nor read B's answers, whether it logs in with SCRAM or with a client certificate."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from hs_common import access, admin, topics
from hs_common.settings import Environment, RuntimeSettings

pytestmark = pytest.mark.integration

A, B = "ATKA", "ATKB"


@pytest.fixture(scope="module")
def logins(kafka_bootstrap: str, kafka_state_dir: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Path:  # fmt: skip
    """Every principal's login, made as `make dev-credentials` makes them, and its topics."""
    out = tmp_path_factory.mktemp("kafka-clients")
    settings = RuntimeSettings(HS_ENV=Environment.TEST)
    admin.dev_credentials(settings, [A, B], out)
    admin.create_topics(settings, [A, B])
    seed = Producer(settings.kafka_client_config() | {"acks": "all"})
    for topic in (*topics.institution_topics(A), *topics.institution_topics(B), topics.PERSON):
        seed.produce(topic.name, b"seed", key=b"seed", partition=0)
    assert seed.flush(20) == 0
    return out


def _client(logins: Path, principal: str) -> dict[str, str | int | bool]:
    return RuntimeSettings.from_login_file(logins / f"{principal}.env").kafka_client_config()


def _write(config: dict[str, str | int | bool], topic: str) -> KafkaError | None:
    """Write one record; the broker's answer (None: stored)."""
    producer = Producer(config | {"acks": "all", "message.timeout.ms": 15000})
    outcome: list[KafkaError | None] = []
    producer.produce(topic, b"forged", key=b"P1", on_delivery=lambda e, _: outcome.append(e))
    producer.flush(20)
    assert outcome, f"no answer from the broker for {topic}"
    return outcome[0]


def _reads(config: dict[str, str | int | bool], topic: str) -> bool:
    """Whether the client reads the record the administrator put on `topic` (see `logins`)."""
    group = f"{config.get('sasl.username', 'mtls')}-{uuid.uuid4().hex[:6]}"
    consumer = Consumer(
        config | {"group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                return True
        return False
    finally:
        consumer.close()


def _denied(error: KafkaError | None) -> bool:
    return error is not None and error.code() in (
        KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED,
    )  # fmt: skip


def test_a_client_without_a_valid_login_is_not_let_in(kafka_bootstrap: str) -> None:
    settings = RuntimeSettings(HS_KAFKA_SASL_USERNAME="admin", HS_KAFKA_SASL_PASSWORD="guess")
    config = settings.kafka_client_config() | {"acks": "all", "message.timeout.ms": 8000}
    error = _write(config, topics.PERSON.name)
    assert error is not None and error.code() in (
        KafkaError._MSG_TIMED_OUT,
        KafkaError._AUTHENTICATION,
    )
    plaintext = {"bootstrap.servers": kafka_bootstrap, "security.protocol": "PLAINTEXT"}
    with pytest.raises(KafkaException):
        Producer(plaintext).list_topics(timeout=5)


@pytest.mark.parametrize(
    ("principal", "topic"),
    [
        ("dashboard", topics.PERSON.name),  # the forged golden record
        ("normalize", topics.PERSON.name),
        ("vitals", topics.PERSON_LINK.name),
        ("inst-ATKA", topics.REVIEW_DECISION.name),  # the forged reviewer decision
        ("normalize", topics.REVIEW_DECISION.name),
        ("ingestion", topics.VITALS_ACK.name),  # the forged acknowledgement that silences
        ("vitals", topics.VITALS_ACK.name),
        ("empi", topics.EDGE_AUDIT.name),
        ("inst-ATKA", topics.OBSERVATION.name),
        ("inst-ATKA", topics.RAW.name),
    ],
)
def test_writes_the_policy_does_not_grant_are_refused_by_the_broker(
    logins: Path, principal: str, topic: str
) -> None:
    assert _denied(_write(_client(logins, principal), topic))


@pytest.mark.parametrize(
    ("principal", "topic"),
    [
        ("edge", topics.VITALS_ACK.name),
        ("edge", topics.REVIEW_DECISION.name),
        ("normalize", topics.OBSERVATION.name),
        ("inst-ATKA", topics.inbound_topic(A)),
    ],
)
def test_the_writes_the_policy_grants_are_stored(logins: Path, principal: str, topic: str) -> None:
    assert _write(_client(logins, principal), topic) is None


def test_an_institution_cannot_write_or_read_another_institutions_topics(logins: Path) -> None:
    a = _client(logins, access.institution_principal(A))
    assert _denied(_write(a, topics.inbound_topic(B)))
    assert not _reads(a, topics.inbound_ack_topic(B))
    assert not _reads(a, topics.inbound_topic(B))
    assert _reads(a, topics.inbound_ack_topic(A))


def test_a_client_certificate_names_its_institution(logins: Path) -> None:
    a = _client(logins, f"{access.institution_principal(A)}-mtls")
    assert a["security.protocol"] == "SSL" and "sasl.username" not in a
    assert _write(a, topics.inbound_topic(A)) is None
    assert _denied(_write(a, topics.inbound_topic(B)))
    assert _denied(_write(a, topics.PERSON.name))


def test_a_reader_sees_only_its_topics(logins: Path) -> None:
    dashboard, edge = _client(logins, "dashboard"), _client(logins, "edge")
    assert not _reads(dashboard, topics.PERSON.name)
    assert _reads(edge, topics.PERSON.name)


def test_the_audit_trail_is_append_only_to_the_edge_that_writes_it(logins: Path) -> None:
    """The edge may add entries to hs.edge.audit.v1 but not delete them, shorten the topic's
    retention or delete the topic: what it wrote stays, entries after its last anchor too."""
    edge = _client(logins, "edge")
    assert _write(edge, topics.EDGE_AUDIT.name) is None
    admin = AdminClient(edge)
    set_retention = ConfigEntry("retention.ms", "1", incremental_operation=AlterConfigOpType.SET)
    shorter = ConfigResource(
        ConfigResource.Type.TOPIC, topics.EDGE_AUDIT.name, incremental_configs=[set_retention]
    )
    attempts: list[Future[Any]] = [
        *admin.delete_records([TopicPartition(topics.EDGE_AUDIT.name, 0, 1)]).values(),
        *admin.incremental_alter_configs([shorter]).values(),
        *admin.delete_topics([topics.EDGE_AUDIT.name], operation_timeout=15).values(),
    ]
    refusals = []
    for attempt in attempts:
        with pytest.raises(KafkaException) as refused:
            attempt.result(timeout=20)
        error = refused.value.args[0]
        refusals.append(error.code() if isinstance(error, KafkaError) else error)
    assert refusals == [KafkaError.TOPIC_AUTHORIZATION_FAILED] * 3
