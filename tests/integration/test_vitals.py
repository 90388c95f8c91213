"""hs-vitals as a process against the real broker: CGM readings in, alerts out, sealed."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from hs_common.codec import Codec
from hs_common.crypto import Keyring
from hs_common.envelope import new_envelope
from hs_common.kafka import make_producer
from hs_common.settings import RuntimeSettings
from hs_common.testing import TopicFactory, read_all
from hs_vitals.monitor import Metric, PatientMonitor, Reading
from hs_vitals.service import alert_id

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
FIVE = timedelta(minutes=5)


def service_env(
    bootstrap: str, keyring: Keyring, tmp_path: Path, readings: str, alerts: str
) -> dict[str, str]:
    """hs-vitals's environment for a test: its own topics, group, keys and state folder."""
    keyring.to_file(tmp_path / "keyring.json")
    return os.environ | {
        "HS_ENV": "test", "HS_KAFKA_BOOTSTRAP": bootstrap,
        "HS_KEYRING_FILE": str(tmp_path / "keyring.json"), "HS_METRICS_PORT": "0",
        "HS_LOG_LEVEL": "WARNING", "HS_VITALS_GROUP": f"vitals-{uuid.uuid4().hex[:6]}",
        "HS_VITALS_READING_TOPIC": readings, "HS_VITALS_ALERT_TOPIC": alerts,
        "HS_VITALS_STATE_DIR": str(tmp_path / "state"),
    }  # fmt: skip


def reading(codec: Codec, patient: str, value: float, at: datetime) -> tuple[str, bytes]:
    record = {
        "envelope": new_envelope("CGMVENDOR", "cloud", at),
        "binding": {"device_id": f"CGM-{patient}", "local_patient_id": patient},
        "measurement": {"metric": "GLUCOSE", "value": value, "unit": "mmol/L"},
        "measured_at": at,
    }
    key = codec.keyring.pseudonym("CGMVENDOR", f"CGM-{patient}")
    return key, codec.encode("hs.device.DeviceReading", record)


def test_a_cgm_low_becomes_one_alert_that_opens_and_resolves(
    runtime_settings: RuntimeSettings, codec: Codec, keyring: Keyring, new_topic: TopicFactory,
    kafka_bootstrap: str, kafka_admin: AdminClient, tmp_path: Path,
) -> None:  # fmt: skip
    readings, alerts = new_topic("readings", 3), new_topic("alerts", 1)
    trace = [6.0] * 24 + [3.5, 3.6, 3.4, 3.5, 3.6] + [6.1] * 3  # worn 2 h, 20 min low, back
    producer = make_producer(runtime_settings, "cgm-feeder")
    for patient in ("U1", "U2"):
        values = trace if patient == "U1" else [6.0] * len(trace)
        for i, value in enumerate(values):
            key, value_bytes = reading(codec, patient, value, T0 + i * FIVE)
            producer.produce(readings, value=value_bytes, key=key)
    assert producer.flush(10) == 0

    env = service_env(kafka_bootstrap, keyring, tmp_path, readings, alerts)
    service = subprocess.Popen(["hs-vitals"], env=env)
    try:
        received = read_all(kafka_bootstrap, alerts, expected=2, timeout=90, idle=60)
    finally:
        service.terminate()
        service.wait(30)
    decoded = [codec.decode(value).record for _, value in received]
    assert [(a["rule_id"], a["action"]) for a in decoded] == [
        ("glucose.hypo.level1", "OPENED"),
        ("glucose.hypo.level1", "RESOLVED"),
    ]
    opened, resolved = decoded
    assert opened["alert_id"] == resolved["alert_id"]
    assert opened["at"] == T0 + 27 * FIVE  # 15 minutes after the first low reading
    assert [r["value"] for r in opened["readings"]] == [3.5, 3.6, 3.4, 3.5]
    assert opened["patient_key"] == codec.keyring.pseudonym("CGMVENDOR", "U1")
    assert b"3.5" not in received[0][1]  # the readings travel sealed

    # what Quix keeps outside the process (state changelog, patient repartition) is sealed too
    group = env["HS_VITALS_GROUP"]
    internal = [t for t in kafka_admin.list_topics(timeout=10).topics if group in t]
    assert any("changelog" in t for t in internal) and any("repartition" in t for t in internal)
    for topic in internal:
        for _, stored in read_all(kafka_bootstrap, topic, idle=2):
            assert (
                b"GLUCOSE" not in stored and b"U1" not in stored and b'"pending"' not in stored
            ), topic


def test_killed_mid_stream_and_restarted_no_alert_is_duplicated_or_missing(
    runtime_settings: RuntimeSettings, codec: Codec, keyring: Keyring, new_topic: TopicFactory,
    kafka_bootstrap: str, tmp_path: Path,
) -> None:  # fmt: skip
    readings, alerts = new_topic("readings", 3), new_topic("alerts", 1)
    episode = [3.5, 3.6, 3.4, 3.5, 3.6, 6.1, 6.2, 6.0, 6.1, 6.0, 6.2]
    trace = [6.0] * 24 + episode * 4  # worn 2 h, then four lows of 20 minutes
    patients = [f"K{n}" for n in range(40)]
    half = len(trace) // 2 + 3  # the second episode is open when the first half ends
    expected: Counter[tuple[str, str, str, str]] = Counter()
    for patient in patients:
        monitor = PatientMonitor()
        stream = [
            Reading(f"CGM-{patient}", Metric.GLUCOSE, v, T0 + i * FIVE) for i, v in enumerate(trace)
        ]
        events = [e for r in stream for e in monitor.observe(r).alerts] + monitor.flush()
        key = codec.keyring.pseudonym("CGMVENDOR", patient)
        expected.update(
            (key, e.rule, e.action.value, alert_id(key, e.rule, e.opened_at)) for e in events
        )

    def feed(part: slice) -> None:
        producer = make_producer(runtime_settings, f"cgm-feeder-{uuid.uuid4().hex[:4]}")
        for patient in patients:
            for i, value in list(enumerate(trace))[part]:
                key, value_bytes = reading(codec, patient, value, T0 + i * FIVE)
                producer.produce(readings, value=value_bytes, key=key)
        assert producer.flush(10) == 0

    env = service_env(kafka_bootstrap, keyring, tmp_path, readings, alerts)
    feed(slice(0, half))
    service = subprocess.Popen(["hs-vitals"], env=env)
    try:
        read_all(kafka_bootstrap, alerts, expected=1, timeout=90, idle=60)  # it is working
        service.send_signal(signal.SIGKILL)
        service.wait(10)
        feed(slice(half, None))
        service = subprocess.Popen(["hs-vitals"], env=env)
        received = read_all(
            kafka_bootstrap, alerts, expected=sum(expected.values()), timeout=300, idle=150
        )
    finally:
        service.terminate()
        service.wait(30)
    got: Counter[tuple[str, str, str, str]] = Counter()
    for _, value in received:
        alert = codec.decode(value).record
        got[(alert["patient_key"], alert["rule_id"], alert["action"], alert["alert_id"])] += 1
    assert sum(got.values()) == sum(expected.values()), (sum(got.values()), sum(expected.values()))
    assert got == expected
