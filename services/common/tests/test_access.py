"""The broker's access policy: who may write and read what."""

from __future__ import annotations

from confluent_kafka.admin import AclOperation, ResourceType

from hs_common import access, topics


def _writers(topic: str, grants: tuple[access.Grant, ...]) -> set[str]:
    return {
        b.principal.removeprefix("User:")
        for b in access.acl_bindings(grants)
        if b.restype == ResourceType.TOPIC and b.name == topic and b.operation == AclOperation.WRITE
    }


def test_control_and_identity_topics_have_one_writer_each() -> None:
    grants = access.policy(["HZ01", "BJ03"])
    assert _writers(topics.VITALS_ACK.name, grants) == {"edge"}
    assert _writers(topics.REVIEW_DECISION.name, grants) == {"edge"}
    assert _writers(topics.EDGE_AUDIT.name, grants) == {"edge"}
    assert _writers(topics.PERSON.name, grants) == {"empi"}
    assert _writers(topics.PERSON_LINK.name, grants) == {"empi"}
    assert _writers(topics.RAW.name, grants) == {"ingestion"}


def test_each_institution_writes_only_its_inbound_topic_and_reads_only_its_answers() -> None:
    grants = access.policy(["HZ01", "BJ03"])
    assert _writers(topics.inbound_topic("HZ01"), grants) == {"inst-HZ01"}
    assert _writers(topics.inbound_ack_topic("HZ01"), grants) == {"ingestion", "normalize"}
    hz01 = next(g for g in grants if g.principal == "inst-HZ01")
    assert hz01.writes == (topics.inbound_topic("HZ01"),)
    assert hz01.reads == (topics.inbound_ack_topic("HZ01"),)


def test_bindings_are_unique() -> None:
    bindings = access.acl_bindings(access.policy(["HZ01"]))
    keys = [(b.restype, b.name, b.principal, b.operation) for b in bindings]
    assert len(keys) == len(set(keys))
