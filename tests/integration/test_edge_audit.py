"""`hs-edge verify-audit` against a trail on the real broker: intact, then tampered, then cut
short (which shows against the heads anchored in the edge's database)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hs_common.codec import Codec
from hs_common.crypto import Keyring
from hs_common.kafka import make_producer
from hs_common.settings import RuntimeSettings
from hs_common.testing import TopicFactory
from hs_edge.audit import Chain, Entry, Outcome, Request, to_record
from hs_edge.store import Store

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


def entries(keyring: Keyring) -> list[Entry]:
    """Two replicas; the first restarts and links its new chain to its old one."""
    first, second = Chain("edge-a@1", keyring), Chain("edge-b@1", keyring)
    written = []
    for n in range(40):
        denied = n % 7 == 0
        request = Request(
            T0 + timedelta(seconds=n), "ward-app", f"nurse-{n % 4}", "clinician",
            "GET /persons/{id}/observations", f"P{n % 9}",
            Outcome.DENIED if denied else Outcome.ALLOWED, 403 if denied else 200,
            "scope.missing" if denied else None,
        )  # fmt: skip
        written.append((first if n % 2 else second).append(request))
    restarted = Chain("edge-a@2", keyring, previous_head=first.head)
    written.append(
        restarted.append(dataclasses.replace(written[0].request, at=T0 + timedelta(hours=1)))
    )
    return written


def publish(settings: RuntimeSettings, codec: Codec, topic: str, trail: list[Entry]) -> None:
    producer = make_producer(settings, "audit-writer")
    for entry in trail:
        producer.produce(topic, codec.encode("hs.edge.AuditEvent", to_record(entry)), entry.chain)
    assert producer.flush(10) == 0


@pytest.fixture
def keyring_file(keyring: Keyring, tmp_path: Path) -> Path:
    """The keyring `verify-audit` checks with: the edge's, whose MAC keys keyed the trail."""
    path = tmp_path / "keyring.json"
    keyring.to_file(path)
    return path


def run_verify(
    bootstrap: str, topic: str, keyring_file: Path, database: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "HS_KAFKA_BOOTSTRAP": bootstrap, "HS_LOG_LEVEL": "WARNING",
        "HS_KEYRING_FILE": str(keyring_file),
    }  # fmt: skip
    env.pop("HS_EDGE_DATABASE", None)
    anchors = ["--database", str(database)] if database else []
    return subprocess.run(
        ["hs-edge", "verify-audit", "--topic", topic, *anchors], env=env, capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip


def test_an_intact_trail_verifies_and_a_tampered_one_is_named(
    runtime_settings: RuntimeSettings, codec: Codec, new_topic: TopicFactory, kafka_bootstrap: str,
    keyring_file: Path,
) -> None:  # fmt: skip
    intact, tampered = new_topic("audit", 3), new_topic("audit-tampered", 3)
    trail = entries(codec.keyring)
    publish(runtime_settings, codec, intact, trail)
    result = run_verify(kafka_bootstrap, intact, keyring_file)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "intact: 41 entries in 3 chains" in result.stdout

    forged = list(trail)
    victim = forged[14]  # a denial rewritten as allowed
    request = dataclasses.replace(victim.request, outcome=Outcome.ALLOWED, status=200, reason=None)
    assert victim.request.outcome is Outcome.DENIED
    forged[14] = dataclasses.replace(victim, request=request)
    publish(runtime_settings, codec, tampered, forged)
    result = run_verify(kafka_bootstrap, tampered, keyring_file)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"TAMPERED: chain {victim.chain}, entry {victim.sequence} (partition" in result.stdout
    assert "was changed" in result.stdout


def test_a_trail_forged_from_scratch_without_the_edge_s_key_is_named(
    runtime_settings: RuntimeSettings, codec: Codec, new_topic: TopicFactory, kafka_bootstrap: str,
    keyring_file: Path,
) -> None:  # fmt: skip
    """The security review's forgery: a whole chain written from zeros by someone who can write
    the topic. Keyed with a key of their own (or not at all), it does not verify."""
    for forger in (Keyring.generate(), None):
        topic = new_topic("audit-forged", 1)
        trail = entries(forger or codec.keyring)
        if forger is None:  # unkeyed, as the trail was before
            trail = [dataclasses.replace(e, key_id=None) for e in trail]
        publish(runtime_settings, codec, topic, trail)
        result = run_verify(kafka_bootstrap, topic, keyring_file)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "TAMPERED: chain edge-b@1, entry 0" in result.stdout
        assert ("not one of the edge's" if forger else "not keyed") in result.stdout


def test_a_trail_cut_short_is_named_against_the_anchored_heads(
    runtime_settings: RuntimeSettings, codec: Codec, new_topic: TopicFactory, kafka_bootstrap: str,
    tmp_path: Path, keyring_file: Path,
) -> None:  # fmt: skip
    trail = entries(codec.keyring)
    database = tmp_path / "edge.db"
    store = Store.sqlite(database)
    for entry in trail:  # as the writers anchor their heads
        store.put_anchor(entry.chain, entry.sequence, entry.hash)
    whole, cut = new_topic("audit-whole", 3), new_topic("audit-cut", 3)
    publish(runtime_settings, codec, whole, trail)
    result = run_verify(kafka_bootstrap, whole, keyring_file, database)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "anchored heads held: 3" in result.stdout

    newest = trail[-3]  # the newest entry of the second replica's chain, removed
    assert newest.chain == "edge-b@1" and trail[-2].chain == "edge-a@1"
    publish(runtime_settings, codec, cut, trail[:-3] + trail[-2:])
    assert run_verify(kafka_bootstrap, cut, keyring_file).returncode == 0  # chains alone cannot
    result = run_verify(kafka_bootstrap, cut, keyring_file, database)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"TAMPERED: chain {newest.chain}, entry {newest.sequence} (anchor)" in result.stdout
    assert "its newest entries were removed" in result.stdout


def test_audit_query_lists_the_entries_about_a_person_in_a_time_range(
    runtime_settings: RuntimeSettings, codec: Codec, new_topic: TopicFactory, kafka_bootstrap: str
) -> None:
    topic = new_topic("audit-query", 3)
    trail = entries(codec.keyring)
    publish(runtime_settings, codec, topic, trail)
    since, until = T0 + timedelta(seconds=9), T0 + timedelta(seconds=30)
    shown = subprocess.run(
        ["hs-edge", "audit-query", "--topic", topic, "--person", "P4",
         "--since", since.isoformat(), "--until", until.isoformat()],
        env=os.environ | {"HS_KAFKA_BOOTSTRAP": kafka_bootstrap, "HS_LOG_LEVEL": "WARNING"},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    found = sorted(json.loads(line)["at"] for line in shown.stdout.splitlines())
    expected = sorted(
        e.request.at.isoformat() for e in trail
        if e.request.person_id == "P4" and since <= e.request.at < until
    )  # fmt: skip
    assert found == expected and len(expected) == 2  # seconds 13 and 22 of the 40
