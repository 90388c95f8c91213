"""Repeat detection that survives a restart.

A repeat is the same (institution, sender message id, SHA-256 of the bytes). The listener and
the normalizer remember the last messages they handled; at start they read those back from
the tail of the raw topic, so a sender that resends after a restart (its acknowledgement was
lost in the crash) is answered again without its message being stored or normalized twice.
The digest and ids are in the clear on the raw topic: nothing is decrypted to read them.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

from confluent_kafka import Consumer, TopicPartition

from hs_common import topics
from hs_common.codec import Codec
from hs_common.crypto import Keyring
from hs_common.errors import CodecError
from hs_common.kafka import make_consumer
from hs_common.schemas import SchemaCatalogue
from hs_common.settings import RuntimeSettings

RepeatKey = tuple[str, str, bytes]  # (institution, sender message id, SHA-256 of the bytes)
Position = tuple[int, int]  # (partition, offset) on the raw topic


@dataclass(frozen=True)
class Seen:
    key: RepeatKey
    position: Position


class RecentMessages:
    """The last `capacity` messages, each with where it was first seen."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        # flat bytes keys and int positions: objects the garbage collector does not track
        self._first: OrderedDict[bytes, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._first)

    def __contains__(self, key: RepeatKey) -> bool:
        return _flat(key) in self._first

    def first_seen(self, key: RepeatKey, position: Position | None = None) -> Position | None:
        """Remember `key` (at `position`, if new); return where it was first seen."""
        flat = _flat(key)
        first = self._first.setdefault(flat, -1 if position is None else _packed(position))
        self._first.move_to_end(flat)
        if len(self._first) > self.capacity:
            self._first.popitem(last=False)
        return None if first < 0 else (first >> 48, first & _OFFSET_MASK)

    def remember(self, seen: list[Seen]) -> None:
        for item in seen:
            self.first_seen(item.key, item.position)


_OFFSET_MASK = (1 << 48) - 1


def _flat(key: RepeatKey) -> bytes:
    institution, message_id, digest = key
    return digest + f"{institution}\x1f{message_id}".encode()


def _packed(position: Position) -> int:
    partition, offset = position
    return partition << 48 | offset


def read_recent(
    settings: RuntimeSettings,
    catalogue: SchemaCatalogue,
    limit: int,
    topic: str = topics.RAW.name,
    group_id: str | None = None,
    timeout: float = 30.0,
) -> list[Seen]:
    """The last `limit` raw messages (spread over the partitions), oldest first; with
    `group_id`, the last ones before that group's committed offsets (what it has handled)."""
    reader = Codec(catalogue, Keyring.empty())  # sealed payloads stay sealed
    consumer = make_consumer(settings, f"hs-recent-{uuid.uuid4().hex}", "recent-reader")
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        ends = _ends(settings, topic, partitions, group_id, consumer)
        share = max(1, limit // max(1, len(partitions)))
        starts = [
            TopicPartition(topic, p, max(low, end - share))
            for p, (low, end) in ends.items()
            if end > low
        ]
        remaining = {tp.partition: ends[tp.partition][1] for tp in starts}
        consumer.assign(starts)
        seen: list[Seen] = []
        deadline = time.monotonic() + timeout
        while remaining and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                partition, offset = message.partition(), message.offset()
                if message.error() is not None or partition not in remaining or offset is None:
                    continue
                if offset >= remaining[partition] - 1:
                    del remaining[partition]
                if offset >= ends[partition][1]:
                    continue
                try:
                    raw = reader.decode(message.value() or b"", expect=topics.RAW.value_schema)
                except CodecError:
                    continue  # not a raw message of ours: nothing to remember
                record = raw.record
                if record["sender_message_id"]:
                    key = (
                        record["envelope"]["source"]["institution"],
                        record["sender_message_id"],
                        bytes(record["content_sha256"]),
                    )
                    seen.append(Seen(key, (partition, offset)))
        return seen
    finally:
        consumer.close()


def _ends(
    settings: RuntimeSettings,
    topic: str,
    partitions: list[int],
    group_id: str | None,
    consumer: Consumer,
) -> dict[int, tuple[int, int]]:
    """(low watermark, end) per partition; end is the group's committed offset or the log end."""
    committed: dict[int, int] = {}
    if group_id is not None:
        group = make_consumer(settings, group_id, "recent-offsets")
        try:
            for tp in group.committed([TopicPartition(topic, p) for p in partitions], timeout=10):
                committed[tp.partition] = max(tp.offset, 0)
        finally:
            group.close()
    ends = {}
    for p in partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        ends[p] = (low, committed.get(p, 0) if group_id is not None else high)
    return ends
