"""The Kafka door's stage: inbound topics to the raw topic, exactly once (hs_common.processor).

A kept message goes to hs.ingest.raw.v1 like one received over MLLP or HTTP, and the normalizer
answers it on the institution's acknowledgement topic; a refused one goes to the dead letters
and is answered here, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterator

from confluent_kafka import Message

from hs_common import topics
from hs_common.codec import Codec
from hs_common.deadletter import DeadLetter, Origin
from hs_common.processor import Output
from hs_ingestion.kafkadoor import Inbound, Kept, Refused, receive_inbound, refusal_ack
from hs_ingestion.sources import SourceRegistry
from hs_ingestion.typed import Contracts

STAGE = "ingestion.kafka"
ACK_SCHEMA = "hs.ingest.InboundAck"


class InboundStage:
    def __init__(
        self,
        codec: Codec,
        sources: SourceRegistry,
        max_bytes: int,
        raw_topic: str = topics.RAW.name,
        dead_letter_topic: str = topics.DEAD_LETTER.name,
    ) -> None:
        self.codec, self.sources, self.max_bytes = codec, sources, max_bytes
        self.contracts = Contracts(codec.catalogue)
        self.raw_topic, self.dead_letter_topic = raw_topic, dead_letter_topic

    def __call__(self, message: Message) -> Iterator[Output]:
        key = message.key()
        inbound = Inbound(
            message.topic() or "", message.partition() or 0, message.offset() or 0,
            key.encode() if isinstance(key, str) else key, message.value() or b"",
            [(k, v.encode() if isinstance(v, str) else v) for k, v in message.headers() or ()],
        )  # fmt: skip
        outcomes = receive_inbound(
            inbound, self.sources, self.codec.keyring, self.contracts, self.max_bytes
        )
        for outcome in outcomes:
            if isinstance(outcome, Kept):
                value = self.codec.encode(topics.RAW.value_schema, outcome.record)
                yield Output(self.raw_topic, value, outcome.key)
            else:
                yield from self._refuse(inbound, outcome)

    def _refuse(self, inbound: Inbound, outcome: Refused) -> Iterator[Output]:
        origin = Origin(
            "KAFKA", inbound.topic, inbound.partition, inbound.offset,
            sender_message_id=outcome.message_id, content_type=outcome.content_type,
        )  # fmt: skip
        letter = DeadLetter(
            STAGE, outcome.reason_code, outcome.reason, inbound.value, origin,
            outcome.institution, "kafka",
        )  # fmt: skip
        yield Output(self.dead_letter_topic, letter.encode(self.codec), letter.key)
        if self.sources.get(outcome.institution) is not None:
            ack = self.codec.encode(ACK_SCHEMA, refusal_ack(outcome))
            yield Output(topics.inbound_ack_topic(outcome.institution), ack, outcome.message_id)
