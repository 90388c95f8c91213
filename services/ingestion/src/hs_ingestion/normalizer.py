"""`hs-normalize`: raw messages to canonical events, exactly once.

Consumes hs.ingest.raw.v1 with Kafka transactions (hs_common.processor): the events of a
message, or its dead letter, are committed together with the consumer offset. Events are
keyed by the pseudonym of (institution, local patient id), so one patient's events stay in
order on one partition.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from confluent_kafka import Message
from pydantic import Field

from hs_common import topics
from hs_common.codec import Codec, Record
from hs_common.deadletter import DeadLetter, Origin
from hs_common.errors import RejectedInput
from hs_common.lifecycle import stop_on_signals
from hs_common.processor import ExactlyOnceProcessor, Output
from hs_common.runtime import Runtime
from hs_common.settings import RuntimeSettings
from hs_ingestion.inbound import ACK_SCHEMA
from hs_ingestion.kafkadoor import inbound_ack
from hs_ingestion.normalize import normalize_raw
from hs_ingestion.recent import RecentMessages, read_recent
from hs_ingestion.sources import SourceRegistry, default_sources_dir
from hs_ingestion.typed import Contracts

STAGE = "ingestion.normalize"
REMEMBER = 100_000  # messages remembered for repeat detection
TOPIC_OF = {spec.value_schema: spec.name for spec in topics.ALL}
Reason = tuple[str | None, str, str]  # what an institution is told: item, reason code, reason


class NormalizerSettings(RuntimeSettings):
    metrics_port: int = Field(9402, ge=0, le=65535, alias="HS_METRICS_PORT")
    sources_dir: Path = Field(default_factory=default_sources_dir, alias="HS_INGESTION_SOURCES_DIR")
    group_id: str = Field("hs-normalize", alias="HS_NORMALIZE_GROUP")


class Normalizer:
    """The transform: one raw message in, its canonical events out (or a RejectedInput)."""

    def __init__(
        self,
        codec: Codec,
        sources: SourceRegistry,
        topic_of: dict[str, str] | None = None,
        remember: int = REMEMBER,
        dead_letter_topic: str = topics.DEAD_LETTER.name,
    ) -> None:
        self.codec = codec
        self.sources = sources
        self.contracts = Contracts(codec.catalogue)
        self.topic_of = topic_of or TOPIC_OF
        self.dead_letter_topic = dead_letter_topic
        # A message read again at the position where it was first seen (a batch replayed after
        # an aborted transaction) is not a repeat.
        self.recent = RecentMessages(remember)

    def __call__(self, message: Message) -> Iterator[Output]:
        raw = self.codec.decode(message.value() or b"", expect=topics.RAW.value_schema).record
        if raw["transport"] != "KAFKA":
            yield from self._normalize(message, raw)[0]
            return
        # published straight to Kafka: the institution is answered on its acknowledgement topic
        try:
            outputs, refused = self._normalize(message, raw)
        except RejectedInput as error:
            yield self._dead_letter(message, raw, error.reason_code, str(error))
            yield self._ack(raw, "REJECTED", [(None, error.reason_code, str(error))])
            return
        yield from outputs
        if not outputs:
            reason = "already received; its events were made the first time"
            yield self._ack(raw, "ACCEPTED", [(None, "ingest.repeat", reason)])
        elif refused:
            yield self._ack(raw, "PARTIAL" if len(refused) < len(outputs) else "REJECTED", refused)
        else:
            yield self._ack(raw, "ACCEPTED")

    def _normalize(self, message: Message, raw: Record) -> tuple[list[Output], list[Reason]]:
        """The message's events and item dead letters, and the reasons of those."""
        institution = raw["envelope"]["source"]["institution"]
        source = self.sources.get(institution)
        if source is None:
            raise RejectedInput("source is not registered", "normalize.unknown_source")
        if raw["sender_message_id"] and not raw["only_items"]:
            repeat = (institution, raw["sender_message_id"], bytes(raw["content_sha256"]))
            position = (int(message.partition() or 0), int(message.offset() or 0))
            if self.recent.first_seen(repeat, position) != position:
                return [], []  # the same message stored twice (a resend after a lost answer)
        mapped = normalize_raw(raw, source, self.contracts)
        keys: dict[tuple[str, str], str] = {}  # a message's events are mostly about one patient
        outputs = []
        for event in mapped.events:
            owner = (event.institution or institution, event.patient)
            key = keys.get(owner) or keys.setdefault(owner, self.codec.keyring.pseudonym(*owner))
            value = self.codec.encode(event.schema, event.record)
            outputs.append(Output(self.topic_of[event.schema], value, key))
        refused: list[Reason] = [(f.item, f.reason_code, f.reason) for f in mapped.failures]
        outputs += [self._dead_letter(message, raw, code, why, item) for item, code, why in refused]
        return outputs, refused

    def _dead_letter(
        self, message: Message, raw: Record, code: str, reason: str, item: str | None = None
    ) -> Output:
        envelope = raw["envelope"]
        letter = DeadLetter(
            STAGE, code, reason, message.value() or b"",
            Origin("KAFKA", message.topic(), message.partition(), message.offset()),
            envelope["source"]["institution"], envelope["source"]["system"],
            envelope["trace_id"], item=item,
        )  # fmt: skip
        return Output(self.dead_letter_topic, letter.encode(self.codec), letter.key)

    def _ack(self, raw: Record, status: str, reasons: Sequence[Reason] = ()) -> Output:
        ack = inbound_ack(raw, status, reasons)
        institution = raw["envelope"]["source"]["institution"]
        value = self.codec.encode(ACK_SCHEMA, ack)
        return Output(topics.inbound_ack_topic(institution), value, ack["message_id"])


def main() -> int:
    settings = NormalizerSettings()
    runtime = Runtime.start("normalize", settings)
    normalizer = Normalizer(runtime.codec, SourceRegistry.load(settings.sources_dir))
    normalizer.recent.remember(
        read_recent(settings, runtime.codec.catalogue, REMEMBER, group_id=settings.group_id)
    )
    runtime.ready()
    ExactlyOnceProcessor(
        settings,
        stage=STAGE,
        group_id=settings.group_id,
        input_topics=[topics.RAW.name],
        transform=normalizer,
        codec=runtime.codec,
        metrics=runtime.metrics,
    ).run(stop_on_signals())
    return 0


if __name__ == "__main__":
    sys.exit(main())
