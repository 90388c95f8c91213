"""hs-vitals alert latency and throughput, one instance, as deployed (its own process).

Figures:
- alert latency: from a reading's produce() call to its alert on the alert topic (committed,
  read_committed), p50/p99, under paced background load of 2,000 and 10,000 readings/s. The
  probes are blood-pressure crises (a repeat above 180 opens an alert, a normal reading
  resolves it), 20 a second, on their own patients, so every probe is judged on arrival;
- the highest sustained rate: a backlog of readings is written, and the rate is the number of
  readings between the first and the last probe's alert over the time between those alerts;
- baseline, same run: a Quix Streams application with the same two exactly-once stages
  (re-key to an internal topic, then a stateful step per patient) that passes opaque bytes and
  counts, with no decoding, sealing or rules: the framework's own cost on this machine.

Needs a broker (`make kafka-up`, or HS_KAFKA_BOOTSTRAP) and a keyring (`make dev-keys`).
    uv run python bench/vitals_bench.py [--seconds 20] [--backlog 200000]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from hs_common.codec import Codec
from hs_common.crypto import Keyring
from hs_common.envelope import new_envelope
from hs_common.kafka import make_producer
from hs_common.schemas import SchemaCatalogue, default_schema_root
from hs_common.settings import RuntimeSettings

PARTITIONS = 6
PATIENTS = 5_000
PROBES_PER_SECOND = 20
PROBE_STEP = 0.25  # seconds between a probe's readings: crisis, repeat (opens), normal (resolves)
TOPICS = ("READING", "OBSERVATION", "CONDITION", "PERSON", "ACK", "INPUT", "ALERT", "SUMMARY",
          "FLAG")  # fmt: skip


@dataclass
class Planned:
    at: float  # seconds from the start of the phase
    key: str
    value: bytes
    probe: tuple[str, str] | None = None  # (patient key, action) the reading should cause


@dataclass
class Alerts:
    """Arrival times of alerts on the alert topic, by (patient key, action)."""

    arrived: dict[tuple[str, str], float] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def follow(self, bootstrap: str, topic: str, codec: Codec | None) -> None:
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                             "isolation.level": "read_committed", "enable.auto.commit": False,
                             "fetch.wait.max.ms": 5})  # fmt: skip
        consumer.assign([TopicPartition(topic, 0, 0)])
        while not self.stop.is_set():
            for message in consumer.consume(100, 0.05):
                value = message.value()
                if message.error() is None and value:
                    now = time.perf_counter()
                    if codec is None:  # the baseline writes the probe's key as the value
                        self.arrived.setdefault((value.decode(), "OPENED"), now)
                    else:
                        alert = codec.decode(value).record
                        self.arrived[(alert["patient_key"], alert["action"])] = now
        consumer.close()


def reading(
    codec: Codec, patient: str, metric: str, value: float, at: datetime
) -> tuple[str, bytes]:
    record = {
        "envelope": new_envelope("BENCH", "devices", at),
        "binding": {"device_id": f"D-{patient}", "local_patient_id": patient},
        "measurement": {"metric": metric, "value": value, "unit": "x"},
        "measured_at": at,
    }
    return f"D-{patient}", codec.encode("hs.device.DeviceReading", record)


def probe(codec: Codec, patient: str, first: float, start: datetime) -> list[Planned]:
    """A blood-pressure crisis, its repeat (opens the alert) and a normal reading (resolves)."""
    patient_key = codec.keyring.pseudonym("BENCH", patient)
    planned = []
    for step, (systolic, action) in enumerate([(190, None), (192, "OPENED"), (120, "RESOLVED")]):
        at = first + step * PROBE_STEP
        key, data = reading(codec, patient, "SYSTOLIC_BP", systolic, start + timedelta(seconds=at))
        planned.append(Planned(at, key, data, (patient_key, action) if action else None))
    return planned


def plan(codec: Codec, rate: float, seconds: float, start: datetime, tag: str) -> list[Planned]:
    """Background heart rates at `rate` readings/s, and blood-pressure probes."""
    planned = []
    for i in range(int(rate * seconds)):
        at = i / rate
        key, value = reading(codec, f"{tag}-{i % PATIENTS}", "HEART_RATE", 70 + i % 9,
                             start + timedelta(seconds=at))  # fmt: skip
        planned.append(Planned(at, key, value))
    for p in range(int(PROBES_PER_SECOND * (seconds - 1))):
        planned += probe(codec, f"{tag}-probe-{p}", p / PROBES_PER_SECOND, start)
    return sorted(planned, key=lambda p: p.at)


def send(
    producer: Producer, topic: str, planned: list[Planned], paced: bool
) -> dict[tuple[str, str], float]:
    sent: dict[tuple[str, str], float] = {}
    begin = time.perf_counter()
    for item in planned:
        if paced:
            delay = begin + item.at - time.perf_counter()
            if delay > 0.001:
                producer.poll(0)
                time.sleep(delay)
        while True:
            try:
                producer.produce(topic, item.value, item.key)
                break
            except BufferError:
                producer.poll(0.01)
        if item.probe:
            sent[item.probe] = time.perf_counter()
    producer.flush(60)
    return sent


def latencies(sent: dict[tuple[str, str], float], alerts: Alerts) -> list[float]:
    return [alerts.arrived[k] - t for k, t in sent.items() if k in alerts.arrived]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def create_topics(bootstrap: str) -> dict[str, str]:
    names = {t: f"bench-vitals-{t.lower()}-{uuid.uuid4().hex[:6]}" for t in TOPICS}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = [
        NewTopic(n, 1 if t in ("ALERT", "SUMMARY", "FLAG") else PARTITIONS, 1)
        for t, n in names.items()
    ]
    for future in admin.create_topics(new).values():
        future.result()
    return names


def start_service(
    bootstrap: str, names: dict[str, str], state: Path, baseline: bool
) -> subprocess.Popen[bytes]:
    env = os.environ | {"HS_KAFKA_BOOTSTRAP": bootstrap, "HS_METRICS_PORT": "0", "HS_LOG_LEVEL": "WARNING",
                        "HS_VITALS_GROUP": f"bench-{uuid.uuid4().hex[:6]}", "HS_VITALS_STATE_DIR": str(state),
                        "HS_TOPIC_PARTITIONS": str(PARTITIONS)}  # fmt: skip
    env |= {f"HS_VITALS_{t}_TOPIC": n for t, n in names.items()}
    command = [sys.executable, __file__, "--baseline-app"] if baseline else ["hs-vitals"]
    return subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)


def wait_ready(codec: Codec, producer: Producer, names: dict[str, str], alerts: Alerts) -> None:
    """A probe before the measurement: the service is up and its topics are assigned."""
    start = datetime.now(UTC)
    warm = [
        p
        for p in plan(codec, 1, 2, start, f"warm-{uuid.uuid4().hex[:4]}")
        if p.probe is None or p.probe[1] == "OPENED"
    ]
    probes = {p.probe for p in warm if p.probe}
    send(producer, names["READING"], warm, paced=False)
    deadline = time.monotonic() + 120
    while not probes <= set(alerts.arrived) and time.monotonic() < deadline:
        time.sleep(0.1)
    if not probes <= set(alerts.arrived):
        raise SystemExit("the service did not answer the warm-up probe within 120 s")


@contextmanager
def running(
    bootstrap: str, codec: Codec, baseline: bool, names: dict[str, str]
) -> Iterator[Alerts]:
    """The service (ours or the baseline) on `names`, and a follower of its alert topic."""
    alerts = Alerts()
    follower = threading.Thread(
        target=alerts.follow, args=(bootstrap, names["ALERT"], None if baseline else codec)
    )
    follower.start()
    state = Path(f".local/bench-vitals-{uuid.uuid4().hex[:6]}")
    service = start_service(bootstrap, names, state, baseline)
    try:
        yield alerts
    finally:
        service.terminate()
        service.wait(30)
        alerts.stop.set()
        follower.join()
        shutil.rmtree(state, ignore_errors=True)


def latency(args: argparse.Namespace, codec: Codec, bootstrap: str) -> dict[int, dict[str, float]]:
    """Alert latency under paced load, at each rate in turn."""
    names = create_topics(bootstrap)
    producer = make_producer(RuntimeSettings(HS_KAFKA_BOOTSTRAP=bootstrap), "bench-feeder")
    results = {}
    with running(bootstrap, codec, False, names) as alerts:
        wait_ready(codec, producer, names, alerts)
        for rate in (2_000, 10_000):
            planned = plan(
                codec, rate, args.seconds, datetime.now(UTC), f"r{rate}-{uuid.uuid4().hex[:4]}"
            )
            began = time.perf_counter()
            sent = send(producer, names["READING"], planned, paced=True)
            achieved = len(planned) / (time.perf_counter() - began)
            time.sleep(min(30, args.seconds))  # let the tail drain
            found = latencies(sent, alerts)
            results[rate] = {"sent_per_s": achieved, "probes": len(sent), "answered": len(found),
                             "p50_ms": 1000 * percentile(found, 0.5) if found else float("nan"),
                             "p99_ms": 1000 * percentile(found, 0.99) if found else float("nan")}  # fmt: skip
    return results


def throughput(
    args: argparse.Namespace, codec: Codec, bootstrap: str, baseline: bool, copies: int = 1
) -> float:
    """Readings/s through a backlog written before the service starts: readings between the
    first probe and a final one over the time between their alerts. The baseline, which only
    passes bytes on, gets the backlog `copies` times, so that its run is long next to the
    commit interval."""
    names = create_topics(bootstrap)
    producer = make_producer(RuntimeSettings(HS_KAFKA_BOOTSTRAP=bootstrap), "bench-feeder")
    start = datetime.now(UTC)
    backlog = [p for p in plan(codec, args.backlog / 10, 10, start, f"b-{uuid.uuid4().hex[:4]}")
               if p.probe is None or p.probe[1] == "OPENED"]  # fmt: skip
    first = next(i for i, p in enumerate(backlog) if p.probe)
    backlog += [p for _ in range(copies - 1) for p in backlog if p.probe is None]
    backlog += probe(codec, f"end-probe-{uuid.uuid4().hex[:4]}", 0, start)[:2]
    last = len(backlog) - 1
    first_probe, last_probe = backlog[first].probe, backlog[last].probe
    assert first_probe is not None
    assert last_probe is not None
    send(producer, names["READING"], backlog, paced=False)
    with running(bootstrap, codec, baseline, names) as alerts:
        deadline = time.monotonic() + 900
        while last_probe not in alerts.arrived and time.monotonic() < deadline:
            time.sleep(0.05)
    opened, closed = alerts.arrived.get(first_probe), alerts.arrived.get(last_probe)
    if opened is None or closed is None:
        raise SystemExit("the backlog was not worked through within 900 s")
    return (last - first) / (closed - opened)


def baseline_app() -> None:
    """The baseline service: the same two exactly-once stages, bytes passed through."""
    from quixstreams import Application

    env = os.environ
    app = Application(broker_address=env["HS_KAFKA_BOOTSTRAP"], consumer_group=env["HS_VITALS_GROUP"],
                      processing_guarantee="exactly-once", auto_offset_reset="earliest",
                      state_dir=env["HS_VITALS_STATE_DIR"], commit_interval=0.2, loglevel=None)  # fmt: skip
    raw = app.topic(
        env["HS_VITALS_READING_TOPIC"], key_deserializer="bytes", value_deserializer="bytes"
    )
    internal = app.topic(env["HS_VITALS_INPUT_TOPIC"], key_deserializer="bytes", value_deserializer="bytes",
                         key_serializer="bytes", value_serializer="bytes")  # fmt: skip
    out = app.topic(env["HS_VITALS_ALERT_TOPIC"], key_serializer="bytes", value_serializer="bytes")
    app.dataframe(raw).to_topic(internal)

    def count(value: bytes, state: Any) -> bytes:
        state.set("n", state.get("n", 0) + 1)
        return value

    probes = app.dataframe(internal).apply(count, stateful=True)
    probes = probes.filter(lambda value, key, *_: b"-probe-" in key, metadata=True)
    keyring = Keyring.from_file(RuntimeSettings().keyring_file)
    probes.apply(
        lambda value, key, *_: keyring.pseudonym("BENCH", key.decode()[2:]).encode(), metadata=True
    ).to_topic(out)
    app.run()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each paced phase")
    parser.add_argument(
        "--backlog", type=int, default=100_000, help="readings in the throughput backlog"
    )
    parser.add_argument("--baseline-app", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_app:
        baseline_app()
        return
    settings = RuntimeSettings()
    bootstrap = settings.kafka_bootstrap
    codec = Codec(
        SchemaCatalogue.load(default_schema_root()), Keyring.from_file(settings.keyring_file)
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    ours = latency(args, codec, bootstrap)
    for rate, r in ours.items():
        print(f"{rate:>6} readings/s asked, {r['sent_per_s']:,.0f} sent: alert latency p50 {r['p50_ms']:.0f} ms,"
              f" p99 {r['p99_ms']:.0f} ms ({r['answered']}/{r['probes']} probes answered)")  # fmt: skip
    sustained = throughput(args, codec, bootstrap, baseline=False)
    base = throughput(args, codec, bootstrap, baseline=True, copies=20)
    print(f"highest sustained, one instance: {sustained:,.0f} readings/s")
    print(
        f"baseline (Quix pass-through, same stages): {base:,.0f} readings/s; ratio {sustained / base:.2f}"
    )


if __name__ == "__main__":
    main()
