"""`hs-quality`: every canonical event scored against the rules file as it streams, exactly
once: a quality result per event on `hs.quality.result.v1`, in the same Kafka transaction as
the offsets of what it scored."""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

from confluent_kafka import Message
from pydantic import Field

from hs_common import topics
from hs_common.codec import Codec, Record
from hs_common.envelope import derived_envelope
from hs_common.errors import RejectedInput
from hs_common.lifecycle import stop_on_signals
from hs_common.processor import ExactlyOnceProcessor, Output
from hs_common.runtime import Runtime
from hs_common.settings import RuntimeSettings
from hs_quality import rules
from hs_quality.checks import Checker, Scored

STAGE = "quality.score"
SEVERITY_ORDER = ("NONE", "WARNING", "ERROR", "FATAL")
SCORED_TOPICS = (topics.PATIENT_IDENTITY, topics.ENCOUNTER, topics.CONDITION, topics.OBSERVATION)
DEFAULT_INPUTS = ",".join(t.name for t in SCORED_TOPICS)


class QualitySettings(RuntimeSettings):
    metrics_port: int = Field(9406, ge=0, le=65535, alias="HS_METRICS_PORT")
    group_id: str = Field("hs-quality", alias="HS_QUALITY_GROUP")
    rules_file: Path | None = Field(None, alias="HS_QUALITY_RULES")  # None: the shipped rules
    input_topics: str = Field(DEFAULT_INPUTS, alias="HS_QUALITY_INPUT_TOPICS")
    result_topic: str = Field(topics.QUALITY_RESULT.name, alias="HS_QUALITY_RESULT_TOPIC")


def rules_version(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def result_record(event: Record, schema: str, scored: Scored, version: str) -> Record:
    """The quality result of one scored event."""
    worst = max((SEVERITY_ORDER.index(f.severity.upper()) for f in scored.failures), default=0)
    return {
        "envelope": derived_envelope(event["envelope"]),
        "scored_event_id": event["envelope"]["event_id"],
        "scored_type": schema,
        "rules_version": version,
        "score": round(scored.score, 6),
        "checks_applied": len(scored.applied),
        "applied": list(scored.applied),
        "failed_severity": SEVERITY_ORDER[worst],
        "failures": [
            {"check_id": f.check_id, "kahn": f.kahn.value, "dimension": f.dimension.value,
             "severity": f.severity.value, "field": f.field, "reason": f.reason}
            for f in scored.failures
        ],
    }  # fmt: skip


class Scorer:
    """The transform: one canonical event in, its quality result out (keyed like the event)."""

    def __init__(self, codec: Codec, checker: Checker, version: str, result_topic: str) -> None:
        self.codec, self.checker, self.version = codec, checker, version
        self.result_topic = result_topic

    def __call__(self, message: Message) -> Iterator[Output]:
        decoded = self.codec.decode(message.value() or b"")
        if decoded.schema not in self.checker.schemas():
            raise RejectedInput(f"hs-quality has no checks for {decoded.schema}",
                                "quality.unexpected_event")  # fmt: skip
        scored = self.checker.score(decoded.schema, decoded.record)
        record = result_record(decoded.record, decoded.schema, scored, self.version)
        value = self.codec.encode(topics.QUALITY_RESULT.value_schema, record)
        yield Output(self.result_topic, value, message.key())


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
    processor = ExactlyOnceProcessor(
        settings,
        stage=STAGE,
        group_id=settings.group_id,
        input_topics=[t for t in settings.input_topics.split(",") if t],
        transform=Scorer(runtime.codec, checker, version, settings.result_topic),
        codec=runtime.codec,
        metrics=runtime.metrics,
    )
    runtime.ready()
    processor.run(stop_on_signals())
    return 0


if __name__ == "__main__":
    sys.exit(main())
