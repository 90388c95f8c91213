"""What ingestion does with bytes a sender hands over, before anything is written: decide
whether they can be kept as a raw message (and under which source, key and times) or only as
a dead letter, and what to answer. Pure: no sockets, no Kafka."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hs_common.crypto import Keyring
from hs_common.envelope import new_envelope
from hs_ingestion.ack import Outcome, Problem
from hs_ingestion.hl7 import UTF8_BOM, Hl7Error, Message, decode, parse, parse_timestamp
from hs_ingestion.hl7map import MERGES, REGISTER, UPDATE, local_patient_id
from hs_ingestion.sources import Source, SourceRegistry

HL7_CONTENT_TYPE = "application/hl7-v2"
SUPPORTED = {
    *(("ADT", trigger) for trigger in REGISTER | UPDATE | MERGES),
    ("ORU", "R01"), ("ORU", "R30"), ("VXU", "V04"),
}  # fmt: skip


@dataclass(frozen=True)
class Kept:
    """Bytes to keep on the raw topic, then acknowledge as accepted."""

    message: Message
    record: dict[str, Any]  # hs.ingest.RawMessage
    key: str
    dedup_key: tuple[str, str, bytes]  # (institution, MSH-10, SHA-256)


@dataclass(frozen=True)
class Refused:
    """Bytes that go to the dead-letter topic, then are answered with `outcome`."""

    message: Message | None  # when MSH could be read, for the acknowledgement
    outcome: Outcome
    problem: Problem
    institution: str
    sender_message_id: str | None


def receive_hl7(
    payload: bytes,
    sources: SourceRegistry,
    keyring: Keyring,
    received_at: datetime | None = None,
    port: int | None = None,
    transport: str | None = "mllp",
    authenticated: str | None = None,
) -> Kept | Refused:
    """Keep or refuse one HL7 message received on `port` over `transport` (a source whose
    `transports` does not list it is refused; None: the caller checked the sender itself).
    `authenticated`: the source the sender proved to be (its client certificate, or the
    inbound topic only it may write); a message naming another registered source is refused,
    one naming none is that source's (as on a port only it sends to)."""
    received_at = received_at or datetime.now(UTC)
    application, facility = _sender(payload.removeprefix(UTF8_BOM))
    source = sources.sender(application, facility, port) or (
        sources.get(authenticated) if authenticated is not None else None
    )
    if not payload.removeprefix(UTF8_BOM).lstrip().startswith(b"MSH"):
        problem = Problem("hl7.msh_missing", "segment 1", "message does not start with MSH")
        return Refused(None, Outcome.REJECTED, problem, "unknown", None)
    try:
        text, codec = (
            decode(payload, source.charset, source.undeclared_charset)
            if source
            else decode(payload)
        )
        message = parse(text)
    except Hl7Error as error:
        return Refused(
            None,
            Outcome.REJECTED,
            Problem(error.reason_code, error.where, error.problem),
            source.code if source else facility or "unknown",
            None,
        )
    control_id = message.control_id
    if source is None:
        problem = Problem(
            "hl7.unknown_sender",
            "MSH-4",
            "sending application and facility (MSH-3, MSH-4) are no registered source",
        )
        return Refused(message, Outcome.REJECTED, problem, facility or "unknown", control_id)
    if authenticated is not None and source.code != authenticated:
        problem = Problem(
            "hl7.sender_mismatch", "MSH-4", "MSH-3/MSH-4 name another source than the sender proved"
        )
        return Refused(message, Outcome.REJECTED, problem, authenticated, control_id)
    if transport is not None and transport not in source.transports:
        problem = Problem(
            "hl7.transport_not_allowed", "MSH-4", f"this source does not send over {transport}"
        )
        return Refused(message, Outcome.REJECTED, problem, source.code, control_id)
    if not control_id:
        return Refused(
            message,
            Outcome.REJECTED,
            Problem("hl7.required_missing", "MSH-10", "message control id is empty"),
            source.code,
            None,
        )
    kind = message.message_type
    if kind[:2] not in SUPPORTED:
        problem = Problem(
            "hl7.unsupported_message_type",
            "MSH-9",
            "message type is not one ingestion accepts (ADT A01-A08, A11-A13, A28, A31, "
            "A34, A39, A40, A47; ORU R01, R30; VXU V04)",
        )
        return Refused(message, Outcome.REJECTED, problem, source.code, control_id)
    try:
        occurred_at = (
            parse_timestamp(message.msh.value(7), "MSH-7", source.zone)
            if message.msh.value(7)
            else received_at
        )
    except Hl7Error as error:
        return Refused(
            message,
            Outcome.ERROR,
            Problem(error.reason_code, error.where, error.problem),
            source.code,
            control_id,
        )
    system = message.msh.value(3) or "unknown"
    digest = hashlib.sha256(payload).digest()
    record = {
        "envelope": new_envelope(source.code, system, occurred_at.astimezone(UTC), received_at),
        "payload": payload,
        "content_type": HL7_CONTENT_TYPE,
        "charset": codec,
        "transport": "MLLP",
        "sender_message_id": control_id,
        "content_sha256": digest,
        "only_items": [],
    }
    return Kept(
        message, record, _key(message, source, keyring, system), (source.code, control_id, digest)
    )


def _key(message: Message, source: Source, keyring: Keyring, system: str) -> str:
    """The raw message's key: the patient's, as its events will have (order per patient)."""
    pid = message.segment("PID")
    try:
        patient = local_patient_id(pid, source) if pid is not None else system
    except Hl7Error:
        patient = system
    return keyring.pseudonym(source.code, patient)


def _sender(payload: bytes) -> tuple[str, str]:
    """(MSH-3.1, MSH-4.1), read before decoding (MSH is ASCII in every character set)."""
    if not payload.startswith(b"MSH") or len(payload) < 4:
        return "", ""
    first = payload.split(b"\r", 1)[0].split(b"\n", 1)[0]
    fields = first.split(payload[3:4])
    component = payload[4:5] or b"^"

    def first_component(position: int) -> str:
        if len(fields) <= position:
            return ""
        return fields[position].split(component, 1)[0].decode("ascii", errors="replace").strip()

    return first_component(2), first_component(3)
