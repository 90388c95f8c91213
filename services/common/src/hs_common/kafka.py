"""Kafka clients set up the way the guarantees need them.

- Producers are idempotent with acks=all: a write is confirmed only when every in-sync
  replica has it, and retries never duplicate.
- Consumers read committed data only, commit nothing by themselves, and start from the
  earliest offset of a new group (nothing received is skipped).
"""

from __future__ import annotations

from collections.abc import Mapping

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient

from hs_common.errors import NotStoredError
from hs_common.settings import RuntimeSettings

Headers = list[tuple[str, bytes]]


def producer_config(
    settings: RuntimeSettings, client_id: str, transactional_id: str | None = None
) -> dict[str, str | int | bool]:
    config = settings.kafka_client_config() | {
        "client.id": client_id,
        "acks": "all",
        "enable.idempotence": True,
        "compression.type": "lz4",
        "linger.ms": 5,
        "delivery.timeout.ms": 30000,
    }
    if transactional_id is not None:
        config["transactional.id"] = transactional_id
        config["transaction.timeout.ms"] = 60000
    return config


def kafka_error(exc: KafkaException) -> KafkaError:
    error = exc.args[0]
    if isinstance(error, KafkaError):
        return error
    return KafkaError(KafkaError._FAIL, str(error))


def make_producer(
    settings: RuntimeSettings,
    client_id: str,
    transactional_id: str | None = None,
    **overrides: str | int,
) -> Producer:
    return Producer(producer_config(settings, client_id, transactional_id) | overrides)


def make_consumer(
    settings: RuntimeSettings, group_id: str, client_id: str, **overrides: str | int
) -> Consumer:
    config = settings.kafka_client_config() | {
        "client.id": client_id,
        "group.id": group_id,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
    }
    return Consumer(config | overrides)


def make_admin(settings: RuntimeSettings) -> AdminClient:
    return AdminClient(settings.kafka_client_config())


def produce_durably(
    producer: Producer,
    topic: str,
    value: bytes,
    key: str | bytes | None = None,
    headers: Mapping[str, bytes] | None = None,
    timeout: float = 10.0,
) -> tuple[int, int]:
    """Write one record and wait until Kafka confirms it (acks=all).

    Returns (partition, offset). Raises NotStoredError when the broker did not confirm it
    in time: the caller must then answer the sender negatively.
    """
    outcome: list[tuple[KafkaError | None, Message]] = []
    producer.produce(
        topic,
        value=value,
        key=key,
        headers=list(headers.items()) if headers else None,
        on_delivery=lambda err, msg: outcome.append((err, msg)),
    )
    remaining = producer.flush(timeout)
    if not outcome:
        raise NotStoredError(
            f"{topic}: no delivery confirmation within {timeout:.1f} s ({remaining} pending)"
        )
    err, msg = outcome[0]
    if err is not None:
        raise NotStoredError(f"{topic}: write failed: {err.name()}")
    partition, offset = msg.partition(), msg.offset()
    if partition is None or offset is None:
        raise NotStoredError(f"{topic}: delivery report without a position")
    return partition, offset
