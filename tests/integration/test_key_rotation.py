"""Key rotation: `hs-admin rotate-keys` makes new keys active and keeps the old ones;
`hs-admin keys-in-use` says which keys the records on the topics still use, so that a key is
retired only when nothing needs it."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from hs_common import admin, control, topics
from hs_common.codec import Codec
from hs_common.crypto import Keyring
from hs_common.kafka import make_producer
from hs_common.schemas import SchemaCatalogue
from hs_common.settings import Environment, RuntimeSettings
from hs_common.testing import golden_example, writer_headers

pytestmark = pytest.mark.integration


def test_after_a_rotation_the_old_keys_are_reported_in_use_until_nothing_needs_them(
    kafka_bootstrap: str, catalogue: SchemaCatalogue, schema_root: Path, tmp_path: Path
) -> None:
    path = tmp_path / "keyring.json"
    Keyring.generate().to_file(path)
    settings = RuntimeSettings(HS_ENV=Environment.TEST, HS_KEYRING_FILE=path)
    admin.create_topics(settings)
    observation: dict[str, Any] = golden_example(catalogue.get(topics.OBSERVATION.value_schema),
                                                 schema_root)  # fmt: skip

    def publish() -> None:
        codec = Codec(catalogue, Keyring.from_file(path))
        record = observation | {
            "envelope": observation["envelope"] | {"event_id": str(uuid.uuid4())}
        }
        producer = make_producer(settings, "rotation-test")
        producer.produce(
            topics.OBSERVATION.name, codec.encode(topics.OBSERVATION.value_schema, record)
        )
        assert producer.flush(10) == 0

    publish()
    before = Keyring.from_file(path)
    assert "new active keys" in admin.rotate_keys(settings)
    after = Keyring.from_file(path)
    publish()
    report = admin.keys_in_use(settings)
    in_use, _, idle = report.partition("may be retired): ")
    for sensitivity in ("identifying", "health"):
        assert before.active[sensitivity] in in_use  # the first record still needs it
        assert after.active[sensitivity] in in_use
    assert before.active_mac["edge"] in idle  # no record carries the old edge MAC key


def test_reseal_writes_the_compacted_topics_current_records_under_the_active_keys(
    kafka_bootstrap: str, catalogue: SchemaCatalogue, schema_root: Path, tmp_path: Path
) -> None:
    """A golden record sealed (and MACed) under the old keys: after `reseal`, its current value
    on the compacted person topic uses only active keys and still carries the EMPI's MAC."""
    path = tmp_path / "keyring.json"
    Keyring.generate().to_file(path)
    settings = RuntimeSettings(HS_ENV=Environment.TEST, HS_KEYRING_FILE=path)
    admin.create_topics(settings)
    person_id = f"P-rotation-{uuid.uuid4().hex[:8]}"
    person = golden_example(catalogue.get(topics.PERSON.value_schema), schema_root)
    person |= {"person_id": person_id}
    codec = Codec(catalogue, Keyring.from_file(path))
    value = codec.encode(topics.PERSON.value_schema, person)
    producer = make_producer(settings, "rotation-test")
    producer.produce(topics.PERSON.name, value, person_id, headers=writer_headers(codec, value))
    assert producer.flush(10) == 0
    old = Keyring.from_file(path)
    admin.rotate_keys(settings)
    assert admin.reseal(settings).endswith("re-sealed under the active keys")
    new = Keyring.from_file(path)
    current = {
        (m.key() or b"").decode(): m for m in admin.current_records(settings, topics.PERSON)
    }[person_id]
    fresh = Codec(catalogue, new)
    blind = Codec(catalogue, Keyring.empty())
    sealed_with = set(admin.sealed_key_ids(blind.decode(current.value() or b"").record))
    assert sealed_with and sealed_with <= set(new.active.values())
    assert not sealed_with & set(old.active.values())
    control.check(new, topics.PERSON.value_schema, current.value() or b"", current.headers())
    assert fresh.decode(current.value() or b"").record["person_id"] == person_id
