"""The Kafka door: institutions publish straight to their inbound topic (`hs.inbound.<code>.v1`).

The broker's ACLs let only the institution's principal write its topic, so the topic names the
sender: the institution recorded is the topic's, never MSH-4 or a header. An HL7 message whose
MSH-3/MSH-4 name another registered source is refused; one naming none is the topic's (as on a
port only one source sends to), and a batch (FHS/BHS) is taken message by message. The
`content-type` header says what the value is (application/hl7-v2, application/fhir+json,
application/json, text/csv, application/x-ndjson as at the HTTP door, or
application/vnd.healthstream.avro for typed events of our contracts, `typed`); the body is then
checked, kept on the raw topic or refused, exactly as the MLLP and HTTP doors do
(`intake.receive_hl7`, `httpintake.receive_http`). What happens to it next is answered on the
institution's acknowledgement topic (`hs.inbound.<code>.ack.v1`): by this door when it refuses
a message, by the normalizer once the message became events (`inbound_ack`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hs_common import topics
from hs_common.crypto import Keyring
from hs_common.envelope import new_envelope
from hs_common.errors import RejectedInput
from hs_ingestion import httpintake, intake
from hs_ingestion.hl7 import is_batch, split_messages
from hs_ingestion.sources import SourceRegistry
from hs_ingestion.typed import TYPED_CONTENT_TYPE, Contracts, Typed

KAFKA_TRANSPORT = "kafka"  # the `transports` entry of a source that may publish here
CONTENT_TYPE_HEADER = "content-type"
MESSAGE_ID_HEADER = "message-id"
_INBOUND_PREFIX, _INBOUND_SUFFIX = "hs.inbound.", ".v1"


@dataclass(frozen=True)
class Inbound:
    """One record read from an inbound topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Sequence[tuple[str, bytes | None]]

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name and value is not None:
                return value.decode("utf-8", errors="replace").strip()
        return None

    @property
    def position(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def message_id(self) -> str:
        """The publisher's id: its message-id header, else its key, else where it was read
        (for HL7 v2, MSH-10 where it can be read)."""
        key = self.key.decode("utf-8", errors="replace") if self.key else None
        return self.header(MESSAGE_ID_HEADER) or key or self.position


@dataclass(frozen=True)
class Kept:
    record: dict[str, Any]  # hs.ingest.RawMessage, transport KAFKA
    key: str


@dataclass(frozen=True)
class Refused:
    institution: str
    message_id: str
    reason_code: str
    reason: str
    content_type: str | None


def institution_of(topic: str) -> str | None:
    """'hs.inbound.HZ01.v1' -> 'HZ01' (None for any other topic)."""
    if topic.startswith(_INBOUND_PREFIX) and topic.endswith(_INBOUND_SUFFIX):
        code = topic[len(_INBOUND_PREFIX) : -len(_INBOUND_SUFFIX)]
        return code if code and "." not in code else None
    return None


def inbound_topics(sources: SourceRegistry) -> list[str]:
    """The inbound topics of the sources allowed to publish to Kafka."""
    return [topics.inbound_topic(s.code) for s in sources if KAFKA_TRANSPORT in s.transports]


def receive_inbound(
    message: Inbound,
    sources: SourceRegistry,
    keyring: Keyring,
    contracts: Contracts,
    max_bytes: int,
    received_at: datetime | None = None,
) -> list[Kept | Refused]:
    """Keep or refuse one published message, as the topic's institution's: one outcome, or
    one per message of an HL7 batch (FHS/BHS)."""
    received_at = received_at or datetime.now(UTC)
    institution = institution_of(message.topic) or "unknown"
    source = sources.get(institution)
    content_type = message.header(CONTENT_TYPE_HEADER)

    def refused(code: str, reason: str, message_id: str | None = None) -> Refused:
        return Refused(institution, message_id or message.message_id, code, reason, content_type)

    if source is None or KAFKA_TRANSPORT not in source.transports:
        return [refused("kafka.unknown_source", "no registered source publishes to this topic")]
    if content_type is None:
        return [refused("kafka.content_type", f"the {CONTENT_TYPE_HEADER} header is missing")]
    if len(message.value) > max_bytes:
        return [refused("kafka.too_large", f"at most {max_bytes} bytes")]
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type == TYPED_CONTENT_TYPE:
        try:
            typed = contracts.read(message.value)
        except RejectedInput as error:
            return [refused(error.reason_code, str(error))]
        return [Kept(_typed_raw(message, institution, typed, received_at),
                     keyring.pseudonym(institution, typed.patient))]  # fmt: skip
    if media_type == intake.HL7_CONTENT_TYPE:
        batch = split_messages(message.value) if is_batch(message.value) else []
        outcomes: list[Kept | Refused] = []
        for payload in batch or [message.value]:
            hl7 = intake.receive_hl7(
                payload, sources, keyring, received_at, transport=None, authenticated=institution
            )
            if isinstance(hl7, intake.Refused):
                reason = f"{hl7.problem.where}: {hl7.problem.text}"
                outcomes.append(refused(hl7.problem.reason_code, reason, hl7.sender_message_id))
            else:
                outcomes.append(Kept(hl7.record | {"transport": "KAFKA"}, hl7.key))
        return outcomes
    body = httpintake.receive_http(
        institution, (source.format,), content_type, message.value, sources, keyring,
        max_bytes, message.message_id, received_at, transport=None,
    )  # fmt: skip
    if isinstance(body, httpintake.Refused):
        return [refused(body.reason_code, body.reason)]
    return [Kept(body.record | {"transport": "KAFKA"}, body.key)]


def _typed_raw(
    message: Inbound, institution: str, typed: Typed, received_at: datetime
) -> dict[str, Any]:
    """hs.ingest.RawMessage for a typed event, as published."""
    envelope = typed.record["envelope"]
    return {
        "envelope": new_envelope(
            institution, envelope["source"]["system"], envelope["occurred_at"], received_at
        ),
        "payload": message.value,
        "content_type": TYPED_CONTENT_TYPE,
        "charset": None,
        "transport": "KAFKA",
        "sender_message_id": message.message_id,
        "content_sha256": hashlib.sha256(message.value).digest(),
        "only_items": [],
    }


def inbound_ack(
    raw: dict[str, Any],
    status: str,
    reasons: Sequence[tuple[str | None, str, str]] = (),
    kept: bool = True,
) -> dict[str, Any]:
    """hs.ingest.InboundAck for a message read from an inbound topic; `reasons` are
    (item, reason code, reason)."""
    envelope = raw["envelope"]
    now = datetime.now(UTC)
    return {
        "envelope": new_envelope(
            envelope["source"]["institution"], "hs-ingestion", now, now, envelope["trace_id"]
        ),
        "message_id": raw["sender_message_id"] or "",
        "status": status,
        "reasons": [{"item": i, "code": c, "reason": r} for i, c, r in reasons],
        "raw_event_id": str(envelope["event_id"]) if kept else None,
    }


def refusal_ack(refusal: Refused) -> dict[str, Any]:
    """hs.ingest.InboundAck for a message this door refused before keeping it."""
    now = datetime.now(UTC)
    raw = {
        "envelope": new_envelope(refusal.institution, "hs-ingestion", now, now),
        "sender_message_id": refusal.message_id,
    }
    return inbound_ack(raw, "REJECTED", [(None, refusal.reason_code, refusal.reason)], kept=False)
