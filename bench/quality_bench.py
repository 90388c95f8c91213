"""hs-quality: records scored per second by one process, as deployed, and the cost per rule.

Figures:
- scored per second: a backlog of observations (the golden hs.clinical.Observation, varied) is
  written to a fresh 6-partition topic before the service starts; the rate is the results
  between the first and the last one over the time between them (their broker timestamps);
- baseline, same run, same backlog: a Quix Streams application with the same stages and
  guarantees (exactly-once; a stateful step per patient writing one result per event; the
  results re-keyed by institution to a stateful step per source) that passes bytes on unread,
  with no decoding, checking, sealing or windows: the framework's own cost here;
- cost per rule: Checker.score on one observation, in process, with rules files of 10, 100
  and 1,000 checks, all of them applying to the record (range checks on its code), and the
  same with the added checks on other codes (not applying).

Needs a broker and a keyring: `make kafka-up dev-keys`, then, as the broker's administrator,
    set -a && . .local/kafka/admin.env && set +a && uv run python bench/quality_bench.py
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from hs_common.codec import Codec
from hs_common.crypto import Keyring
from hs_common.kafka import make_producer
from hs_common.schemas import SchemaCatalogue, default_schema_root
from hs_common.settings import RuntimeSettings
from hs_common.testing import golden_example
from hs_quality import rules
from hs_quality.checks import Checker, Context

PARTITIONS = 6
OBSERVATION = "hs.clinical.Observation"
HEADER = ",".join(rules.COLUMNS)


def backlog(codec: Codec, count: int) -> list[tuple[str, bytes]]:
    golden = golden_example(
        SchemaCatalogue.load(default_schema_root()).get(OBSERVATION), default_schema_root()
    )
    events = []
    for n in range(count):
        event = copy.deepcopy(golden)
        event["envelope"]["event_id"] = str(uuid.UUID(int=n + 1, version=4))
        event["envelope"]["source"]["institution"] = f"H{n % 4}"
        event["observation_id"] = f"R{n}"
        event["result"]["original_value"] = str(n)
        event["result"]["value_quantity"] = 0.1 + (n % 200) * 0.6  # some implausible
        patient = f"P{n % 5000}"
        event["subject"]["local_patient_id"] = patient
        events.append((f"H{n % 4}|{patient}", codec.encode(OBSERVATION, event)))
    return events


def create(admin: AdminClient, names: list[str], partitions: int) -> None:
    for future in admin.create_topics([NewTopic(n, partitions, 1) for n in names]).values():
        future.result()


def rate_of(settings: RuntimeSettings, topic: str, expected: int, timeout: float) -> float:
    """Records/s on `topic` between the arrival of its first and its last record, read as they
    are committed (Quix keeps the input's timestamps, so the records' own say nothing)."""
    consumer = Consumer(settings.kafka_client_config() | {
        "group.id": f"bench-{uuid.uuid4().hex}", "isolation.level": "read_committed",
        "enable.auto.commit": False})  # fmt: skip
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    stamps: list[float] = []
    deadline = time.monotonic() + timeout
    while len(stamps) < expected and time.monotonic() < deadline:
        for message in consumer.consume(1000, 0.5):
            if message.error() is None:
                stamps.append(time.perf_counter())
    consumer.close()
    if len(stamps) < expected:
        raise SystemExit(f"{topic}: {len(stamps)} of {expected} results within {timeout:.0f} s")
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def run_service(
    settings: RuntimeSettings, events: list[tuple[str, bytes]], baseline: bool
) -> float:
    admin = AdminClient(settings.kafka_client_config())
    tag = uuid.uuid4().hex[:6]
    inputs, results, clock, patients = (
        f"bench-quality-{n}-{tag}" for n in ("in", "result", "clock", "patient")
    )
    outputs = [f"bench-quality-{n}-{tag}" for n in ("summary", "alert", "dead")]
    create(admin, [inputs, results, clock, patients], PARTITIONS)
    create(admin, outputs, 1)
    producer = make_producer(settings, "bench-quality-feed")
    for key, value in events:
        while True:
            try:
                producer.produce(inputs, value, key)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(60)
    state = Path(f".local/bench-quality-{tag}")
    env = os.environ | {
        "HS_METRICS_PORT": "0", "HS_LOG_LEVEL": "WARNING", "HS_QUALITY_GROUP": f"hs-quality-b{tag}",
        "HS_QUALITY_STATE_DIR": str(state), "HS_TOPIC_PARTITIONS": str(PARTITIONS),
        "HS_QUALITY_INPUT_TOPICS": inputs, "HS_QUALITY_RESULT_TOPIC": results,
        "HS_QUALITY_SUMMARY_TOPIC": outputs[0], "HS_QUALITY_ALERT_TOPIC": outputs[1],
        "HS_DEAD_LETTER_TOPIC": outputs[2], "HS_QUALITY_CLOCK_TOPIC": clock,
        "HS_QUALITY_OBSERVATION_TOPIC": inputs, "HS_QUALITY_PATIENT_TOPIC": patients,
    }  # fmt: skip
    command = [sys.executable, __file__, "--baseline-app"] if baseline else ["hs-quality"]
    service = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    try:
        return rate_of(settings, results, len(events), timeout=1800)
    finally:
        service.terminate()
        service.wait(30)
        shutil.rmtree(state, ignore_errors=True)


def baseline_app() -> None:
    """The baseline: the same stages and guarantees as hs-quality, bytes passed through."""
    from quixstreams import Application
    from quixstreams.kafka.configuration import ConnectionConfig

    env, settings = os.environ, RuntimeSettings()
    group = env["HS_QUALITY_GROUP"]
    app = Application(
        broker_address=ConnectionConfig.from_librdkafka_dict(settings.kafka_client_config()),
        consumer_group=group, producer_extra_config={"transactional.id": f"{group}-base"},
        processing_guarantee="exactly-once", auto_offset_reset="earliest",
        state_dir=env["HS_QUALITY_STATE_DIR"], commit_interval=0.5, loglevel=None,
    )  # fmt: skip
    source = app.topic(env["HS_QUALITY_INPUT_TOPICS"], key_deserializer="bytes",
                       value_deserializer="bytes")  # fmt: skip
    results = app.topic(env["HS_QUALITY_RESULT_TOPIC"], key_serializer="bytes",
                        value_serializer="bytes", key_deserializer="bytes",
                        value_deserializer="bytes")  # fmt: skip

    def remember(value: bytes, state: Any) -> bytes:
        state.set("n", state.get("n", 0) + 1)
        return value

    app.dataframe(source).apply(remember, stateful=True).to_topic(results)
    by_source = app.dataframe(results).group_by(
        lambda value: "H0", name="institution", key_serializer="string",
        key_deserializer="string", value_serializer="bytes", value_deserializer="bytes",
    )  # fmt: skip
    by_source.apply(remember, stateful=True)
    app.run()


def rules_text(checks: int, applying: bool) -> str:
    """The shipped rules, then glucose range checks up to `checks` in all: on the record's own
    code (applying) or on codes it does not have."""
    shipped = [line for line in rules.default_rules_text().splitlines()
               if line and not line.startswith("#") and line != HEADER]  # fmt: skip
    lines = shipped[:checks]
    for n in range(checks - len(lines)):
        code = "2345-7" if applying else f"99{n:05d}-0"
        lines.append(f"bench-{n},plausibleValue,concept,{OBSERVATION},,http://loinc.org|{code},"
                     f"low=0.5;high={110 + n};unit=mmol/L,0.1,error,plausibility.atemporal,"
                     f"accuracy,bench check {n}")  # fmt: skip
    return "\n".join([HEADER, *lines]) + "\n"


def cost_per_rule(codec: Codec, rounds: int) -> list[tuple[int, bool, int, float]]:
    """(checks in the file, added checks apply, checks applied, µs per record), medians."""
    golden = golden_example(
        SchemaCatalogue.load(default_schema_root()).get(OBSERVATION), default_schema_root()
    )
    record = codec.decode(codec.encode(OBSERVATION, golden)).record
    found = []
    for checks in (10, 100, 1000):
        for applying in (True, False):
            checker = Checker(rules.parse(rules_text(checks, applying)))
            applied = len(checker.score(OBSERVATION, record, Context()).applied)
            repeat = max(20, 20_000 // checks)
            times = []
            for _ in range(rounds):
                began = time.perf_counter()
                for _ in range(repeat):
                    checker.score(OBSERVATION, record, Context())
                times.append((time.perf_counter() - began) / repeat * 1e6)
            found.append((checks, applying, applied, statistics.median(times)))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-app", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_app:
        baseline_app()
        return
    settings = RuntimeSettings()
    codec = Codec(SchemaCatalogue.load(default_schema_root()),
                  Keyring.from_file(settings.keyring_file))  # fmt: skip
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")  # fmt: skip
    for checks, applying, applied, micros in cost_per_rule(codec, args.rounds):
        kind = "applying" if applying else "on other codes"
        print(f"Checker.score, {checks:>4} checks ({kind}): {applied:>4} applied, "
              f"{micros:8.1f} µs per record, {micros / checks:.2f} µs per check in the file")  # fmt: skip
    events = backlog(codec, args.records)
    ours, base = [], []
    for _ in range(args.rounds):
        ours.append(run_service(settings, events, baseline=False))
        base.append(run_service(settings, events, baseline=True))
        print(f"round: hs-quality {ours[-1]:,.0f} records/s, baseline {base[-1]:,.0f} records/s")
    mine, theirs = statistics.median(ours), statistics.median(base)
    print(f"hs-quality, one process: {mine:,.0f} records/s (median of {args.rounds})")
    print(f"baseline (Quix pass-through, same stages): {theirs:,.0f} records/s; "
          f"ratio {mine / theirs:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
