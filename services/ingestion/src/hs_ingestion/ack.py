"""HL7 acknowledgements (HL7 v2 §2.9, table 0008).

Original mode (MSH-15 and MSH-16 empty): AA accepted, AE error (resending may succeed,
e.g. the message could not be stored), AR rejected (do not resend unchanged).
Enhanced mode (MSH-15 or MSH-16 set): commit acknowledgements CA / CE / CR, sent once the
message is stored (or could not be) when MSH-15 asks for one (AL, ER, SU; never for NE),
then an application acknowledgement AA / AE / AR when MSH-16 asks for one. A batch (FHS/BHS)
is answered with a batch of the acknowledgements due.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from hs_ingestion.hl7 import Delimiters, Message, escape_text


class Outcome(StrEnum):
    ACCEPTED = "accepted"  # stored
    ERROR = "error"  # not stored, or content the sender can correct and resend
    REJECTED = "rejected"  # cannot be processed as sent


ORIGINAL = {Outcome.ACCEPTED: "AA", Outcome.ERROR: "AE", Outcome.REJECTED: "AR"}
ENHANCED = {Outcome.ACCEPTED: "CA", Outcome.ERROR: "CE", Outcome.REJECTED: "CR"}

# HL7 table 0357 (message error condition codes)
ERROR_CODES = {
    "hl7.msh_missing": ("100", "Segment sequence error"),
    "hl7.delimiters": ("102", "Data type error"),
    "hl7.charset": ("102", "Data type error"),
    "hl7.invalid_date": ("102", "Data type error"),
    "hl7.unsupported_message_type": ("200", "Unsupported message type"),
    "hl7.unsupported_version": ("203", "Unsupported version id"),
    "code.unknown": ("103", "Table value not found"),
    "hl7.required_missing": ("101", "Required field missing"),
    "not_stored": ("207", "Application internal error"),
}

# MSH-15/16 (HL7 table 0155): whether an acknowledgement is due on success.
ACKNOWLEDGEMENT_DUE = {"AL": True, "NE": False, "ER": False, "SU": True}

_control_ids = itertools.count(1)


def answers(
    received: Message | None, outcome: Outcome, problem: Problem | None = None
) -> list[bytes]:
    """What a message is answered with, one MLLP frame each. Original mode (MSH-15 and
    MSH-16 empty): the AA/AE/AR. Enhanced mode: the commit acknowledgement (CA/CE/CR) when
    MSH-15 asks for one, then the application acknowledgement (AA/AE/AR) when MSH-16 does:
    the message being stored for processing is what the platform accepts it for."""
    if received is None or not (received.msh.value(15) or received.msh.value(16)):
        return [acknowledgement(received, outcome, problem)]
    frames = []
    if _due(received.msh.value(15), outcome, otherwise="AL"):
        frames.append(acknowledgement(received, outcome, problem))
    if _due(received.msh.value(16), outcome, otherwise="NE"):
        frames.append(acknowledgement(received, outcome, problem, application=True))
    return frames


def _due(mode: str, outcome: Outcome, otherwise: str) -> bool:
    """MSH-15/16 (table 0155): AL always, NE never, ER only on an error, SU only on success;
    an empty or unknown mode is taken as `otherwise` (a commit is sent, an application
    acknowledgement is not, unless asked for)."""
    mode = mode.upper() if mode.upper() in ACKNOWLEDGEMENT_DUE else otherwise
    return ACKNOWLEDGEMENT_DUE[mode] if outcome is Outcome.ACCEPTED else mode in ("AL", "ER")


@dataclass(frozen=True)
class Problem:
    reason_code: str
    where: str  # 'PID-7', 'segment 3', 'MSH-18'
    text: str  # what was wrong, without values


def acknowledgement(
    received: Message | None,
    outcome: Outcome,
    problem: Problem | None = None,
    now: datetime | None = None,
    application: bool = False,
) -> bytes:
    """The ACK for a message (or for bytes whose MSH could not be read: received=None): a
    commit acknowledgement in enhanced mode unless `application` is asked for."""
    d = received.delimiters if received else Delimiters()
    msh = received.msh if received else None
    enhanced = bool(msh and (msh.value(15) or msh.value(16))) and not application
    code = (ENHANCED if enhanced else ORIGINAL)[outcome]
    trigger = received.message_type[1] if received else ""
    version = received.version if received and received.version else "2.5"
    stamp = f"{(now or datetime.now(UTC)):%Y%m%d%H%M%S}"
    sender = (msh.field(3), msh.field(4)) if msh else ("", "")
    receiver = (msh.field(5), msh.field(6)) if msh else ("HEALTHSTREAM", "HS")
    f, c = d.field, d.component
    encoding = f"{d.component}{d.repetition}{d.escape}{d.subcomponent}"
    segments = [
        f.join(
            [
                "MSH",
                encoding,
                receiver[0] or "HEALTHSTREAM",
                receiver[1] or "HS",
                sender[0],
                sender[1],
                stamp,
                "",
                f"ACK{c}{trigger}{c}ACK",
                f"HS{next(_control_ids):010d}",
                "P",
                version,
            ]
        ),
        f"MSA{f}{code}{f}{received.control_id if received else ''}"
        + (f"{f}{escape_text(problem.text, d)}" if problem else ""),
    ]
    if problem is not None:
        segments.append(_err(problem, d))
    return ("\r".join(segments) + "\r").encode("utf-8")


def batch_acknowledgement(acknowledgements: list[bytes], now: datetime | None = None) -> bytes:
    """BHS, the acknowledgements, BTS with their count (HL7 v2 §2.10.3)."""
    stamp = f"{(now or datetime.now(UTC)):%Y%m%d%H%M%S}"
    header = f"BHS|^~\\&|HEALTHSTREAM|HS|||{stamp}\r".encode()
    trailer = f"BTS|{len(acknowledgements)}\r".encode()
    return header + b"".join(acknowledgements) + trailer


def _err(problem: Problem, d: Delimiters) -> str:
    """ERR with the location in ERR-1 (v2.3-2.4 style) and ERR-2/ERR-3 (v2.5+)."""
    f, c, s = d.field, d.component, d.subcomponent
    number, name = ERROR_CODES.get(problem.reason_code, ("207", "Application internal error"))
    segment, _, field = problem.where.partition("-")
    location = f"{segment}{c}1{c}{field}" if field.isdigit() else ""
    text = escape_text(problem.text, d)
    element_location = f"{location or c * 2}{c}{number}{s}{text}"  # ERR-1 ELD (v2.3-2.4)
    code = c.join([number, name, "HL70357", "", "", text])  # ERR-3 (v2.5+)
    return f.join(["ERR", element_location, location, code, "E"])
