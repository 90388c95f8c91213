"""Exactly-once: a consume-transform-produce worker killed with SIGKILL mid-batch and
restarted delivers every output exactly once to read_committed consumers, and every bad
input exactly once to the dead-letter topic."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from hs_common.codec import Codec
from hs_common.crypto import Keyring
from hs_common.envelope import new_envelope
from hs_common.kafka import make_producer
from hs_common.settings import RuntimeSettings
from hs_common.testing import TopicFactory, client_config, read_all

pytestmark = pytest.mark.integration

READINGS = 2000
WORKER = Path(__file__).with_name("eos_worker.py")
BAD_INPUTS = [
    (b"\xc3\x01" + bytes(8) + b"body", "codec.unknown_schema"),
    (b"not avro at all", "codec.not_single_object"),
    (b"", "codec.not_single_object"),
]


class TopicCounter:
    """Counts records on a topic as they arrive, at one isolation level."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, isolation: str) -> None:
        self.consumer = Consumer(
            client_config(
                bootstrap,
                {
                    "group.id": f"counter-{uuid.uuid4().hex}",
                    "isolation.level": isolation,
                    "enable.auto.commit": False,
                },
            )
        )
        self.consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        self.count = 0

    def poll(self) -> int:
        self.count += sum(1 for m in self.consumer.consume(1000, 0.1) if m.error() is None)
        return self.count

    def close(self) -> None:
        self.consumer.close()


def _reading(codec: Codec, index: int) -> tuple[str, bytes]:
    at = datetime(2026, 5, 1, tzinfo=UTC) + timedelta(minutes=5 * index)
    envelope = new_envelope("CGMVENDOR", "cloud", at)
    record = {
        "envelope": envelope,
        "binding": {"device_id": f"CGM-{index % 40:04d}", "local_patient_id": f"U{index % 40:05d}"},
        "measurement": {"metric": "GLUCOSE", "value": 4.0 + (index % 70) / 10, "unit": "mmol/L"},
        "measured_at": at,
    }
    return str(envelope["event_id"]), codec.encode("hs.device.DeviceReading", record)


def _start_worker(
    bootstrap: str, topics: dict[str, str], group: str, instance: str, keyring: Path
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable, str(WORKER),
            "--bootstrap", bootstrap,
            "--input", topics["input"],
            "--output", topics["output"],
            "--dead-letters", topics["dead"],
            "--group", group,
            "--instance", instance,
            "--keyring", str(keyring),
            "--delay-ms", "3",
        ]
    )  # fmt: skip


def test_killed_mid_batch_and_restarted_delivers_each_output_once(
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    runtime_settings: RuntimeSettings,
    keyring: Keyring,
    codec: Codec,
    tmp_path: Path,
) -> None:
    topics = {
        "input": new_topic("in", 3),
        "output": new_topic("out", 3),
        "dead": new_topic("dead", 1),
    }
    keyring_file = tmp_path / "keyring.json"
    keyring.to_file(keyring_file)

    producer = make_producer(runtime_settings, "eos-feeder")
    expected_ids = set()
    for index in range(READINGS):
        event_id, value = _reading(codec, index)
        expected_ids.add(event_id)
        producer.produce(topics["input"], value=value, key=f"device-{index % 40}")
        if index % 500 == 250:
            bad, _ = BAD_INPUTS[(index // 500) % len(BAD_INPUTS)]
            producer.produce(topics["input"], value=bad, key="bad")
    assert producer.flush(30) == 0

    group, instance = f"eos-{uuid.uuid4().hex[:8]}", f"worker-{uuid.uuid4().hex[:8]}"
    committed = TopicCounter(kafka_bootstrap, topics["output"], 3, "read_committed")
    uncommitted = TopicCounter(kafka_bootstrap, topics["output"], 3, "read_uncommitted")
    worker = _start_worker(kafka_bootstrap, topics, group, instance, keyring_file)
    try:
        # Kill when some batches are committed and the current one is visibly open.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            seen_committed, seen_all = committed.poll(), uncommitted.poll()
            if seen_committed >= READINGS * 0.3 and seen_all - seen_committed >= 50:
                break
            assert worker.poll() is None, "worker exited before it could be killed"
        else:
            pytest.fail(
                f"no open transaction seen ({committed.count} committed, {uncommitted.count} all)"
            )
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        killed_at = committed.count

        worker = _start_worker(kafka_bootstrap, topics, group, instance, keyring_file)
        deadline = time.monotonic() + 120
        while committed.poll() < READINGS and time.monotonic() < deadline:
            assert worker.poll() is None, "restarted worker exited"
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0, "graceful shutdown failed"
    finally:
        if worker.poll() is None:
            worker.kill()
        committed.close()
        uncommitted.close()

    outputs = read_all(kafka_bootstrap, topics["output"], timeout=60, idle=3)
    ids = [
        codec.decode(value, expect="hs.clinical.Observation").record["observation_id"]
        for _, value in outputs
    ]
    assert killed_at < READINGS
    assert len(ids) == READINGS, (
        f"{len(ids) - len(set(ids))} duplicates, {len(expected_ids - set(ids))} missing"
    )
    assert set(ids) == expected_ids

    everything = read_all(
        kafka_bootstrap, topics["output"], timeout=60, idle=3, isolation="read_uncommitted"
    )
    assert len(everything) > READINGS, "the kill did not interrupt an open transaction"

    letters = [
        codec.decode(v, expect="hs.ops.DeadLetter").record
        for _, v in read_all(kafka_bootstrap, topics["dead"])
    ]
    expected_letters = sorted(
        (bad, code)
        for i in range(READINGS)
        if i % 500 == 250
        for bad, code in [BAD_INPUTS[(i // 500) % 3]]
    )
    assert (
        sorted((letter["original"], letter["reason_code"]) for letter in letters)
        == expected_letters
    )
    assert all(letter["origin"]["topic"] == topics["input"] for letter in letters)
