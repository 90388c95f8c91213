"""Topics into the read model: golden records, links, observations, diagnoses, alerts and the
platform's clients become rows, the audit trail each client's usage per day, with the offsets
consumed written in the same database transaction."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass

from confluent_kafka import Consumer, Message, TopicPartition

from hs_common import control, topics
from hs_common.codec import Codec, Record
from hs_common.errors import HealthStreamError, SealedFieldError
from hs_common.kafka import make_consumer
from hs_common.settings import RuntimeSettings
from hs_edge.clients import SERVED_ITEMS
from hs_edge.store import Store, StoreUnavailable
from hs_terminology.vocab import RESIDENT_ID_SYSTEM

log = logging.getLogger("hs.edge.projector")

SOURCES = (
    topics.PERSON.name, topics.PERSON_LINK.name, topics.OBSERVATION.name, topics.CONDITION.name,
    topics.VITALS_ALERT.name, topics.EDGE_CLIENT.name, topics.EDGE_AUDIT.name,
    topics.QUALITY_SUMMARY.name, topics.QUALITY_ALERT.name,
)  # fmt: skip


@dataclass(frozen=True)
class Consumed:
    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    headers: tuple[tuple[str, str | bytes], ...] = ()


# The golden records' projection: version 3 indexes what persons are found by (resident ID,
# name and birth date keys: person_identifiers), version 4 the blocks a search with a birth
# date looks in; a read model made before reads the person topic again.
PERSONS = ("persons", 4)


def identifier_key(codec: Codec, system: str, value: str) -> str:
    """The keyed pseudonym a person's identifier is stored and searched by."""
    return codec.keyring.pseudonym(system, value, purpose="identifier")


def demographic_key(codec: Codec, part: str, *values: str) -> str:
    """The keyed pseudonym of standardized demographics (pinyin names, a birth date) which
    candidates for a search by demographics are found by."""
    return codec.keyring.pseudonym(part, *values, purpose="demographics")


def person_keys(codec: Codec, golden: Record) -> list[str]:
    """What a golden record is found by: its resident ID; its whole name with its birth year,
    its family name with its birth date, its given name with its birth date (each tolerates a
    mistake in the other part); its whole name, and its birth date alone (for wider searches)."""
    keys = []
    if isinstance(golden.get("id_number"), str):
        keys.append(identifier_key(codec, RESIDENT_ID_SYSTEM, golden["id_number"]))
    family, given, born = golden.get("family"), golden.get("given"), golden.get("birth_date")
    if born is not None:
        keys.append(demographic_key(codec, "birth", born.isoformat()))
        if family:
            keys.append(demographic_key(codec, "family-birth", family, born.isoformat()))
        if given:
            keys.append(demographic_key(codec, "given-birth", given, born.isoformat()))
        if family and given:
            keys.append(demographic_key(codec, "name-year", family + given, str(born.year)))
    if family and given:
        keys.append(demographic_key(codec, "name", family + given))
    return keys


def code_key(codec: Codec, coding: Record | None) -> str | None:
    """The keyed pseudonym a code is stored and searched by."""
    if coding is None:
        return None
    return codec.keyring.pseudonym(coding["system"], coding["code"], purpose="code")


class Projector:
    def __init__(self, store: Store, codec: Codec) -> None:
        self.store, self.codec = store, codec
        name, version = PERSONS
        if store.projection_version(name) < version:
            store.project_again(name, version, [topics.PERSON.name])

    def apply(self, batch: Iterable[Consumed]) -> int:
        """Project a batch in one database transaction; returns the rows written."""
        written = 0
        with self.store.transaction() as store:
            for message in batch:
                try:
                    written += self._project(message)
                except HealthStreamError:
                    # not ours to keep: the producing service dead-letters what it cannot read
                    log.warning(
                        "event not projected",
                        extra={"topic": message.topic, "offset": message.offset},
                    )
                store.consumed(message.topic, message.partition, message.offset)
        return written

    def _project(self, message: Consumed) -> int:
        decoded = self.codec.decode(message.value)
        control.check(self.codec.keyring, decoded.schema, message.value, message.headers)
        event = decoded.record
        if decoded.schema == topics.PERSON.value_schema:
            golden = event["golden"] if isinstance(event["golden"], dict) else {}
            self.store.put_person(
                event["person_id"], event["status"], event["merged_into"], event["record_keys"],
                event["envelope"]["occurred_at"], message.value, person_keys(self.codec, golden),
            )  # fmt: skip
        elif decoded.schema == topics.OBSERVATION.value_schema:
            institution = event["envelope"]["source"]["institution"]
            self.store.put_observation(
                institution, event["observation_id"], self._patient_key(event),
                code_key(self.codec, event["result"]["code"]), event["category"],
                event["effective_at"], message.value,
            )  # fmt: skip
        elif decoded.schema == topics.CONDITION.value_schema:
            recorded = event["recorded_at"] or event["envelope"]["occurred_at"]
            self.store.put_condition(
                event["envelope"]["source"]["institution"], event["condition_id"],
                self._patient_key(event), recorded, message.value,
            )  # fmt: skip
        elif decoded.schema == topics.PERSON_LINK.value_schema:
            self.store.put_link(
                event["record_key"], event["action"], event["envelope"]["occurred_at"],
                message.value,
            )  # fmt: skip
        elif decoded.schema == topics.VITALS_ALERT.value_schema:
            self.store.put_alert(
                event["alert_id"], event["action"], event["patient_key"], event["at"], message.value
            )
        elif decoded.schema == topics.QUALITY_SUMMARY.value_schema:
            self.store.put_quality_window(
                event["institution"], event["scored_type"], event["window"],
                event["window_start"], message.value,
            )  # fmt: skip
        elif decoded.schema == topics.QUALITY_ALERT.value_schema:
            self.store.put_quality_alert(
                event["alert_id"], event["action"], event["institution"], event["window_end"],
                message.value,
            )  # fmt: skip
        elif decoded.schema == topics.EDGE_CLIENT.value_schema:
            self.store.put_client(
                event["client_id"], event["version"], event["status"], message.value
            )
        elif decoded.schema == topics.EDGE_AUDIT.value_schema:
            if event["reason"] in SERVED_ITEMS:
                return 0
            self.store.count_usage(
                event["client_id"], event["at"].date().isoformat(), event["status"] >= 400,
                event["reason"] == "rate.limited",
            )  # fmt: skip
        else:
            return 0
        return 1

    def _patient_key(self, event: Record) -> str:
        """The record key a clinical event belongs to, from its sealed subject (never the Kafka
        key, which anyone who may write the topic chooses)."""
        local_id = event["subject"]["local_patient_id"]
        if not isinstance(local_id, str):
            raise SealedFieldError("subject.local_patient_id: the edge cannot open it")
        institution = event["envelope"]["source"]["institution"]
        return self.codec.keyring.pseudonym(institution, local_id)


def follow(
    settings: RuntimeSettings, projector: Projector, sources: tuple[str, ...] = SOURCES,
    stop: threading.Event | None = None,
) -> None:  # fmt: skip
    """Keep the read model up to date, resuming from the offsets it holds, also after the
    database was lost for a while."""
    stop = stop or threading.Event()
    consumer = make_consumer(settings, f"hs-edge-{settings.instance_id}", "hs-edge-projector")
    try:
        resume(consumer, projector.store, sources)
        while not stop.is_set():
            batch = [consumed(m) for m in consumer.consume(500, 0.2) if m.error() is None]
            if not batch:
                continue
            try:
                projector.apply(batch)
            except StoreUnavailable:
                log.warning("read model unavailable: resuming from its offsets when it answers")
                while not stop.wait(1.0):
                    with suppress(StoreUnavailable):
                        resume(consumer, projector.store, sources)
                        break
    finally:
        consumer.close()


def resume(consumer: Consumer, store: Store, sources: tuple[str, ...]) -> None:
    """Read each source from the offset the read model holds for it."""
    assignment = []
    for topic in sources:
        stored = store.offsets(topic)
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        assignment += [TopicPartition(topic, p, stored.get(p, 0)) for p in partitions]
    consumer.assign(assignment)


def consumed(message: Message) -> Consumed:
    key = message.key()
    headers = tuple((k, v) for k, v in message.headers() or () if v is not None)
    return Consumed(
        message.topic() or "", message.partition() or 0, message.offset() or 0,
        key.decode() if isinstance(key, bytes) and key else None, message.value() or b"",
        headers,
    )  # fmt: skip
