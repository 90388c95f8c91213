"""The topic catalogue: every topic's name, value schema, key and retention, in one place.

Names follow `hs.<domain>.<event>.v<major>`. Canonical clinical topics keep everything
(retention -1): read models and the EMPI index are rebuilt from them.
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from hs_common.kafka import kafka_error

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    value_schema: str
    key: str  # what the key is, for people reading the catalogue
    retention_ms: int = -1
    compacted: bool = False
    partitions: int | None = (
        None  # None: the deployment's default; 1 where one total order is needed
    )

    def config(self) -> dict[str, str]:
        return {
            "cleanup.policy": "compact" if self.compacted else "delete",
            "retention.ms": str(self.retention_ms),
            "min.insync.replicas": "1",
        }


PATIENT_KEY = "pseudonym(institution, local patient id)"

RAW = TopicSpec(
    "hs.ingest.raw.v1", "hs.ingest.RawMessage", "pseudonym(institution, system)", 30 * DAY_MS
)
# One partition: the EMPI decides in the order identity events arrive, one decision at a time,
# so records of one person arriving together cannot found two persons (docs/decisions/0004).
PATIENT_IDENTITY = TopicSpec(
    "hs.identity.patient.v1", "hs.identity.PatientIdentity", PATIENT_KEY, partitions=1
)
PERSON_LINK = TopicSpec("hs.identity.link.v1", "hs.identity.PersonLink", "person id", partitions=1)
PERSON = TopicSpec("hs.identity.person.v1", "hs.identity.Person", "person id", compacted=True)
REVIEW_DECISION = TopicSpec(
    "hs.identity.review.v1", "hs.identity.ReviewDecision", "record key", partitions=1
)
ENCOUNTER = TopicSpec("hs.clinical.encounter.v1", "hs.clinical.Encounter", PATIENT_KEY)
CONDITION = TopicSpec("hs.clinical.condition.v1", "hs.clinical.Condition", PATIENT_KEY)
OBSERVATION = TopicSpec("hs.clinical.observation.v1", "hs.clinical.Observation", PATIENT_KEY)
IMMUNIZATION = TopicSpec("hs.clinical.immunization.v1", "hs.clinical.Immunization", PATIENT_KEY)
DEVICE_READING = TopicSpec(
    "hs.device.reading.v1", "hs.device.DeviceReading", "pseudonym(institution, device id)"
)
VITALS_ALERT = TopicSpec("hs.vitals.alert.v1", "hs.vitals.Alert", PATIENT_KEY)
VITALS_ACK = TopicSpec("hs.vitals.ack.v1", "hs.vitals.Acknowledgement", PATIENT_KEY)
VITALS_SUMMARY = TopicSpec("hs.vitals.summary.v1", "hs.vitals.DailySummary", PATIENT_KEY)
VITALS_FLAG = TopicSpec("hs.vitals.flag.v1", "hs.vitals.ReadingFlag", PATIENT_KEY, 30 * DAY_MS)
# hs-vitals's own stream of everything a patient's monitor takes (re-keyed by patient)
VITALS_INPUT = TopicSpec(
    "hs.vitals.input.v1", "hs.vitals.PatientInput", PATIENT_KEY, retention_ms=7 * DAY_MS
)
# hs-quality's score of each canonical event, keyed like the event
QUALITY_RESULT = TopicSpec("hs.quality.result.v1", "hs.quality.QualityResult", PATIENT_KEY)
# each source's closed hourly and daily windows, and its threshold crossings
QUALITY_SUMMARY = TopicSpec("hs.quality.summary.v1", "hs.quality.SourceSummary", "institution")
QUALITY_ALERT = TopicSpec("hs.quality.alert.v1", "hs.quality.QualityAlert", "institution")
# hs-quality's own: each patient's birth date and sex, to meet their results (the latest each)
QUALITY_PATIENT = TopicSpec(
    "hs.quality.patient.v1", "hs.quality.PatientFacts", PATIENT_KEY, compacted=True
)
# hs-quality's clock: closes the windows of a source that has gone quiet
QUALITY_CLOCK = TopicSpec("hs.quality.clock.v1", "hs.quality.Tick", "institution", DAY_MS)
# keyed by chain: each edge process's hash chain stays in order in one partition
EDGE_AUDIT = TopicSpec("hs.edge.audit.v1", "hs.edge.AuditEvent", "audit chain")
# the open platform's clients: the latest version per client is its state
EDGE_CLIENT = TopicSpec("hs.edge.client.v1", "hs.edge.Client", "client id", compacted=True)
DEAD_LETTER = TopicSpec("hs.ops.deadletter.v1", "hs.ops.DeadLetter", "stage", 30 * DAY_MS)

ALL: tuple[TopicSpec, ...] = (
    RAW,
    PATIENT_IDENTITY,
    PERSON_LINK,
    PERSON,
    REVIEW_DECISION,
    ENCOUNTER,
    CONDITION,
    OBSERVATION,
    IMMUNIZATION,
    DEVICE_READING,
    VITALS_ALERT,
    VITALS_ACK,
    VITALS_SUMMARY,
    VITALS_FLAG,
    VITALS_INPUT,
    QUALITY_RESULT,
    QUALITY_SUMMARY,
    QUALITY_ALERT,
    QUALITY_CLOCK,
    QUALITY_PATIENT,
    EDGE_AUDIT,
    EDGE_CLIENT,
    DEAD_LETTER,
)


def inbound_topic(institution: str) -> str:
    """Where an institution publishes straight to Kafka (its principal alone may write it)."""
    return f"hs.inbound.{institution}.v1"


def inbound_ack_topic(institution: str) -> str:
    """The answers to what an institution published (its principal alone may read them)."""
    return f"hs.inbound.{institution}.ack.v1"


def institution_topics(institution: str) -> tuple[TopicSpec, TopicSpec]:
    return (
        TopicSpec(
            inbound_topic(institution),
            "as published: HL7 v2, FHIR JSON, clinic JSON/CSV or device batches "
            "(the content-type header names which)",
            "the publisher's message id",
            30 * DAY_MS,
        ),
        TopicSpec(
            inbound_ack_topic(institution),
            "hs.ingest.InboundAck",
            "the publisher's message id",
            30 * DAY_MS,
        ),
    )


def ensure_topics(
    admin: AdminClient,
    specs: tuple[TopicSpec, ...] | list[TopicSpec],
    partitions: int,
    replication: int,
    timeout: float = 30.0,
) -> list[str]:
    """Create the topics that do not exist yet; return the names created. Idempotent."""
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [s for s in specs if s.name not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [
            NewTopic(s.name, s.partitions or partitions, replication, config=s.config())
            for s in missing
        ],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            created.append(name)
        except KafkaException as exc:
            if kafka_error(exc).code() != KafkaError.TOPIC_ALREADY_EXISTS:  # another creator won
                raise
    return created
