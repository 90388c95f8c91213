"""Kafka clients set up the way the guarantees need them.

- Producers are idempotent with acks=all: a write is confirmed only when every in-sync
  replica has it, and retries never duplicate.
- Consumers read committed data only, commit nothing by themselves, and start from the
  earliest offset of a new group (nothing received is skipped).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from hs_common.errors import NotStoredError
from hs_common.settings import RuntimeSettings

Headers = list[tuple[str, str | bytes]]

# librdkafka's own log lines (connection state, retries) go through Python logging, so services
# write them as structured JSON like everything else; they name brokers, never message values.
_LOGGER: dict[str, logging.Logger] = {"logger": logging.getLogger("librdkafka")}


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
        # the Java client's partitioner (Quix Streams, Kafka Streams and Connect use it too),
        # so that every producer of a key puts it in the same partition
        "partitioner": "murmur2_random",
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
    return Producer(producer_config(settings, client_id, transactional_id) | overrides | _LOGGER)


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
    return Consumer(config | overrides | _LOGGER)


def make_admin(settings: RuntimeSettings) -> AdminClient:
    return AdminClient(settings.kafka_client_config() | _LOGGER)


def read_range(
    settings: RuntimeSettings,
    topic: str,
    client_id: str,
    start: Callable[[int, int], int] | None = None,
    ends: Mapping[int, int] | None = None,
    timeout: float = 120.0,
) -> Iterator[Message]:
    """The committed records of every partition of `topic`, in order within a partition, from
    `start(low watermark, end)` (default: the low watermark) up to `end`, exclusive: the log
    end when called, or `ends` (e.g. a group's committed offsets). Raises TimeoutError when the
    range cannot be read within `timeout`."""
    consumer = make_consumer(settings, f"hs-reader-{uuid.uuid4().hex}", client_id)
    try:
        bounds: dict[int, tuple[int, int]] = {}
        for p in sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            end = high if ends is None else ends.get(p, 0)
            if end > low:
                bounds[p] = (max(low, start(low, end)) if start else low, end)
        consumer.assign([TopicPartition(topic, p, first) for p, (first, _) in bounds.items()])
        pending = set(bounds)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                partition, offset = message.partition(), message.offset()
                if message.error() is not None or partition not in pending or offset is None:
                    continue
                if offset < bounds[partition][1]:
                    yield message
                if offset >= bounds[partition][1] - 1:
                    pending.discard(partition)
            for position in consumer.position([TopicPartition(topic, p) for p in pending]):
                if position.offset >= bounds[position.partition][1]:  # the rest: txn markers
                    pending.discard(position.partition)
        if pending:
            raise TimeoutError(f"{topic}: could not read to the end within {timeout:.0f} s")
    finally:
        consumer.close()


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


class AsyncDurableProducer:
    """acks=all writes awaited from asyncio without blocking the loop.

    A thread serves librdkafka's delivery reports; each write resolves when Kafka confirms it,
    or raises NotStoredError after `timeout` (delivery.timeout.ms is set to the same, so an
    unconfirmed write is also given up by the client rather than delivered much later).
    """

    def __init__(self, settings: RuntimeSettings, client_id: str, timeout: float = 10.0) -> None:
        self.timeout = timeout
        overrides: dict[str, str | int] = {
            "delivery.timeout.ms": int(timeout * 1000),
            "linger.ms": 2,
        }
        self._producer = make_producer(settings, client_id, None, **overrides)
        self._running = True
        self._poller = threading.Thread(
            target=self._poll, name=f"{client_id}-delivery", daemon=True
        )
        self._poller.start()

    def _poll(self) -> None:
        while self._running:
            self._producer.poll(0.05)

    async def write(
        self,
        topic: str,
        value: bytes,
        key: str | bytes | None = None,
        headers: Headers | None = None,
    ) -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[tuple[int, int]] = loop.create_future()

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                outcome: tuple[int, int] | NotStoredError = NotStoredError(
                    f"{topic}: write failed: {err.name()}"
                )
            else:
                outcome = (int(msg.partition() or 0), int(msg.offset() or 0))
            loop.call_soon_threadsafe(_settle, done, outcome)

        try:
            self._producer.produce(
                topic, value=value, key=key, headers=headers, on_delivery=delivered
            )
        except BufferError:
            raise NotStoredError(f"{topic}: producer queue full") from None
        try:
            async with asyncio.timeout(self.timeout):
                return await done
        except TimeoutError:
            raise NotStoredError(
                f"{topic}: no delivery confirmation within {self.timeout:.1f} s"
            ) from None

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (up to `timeout`), then release the client and its sockets."""
        self._producer.flush(timeout)
        self._running = False
        self._poller.join(timeout=1.0)
        del self._producer  # destroys the librdkafka handle now rather than at garbage collection


def _settle(
    future: asyncio.Future[tuple[int, int]], outcome: tuple[int, int] | NotStoredError
) -> None:
    if future.done():
        return
    if isinstance(outcome, NotStoredError):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
