"""Who may do what on the broker: one principal per service and per institution, as data, and
the Kafka ACLs that say it (the broker's StandardAuthorizer denies whatever no ACL allows).

Only the edge writes acknowledgements, review decisions and the audit trail; only the EMPI writes
person links and golden records; an institution writes only its own inbound topic and reads only
its own acknowledgements. `acl_bindings` is pure; `apply_acls` and `upsert_scram_users` write to
the cluster with an administrator's client.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from hs_common import topics

TRANSACTIONAL_ID = ResourceType["TRANSACTIONAL_ID"]  # missing from confluent-kafka's type stubs
READER_GROUP_PREFIX = "hs-reader-"  # hs_common.kafka.read_range: one throw-away group per read
SCRAM_ITERATIONS = 8192
_INSTITUTION_CODE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Grant:
    """What one principal may do. Groups, transactional ids and owned topics are prefixes."""

    principal: str
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    transactional_ids: tuple[str, ...] = ()
    owned_topic_prefixes: tuple[str, ...] = ()  # internal topics it creates (state changelogs)


def _names(*specs: topics.TopicSpec) -> tuple[str, ...]:
    return tuple(spec.name for spec in specs)


INGESTION = Grant(
    "ingestion",
    reads=_names(topics.RAW, topics.DEAD_LETTER, topics.OBSERVATION),
    writes=_names(topics.RAW, topics.DEAD_LETTER),
    groups=("hs-ingestion", READER_GROUP_PREFIX),
    transactional_ids=("hs-ingestion",),
)
NORMALIZE = Grant(
    "normalize",
    reads=_names(topics.RAW),
    writes=_names(
        topics.PATIENT_IDENTITY,
        topics.ENCOUNTER,
        topics.CONDITION,
        topics.OBSERVATION,
        topics.IMMUNIZATION,
        topics.DEVICE_READING,
        topics.DEAD_LETTER,
    ),
    groups=("hs-normalize", READER_GROUP_PREFIX),
    transactional_ids=("hs-normalize",),
)
EMPI = Grant(
    "empi",
    reads=_names(topics.PATIENT_IDENTITY, topics.REVIEW_DECISION, topics.PERSON_LINK),
    writes=_names(topics.PERSON_LINK, topics.PERSON, topics.DEAD_LETTER),
    groups=("hs-empi", READER_GROUP_PREFIX),
    transactional_ids=("hs-empi",),
)
VITALS = Grant(
    "vitals",
    reads=_names(
        topics.DEVICE_READING,
        topics.OBSERVATION,
        topics.CONDITION,
        topics.PERSON,
        topics.VITALS_ACK,
        topics.VITALS_INPUT,
        topics.VITALS_ALERT,
    ),
    writes=_names(
        topics.VITALS_ALERT,
        topics.VITALS_SUMMARY,
        topics.VITALS_FLAG,
        topics.VITALS_INPUT,
        topics.DEAD_LETTER,
    ),
    groups=("hs-vitals", READER_GROUP_PREFIX),
    transactional_ids=("hs-vitals",),
    owned_topic_prefixes=("changelog__hs-vitals", "repartition__hs-vitals"),
)
QUALITY = Grant(
    "quality",
    reads=_names(
        topics.PATIENT_IDENTITY,
        topics.ENCOUNTER,
        topics.CONDITION,
        topics.OBSERVATION,
        topics.PERSON_LINK,
        topics.QUALITY_RESULT,
        topics.QUALITY_CLOCK,
        topics.QUALITY_PATIENT,
    ),
    writes=_names(
        topics.QUALITY_RESULT,
        topics.QUALITY_SUMMARY,
        topics.QUALITY_ALERT,
        topics.QUALITY_CLOCK,
        topics.QUALITY_PATIENT,
        topics.DEAD_LETTER,
    ),
    groups=("hs-quality", READER_GROUP_PREFIX),
    transactional_ids=("hs-quality",),
    owned_topic_prefixes=("changelog__hs-quality", "repartition__hs-quality"),
)
EDGE = Grant(
    "edge",
    reads=_names(
        topics.PERSON,
        topics.PERSON_LINK,
        topics.ENCOUNTER,
        topics.CONDITION,
        topics.OBSERVATION,
        topics.IMMUNIZATION,
        topics.VITALS_ALERT,
        topics.VITALS_SUMMARY,
        topics.EDGE_AUDIT,
        topics.EDGE_CLIENT,
        topics.QUALITY_SUMMARY,
        topics.QUALITY_ALERT,
    ),
    writes=_names(topics.EDGE_AUDIT, topics.EDGE_CLIENT, topics.VITALS_ACK, topics.REVIEW_DECISION),
    groups=("hs-edge", READER_GROUP_PREFIX),
)
# a disease-control dashboard or a ward display following the alert stream
DASHBOARD = Grant("dashboard", reads=_names(topics.VITALS_ALERT), groups=("dashboard",))

SERVICES: tuple[Grant, ...] = (INGESTION, NORMALIZE, EMPI, VITALS, QUALITY, EDGE, DASHBOARD)


def institution_principal(code: str) -> str:
    if not _INSTITUTION_CODE.match(code):
        raise ValueError(f"institution code {code!r}: letters, digits, '-' and '_' only")
    return f"inst-{code}"


def institution_grant(code: str) -> Grant:
    """An institution publishes to its inbound topic and reads the answers on its ack topic."""
    principal = institution_principal(code)
    return Grant(
        principal,
        reads=(topics.inbound_ack_topic(code),),
        writes=(topics.inbound_topic(code),),
        groups=(principal,),
        transactional_ids=(principal,),
    )


def policy(institutions: Iterable[str]) -> tuple[Grant, ...]:
    """Every service's grant, the ingestion stages' rights on the institutions' topics, and one
    grant per institution."""
    codes = sorted(set(institutions))
    inbound = tuple(topics.inbound_topic(c) for c in codes)
    acks = tuple(topics.inbound_ack_topic(c) for c in codes)
    doors = (  # the Kafka door answers what it refuses, the normalizer the rest
        replace(INGESTION, reads=INGESTION.reads + inbound, writes=INGESTION.writes + acks),
        replace(NORMALIZE, writes=NORMALIZE.writes + acks),
    )
    others = tuple(g for g in SERVICES if g not in (INGESTION, NORMALIZE))
    return doors + others + tuple(institution_grant(c) for c in codes)


def acl_bindings(grants: Sequence[Grant]) -> list[AclBinding]:
    """The ALLOW bindings the grants need, each once."""
    wanted: dict[tuple[ResourceType, str, ResourcePatternType, str, AclOperation], None] = {}

    def allow(
        kind: ResourceType,
        name: str,
        pattern: ResourcePatternType,
        user: str,
        *operations: AclOperation,
    ) -> None:
        wanted.update(((kind, name, pattern, f"User:{user}", op), None) for op in operations)

    literal, prefixed = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
    for g in grants:
        for topic in g.reads:
            allow(
                ResourceType.TOPIC,
                topic,
                literal,
                g.principal,
                AclOperation.READ,
                AclOperation.DESCRIBE,
                AclOperation.DESCRIBE_CONFIGS,
            )
        for topic in g.writes:
            allow(
                ResourceType.TOPIC,
                topic,
                literal,
                g.principal,
                AclOperation.WRITE,
                AclOperation.DESCRIBE,
                AclOperation.DESCRIBE_CONFIGS,
            )
        for prefix in g.owned_topic_prefixes:
            allow(ResourceType.TOPIC, prefix, prefixed, g.principal, AclOperation.ALL)
        for prefix in g.groups:
            allow(
                ResourceType.GROUP,
                prefix,
                prefixed,
                g.principal,
                AclOperation.READ,
                AclOperation.DESCRIBE,
            )
        for prefix in g.transactional_ids:
            allow(
                TRANSACTIONAL_ID,
                prefix,
                prefixed,
                g.principal,
                AclOperation.WRITE,
                AclOperation.DESCRIBE,
            )
    return [
        AclBinding(kind, name, pattern, user, "*", op, AclPermissionType.ALLOW)
        for kind, name, pattern, user, op in wanted
    ]


def apply_acls(admin: AdminClient, grants: Sequence[Grant], timeout: float = 30.0) -> int:
    """Create every binding the grants need (creating an existing one is a no-op); return how
    many were asked for."""
    bindings = acl_bindings(grants)
    for future in admin.create_acls(bindings, request_timeout=timeout).values():
        future.result(timeout=timeout)
    return len(bindings)


def upsert_scram_users(
    admin: AdminClient, passwords: dict[str, str], timeout: float = 30.0
) -> None:
    """Create or replace each principal's SCRAM-SHA-512 credential."""
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(user, info, password.encode())
        for user, password in passwords.items()
    ]
    for future in admin.alter_user_scram_credentials(upserts, request_timeout=timeout).values():
        future.result(timeout=timeout)
