"""`hs-quality`: every canonical event scored against the rules file as it streams, and each
source's quality over hourly and daily windows, exactly once (one Quix Streams application).

1. Each input topic's events are scored (hs_quality.checks) into a quality result on
   `hs.quality.result.v1`, keyed like the event. What a check must remember is kept in state:
   per patient, the fingerprints of their recent results (uniqueness) and their birth date and
   sex (from their registrations, through `hs.quality.patient.v1`, which meets the observation
   topic's partitions); per person (the link topic is keyed by person), what each
   institution's record says (cross-source consistency).
   What cannot be decoded, or is not an event the rules score, is dead-lettered.
2. The results, re-keyed by institution, go to the source's windows (hs_quality.summary):
   a summary for each closed window on `hs.quality.summary.v1`, and alerts on
   `hs.quality.alert.v1`. A clock (a thread) ticks every minute for each source this process
   has seen, on `hs.quality.clock.v1`, so that the windows of a source gone quiet close too.

State values are sealed with the health key before they reach RocksDB and its changelog."""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from pydantic import Field
from quixstreams import Application, State, message_context
from quixstreams.models import TopicConfig

from hs_common import control, streaming, topics
from hs_common.codec import Codec, Record
from hs_common.deadletter import DeadLetter, Origin
from hs_common.envelope import derived_envelope, new_envelope
from hs_common.errors import RejectedInput
from hs_common.kafka import make_producer
from hs_common.runtime import Runtime
from hs_common.settings import RuntimeSettings
from hs_common.streaming import Out
from hs_quality import rules
from hs_quality.checks import Checker, Context, Demographics, Scored, demographics, fingerprint
from hs_quality.summary import AlertChange, Closed, SourceQuality, SourceWindow, Tallied

log = logging.getLogger("hs.quality")

STAGE = "quality.score"
AAD_STATE = "hs.quality.state"
SEVERITY_ORDER = ("NONE", "WARNING", "ERROR", "FATAL")
SCORED_TOPICS = (
    topics.PATIENT_IDENTITY, topics.ENCOUNTER, topics.CONDITION, topics.OBSERVATION,
    topics.PERSON_LINK,
)  # fmt: skip
DEFAULT_INPUTS = ",".join(t.name for t in SCORED_TOPICS)
SEEN_PER_PATIENT = 2000  # result fingerprints remembered per patient (uniqueness)
NAMESPACE = uuid.UUID("6f1d8a52-3c4b-4e7a-9b2d-0a1c5e7f9d31")  # of the events it derives


class QualitySettings(RuntimeSettings):
    metrics_port: int = Field(9406, ge=0, le=65535, alias="HS_METRICS_PORT")
    group_id: str = Field("hs-quality", alias="HS_QUALITY_GROUP")
    rules_file: Path | None = Field(None, alias="HS_QUALITY_RULES")  # None: the shipped rules
    input_topics: str = Field(DEFAULT_INPUTS, alias="HS_QUALITY_INPUT_TOPICS")
    result_topic: str = Field(topics.QUALITY_RESULT.name, alias="HS_QUALITY_RESULT_TOPIC")
    summary_topic: str = Field(topics.QUALITY_SUMMARY.name, alias="HS_QUALITY_SUMMARY_TOPIC")
    alert_topic: str = Field(topics.QUALITY_ALERT.name, alias="HS_QUALITY_ALERT_TOPIC")
    dead_letter_topic: str = Field(topics.DEAD_LETTER.name, alias="HS_DEAD_LETTER_TOPIC")
    state_dir: Path = Field(Path(".local/quality-state"), alias="HS_QUALITY_STATE_DIR")
    # a window closes once its source has sent something this long after its end
    grace_seconds: float = Field(900.0, ge=0, le=86400, alias="HS_QUALITY_GRACE_SECONDS")
    # an hourly window with fewer records applying a check neither opens nor resolves its alert
    alert_min_records: int = Field(20, ge=1, alias="HS_QUALITY_ALERT_MIN_RECORDS")
    commit_seconds: float = Field(0.5, gt=0, le=10, alias="HS_QUALITY_COMMIT_SECONDS")
    # the topic whose results meet their patients' registrations: hs-quality's patient topic
    # must be partitioned like it
    observation_topic: str = Field(topics.OBSERVATION.name, alias="HS_QUALITY_OBSERVATION_TOPIC")
    patient_topic: str = Field(topics.QUALITY_PATIENT.name, alias="HS_QUALITY_PATIENT_TOPIC")
    # partitioned like the result topic (its ticks meet the results in one stateful step)
    clock_topic: str = Field(topics.QUALITY_CLOCK.name, alias="HS_QUALITY_CLOCK_TOPIC")
    tick_seconds: float = Field(60.0, gt=0, le=3600, alias="HS_QUALITY_TICK_SECONDS")


def rules_version(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def derived_id(*parts: str) -> str:
    """A derived event's id from what it is about: a replay writes the same ids."""
    return str(uuid.uuid5(NAMESPACE, "|".join(parts)))


def unmapped_code(schema: str, record: Record) -> str | None:
    result = record.get("result") or {}
    local = result.get("local_code")
    if schema != topics.OBSERVATION.value_schema or result.get("code") is not None or not local:
        return None
    return f"{local.get('system')}|{local.get('code')}"


def result_record(event: Record, schema: str, scored: Scored, version: str) -> Record:
    """The quality result of one scored event."""
    worst = max((SEVERITY_ORDER.index(f.severity.upper()) for f in scored.failures), default=0)
    envelope = derived_envelope(event["envelope"])
    envelope["event_id"] = derived_id(str(event["envelope"]["event_id"]), version)
    if schema == topics.PERSON_LINK.value_schema:  # the source is the linked record's
        envelope["source"]["institution"] = event["record"]["institution"]
    return {
        "envelope": envelope,
        "scored_event_id": event["envelope"]["event_id"],
        "scored_type": schema,
        "scored_at": datetime.now(UTC),
        "rules_version": version,
        "score": round(scored.score, 6),
        "checks_applied": len(scored.applied),
        "applied": list(scored.applied),
        "unmapped_code": unmapped_code(schema, event),
        "failed_severity": SEVERITY_ORDER[worst],
        "failures": [
            {"check_id": f.check_id, "kahn": f.kahn.value, "dimension": f.dimension.value,
             "severity": f.severity.value, "field": f.field, "reason": f.reason}
            for f in scored.failures
        ],
    }  # fmt: skip


def remembered(schema: str, record: Record, state: State[str, Any]) -> Context | None:
    """What the record's checks need from the state, with the state updated by the record."""
    if schema == topics.OBSERVATION.value_schema:
        seen: dict[str, str] = state.get("seen") or {}
        event_id, print_ = str(record["envelope"]["event_id"]), fingerprint(record)
        earlier = seen.get(print_)
        if earlier is None:
            seen[print_] = event_id
            while len(seen) > SEEN_PER_PATIENT:
                del seen[next(iter(seen))]
            state.set("seen", seen)
        facts = state.get("facts") or {}
        born = facts.get("birth_date")
        return Context(
            same_as=earlier if earlier not in (None, event_id) else None,
            born=date.fromisoformat(born) if born else None,
            sex=facts.get("sex"),
        )
    if schema == topics.PERSON_LINK.value_schema:
        records: dict[str, list[Any]] = state.get("records") or {}
        linked = tuple(Demographics(*v) for k, v in records.items() if k != record["record_key"])
        if record["action"] == "UNLINKED":
            records.pop(record["record_key"], None)
        else:
            mine = demographics(record)
            records[record["record_key"]] = [mine.institution, mine.birth_date, mine.sex]
        state.set("records", records)
        return Context(linked=linked) if record["action"] != "UNLINKED" else None
    return None


@dataclass
class QualityMetrics:
    """Counts by check and action: names from the rules file, never data."""

    failed: Counter
    alerts: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> QualityMetrics:
        return cls(
            Counter("hs_quality_failed_checks", "Failed checks", ["check_id"], registry=registry),
            Counter("hs_quality_alerts", "Quality alerts", ["action"], registry=registry),
        )


@dataclass
class Quality:
    """The two stages' logic, apart from Quix."""

    codec: Codec
    settings: QualitySettings
    checker: Checker
    version: str
    metrics: QualityMetrics = field(
        default_factory=lambda: QualityMetrics.create(CollectorRegistry())
    )

    def __post_init__(self) -> None:
        self.checks = {c.check_id: c for c in self.checker.checks}
        self.heard: set[str] = set()  # the sources this process has seen, for the clock

    # --- stage 1: one event scored -----------------------------------------------------

    def score(
        self, value: bytes, key: Any, _ts: int, headers: Any, state: State[str, Any]
    ) -> list[Out]:
        try:
            decoded = self.codec.decode(value)
            control.check(self.codec.keyring, decoded.schema, value, headers)
        except RejectedInput as error:
            return [self.dead_letter(value, error.reason_code, str(error))]
        if decoded.schema == topics.QUALITY_PATIENT.value_schema:
            facts = decoded.record["facts"]
            born = facts["birth_date"]
            state.set("facts", {"birth_date": born.isoformat() if born else None,
                                "sex": facts["sex"]})  # fmt: skip
            return []
        if decoded.schema not in self.checker.schemas():
            reason = f"hs-quality has no checks for {decoded.schema}"
            return [self.dead_letter(value, "quality.unexpected_event", reason)]
        context = remembered(decoded.schema, decoded.record, state)
        scored = self.checker.score(decoded.schema, decoded.record, context)
        for failure in scored.failures:
            self.metrics.failed.labels(failure.check_id).inc()
        record = result_record(decoded.record, decoded.schema, scored, self.version)
        payload = self.codec.encode(topics.QUALITY_RESULT.value_schema, record)
        if decoded.schema == topics.PERSON_LINK.value_schema:
            key = decoded.record["record_key"]
        out_key = key.decode() if isinstance(key, bytes) else str(key or "")
        outs = [Out(self.settings.result_topic, out_key, payload)]
        if decoded.schema == topics.PATIENT_IDENTITY.value_schema:
            outs.append(self.facts(decoded.record))
        return outs

    def facts(self, identity: Record) -> Out:
        """A registration's birth date and sex, keyed like the patient's results."""
        patient_key = self.codec.keyring.pseudonym(
            identity["envelope"]["source"]["institution"], identity["person"]["local_patient_id"]
        )
        record = {"patient_key": patient_key,
                  "facts": {"birth_date": identity["person"]["birth_date"],
                            "sex": identity["sex"]}}  # fmt: skip
        payload = self.codec.encode(topics.QUALITY_PATIENT.value_schema, record)
        return Out(self.settings.patient_topic, patient_key, payload)

    def dead_letter(self, value: bytes, code: str, reason: str) -> Out:
        at = message_context()
        log.warning("input dead-lettered", extra={"stage": STAGE, "topic": at.topic})
        letter = DeadLetter(STAGE, code, reason, value, Origin("KAFKA", at.topic, at.partition,
                                                               at.offset))  # fmt: skip
        return Out(self.settings.dead_letter_topic, letter.key, letter.encode(self.codec))

    # --- stage 2: one result in its source's windows -------------------------------------

    def institution(self, value: bytes) -> str:
        result = self.codec.decode(value, expect=topics.QUALITY_RESULT.value_schema).record
        return str(result["envelope"]["source"]["institution"])

    def source_step(self, value: bytes, state: State[str, Any]) -> list[Out]:
        """A result in its source's windows, or a tick of the clock for every data type of
        the source."""
        decoded = self.codec.decode(value)
        kinds: list[str] = state.get("kinds") or []
        if decoded.schema == topics.QUALITY_CLOCK.value_schema:
            institution, heard = decoded.record["institution"], decoded.record["at"]
            envelope = new_envelope(institution, "hs-quality", heard, heard)
            outs: list[Out] = []
            for kind in kinds:
                outs += self._windows(institution, kind, envelope, state,
                                      lambda s: s.tick(heard, self.checks))  # fmt: skip
            return outs
        record = decoded.record
        envelope = record["envelope"]
        institution, kind = envelope["source"]["institution"], record["scored_type"]
        self.heard.add(institution)
        if kind not in kinds:  # each input topic is its own stream in event time
            state.set("kinds", [*kinds, kind])
        scored, at = tallied(record), record["scored_at"]
        return self._windows(institution, kind, envelope, state,
                             lambda s: s.add(scored, self.checks, at))  # fmt: skip

    def _windows(
        self, institution: str, kind: str, envelope: Record, state: State[str, Any],
        step: Callable[[SourceQuality], Closed],
    ) -> list[Out]:  # fmt: skip
        grace = timedelta(seconds=self.settings.grace_seconds)
        stored = state.get(kind)
        source = (
            SourceQuality.from_state(stored, grace, self.settings.alert_min_records)
            if stored
            else SourceQuality(grace, self.settings.alert_min_records)
        )
        closed = step(source)
        state.set(kind, source.to_state())
        return [self.summary(institution, kind, envelope, window, body)
                for window, body in closed.summaries] + [
            self.alert(institution, kind, envelope, change) for change in closed.alerts
        ]  # fmt: skip

    def summary(
        self, institution: str, kind: str, parent: Record, window: SourceWindow,
        body: dict[str, Any],
    ) -> Out:  # fmt: skip
        envelope = derived_envelope(parent, occurred_at=window.end)
        envelope["event_id"] = derived_id(institution, kind, window.size.value,
                                          window.start.isoformat())  # fmt: skip
        envelope["source"]["system"] = "hs-quality"
        record = {"envelope": envelope, "institution": institution, "scored_type": kind,
                  "rules_version": self.version, **body}  # fmt: skip
        payload = self.codec.encode(topics.QUALITY_SUMMARY.value_schema, record)
        return Out(self.settings.summary_topic, institution, payload)

    def alert(self, institution: str, kind: str, parent: Record, change: AlertChange) -> Out:
        self.metrics.alerts.labels(change.action).inc()
        check = self.checks[change.check_id]
        alert_id = change.alert_id(f"{institution}|{kind}")
        envelope = derived_envelope(parent, occurred_at=change.window.end)
        envelope["event_id"] = derived_id(alert_id, change.action)
        envelope["source"]["system"] = "hs-quality"
        record = {
            "envelope": envelope, "alert_id": alert_id, "action": change.action,
            "institution": institution, "scored_type": kind, "check_id": change.check_id,
            "severity": check.severity.value, "dimension": check.dimension.value,
            "window_start": change.window.start, "window_end": change.window.end,
            "applied": change.window.tallies[change.check_id].applied,
            "violated_pct": round(change.violated_pct, 3), "threshold_pct": check.threshold_pct,
            "previous_pct": None if change.previous_pct is None else round(change.previous_pct, 3),
        }  # fmt: skip
        payload = self.codec.encode(topics.QUALITY_ALERT.value_schema, record)
        return Out(self.settings.alert_topic, institution, payload)


def tallied(result: Record) -> Tallied:
    failures = result["failures"]
    return Tallied(
        str(result["scored_event_id"]), result["scored_type"], result["envelope"]["received_at"],
        result["envelope"]["occurred_at"], tuple(result["applied"]),
        tuple(f["check_id"] for f in failures), result.get("unmapped_code"),
    )  # fmt: skip


def build(quality: Quality) -> Application:
    settings = quality.settings
    app = streaming.application(
        settings, quality.codec, settings.group_id, str(settings.state_dir), AAD_STATE,
        settings.commit_seconds,
    )  # fmt: skip
    names = (settings.summary_topic, settings.alert_topic, settings.dead_letter_topic)
    outputs = streaming.output_topics(app, names)
    results = app.topic(
        settings.result_topic, key_serializer="string", key_deserializer="bytes",
        value_serializer=streaming.PayloadSerializer(), value_deserializer="bytes",
    )  # fmt: skip
    outputs[settings.result_topic] = results

    def route(value: Out, *_: Any) -> Any:
        return outputs[value.topic]

    patients = app.topic(
        settings.patient_topic, key_serializer="string", key_deserializer="bytes",
        value_serializer=streaming.PayloadSerializer(), value_deserializer="bytes",
        config=TopicConfig(num_partitions=settings.topic_partitions,
                           replication_factor=settings.topic_replication,
                           extra_config={"cleanup.policy": "compact"}),
    )  # fmt: skip
    outputs[settings.patient_topic] = patients
    for name in (t for t in settings.input_topics.split(",") if t):
        source = app.topic(name, key_deserializer="bytes", value_deserializer="bytes")
        events = app.dataframe(source)
        if name == settings.observation_topic:  # the results meet their patients' facts
            events = events.concat(app.dataframe(patients))
        scored = events.apply(quality.score, stateful=True, expand=True, metadata=True)
        scored.to_topic(route, key=lambda out: out.key)
    by_source = app.dataframe(results).group_by(
        quality.institution, name="institution", key_serializer="string",
        key_deserializer="string", value_serializer="bytes", value_deserializer="bytes",
    )  # fmt: skip
    clock = app.topic(
        settings.clock_topic, key_serializer="string", key_deserializer="string",
        value_deserializer="bytes",
        config=TopicConfig(num_partitions=settings.topic_partitions,
                           replication_factor=settings.topic_replication),
    )  # fmt: skip
    ticks = app.dataframe(clock)
    windows = by_source.concat(ticks).apply(quality.source_step, stateful=True, expand=True)
    windows.to_topic(route, key=lambda out: out.key)
    return app


class Clock:
    """Ticks every `tick_seconds` for each source the process has seen. A tick only lets a
    quiet source's windows close: ticks repeated (after a restart, by several instances) or
    for a source another instance holds change nothing."""

    def __init__(self, quality: Quality) -> None:
        self.quality = quality
        self.stopping = threading.Event()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="quality-clock", daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        settings, codec = self.quality.settings, self.quality.codec
        producer = make_producer(settings, "hs-quality-clock")
        try:
            while not self.stopping.wait(settings.tick_seconds):
                now = datetime.now(UTC)
                for institution in sorted(self.quality.heard):
                    tick = {"institution": institution, "at": now}
                    value = codec.encode(topics.QUALITY_CLOCK.value_schema, tick)
                    producer.produce(settings.clock_topic, value, institution)
                producer.poll(0)
        finally:
            producer.flush(10)


def load_checker(settings: QualitySettings) -> tuple[Checker, str]:
    path = settings.rules_file
    text = rules.default_rules_text() if path is None else path.read_text(encoding="utf-8")
    return Checker(rules.parse(text, str(path or "rules.csv"))), rules_version(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hs-quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["run", "check-rules"], nargs="?", default="run")
    parser.add_argument("--rules", type=Path, help="with check-rules: the file to check")
    args = parser.parse_args(argv)
    if args.command == "check-rules":
        try:
            checks = rules.load(args.rules)
        except rules.RulesError as error:
            sys.stderr.write(f"{error}\n")
            return 1
        sys.stdout.write(f"{len(checks)} checks\n")
        return 0
    settings = QualitySettings()
    try:
        checker, version = load_checker(settings)
    except rules.RulesError as error:
        raise SystemExit(f"the rules file is refused: {error}") from None
    runtime = Runtime.start("quality", settings)
    metrics = QualityMetrics.create(runtime.metrics.registry)
    quality = Quality(runtime.codec, settings, checker, version, metrics)
    app = build(quality)
    runtime.ready()
    Clock(quality).start()
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
