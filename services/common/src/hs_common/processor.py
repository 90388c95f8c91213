"""Exactly-once consume-transform-produce with Kafka transactions.

One batch = one transaction: the outputs of every input in the batch, the dead letters of
the inputs that could not be handled, and the consumer offsets after the batch are
committed together or not at all. A process killed mid-batch leaves an open transaction
that the next instance with the same transactional id aborts at start (fencing), and the
batch is read again from the last committed offsets, so read_committed consumers see each
output once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from hs_common import topics
from hs_common.codec import Codec
from hs_common.deadletter import DeadLetter, Origin
from hs_common.errors import HealthStreamError, RejectedInput
from hs_common.kafka import kafka_error, make_consumer, make_producer
from hs_common.metrics import RuntimeMetrics
from hs_common.settings import RuntimeSettings

log = logging.getLogger(__name__)

KAFKA_TIMEOUT = 30.0


@dataclass(frozen=True)
class Output:
    topic: str
    value: bytes
    key: str | bytes | None = None
    headers: list[tuple[str, str | bytes]] | None = None  # e.g. hs_common.control's MAC


Transform = Callable[[Message], Iterable[Output]]


class ExactlyOnceProcessor:
    def __init__(
        self,
        settings: RuntimeSettings,
        *,
        stage: str,
        group_id: str,
        input_topics: Sequence[str],
        transform: Transform,
        codec: Codec,
        metrics: RuntimeMetrics | None = None,
        batch_size: int = 500,
        poll_timeout: float = 0.5,
        dead_letter_topic: str = topics.DEAD_LETTER.name,
        on_assign: Callable[[], None] | None = None,
        consumer_settings: Mapping[str, str | int] | None = None,
    ) -> None:
        self.settings = settings
        self.stage = stage
        self.group_id = group_id
        self.input_topics = list(input_topics)
        self.transform = transform
        self.codec = codec
        self.metrics = metrics or RuntimeMetrics.create()
        self.batch_size = batch_size
        self.poll_timeout = poll_timeout
        self.dead_letter_topic = dead_letter_topic
        self.transactional_id = f"{group_id}-{settings.instance_id}"
        # Called when partitions are assigned and after an aborted transaction: a transform that
        # keeps state rebuilds it there from what is committed.
        self.on_assign = on_assign
        self.consumer_settings = dict(consumer_settings or {})

    def run(self, stop: threading.Event) -> None:
        """Process until `stop` is set; the batch in hand is finished and committed first."""
        client_id = f"{self.stage}-{self.settings.instance_id}"
        producer = make_producer(self.settings, client_id, self.transactional_id)
        # Static membership: a restarted replica (same instance id) takes its partitions back at
        # once instead of waiting for the group to time the dead member out.
        static_membership: dict[str, str | int] = {
            "group.instance.id": self.transactional_id,
            "session.timeout.ms": 15000,
        }
        consumer = make_consumer(
            self.settings, self.group_id, client_id, **static_membership, **self.consumer_settings
        )
        producer.init_transactions(
            KAFKA_TIMEOUT
        )  # fences and aborts a predecessor's open transaction
        consumer.subscribe(self.input_topics, on_assign=self._assigned)
        log.info(
            "processor started",
            extra={"stage": self.stage, "transactional_id": self.transactional_id},
        )
        try:
            while not stop.is_set():
                batch = consumer.consume(self.batch_size, self.poll_timeout)
                if batch:
                    self._process_batch(consumer, producer, batch)
        finally:
            consumer.close()
            producer.flush(KAFKA_TIMEOUT)
            log.info("processor stopped", extra={"stage": self.stage})

    def _process_batch(self, consumer: Consumer, producer: Producer, batch: list[Message]) -> None:
        started = time.monotonic()
        first: dict[tuple[str, int], int] = {}
        after: dict[tuple[str, int], int] = {}
        messages = [m for m in batch if _is_record(m)]
        producer.begin_transaction()
        try:
            for message in messages:
                position = (str(message.topic()), int(message.partition() or 0))
                offset = int(message.offset() or 0)
                first.setdefault(position, offset)
                after[position] = offset + 1
                self.metrics.consumed.labels(position[0]).inc()
                for output in self._outputs(message):
                    producer.produce(
                        output.topic, value=output.value, key=output.key, headers=output.headers
                    )
                    self.metrics.produced.labels(output.topic).inc()
            offsets = [TopicPartition(t, p, o) for (t, p), o in after.items()]
            producer.send_offsets_to_transaction(
                offsets, consumer.consumer_group_metadata(), KAFKA_TIMEOUT
            )
            self._commit(producer)
        except KafkaException as exc:
            if not kafka_error(exc).txn_requires_abort():
                raise
            producer.abort_transaction(KAFKA_TIMEOUT)
            self.metrics.transactions.labels("aborted").inc()
            for (topic, partition), offset in first.items():  # read the batch again
                consumer.seek(TopicPartition(topic, partition, offset))
            log.warning(
                "transaction aborted; batch will be reprocessed", extra={"count": len(batch)}
            )
            if self.on_assign is not None:
                self.on_assign()
            return
        self.metrics.batch_seconds.observe(time.monotonic() - started)

    def _assigned(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if partitions and self.on_assign is not None:
            self.on_assign()

    def _commit(self, producer: Producer) -> None:
        while True:
            try:
                producer.commit_transaction(KAFKA_TIMEOUT)
            except KafkaException as exc:
                if kafka_error(exc).retriable():
                    continue
                raise
            self.metrics.transactions.labels("committed").inc()
            return

    def _outputs(self, message: Message) -> list[Output]:
        try:
            return list(self.transform(message))
        except RejectedInput as exc:
            reason_code, reason = exc.reason_code, str(exc)
        except HealthStreamError:
            raise  # configuration or infrastructure: stop rather than dead-letter everything
        except Exception as exc:
            log.exception("unhandled error in transform", extra={"stage": self.stage})
            reason_code, reason = "internal.unhandled", f"{type(exc).__name__} in {self.stage}"
        self.metrics.dead_letters.labels(self.stage, reason_code).inc()
        log.warning(
            "input dead-lettered",
            extra={
                "stage": self.stage,
                "reason_code": reason_code,
                "topic": message.topic(),
                "partition": message.partition(),
                "offset": message.offset(),
            },
        )
        letter = DeadLetter(
            stage=self.stage,
            reason_code=reason_code,
            reason=reason,
            original=message.value() or b"",
            origin=Origin("KAFKA", message.topic(), message.partition(), message.offset()),
        )
        return [Output(self.dead_letter_topic, letter.encode(self.codec), letter.key)]


def _is_record(message: Message) -> bool:
    """Consumer events that are not records: fatal ones stop the process, others are logged."""
    error = message.error()
    if error is None:
        return True
    if error.fatal():
        raise KafkaException(error)
    log.warning("consumer event", extra={"error_type": error.name(), "topic": message.topic()})
    return False
