"""Repeat detection that survives a restart.

A repeat is the same (institution, sender message id, SHA-256 of the bytes). The listener and
the normalizer remember the last messages they handled; at start they read those back from
the tail of the raw topic, so a sender that resends after a restart (its acknowledgement was
lost in the crash) is answered again without its message being stored or normalized twice.
The digest and ids are in the clear on the raw topic: nothing is decrypted to read them.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

from confluent_kafka import TopicPartition

from hs_common import topics
from hs_common.codec import Codec
from hs_common.crypto import Keyring
from hs_common.errors import CodecError
from hs_common.kafka import make_admin, make_consumer, read_range
from hs_common.schemas import SchemaCatalogue
from hs_common.settings import RuntimeSettings

log = logging.getLogger(__name__)

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
    `group_id`, the last ones before that group's committed offsets (what it has handled).
    What could not be read in `timeout` is left out: repeats of it are then stored again."""
    reader = Codec(catalogue, Keyring.empty())  # sealed payloads stay sealed
    ends = _committed(settings, topic, group_id) if group_id is not None else None
    partitions = make_admin(settings).list_topics(topic, timeout=10).topics[topic].partitions
    share = max(1, limit // max(1, len(partitions)))
    seen: list[Seen] = []
    messages = read_range(
        settings, topic, "recent-reader", lambda low, end: end - share, ends, timeout
    )
    try:
        for message in messages:
            try:
                record = reader.decode(
                    message.value() or b"", expect=topics.RAW.value_schema
                ).record
            except CodecError:
                continue  # not a raw message of ours: nothing to remember
            if record["sender_message_id"]:
                key = (
                    record["envelope"]["source"]["institution"],
                    record["sender_message_id"],
                    bytes(record["content_sha256"]),
                )
                seen.append(Seen(key, (int(message.partition() or 0), int(message.offset() or 0))))
    except TimeoutError:
        log.warning("recent messages read in part", extra={"topic": topic, "count": len(seen)})
    return seen


def _committed(settings: RuntimeSettings, topic: str, group_id: str) -> dict[int, int]:
    group = make_consumer(settings, group_id, "recent-offsets")
    try:
        partitions = group.list_topics(topic, timeout=10).topics[topic].partitions
        offsets = group.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return {tp.partition: max(tp.offset, 0) for tp in offsets}
    finally:
        group.close()
