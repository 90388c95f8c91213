"""`hs-vitals`: readings, acknowledgements, person links and diagnoses in; alerts and daily
summaries out, with per-patient state in Quix Streams, exactly once.

Two stages in one Quix application:
1. each source topic is mapped to hs.vitals.PatientInput records (hs_vitals.inputs) on
   hs.vitals.input.v1, keyed by patient, so that one patient's inputs, whatever their source,
   meet in one partition and one state store; input that cannot be decoded is dead-lettered;
2. the patient step takes each input to the patient's monitor (hs_vitals.monitor), kept in the
   Quix state store (RocksDB with a changelog topic), and writes alerts and summaries.

The escalation clock (a thread) follows the alert topic and, when an open alert is due and no
reading has escalated it, puts a CHECK for the patient on the input topic; the step decides,
so acknowledgements and resolutions that came first win.

Everything that leaves the process is sealed: the input topic carries the codec's records, and
state values are sealed with the health key before they reach RocksDB and its changelog.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from confluent_kafka import TopicPartition
from prometheus_client import CollectorRegistry, Counter
from pydantic import Field
from quixstreams import Application, State, message_context
from quixstreams.models import TopicConfig

from hs_common import control, streaming, topics
from hs_common.codec import Codec, Record
from hs_common.deadletter import DeadLetter, Origin
from hs_common.envelope import new_envelope
from hs_common.errors import HealthStreamError
from hs_common.kafka import make_consumer, make_producer
from hs_common.runtime import Runtime
from hs_common.settings import RuntimeSettings
from hs_common.streaming import Out, PayloadSerializer
from hs_vitals import inputs
from hs_vitals.daily import DaySummary
from hs_vitals.monitor import (
    AlertEvent,
    Metric,
    Outcome,
    PatientMonitor,
    Reading,
    from_state,
    to_state,
)
from hs_vitals.thresholds import NO_COHORTS, Cohorts, load_cohorts

log = logging.getLogger("hs.vitals")

STATE_KEY = "monitor"
AAD_STATE = "hs.vitals.state"
STAGE = "vitals"


class VitalsSettings(RuntimeSettings):
    metrics_port: int = Field(9404, ge=0, le=65535, alias="HS_METRICS_PORT")
    group_id: str = Field("hs-vitals", alias="HS_VITALS_GROUP")
    reading_topic: str = Field(topics.DEVICE_READING.name, alias="HS_VITALS_READING_TOPIC")
    observation_topic: str = Field(topics.OBSERVATION.name, alias="HS_VITALS_OBSERVATION_TOPIC")
    condition_topic: str = Field(topics.CONDITION.name, alias="HS_VITALS_CONDITION_TOPIC")
    person_topic: str = Field(topics.PERSON.name, alias="HS_VITALS_PERSON_TOPIC")
    ack_topic: str = Field(topics.VITALS_ACK.name, alias="HS_VITALS_ACK_TOPIC")
    input_topic: str = Field(topics.VITALS_INPUT.name, alias="HS_VITALS_INPUT_TOPIC")
    alert_topic: str = Field(topics.VITALS_ALERT.name, alias="HS_VITALS_ALERT_TOPIC")
    summary_topic: str = Field(topics.VITALS_SUMMARY.name, alias="HS_VITALS_SUMMARY_TOPIC")
    flag_topic: str = Field(topics.VITALS_FLAG.name, alias="HS_VITALS_FLAG_TOPIC")
    dead_letter_topic: str = Field(topics.DEAD_LETTER.name, alias="HS_DEAD_LETTER_TOPIC")
    state_dir: Path = Field(Path(".local/vitals-state"), alias="HS_VITALS_STATE_DIR")
    cohorts_file: Path | None = Field(None, alias="HS_VITALS_COHORTS_FILE")
    time_zone: str = Field("Asia/Shanghai", alias="HS_VITALS_TIME_ZONE")
    grace_seconds: float = Field(600.0, ge=0, le=3600, alias="HS_VITALS_GRACE_SECONDS")
    # each transaction makes a stage's output visible: an alert crosses two (inputs, then alerts)
    commit_seconds: float = Field(0.2, gt=0, le=10, alias="HS_VITALS_COMMIT_SECONDS")
    # an alert whose escalation fell due longer ago than this (a replay of old data) is not
    # escalated by the clock: only a later reading can
    live_hours: float = Field(24.0, gt=0, alias="HS_VITALS_ESCALATION_LIVE_HOURS")


def alert_id(patient_key: str, rule: str, opened: datetime) -> str:
    return hashlib.sha256(f"{patient_key}|{rule}|{opened.isoformat()}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class VitalsMetrics:
    """Counts by rule, action, flag and metric: names the platform chooses, never data."""

    alerts: Counter
    flags: Counter
    duplicates: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> VitalsMetrics:
        return cls(
            Counter("hs_vitals_alerts", "Alert events", ["rule_id", "action"], registry=registry),
            Counter("hs_vitals_flagged_readings", "Readings not used", ["flag", "metric"],
                    registry=registry),
            Counter("hs_vitals_duplicate_readings", "Repeated readings", registry=registry),
        )  # fmt: skip


@dataclass
class Vitals:
    """The two stages' logic, apart from Quix: source records to inputs, inputs to outputs."""

    codec: Codec
    settings: VitalsSettings
    cohorts: Cohorts = NO_COHORTS
    metrics: VitalsMetrics = field(
        default_factory=lambda: VitalsMetrics.create(CollectorRegistry())
    )

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.settings.time_zone)

    # --- stage 1: a source record to patient inputs -------------------------------------

    def mapper(self, source: str) -> Callable[[bytes, Any, int, Any], list[Out]]:
        pseudonym = self.codec.keyring.pseudonym
        to_inputs: dict[str, Callable[[Record], list[Record]]] = {
            topics.DEVICE_READING.value_schema: lambda r: inputs.from_device(r, pseudonym),
            topics.OBSERVATION.value_schema: lambda r: inputs.from_observation(r, pseudonym),
            topics.CONDITION.value_schema: lambda r: inputs.from_condition(
                r, self.cohorts, pseudonym
            ),
            topics.PERSON.value_schema: inputs.from_person,
            topics.VITALS_ACK.value_schema: inputs.from_acknowledgement,
        }

        def map_record(value: bytes, _key: Any, _timestamp: int, headers: Any) -> list[Out]:
            try:
                decoded = self.codec.decode(value)
                # golden records and acknowledgements: only as the EMPI and the edge wrote them
                control.check(self.codec.keyring, decoded.schema, value, headers)
            except HealthStreamError as error:
                return [self.dead_letter(value, source, str(error))]
            convert = to_inputs.get(decoded.schema)
            if convert is None:
                return [
                    self.dead_letter(value, source, f"hs-vitals does not read {decoded.schema}")
                ]
            return [self.input_out(record) for record in convert(decoded.record)]

        return map_record

    def input_out(self, record: Record) -> Out:
        payload = self.codec.encode(topics.VITALS_INPUT.value_schema, record)
        return Out(self.settings.input_topic, record["patient_key"], payload)

    def dead_letter(self, value: bytes, source: str, reason: str) -> Out:
        log.warning("input dead-lettered", extra={"stage": STAGE, "topic": source})
        at = message_context()
        origin = Origin("KAFKA", at.topic, at.partition, at.offset)
        letter = DeadLetter(STAGE, "vitals.unreadable", reason, value, origin)
        return Out(self.settings.dead_letter_topic, letter.key, letter.encode(self.codec))

    # --- stage 2: one patient input, with the patient's state ---------------------------

    def step(self, value: bytes, state: State[str, Any]) -> list[Out]:
        record = self.codec.decode(value, expect=topics.VITALS_INPUT.value_schema).record
        stored = state.get(STATE_KEY)
        monitor = (
            from_state(stored, self.cohorts, self.zone)
            if stored
            else PatientMonitor(self.cohorts.defaults, zone=self.zone)
        )
        monitor.grace = timedelta(seconds=self.settings.grace_seconds)
        key, at, kind = record["patient_key"], record["at"], record["kind"]
        outcome = Outcome()
        if kind == "READING":
            reading = record["reading"]
            outcome = monitor.observe(
                Reading(reading["device"], Metric(reading["metric"]), reading["value"], at)
            )
        elif kind == "ACKNOWLEDGEMENT":
            for rule, opened in monitor.open_alerts().items():
                if alert_id(key, rule, opened) == record["alert_id"]:
                    monitor.acknowledge(rule, opened)
        elif kind == "PERSON":
            if monitor.person_at is None or at >= monitor.person_at:
                monitor.person_id, monitor.person_at = record["person_id"], at
        elif kind == "COHORT":
            cohort = self.cohorts.preferred(monitor.cohort, record["cohort"])
            monitor.join_cohort(cohort, self.cohorts.thresholds(cohort))
        elif kind == "CHECK":
            outcome.alerts = monitor.check(at)
        state.set(STATE_KEY, to_state(monitor))
        self.metrics.duplicates.inc(outcome.duplicates)
        return (
            [self.alert(record, monitor, event) for event in outcome.alerts]
            + [self.summary(record, monitor, summary) for summary in outcome.summaries]
            + [self.flag(record, "IMPLAUSIBLE", r) for r in outcome.implausible]
            + [self.flag(record, "LATE", r) for r in outcome.late]
        )

    def _envelope(self, record: Record, at: datetime) -> Record:
        source = record["source"]
        return new_envelope(source["institution"], source["system"], at, None, record["trace_id"])

    def flag(self, record: Record, flag: str, reading: Reading) -> Out:
        self.metrics.flags.labels(flag, reading.metric.value).inc()
        key = record["patient_key"]
        flagged = {
            "envelope": self._envelope(record, reading.at),
            "patient_key": key,
            "flag": flag,
            "metric": reading.metric.value,
            "reading": {
                "device": reading.device,
                "value": reading.value,
                "measured_at": reading.at,
            },
        }
        payload = self.codec.encode(topics.VITALS_FLAG.value_schema, flagged)
        return Out(self.settings.flag_topic, key, payload)

    def alert(self, record: Record, monitor: PatientMonitor, event: AlertEvent) -> Out:
        self.metrics.alerts.labels(event.rule, event.action.value).inc()
        key = record["patient_key"]
        alert = {
            "envelope": self._envelope(record, event.at),
            "alert_id": alert_id(key, event.rule, event.opened_at),
            "action": event.action.value,
            "rule_id": event.rule,
            "severity": event.severity.value,
            "patient_key": key,
            "person_id": monitor.person_id,
            "at": event.at,
            "escalate_at": event.escalate_at,
            "readings": [
                {"metric": r.metric.value, "value": r.value, "measured_at": r.at}
                for r in event.readings
            ],
            "score": event.news2.total if event.news2 else None,
            "cohort": monitor.cohort,
        }
        payload = self.codec.encode(topics.VITALS_ALERT.value_schema, alert)
        return Out(self.settings.alert_topic, key, payload)

    def summary(self, record: Record, monitor: PatientMonitor, day: DaySummary) -> Out:
        key = record["patient_key"]
        end = datetime.combine(day.day + timedelta(days=1), datetime.min.time(), self.zone)
        summary = {
            "envelope": self._envelope(record, end),
            "patient_key": key,
            "person_id": monitor.person_id,
            "day": day.day,
            "time_zone": self.settings.time_zone,
            "summary": {
                "glucose_day": _cgm(day.glucose_day),
                "glucose_14d": _cgm(day.glucose_period),
                "blood_pressure": day.blood_pressure.__dict__ if day.blood_pressure else None,
            },
        }
        payload = self.codec.encode(topics.VITALS_SUMMARY.value_schema, summary)
        return Out(self.settings.summary_topic, key, payload)


def _cgm(summary: Any) -> Record | None:
    if summary is None:
        return None
    fields = dict(summary.__dict__)
    fields.pop("gmi_mmol_mol")
    return fields


class EscalationClock:
    """Follows the alert topic; when an open alert's escalation falls due, asks the patient's
    monitor to check it (a CHECK input). Checks are idempotent, so every instance may run one
    and a restart may repeat them."""

    def __init__(self, settings: VitalsSettings, codec: Codec) -> None:
        self.settings, self.codec = settings, codec
        self.due: list[tuple[datetime, str, str]] = []  # (escalate_at, alert id, patient key)
        self.closed: set[str] = set()
        self.sources: dict[str, Record] = {}
        self.stopping = threading.Event()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="escalation-clock", daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        settings = self.settings
        consumer = make_consumer(settings, f"{settings.group_id}-clock-{time.time_ns()}", "clock")
        producer = make_producer(settings, "hs-vitals-clock")
        topic = settings.alert_topic
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        try:
            while not self.stopping.is_set():
                for message in consumer.consume(500, 0.5):
                    value = message.value()
                    if message.error() is None and value:
                        self.follow(self.codec.decode(value).record)
                for record in self.fire(datetime.now(UTC)):
                    out = self.codec.encode(topics.VITALS_INPUT.value_schema, record)
                    producer.produce(settings.input_topic, out, record["patient_key"])
                producer.poll(0)
        finally:
            producer.flush(10)
            consumer.close()

    def follow(self, alert: Record) -> None:
        if alert["action"] == "OPENED" and alert["escalate_at"] is not None:
            heapq.heappush(
                self.due, (alert["escalate_at"], alert["alert_id"], alert["patient_key"])
            )
            self.sources[alert["alert_id"]] = alert["envelope"]
        elif alert["alert_id"] in self.sources:  # still waiting: its check is no longer needed
            self.closed.add(alert["alert_id"])

    def fire(self, now: datetime) -> Iterable[Record]:
        live_from = now - timedelta(hours=self.settings.live_hours)
        while self.due and self.due[0][0] <= now:
            due, alert, patient_key = heapq.heappop(self.due)
            envelope = self.sources.pop(alert)
            if alert in self.closed:
                self.closed.discard(alert)
            elif due >= live_from:
                yield inputs.patient_input("CHECK", patient_key, now, envelope)


def build(vitals: Vitals) -> Application:
    settings, codec = vitals.settings, vitals.codec
    app = streaming.application(
        settings, codec, settings.group_id, str(settings.state_dir), AAD_STATE,
        settings.commit_seconds,
    )  # fmt: skip
    names = (
        settings.alert_topic, settings.summary_topic, settings.flag_topic,
        settings.dead_letter_topic,
    )  # fmt: skip
    outputs = streaming.output_topics(app, names)
    patient_inputs = app.topic(
        settings.input_topic,
        key_serializer="string",
        key_deserializer="string",
        value_serializer=PayloadSerializer(),
        value_deserializer="bytes",
        config=TopicConfig(
            num_partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication,
        ),
    )
    outputs[settings.input_topic] = patient_inputs

    def route(value: Out, *_: Any) -> Any:
        return outputs[value.topic]

    sources = (
        settings.reading_topic, settings.observation_topic, settings.condition_topic,
        settings.person_topic, settings.ack_topic,
    )  # fmt: skip
    for name in sources:
        source = app.topic(name, key_deserializer="bytes", value_deserializer="bytes")
        app.dataframe(source).apply(vitals.mapper(name), expand=True, metadata=True).to_topic(
            route, key=lambda out: out.key
        )
    steps = app.dataframe(patient_inputs).apply(vitals.step, stateful=True, expand=True)
    steps.to_topic(route, key=lambda out: out.key)
    return app


def main() -> int:
    settings = VitalsSettings()
    runtime = Runtime.start("vitals", settings)
    # a bad file is refused here, at start, naming the entry
    cohorts = load_cohorts(settings.cohorts_file) if settings.cohorts_file else NO_COHORTS
    runtime.ready()
    EscalationClock(settings, runtime.codec).start()
    metrics = VitalsMetrics.create(runtime.metrics.registry)
    build(Vitals(runtime.codec, settings, cohorts, metrics)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
