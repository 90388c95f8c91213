"""Ingestion end to end: ORU^R01 messages with 5 OBX each, over MLLP, to canonical
observation events on Kafka (acks=all), with hs-ingestion and hs-normalize as their own
processes, as deployed (hs-normalize at nice 10: the acknowledgement path has priority).

Figures (medians where repeated):
- acknowledgement latency p50/p99 at a paced 1,000 messages/s (16 connections, evenly
  spread);
- sustained messages/s acknowledged with 32 connections sending as fast as answered, and
  the rate at which their observation events reach the observation topic;
- CPU seconds per message of each process (ingestion, normalizer, broker, load generator);
- baseline, same run: a bare confluent-kafka producer writing the same raw bytes with
  acks=all and waiting for each batch, i.e. the broker's own cost without MLLP, parsing or
  normalization.

Needs a broker (`make kafka-up`, or HS_KAFKA_BOOTSTRAP with the HS_KAFKA_* login, e.g.
`set -a; . .local/kafka/admin.env`) and a keyring (`make dev-keys`);
bench/broker_security_bench.py runs it on a plaintext and on a secured broker.
    uv run python bench/ingestion_bench.py [--messages 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from hs_common import topics
from hs_common.settings import RuntimeSettings
from hs_common.testing import free_port, repository_root

VT, END = b"\x0b", b"\x1c\x0d"


RUN = uuid.uuid4().hex[:8]  # in every control id: a rerun's messages are new, not repeats


def oru(number: int) -> bytes:
    obx = "".join(
        f"OBX|{i}|NM|{code}^{name}^L||{value}|{unit}|{range_}||||F|||20260101073000\r"
        for i, (code, name, value, unit, range_) in enumerate(
            [("GLU-S", "GLUCOSE", "126.1", "mg/dL", "70-110"), ("CR", "CREATININE", "1.1", "mg/dL", "0.6-1.3"),
             ("A1C", "HBA1C", "7.2", "%", "<6.0"), ("K-S", "POTASSIUM", "4.1", "mmol/L", ">3.5"),
             ("HR", "PULSE", "72", "/min", "")], start=1)
    )  # fmt: skip
    return (
        f"MSH|^~\\&|LIS|BJ03|HEALTHSTREAM|HS|20260101080000||ORU^R01^ORU_R01|B{RUN}{number:09d}|P|2.3.1\r"
        f"PID|1||BJ-{number % 5000:06d}^^^BJ03^MR||WANG^WEI||19800101|M\r"
        f"OBR|1|O{number}|O{number}-F|LAB^LAB^L|||20260101073000\r{obx}"
    ).encode()


async def sender(
    port: int, numbers: list[int], latencies: list[float], pace: float, phase: float
) -> None:
    """One sender connection; with `pace`, it sends `pace` messages/s starting `phase` s late,
    so that paced connections together send at an even rate rather than in bursts."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.perf_counter() + phase
    for index, number in enumerate(numbers):
        if pace:
            await asyncio.sleep(max(0.0, start + index / pace - time.perf_counter()))
        sent = time.perf_counter()
        writer.write(VT + oru(number) + END)
        await writer.drain()
        ack = await reader.readuntil(END)
        latencies.append(time.perf_counter() - sent)
        assert b"MSA|AA" in ack or b"MSA|CA" in ack, ack[:200]
    writer.close()


async def drive(
    port: int, numbers: list[int], connections: int, rate: float
) -> tuple[list[float], float]:
    latencies: list[float] = []
    share = [numbers[i::connections] for i in range(connections)]
    started = time.perf_counter()
    pace = rate / connections
    await asyncio.gather(
        *(
            sender(port, part, latencies, pace, index / rate if rate else 0)
            for index, part in enumerate(share)
        )
    )
    return latencies, time.perf_counter() - started


def login(bootstrap: str) -> dict[str, str | int | bool]:
    """The broker's address and the login the HS_KAFKA_* variables hold (none for PLAINTEXT)."""
    return RuntimeSettings(HS_KAFKA_BOOTSTRAP=bootstrap).kafka_client_config()


def start_group_at_end(bootstrap: str, group: str, topic: str) -> None:
    """The bench's normalizer group starts after what earlier runs left on the raw topic."""
    consumer = Consumer(login(bootstrap) | {"group.id": group})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    ends = [TopicPartition(topic, p, high_watermark(consumer, topic, p)) for p in partitions]
    consumer.commit(offsets=ends, asynchronous=False)
    consumer.close()


def high_watermark(consumer: Consumer, topic: str, partition: int, timeout: float = 30) -> int:
    """The partition's end, once it has a leader (a topic just created may not yet)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return int(consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)[1])
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def observation_ends(bootstrap: str) -> list[TopicPartition]:
    consumer = Consumer(login(bootstrap) | {"group.id": f"bench-{uuid.uuid4().hex}"})
    name = topics.OBSERVATION.name
    partitions = consumer.list_topics(name, timeout=10).topics[name].partitions
    ends = [TopicPartition(name, p, high_watermark(consumer, name, p)) for p in partitions]
    consumer.close()
    return ends


def wait_for_observations(
    bootstrap: str, start: list[TopicPartition], expected: int, timeout: float = 600
) -> None:
    """Return once `expected` observation events written after `start` are readable (read_committed)."""
    consumer = Consumer(
        login(bootstrap)
        | {
            "group.id": f"bench-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    consumer.assign(start)
    seen, deadline = 0, time.monotonic() + timeout
    while seen < expected and time.monotonic() < deadline:
        seen += sum(1 for m in consumer.consume(10000, 0.5) if m.error() is None)
    consumer.close()
    if seen < expected:
        sys.exit(f"only {seen} of {expected} observation events arrived")


def baseline_rate(bootstrap: str, messages: int) -> float:
    topic = f"bench-baseline-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(login(bootstrap))
    admin.create_topics([NewTopic(topic, 6, 1)])[topic].result(30)
    producer = Producer(
        login(bootstrap) | {"acks": "all", "enable.idempotence": True, "linger.ms": 1}
    )
    payloads = [oru(n) for n in range(messages)]
    while not producer.list_topics(topic, timeout=10).topics[topic].partitions:
        time.sleep(0.1)  # the new topic's leaders are known before timing starts
    started = time.perf_counter()
    for payload in payloads:
        producer.produce(topic, payload)
        producer.poll(0)
    if producer.flush(60):
        sys.exit("baseline producer did not deliver everything")
    return messages / (time.perf_counter() - started)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, threads included (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20000)
    args = parser.parse_args()
    bootstrap = RuntimeSettings().kafka_bootstrap
    broker_pid = (
        Path(os.environ.get("KAFKA_STATE_DIR", repository_root() / ".local" / "kafka"))
        / "broker.pid"
    )
    mllp_port, http_port = free_port(), free_port()
    env = os.environ | {"HS_KAFKA_BOOTSTRAP": bootstrap, "HS_INGESTION_MLLP_PORT": str(mllp_port),
                        "HS_INGESTION_HTTP_PORT": str(http_port), "HS_METRICS_PORT": "0", "HS_LOG_LEVEL": "WARNING",
                        "HS_NORMALIZE_GROUP": f"bench-{uuid.uuid4().hex[:8]}"}  # fmt: skip
    subprocess.run(["hs-admin", "create-topics"], env=env, check=True, capture_output=True)
    start_group_at_end(bootstrap, env["HS_NORMALIZE_GROUP"], topics.RAW.name)
    ingestion = subprocess.Popen(["hs-ingestion"], env=env, stderr=subprocess.DEVNULL)
    normalizer = subprocess.Popen(
        ["nice", "-n", "10", "hs-normalize"], env=env, stderr=subprocess.DEVNULL
    )
    try:
        _wait_for_port(mllp_port)
        asyncio.run(drive(mllp_port, list(range(10_000_000, 10_000_500)), 8, 0))  # warm-up
        paced, _ = asyncio.run(
            drive(mllp_port, list(range(20_000_000, 20_000_000 + 10_000)), 16, 1000)
        )
        wait_for_observations(bootstrap, observation_ends(bootstrap), 0)
        before = observation_ends(bootstrap)
        numbers = list(range(30_000_000, 30_000_000 + args.messages))
        processes = {
            "hs-ingestion": ingestion.pid,
            "hs-normalize": normalizer.pid,
            "bench (load)": os.getpid(),
        }
        processes |= {"kafka broker": int(broker_pid.read_text())} if broker_pid.exists() else {}
        cpu_before = {name: cpu_seconds(pid) for name, pid in processes.items()}
        started = time.perf_counter()
        burst, seconds = asyncio.run(drive(mllp_port, numbers, 32, 0))
        wait_for_observations(bootstrap, before, 5 * args.messages)
        events_seconds = time.perf_counter() - started
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in processes.items()}
    finally:
        ingestion.terminate()
        normalizer.terminate()
        ingestion.wait(30)
        normalizer.wait(30)
    baseline = baseline_rate(bootstrap, args.messages)
    acked = args.messages / seconds
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}"
    )
    print(
        f"ack latency at 1,000 msg/s (10,000 ORU^R01, 16 connections): p50 {percentile(paced, 0.5) * 1000:.1f} ms, p99 {percentile(paced, 0.99) * 1000:.1f} ms"
    )
    print(f"sustained, 32 connections, {args.messages:,} ORU^R01: {acked:,.0f} msg/s acknowledged (stored raw); "
          f"ack p50 {percentile(burst, 0.5) * 1000:.1f} ms, p99 {percentile(burst, 0.99) * 1000:.1f} ms")  # fmt: skip
    print(f"  observation events: {5 * args.messages:,} on {topics.OBSERVATION.name} after {events_seconds:.1f} s "
          f"= {args.messages / events_seconds:,.0f} msg/s end to end")  # fmt: skip
    for name, used in cpu.items():
        per_message = used / args.messages
        print(
            f"  CPU {name}: {per_message * 1e6:,.0f} us/msg, i.e. one core keeps up with {1 / per_message:,.0f} msg/s"
        )
    print(
        f"baseline, bare acks=all producer of the same bytes: {baseline:,.0f} msg/s; ratio acknowledged/baseline {acked / baseline:.2f}"
    )


def _wait_for_port(port: int, timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"ingestion did not listen on {port}")


if __name__ == "__main__":
    main()
