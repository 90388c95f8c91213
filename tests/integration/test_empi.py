"""The EMPI service on a real broker: decisions with evidence, exactly once; the index rebuilt
from the link topic after a restart; two instances racing on one person's records."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from hs_common.codec import Codec
from hs_common.crypto import Keyring
from hs_common.kafka import make_producer
from hs_common.processor import ExactlyOnceProcessor
from hs_common.schemas import SchemaCatalogue
from hs_common.settings import RuntimeSettings
from hs_common.testing import TopicFactory, golden_example, processing, read_all, writer_headers
from hs_empi.index import Thresholds
from hs_empi.model import Model
from hs_empi.service import DEFAULT_MODEL, Empi, read_topic
from hs_empi.standardize import check_digit

pytestmark = pytest.mark.integration

IDENTITY = "hs.identity.PatientIdentity"
LINK = "hs.identity.PersonLink"
REVIEW = "hs.identity.ReviewDecision"
DEFAULT_THRESHOLDS = Thresholds()
WANG = {
    "family": "王",
    "given": "小明",
    "id": "330102198703150023",
    "born": date(1987, 3, 15),
    "phone": "13812345678",
}
LI = {
    "family": "李",
    "given": "芳",
    "id": "11010519491231002X",
    "born": date(1949, 12, 31),
    "phone": "13700001111",
}


def identity_event(
    catalogue: SchemaCatalogue,
    schema_root: Path,
    institution: str,
    local_id: str,
    who: dict[str, Any],
    *,
    kind: str = "REGISTER",
    prior: str | None = None,
    with_id: bool = True,
) -> dict[str, Any]:
    event = copy.deepcopy(golden_example(catalogue.get(IDENTITY), schema_root))
    event["envelope"]["event_id"] = str(uuid.uuid4())
    event["envelope"]["source"]["institution"] = institution
    event["kind"] = kind
    person = event["person"]
    person["local_patient_id"] = local_id
    person["identifiers"] = [{"type": "MEDICAL_RECORD", "value": local_id, "assigner": institution}]
    if with_id:
        person["identifiers"].append({"type": "RESIDENT_ID", "value": who["id"], "assigner": "CHN"})
    person["names"] = [
        {"script": "HAN", "family": who["family"], "given": who["given"], "text": None}
    ]
    person["birth_date"] = who["born"]
    person["phones"] = [who["phone"]]
    event["prior"] = {"local_patient_id": prior, "identifiers": []} if prior else None
    event["sex"] = "MALE" if who is WANG else "FEMALE"
    return event


@pytest.fixture
def empi_topics(new_topic: TopicFactory) -> dict[str, str]:
    return {
        "identity": new_topic("identity", 1),
        "link": new_topic("link", 1),
        "person": new_topic("person", 2),
        "review": new_topic("review", 1),
        "dead": new_topic("dead", 1),
    }


def empi_processor(
    settings: RuntimeSettings, codec: Codec, empi_topics: dict[str, str], group: str,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> tuple[ExactlyOnceProcessor, Empi]:  # fmt: skip
    model = Model.from_json(json.loads(DEFAULT_MODEL.read_text()))
    empi = Empi(codec, model, thresholds, empi_topics["link"], empi_topics["person"])

    def rebuild() -> None:
        empi.rebuild(read_topic(settings, codec, empi_topics["link"], LINK))

    processor = ExactlyOnceProcessor(
        settings,
        stage="empi.link",
        group_id=group,
        input_topics=[empi_topics["identity"], empi_topics["review"]],
        consumer_settings={"partition.assignment.strategy": "range"},
        transform=empi,
        codec=codec,
        dead_letter_topic=empi_topics["dead"],
        poll_timeout=0.2,
        on_assign=rebuild,
    )
    return processor, empi


def send(settings: RuntimeSettings, codec: Codec, topic: str, events: list[dict[str, Any]]) -> None:
    producer = make_producer(settings, f"identity-feeder-{uuid.uuid4().hex[:6]}")
    for event in events:
        key = codec.keyring.pseudonym(
            event["envelope"]["source"]["institution"], event["person"]["local_patient_id"]
        )
        producer.produce(topic, value=codec.encode(IDENTITY, event), key=key)
    assert producer.flush(10) == 0


def links(bootstrap: str, codec: Codec, topic: str, expected: int) -> list[dict[str, Any]]:
    records = read_all(bootstrap, topic, expected=expected, timeout=60, idle=15)
    return [codec.decode(value).record for _, value in records]


def persons_of(links_read: list[dict[str, Any]]) -> dict[str, str]:
    """record (institution:local id) -> person, replaying the decisions in order."""
    person_of: dict[str, str] = {}
    for link in links_read:
        for record, person in list(person_of.items()):
            if person in link["merged_person_ids"]:
                person_of[record] = link["person_id"]
        record = link["record"]
        person_of[f"{record['institution']}:{record['local_patient_id']}"] = link["person_id"]
    return person_of


def test_identity_events_become_links_with_evidence_and_merges(
    runtime_settings: RuntimeSettings, codec: Codec, catalogue: SchemaCatalogue, schema_root: Path,
    empi_topics: dict[str, str], kafka_bootstrap: str,
) -> None:  # fmt: skip
    processor, _ = empi_processor(
        runtime_settings, codec, empi_topics, f"empi-{uuid.uuid4().hex[:6]}"
    )
    homophone = {**WANG, "given": "晓明"}  # typed with a different character, same reading
    events = [
        identity_event(catalogue, schema_root, "HZ01", "HZ1", WANG),
        identity_event(catalogue, schema_root, "SH02", "SH7", homophone, with_id=False),
        identity_event(catalogue, schema_root, "HZ01", "HZ2", LI),
        identity_event(catalogue, schema_root, "HZ01", "HZ3", LI, kind="MERGE", prior="HZ2"),
    ]
    with processing(processor):
        send(runtime_settings, codec, empi_topics["identity"], events)
        decided = links(kafka_bootstrap, codec, empi_topics["link"], expected=5)
    assert [link["action"] for link in decided] == [
        "NEW_PERSON",
        "LINKED",
        "NEW_PERSON",
        "LINKED",
        "MERGED",
    ]
    second = decided[1]
    assert second["person_id"] == decided[0]["person_id"]
    assert {e["comparison"]: e["level"] for e in second["evidence"]}["name"] == "same_pinyin"
    assert second["probability"] >= 0.6
    assert decided[2]["person_id"] != decided[0]["person_id"]
    assert decided[4]["decided_by"] == "source"
    person_of = persons_of(decided)
    assert person_of["HZ01:HZ2"] == person_of["HZ01:HZ3"] != person_of["HZ01:HZ1"]
    assert all("王" not in json.dumps(link["evidence"], ensure_ascii=False) for link in decided)

    latest: dict[str, dict[str, Any]] = {}
    for _, value in read_all(kafka_bootstrap, empi_topics["person"], idle=3):
        person = codec.decode(value).record
        latest[person["person_id"]] = person
    wang = latest[decided[0]["person_id"]]
    assert wang["status"] == "ACTIVE"
    assert len(wang["record_keys"]) == 2
    assert wang["golden"]["id_number"] == WANG["id"]
    assert wang["golden"]["given_han"] == "小明"  # from the record whose resident ID checks out
    assert wang["field_sources"]["id_number"] == decided[0]["record_key"]
    active = [p for p in latest.values() if p["status"] == "ACTIVE"]
    assert len(active) == 2


def test_after_a_restart_the_index_is_rebuilt_and_no_person_is_lost_or_duplicated(
    runtime_settings: RuntimeSettings, codec: Codec, catalogue: SchemaCatalogue, schema_root: Path,
    empi_topics: dict[str, str], kafka_bootstrap: str,
) -> None:  # fmt: skip
    group = f"empi-{uuid.uuid4().hex[:6]}"
    first, _ = empi_processor(runtime_settings, codec, empi_topics, group)
    with processing(first):
        send(runtime_settings, codec, empi_topics["identity"], [
            identity_event(catalogue, schema_root, "HZ01", "A1", WANG),
            identity_event(catalogue, schema_root, "HZ01", "B1", LI),
        ])  # fmt: skip
        links(kafka_bootstrap, codec, empi_topics["link"], expected=2)

    restarted, empi = empi_processor(runtime_settings, codec, empi_topics, group)
    with processing(restarted):
        send(runtime_settings, codec, empi_topics["identity"], [
            identity_event(catalogue, schema_root, "SH02", "A2", WANG),
            identity_event(catalogue, schema_root, "SH02", "B2", LI),
        ])  # fmt: skip
        decided = links(kafka_bootstrap, codec, empi_topics["link"], expected=4)
    assert empi.index.person_count() == 2  # rebuilt from the two first decisions, then two links
    person_of = persons_of(decided)
    assert person_of["HZ01:A1"] == person_of["SH02:A2"]
    assert person_of["HZ01:B1"] == person_of["SH02:B2"]
    assert len(decided) == 4  # nothing decided twice


def test_two_instances_racing_on_one_persons_records_make_one_person(
    runtime_settings: RuntimeSettings, codec: Codec, catalogue: SchemaCatalogue, schema_root: Path,
    empi_topics: dict[str, str], kafka_bootstrap: str,
) -> None:  # fmt: skip
    group = f"empi-{uuid.uuid4().hex[:6]}"
    other_settings = runtime_settings.model_copy(
        update={"instance_id": f"{runtime_settings.instance_id}-b"}
    )
    one, _ = empi_processor(runtime_settings, codec, empi_topics, group)
    two, _ = empi_processor(other_settings, codec, empi_topics, group)
    institutions = ["HZ01", "SH02", "BJ03", "HZC01", "SHC02", "F01"]
    batches = [
        [
            identity_event(catalogue, schema_root, institution, f"{institution}-{n}", WANG)
            for n in range(5)
        ]
        for institution in institutions
    ]
    with processing(one), processing(two):
        senders = [
            threading.Thread(
                target=send, args=(runtime_settings, codec, empi_topics["identity"], batch)
            )
            for batch in batches
        ]  # the same person's records from six sources at the same moment
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        decided = links(kafka_bootstrap, codec, empi_topics["link"], expected=30)
    assert len(decided) == 30
    assert len(set(persons_of(decided).values())) == 1


def test_killed_and_restarted_the_service_rebuilds_and_decides_as_if_never_stopped(
    runtime_settings: RuntimeSettings, codec: Codec, catalogue: SchemaCatalogue, schema_root: Path,
    empi_topics: dict[str, str], kafka_bootstrap: str, keyring: Keyring, tmp_path: Path,
) -> None:  # fmt: skip
    names = [(f, g) for f in "王李张刘陈杨黄赵" for g in ("伟", "芳", "小明", "建国", "丽", "强")]
    people = [
        {"family": family, "given": given, "id": _resident_id(n), "phone": f"139{n:08d}",
         "born": date(1950 + n % 50, 1 + n % 12, 1 + n % 28)}
        for n, (family, given) in enumerate(names)
    ]  # fmt: skip
    first_half = [
        identity_event(catalogue, schema_root, "HZ01", f"H{n}", p) for n, p in enumerate(people)
    ]
    second_half = [
        identity_event(catalogue, schema_root, "SH02", f"S{n}", p, with_id=n % 2 == 0)
        for n, p in enumerate(people)
    ]
    keyring.to_file(tmp_path / "keyring.json")
    env = os.environ | {
        "HS_ENV": "test", "HS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "HS_INSTANCE_ID": f"empi-{uuid.uuid4().hex[:6]}",
        "HS_EMPI_GROUP": f"empi-{uuid.uuid4().hex[:6]}",
        "HS_KEYRING_FILE": str(tmp_path / "keyring.json"), "HS_METRICS_PORT": "0",
        "HS_LOG_LEVEL": "WARNING", "HS_EMPI_MODEL_FILE": str(DEFAULT_MODEL),
        "HS_EMPI_IDENTITY_TOPIC": empi_topics["identity"],
        "HS_EMPI_LINK_TOPIC": empi_topics["link"],
        "HS_EMPI_PERSON_TOPIC": empi_topics["person"],
        "HS_EMPI_REVIEW_TOPIC": empi_topics["review"],
    }  # fmt: skip

    send(runtime_settings, codec, empi_topics["identity"], first_half)
    service = subprocess.Popen(["hs-empi", "run"], env=env)
    try:
        links(kafka_bootstrap, codec, empi_topics["link"], expected=len(people))
        service.send_signal(signal.SIGKILL)
        service.wait(10)
        send(runtime_settings, codec, empi_topics["identity"], second_half)
        service = subprocess.Popen(["hs-empi", "run"], env=env)
        decided = links(kafka_bootstrap, codec, empi_topics["link"], expected=2 * len(people))
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(30)

    assert len(decided) == 2 * len(people)  # every record decided once, none twice
    reference = Empi(codec, Model.from_json(json.loads(DEFAULT_MODEL.read_text())), Thresholds())
    for offset, event in enumerate(first_half + second_half):
        key = codec.keyring.pseudonym(
            event["envelope"]["source"]["institution"], event["person"]["local_patient_id"]
        )
        message = FakeMessage(codec.encode(IDENTITY, event), key.encode(), offset)
        list(reference(message))  # type: ignore[arg-type]
    expected = dict(reference.index.person_of)
    assert persons_of(decided) == expected  # same persons, same ids, as an uninterrupted run
    assert len(set(expected.values())) == len(people)


def _resident_id(n: int) -> str:
    first17 = f"330105{1950 + n % 50}{1 + n % 12:02d}{1 + n % 28:02d}{100 + n:03d}"
    return first17 + check_digit(first17)


@dataclass
class FakeMessage:
    """What the transform reads from a Kafka message, for the uninterrupted reference run."""

    _value: bytes
    _key: bytes
    _offset: int

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes:
        return self._key

    def offset(self) -> int:
        return self._offset


def test_reviewer_decisions_are_applied_to_open_reviews_only_and_survive_a_restart(
    runtime_settings: RuntimeSettings, codec: Codec, catalogue: SchemaCatalogue, schema_root: Path,
    empi_topics: dict[str, str], kafka_bootstrap: str,
) -> None:  # fmt: skip
    """With the link threshold out of reach, R2 (Wang again, no ID number) is a new person with
    a review against R1. A decision without the edge's MAC, and one about a record with no open
    review (R3), are dead letters; the reviewer's LINK joins R2 to R1; a second decision on the
    same (now closed) review is refused too, also after a restart."""
    group = f"empi-{uuid.uuid4().hex[:6]}"
    careful = Thresholds(link=0.999999, review=0.2)
    wang_again = {**WANG, "given": "晓明"}
    events = [
        identity_event(catalogue, schema_root, "HZ01", "R1", WANG),
        identity_event(catalogue, schema_root, "SH02", "R2", wang_again, with_id=False),
        identity_event(catalogue, schema_root, "BJ03", "R3", LI),
    ]
    key = {e["person"]["local_patient_id"]: _key(codec, e) for e in events}
    link = review_decision(catalogue, schema_root, "LINK", key["R2"], key["R1"])
    unreviewed = review_decision(catalogue, schema_root, "LINK", key["R3"], key["R1"])
    again = review_decision(catalogue, schema_root, "UNLINK", key["R2"], None)
    first, _ = empi_processor(runtime_settings, codec, empi_topics, group, careful)
    with processing(first):
        send(runtime_settings, codec, empi_topics["identity"], events)
        decided = links(kafka_bootstrap, codec, empi_topics["link"], expected=3)
        assert [d["action"] for d in decided] == ["NEW_PERSON", "REVIEW", "NEW_PERSON"]
        send_reviews(runtime_settings, codec, empi_topics["review"], [link], signed=False)
        send_reviews(runtime_settings, codec, empi_topics["review"], [unreviewed, link, again])
        decided = links(kafka_bootstrap, codec, empi_topics["link"], expected=4)
    assert len(decided) == 4, "only the signed decision on the open review is applied"
    assert decided[3]["action"] == "MERGED" and decided[3]["decided_by"] == "staff-7f3a"
    refused = Counter(
        codec.decode(v).record["reason_code"] for _, v in read_all(
            kafka_bootstrap, empi_topics["dead"], expected=3, timeout=30)
    )  # fmt: skip
    assert refused == {"control.unauthenticated": 1, "empi.no_open_review": 2}
    person_of = persons_of(decided)
    assert person_of["SH02:R2"] == person_of["HZ01:R1"] != person_of["BJ03:R3"]

    restarted, empi = empi_processor(runtime_settings, codec, empi_topics, group, careful)
    with processing(restarted):  # rebuilt from the links: the review stays closed
        send_reviews(runtime_settings, codec, empi_topics["review"], [link])
        dead = read_all(kafka_bootstrap, empi_topics["dead"], expected=4, timeout=60)
    assert codec.decode(dead[-1][1]).record["reason_code"] == "empi.no_open_review"
    assert empi.index.person_count() == 2
    assert not empi.open_reviews


def _key(codec: Codec, event: dict[str, Any]) -> str:
    institution = event["envelope"]["source"]["institution"]
    return codec.keyring.pseudonym(institution, event["person"]["local_patient_id"])


def review_decision(
    catalogue: SchemaCatalogue, schema_root: Path, action: str, record: str, other: str | None
) -> dict[str, Any]:
    decision = copy.deepcopy(golden_example(catalogue.get(REVIEW), schema_root))
    decision["envelope"]["event_id"] = str(uuid.uuid4())
    decision.update(action=action, record_key=record, other_record_key=other)
    return decision


def send_reviews(
    settings: RuntimeSettings, codec: Codec, topic: str, decisions: list[dict[str, Any]],
    signed: bool = True,
) -> None:  # fmt: skip
    """Decisions as the edge writes them (with its MAC), or, unsigned, as a forger would."""
    producer = make_producer(settings, f"review-feeder-{uuid.uuid4().hex[:6]}")
    for decision in decisions:
        value = codec.encode(REVIEW, decision)
        headers = writer_headers(codec, value) if signed else None
        producer.produce(topic, value=value, key=decision["record_key"], headers=headers)
    assert producer.flush(10) == 0
