"""Dead letters: input a stage could not handle, kept with its reason and origin."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from hs_common import topics
from hs_common.codec import Codec
from hs_common.envelope import new_envelope

UNKNOWN_SOURCE = "unknown"


@dataclass(frozen=True)
class Origin:
    transport: str  # hs.ingest.Transport symbol
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    peer: str | None = None
    sender_message_id: str | None = None
    content_type: str | None = None


@dataclass(frozen=True)
class DeadLetter:
    stage: str
    reason_code: str
    reason: str
    original: bytes
    origin: Origin
    institution: str = UNKNOWN_SOURCE
    system: str = UNKNOWN_SOURCE
    trace_id: str | None = None
    attempt: int = 0
    item: str | None = None  # the failed item's position, when the rest of the message went on

    def encode(self, codec: Codec) -> bytes:
        now = datetime.now(UTC)
        record = {
            "envelope": new_envelope(self.institution, self.system, now, now, self.trace_id),
            "stage": self.stage,
            "reason_code": self.reason_code,
            "reason": self.reason,
            "original": self.original,
            "origin": self.origin.__dict__,
            "attempt": self.attempt,
            "item": self.item,
        }
        return codec.encode(topics.DEAD_LETTER.value_schema, record)

    @property
    def key(self) -> str:
        return self.stage
