"""A source sends only over the transports its file lists; the Kafka door names the sender by
its topic, never by what the message claims."""

from __future__ import annotations

from hs_common.crypto import Keyring
from hs_ingestion import httpintake, intake
from hs_ingestion.kafkadoor import Inbound, Kept, Refused, institution_of, receive_inbound
from hs_ingestion.sources import Source, SourceRegistry
from hs_ingestion.typed import Contracts

KEYS = Keyring.generate()
CONTRACTS = Contracts.shipped()
ADT = (
    "MSH|^~\\&|HIS|{facility}|HS|HS|20260101080000||ADT^A04^ADT_A01|C1|P|2.5\r"
    "PID|1||MRN1^^^{facility}^MR||WANG^WEI||19800101|M\r"
).format
SOURCES = SourceRegistry({
    "H1": Source("H1", "hospital over MLLP only", ("mllp",)),
    "H2": Source("H2", "hospital over MLLP and Kafka", ("mllp", "kafka")),
    "C1": Source("C1", "clinic over Kafka only", ("kafka",), format="clinic-json",
                 content_types=("application/json",)),
})  # fmt: skip


def test_hl7_from_a_source_that_does_not_send_over_mllp_is_refused() -> None:
    assert isinstance(intake.receive_hl7(ADT(facility="H1").encode(), SOURCES, KEYS), intake.Kept)
    refused = intake.receive_hl7(ADT(facility="H2").encode(), SOURCES, KEYS, transport="http")
    assert isinstance(refused, intake.Refused)
    assert refused.problem.reason_code == "hl7.transport_not_allowed"


def test_a_body_from_a_source_that_does_not_send_over_http_is_refused() -> None:
    refused = httpintake.receive_http(
        "C1", ("clinic-json",), "application/json", b"{}", SOURCES, KEYS, 1 << 20
    )
    assert isinstance(refused, httpintake.Refused)
    assert (refused.answer.status, refused.reason_code) == (403, "http.transport_not_allowed")


def inbound(topic: str, body: bytes, content_type: str = "application/hl7-v2") -> Inbound:
    return Inbound(topic, 0, 7, None, body, [("content-type", content_type.encode())])


def test_the_kafka_door_takes_the_institution_from_the_topic() -> None:
    assert institution_of("hs.inbound.H2.v1") == "H2"
    assert institution_of("hs.inbound.H2.ack.v1") is None
    [kept] = receive_inbound(inbound("hs.inbound.H2.v1", ADT(facility="H2").encode()), SOURCES,
                             KEYS, CONTRACTS, 1 << 20)  # fmt: skip
    assert isinstance(kept, Kept)
    assert kept.record["transport"] == "KAFKA"
    assert kept.record["envelope"]["source"]["institution"] == "H2"
    [claims] = receive_inbound(inbound("hs.inbound.H2.v1", ADT(facility="H1").encode()), SOURCES,
                               KEYS, CONTRACTS, 1 << 20)  # fmt: skip
    assert isinstance(claims, Refused) and claims.reason_code == "hl7.sender_mismatch"
    assert claims.message_id == "C1"  # MSH-10, what the answer carries


def test_a_message_naming_no_registered_sender_is_the_topics_institutions() -> None:
    [kept] = receive_inbound(inbound("hs.inbound.H2.v1", ADT(facility="LIS-7").encode()), SOURCES,
                             KEYS, CONTRACTS, 1 << 20)  # fmt: skip
    assert isinstance(kept, Kept)
    assert kept.record["envelope"]["source"]["institution"] == "H2"
    refused = intake.receive_hl7(ADT(facility="LIS-7").encode(), SOURCES, KEYS)
    assert isinstance(refused, intake.Refused)  # over MLLP, nothing proves who sent it
    assert refused.problem.reason_code == "hl7.unknown_sender"


def test_a_batch_is_kept_message_by_message() -> None:
    first, second = ADT(facility="H2"), ADT(facility="H1").replace("|C1|", "|C2|")
    batch = f"FHS|^~\\&\rBHS|^~\\&\r{first}{second}BTS|2\rFTS|1\r".encode()
    kept, refused = receive_inbound(inbound("hs.inbound.H2.v1", batch), SOURCES, KEYS, CONTRACTS,
                                      1 << 20)  # fmt: skip
    assert isinstance(kept, Kept) and kept.record["sender_message_id"] == "C1"
    assert isinstance(refused, Refused) and refused.message_id == "C2"
    assert refused.reason_code == "hl7.sender_mismatch"


def test_a_source_not_listing_kafka_gets_nothing_through_the_kafka_door() -> None:
    [refused] = receive_inbound(inbound("hs.inbound.H1.v1", ADT(facility="H1").encode()), SOURCES,
                                KEYS, CONTRACTS, 1 << 20)  # fmt: skip
    assert isinstance(refused, Refused) and refused.reason_code == "kafka.unknown_source"
