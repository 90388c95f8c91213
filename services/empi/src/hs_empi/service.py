"""`hs-empi`: links every patient identity event to a person, as it arrives, exactly once.

Reads hs.identity.patient.v1 (one partition: one decision at a time, in arrival order) with
Kafka transactions and writes each decision to hs.identity.link.v1 in the same transaction
as the input offset. The person index lives in memory and is rebuilt from the link topic
whenever this instance is given the input partition (start, restart, failover) and after an
aborted transaction, so what it holds is always what was committed. A second instance in the
same group stands by and takes over when the first stops.

    hs-empi run      serve (HS_EMPI_MODEL_FILE: the model; estimated from the identity topic
                     at start when the file does not exist)
    hs-empi train    estimate the model from the identity topic and write it to the file
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from confluent_kafka import Message
from pydantic import Field

from hs_common import control, topics
from hs_common.codec import Codec
from hs_common.crypto import Keyring, Sealed
from hs_common.envelope import derived_envelope
from hs_common.errors import KeyringError, RejectedInput
from hs_common.kafka import read_range
from hs_common.lifecycle import stop_on_signals
from hs_common.processor import ExactlyOnceProcessor, Output
from hs_common.runtime import Runtime
from hs_common.settings import RuntimeSettings
from hs_empi.golden import Linked, golden
from hs_empi.identity import identity_fields
from hs_empi.index import REVIEW, PersonIndex, Thresholds
from hs_empi.links import MERGED, SOURCE, UNLINKED, decided_record, link_record, standard_of
from hs_empi.model import Model, estimate
from hs_empi.standardize import Standard, standardize

log = logging.getLogger("hs_empi")

STAGE = "empi.link"
DEFAULT_MODEL = Path(__file__).with_name("default_model.json")
MIN_TRAINING_RECORDS = 500


class EmpiSettings(RuntimeSettings):
    metrics_port: int = Field(9403, ge=0, le=65535, alias="HS_METRICS_PORT")
    group_id: str = Field("hs-empi", alias="HS_EMPI_GROUP")
    model_file: Path = Field(Path(".local/empi-model.json"), alias="HS_EMPI_MODEL_FILE")
    link_threshold: float = Field(0.6, gt=0, lt=1, alias="HS_EMPI_LINK_THRESHOLD")
    review_threshold: float = Field(0.2, gt=0, lt=1, alias="HS_EMPI_REVIEW_THRESHOLD")
    identity_topic: str = Field(topics.PATIENT_IDENTITY.name, alias="HS_EMPI_IDENTITY_TOPIC")
    link_topic: str = Field(topics.PERSON_LINK.name, alias="HS_EMPI_LINK_TOPIC")
    person_topic: str = Field(topics.PERSON.name, alias="HS_EMPI_PERSON_TOPIC")
    review_topic: str = Field(topics.REVIEW_DECISION.name, alias="HS_EMPI_REVIEW_TOPIC")
    trusted_sources: str = Field(
        "",
        alias="HS_EMPI_TRUSTED_SOURCES",
        description="Institutions whose values survive first in golden records, most trusted "
        "first (comma-separated).",
    )

    def trust(self) -> dict[str, int]:
        codes = [c.strip() for c in self.trusted_sources.split(",") if c.strip()]
        return {code: len(codes) - rank for rank, code in enumerate(codes)}


class Empi:
    """The transform: an identity event in, its link decisions out."""

    def __init__(
        self,
        codec: Codec,
        model: Model,
        thresholds: Thresholds,
        link_topic: str = topics.PERSON_LINK.name,
        person_topic: str = topics.PERSON.name,
        trust: Mapping[str, int] | None = None,
    ) -> None:
        self.codec = codec
        self.model = model
        self.thresholds = thresholds
        self.link_topic = link_topic
        self.person_topic = person_topic
        self.trust = trust or {}  # institution -> rank (higher: its values survive first)
        self.index = self._new_index()
        self.key_of: dict[str, str] = {}  # record id -> record key (pseudonym)
        self.record_of: dict[str, str] = {}  # and back
        self.open_reviews: set[str] = set()  # record keys a reviewer has yet to decide on

    def _new_index(self) -> PersonIndex:
        return PersonIndex(self.model, self.thresholds, self._person_id)

    def _person_id(self, founding_record: str) -> str:
        return "P" + self.codec.keyring.pseudonym(founding_record, purpose="person")[:16]

    def __call__(self, message: Message) -> Iterator[Output]:
        decoded = self.codec.decode(message.value() or b"")
        if decoded.schema == topics.PATIENT_IDENTITY.value_schema:
            yield from self._identity(message, decoded.record)
        elif decoded.schema == topics.REVIEW_DECISION.value_schema:
            control.check(self.codec.keyring, decoded.schema, message.value() or b"",
                          message.headers())  # fmt: skip
            yield from self._review(decoded.record)
        else:
            raise RejectedInput(f"the EMPI does not read {decoded.schema}", "empi.unexpected_event")

    def _identity(self, message: Message, event: dict[str, Any]) -> Iterator[Output]:
        fields = identity_fields(event)
        record = standardize(fields)
        record_key = self._key(message, fields.institution, fields.local_id)
        self._know(record.record_id, record_key)
        moved_from = self.index.person_of.get(record.record_id)
        decision = self.index.add(record)
        envelope = derived_envelope(event["envelope"])
        yield self._output(link_record(envelope, decision, record, record_key, self.key_of))
        person, merged = decision.person_id, decision.merged_persons
        prior = event["prior"]
        if event["kind"] == "MERGE" and prior is not None:
            prior_id = f"{fields.institution}:{prior['local_patient_id']}"
            if prior_id in self.index.records:
                person, folded = self.index.merge(record.record_id, prior_id)
                merged += folded
                yield self._output(
                    decided_record(
                        derived_envelope(event["envelope"]),
                        MERGED,
                        self.index.records[prior_id],
                        self.key_of[prior_id],
                        person,
                        folded,
                        SOURCE,
                    )
                )
        yield from self._persons(envelope, person, {*merged, moved_from})

    def _review(self, decision: dict[str, Any]) -> Iterator[Output]:
        """A reviewer's LINK or UNLINK (naming the record to keep apart from, for a "no link"
        on a suggested match), applied and written with who decided and why. Only a record
        whose review is open is decided on."""
        if decision["record_key"] not in self.open_reviews:
            raise RejectedInput(
                "review decision names a record with no open review", "empi.no_open_review"
            )
        record_id = self._record_of(decision["record_key"])
        separated_from: str | None = self.index.person_of[record_id]
        if decision["action"] == "LINK":
            other = self._record_of(decision["other_record_key"] or "")
            person, merged = self.index.merge(other, record_id)
            action, separated_from = MERGED, None
        else:
            other_key = decision["other_record_key"]
            apart = self._record_of(other_key) if other_key else None
            person, merged = self.index.unlink(record_id, apart)
            action = UNLINKED
            if apart is not None:
                separated_from = self.index.person_of[apart]
        envelope = derived_envelope(decision["envelope"])
        yield self._output(
            decided_record(
                envelope,
                action,
                self.index.records[record_id],
                decision["record_key"],
                person,
                merged,
                decision["decided_by"],
                decision["reason"],
                separated_from,
            )
        )
        yield from self._persons(envelope, person, {*merged, separated_from})

    def _persons(
        self, envelope: dict[str, Any], person: str, touched: set[str | None]
    ) -> Iterator[Output]:
        """Golden records of the person decided about and of the others the decision changed."""
        others = sorted(p for p in touched if p is not None and p != person)
        for changed in (person, *others):
            yield self._person(envelope, changed, person)

    def _follow_reviews(self, link: dict[str, Any]) -> None:
        """A REVIEW link opens the record's review; any later decision about it closes it."""
        if link["action"] == REVIEW:
            self.open_reviews.add(link["record_key"])
        else:
            self.open_reviews.discard(link["record_key"])

    def _know(self, record_id: str, record_key: str) -> None:
        self.key_of[record_id] = record_key
        self.record_of[record_key] = record_id

    def _record_of(self, record_key: str) -> str:
        record_id = self.record_of.get(record_key)
        if record_id is None:
            raise RejectedInput(
                "review decision names a record the EMPI has not seen", "empi.unknown_record"
            )
        return record_id

    def _person(self, envelope: dict[str, Any], person: str, survivor: str) -> Output:
        """The golden record of a person the decision changed (MERGED when it no longer has
        records: they are `survivor`'s now)."""
        members = sorted(self.index.members.get(person, ()))
        linked = [
            Linked(self.index.records[r], self.key_of[r], self.index.arrival[r]) for r in members
        ]
        identity, sources, flags = golden(linked, self.trust) if linked else (None, {}, [])
        record = {
            "envelope": derived_envelope(envelope),
            "person_id": person,
            "status": "ACTIVE" if linked else "MERGED",
            "merged_into": None if linked else survivor,
            "record_keys": sorted(item.key for item in linked),
            "golden": identity,
            "field_sources": sources,
            "flags": flags,
        }
        return self._signed(self.person_topic, topics.PERSON.value_schema, record, person)

    def _key(self, message: Message, institution: str, local_id: str) -> str:
        key = message.key()
        if isinstance(key, bytes) and key:
            return key.decode()
        if isinstance(key, str) and key:
            return key
        if not local_id:
            raise RejectedInput("identity event without a local patient id", "empi.no_record_id")
        return self.codec.keyring.pseudonym(institution, local_id)

    def _output(self, link: dict[str, Any]) -> Output:
        self._follow_reviews(link)
        return self._signed(
            self.link_topic, topics.PERSON_LINK.value_schema, link, link["person_id"]
        )

    def _signed(self, topic: str, schema: str, record: dict[str, Any], key: str) -> Output:
        """An identity event with the EMPI's MAC (hs_common.control)."""
        value = self.codec.encode(schema, record)
        return Output(topic, value, key, control.mac_headers(self.codec.keyring, schema, value))

    def rebuild(self, links: Iterator[dict[str, Any]]) -> int:
        """Start over from the committed decisions; returns how many were applied."""
        self.index = self._new_index()
        self.key_of, self.record_of, self.open_reviews = {}, {}, set()
        applied = 0
        for link in links:
            self._follow_reviews(link)
            record = standard_of(link["record"])
            self._know(record.record_id, link["record_key"])
            apart = link["review_person_id"] if link["action"] == UNLINKED else None
            self.index.restore(record, link["person_id"], tuple(link["merged_person_ids"]), apart)
            applied += 1
        return applied


def read_topic(
    settings: RuntimeSettings, codec: Codec, topic: str, schema: str
) -> Iterator[dict[str, Any]]:
    """Every committed record of `topic`, in order, up to its end when called; of identity
    events, only those with the EMPI's valid MAC."""
    for message in read_range(settings, topic, "empi-reader"):
        value = message.value() or b""
        try:
            control.check(codec.keyring, schema, value, message.headers())
        except control.ForgedEvent:
            log.warning("unauthenticated record skipped", extra={"topic": topic,
                        "offset": message.offset()})  # fmt: skip
            continue
        yield codec.decode(value, expect=schema).record


def load_model(settings: EmpiSettings, codec: Codec) -> Model:
    """The model file; else estimated from the identity topic (written to the file for the next
    start); else, with too few records to estimate from, the shipped default."""
    if settings.model_file.exists():
        return read_model(settings.model_file, codec.keyring)
    records = training_records(settings, codec)
    if len(records) < MIN_TRAINING_RECORDS:
        log.info(
            "too few identity records to estimate the model; default used",
            extra={"count": len(records)},
        )
        return Model.from_json(json.loads(DEFAULT_MODEL.read_text()))
    model = estimate(records).keyed(tf_key(codec.keyring))
    save_model(model, settings.model_file, codec.keyring)
    return model


def training_records(settings: EmpiSettings, codec: Codec) -> list[Standard]:
    latest: dict[str, Standard] = {}
    schema = topics.PATIENT_IDENTITY.value_schema
    for event in read_topic(settings, codec, settings.identity_topic, schema):
        record = standardize(identity_fields(event))
        latest[record.record_id] = record
    return list(latest.values())


MODEL_AAD = "hs.empi.model"


def tf_key(keyring: Keyring) -> Callable[[str], str]:
    """How the model's name and phone tables are keyed: a keyed hash (HMAC-SM3) of the value."""
    return lambda value: keyring.pseudonym(value, purpose="empi-term-frequency")


def save_model(model: Model, path: Path, keyring: Keyring) -> None:
    """The model, its term frequencies keyed, sealed (SM4-GCM, identifying key), mode 0600."""
    keyed = model.keyed(tf_key(keyring))
    plain = json.dumps(keyed.to_json(), ensure_ascii=False).encode()
    sealed = keyring.seal("identifying", MODEL_AAD, plain)
    document = {"sealed": {"key_id": sealed.key_id, "nonce": sealed.nonce.hex(),
                           "ciphertext": sealed.ciphertext.hex()}}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump(document, out)
    path.chmod(0o600)


def read_model(path: Path, keyring: Keyring) -> Model:
    """A model file as `save_model` writes it (or, from before, in the clear)."""
    document = json.loads(path.read_text())
    if "sealed" in document:
        box = document["sealed"]
        sealed = Sealed(
            box["key_id"], bytes.fromhex(box["nonce"]), bytes.fromhex(box["ciphertext"])
        )
        plain = keyring.open(MODEL_AAD, sealed)
        if plain is None:
            raise KeyringError(f"{path}: sealed under key {sealed.key_id!r}, not in the keyring")
        document = json.loads(plain)
    return Model.from_json(document, tf_key(keyring))


def run(settings: EmpiSettings) -> None:
    runtime = Runtime.start("empi", settings)
    model = load_model(settings, runtime.codec)
    thresholds = Thresholds(settings.link_threshold, settings.review_threshold)
    empi = Empi(
        runtime.codec,
        model,
        thresholds,
        settings.link_topic,
        settings.person_topic,
        settings.trust(),
    )

    def rebuild() -> None:
        started = time.monotonic()
        links = read_topic(
            settings, runtime.codec, settings.link_topic, topics.PERSON_LINK.value_schema
        )
        count = empi.rebuild(links)
        log.info(
            "person index rebuilt from the link topic",
            extra={"count": count, "duration_ms": round((time.monotonic() - started) * 1000)},
        )

    processor = ExactlyOnceProcessor(
        settings,
        stage=STAGE,
        group_id=settings.group_id,
        input_topics=[settings.identity_topic, settings.review_topic],
        # range assignment gives both one-partition inputs to the same instance
        consumer_settings={"partition.assignment.strategy": "range"},
        transform=empi,
        codec=runtime.codec,
        metrics=runtime.metrics,
        on_assign=rebuild,
    )
    runtime.ready()
    processor.run(stop_on_signals())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hs-empi", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["run", "train"], nargs="?", default="run")
    args = parser.parse_args(argv)
    settings = EmpiSettings()
    if args.command == "train":
        runtime = Runtime.start("empi-train", settings.model_copy(update={"metrics_port": 0}))
        records = training_records(settings, runtime.codec)
        save_model(estimate(records), settings.model_file, runtime.codec.keyring)
        log.info("model estimated", extra={"count": len(records)})
        return 0
    run(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
