"""Where ingestion keeps what it receives, before it answers: the raw topic for what it can
keep, the dead-letter topic for what it refuses. Both writes are acks=all and awaited; a
NotStoredError means the sender must not be told its message was accepted."""

from __future__ import annotations

from typing import Any

from hs_common import topics
from hs_common.codec import Codec
from hs_common.deadletter import DeadLetter, Origin
from hs_common.kafka import AsyncDurableProducer


class Store:
    def __init__(
        self,
        codec: Codec,
        producer: AsyncDurableProducer,
        raw_topic: str = topics.RAW.name,
        dead_letter_topic: str = topics.DEAD_LETTER.name,
    ) -> None:
        self.codec = codec
        self.producer = producer
        self.raw_topic = raw_topic
        self.dead_letter_topic = dead_letter_topic

    async def keep(self, record: dict[str, Any], key: str) -> None:
        """Write an hs.ingest.RawMessage."""
        await self.keep_encoded(self.codec.encode(topics.RAW.value_schema, record), key)

    async def keep_encoded(self, value: bytes, key: str) -> None:
        await self.producer.write(self.raw_topic, value, key)

    async def refuse(
        self,
        stage: str,
        reason_code: str,
        reason: str,
        original: bytes,
        origin: Origin,
        institution: str,
    ) -> None:
        """Write the bytes received, with why they could not be kept."""
        letter = DeadLetter(stage, reason_code, reason, original, origin, institution, institution)
        await self.producer.write(self.dead_letter_topic, letter.encode(self.codec), letter.key)
