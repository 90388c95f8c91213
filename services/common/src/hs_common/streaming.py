"""What the stateful services (Quix Streams applications) share: an exactly-once
application under the service's transactional id, outputs routed by topic, and state values
sealed before they reach RocksDB and its changelog topic. Needs the `streams` extra."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from quixstreams import Application
from quixstreams.kafka.configuration import ConnectionConfig
from quixstreams.models import Topic
from quixstreams.models.serializers import Serializer
from quixstreams.state.rocksdb import RocksDBOptions

from hs_common.codec import Codec
from hs_common.crypto import Sealed
from hs_common.settings import RuntimeSettings

SEALED_STATE = b"\x00sealed:"


class Out(NamedTuple):
    """An encoded record for one of the application's output topics."""

    topic: str
    key: str
    payload: bytes


class PayloadSerializer(Serializer):
    def __call__(self, value: Out, ctx: Any) -> bytes:
        return value.payload


def sealed_state(codec: Codec, aad: str) -> RocksDBOptions:
    """State values sealed with the health key; state keys (constant names) left readable,
    since the store looks them up by their bytes."""

    def dumps(value: Any) -> bytes:
        plain = json.dumps(value).encode()
        if isinstance(value, str):
            return plain
        sealed = codec.keyring.seal("health", aad, plain)
        return (
            SEALED_STATE
            + json.dumps([sealed.key_id, sealed.nonce.hex(), sealed.ciphertext.hex()]).encode()
        )

    def loads(data: bytes) -> Any:
        if not data.startswith(SEALED_STATE):
            return json.loads(data)
        key_id, nonce, ciphertext = json.loads(data[len(SEALED_STATE) :])
        sealed = Sealed(key_id, bytes.fromhex(nonce), bytes.fromhex(ciphertext))
        plain = codec.keyring.open(aad, sealed)
        if plain is None:
            raise RuntimeError(f"{aad} sealed with a key this process does not hold")
        return json.loads(plain)

    return RocksDBOptions(dumps=dumps, loads=loads)


def application(
    settings: RuntimeSettings, codec: Codec, group_id: str, state_dir: str, state_aad: str,
    commit_seconds: float,
) -> Application:  # fmt: skip
    """An exactly-once application with a stable transactional id under the service's prefix
    (the broker's ACLs allow only it) and sealed state."""
    return Application(
        broker_address=ConnectionConfig.from_librdkafka_dict(settings.kafka_client_config()),
        consumer_group=group_id,
        producer_extra_config={"transactional.id": f"{group_id}-{settings.instance_id}"},
        processing_guarantee="exactly-once",
        auto_offset_reset="earliest",
        state_dir=state_dir,
        rocksdb_options=sealed_state(codec, state_aad),
        commit_interval=commit_seconds,
        loglevel=None,
    )


def output_topics(app: Application, names: tuple[str, ...]) -> dict[str, Topic]:
    """The application's output topics by name, each taking Out values."""
    return {
        name: app.topic(name, key_serializer="string", value_serializer=PayloadSerializer())
        for name in names
    }
