from __future__ import annotations

from datetime import UTC, datetime

from hs_ingestion.ack import Outcome, Problem, acknowledgement
from hs_ingestion.hl7 import parse

ORIGINAL = "MSH|^~\\&|HIS|HZ01|HEALTHSTREAM|HS|20260101080000||ADT^A04^ADT_A01|HZ01-42|P|2.5\rPID|1"
ENHANCED = ORIGINAL.replace("|P|2.5", "|P|2.5|||AL|NE")


def _segments(ack: bytes) -> dict[str, list[str]]:
    return {line[:3]: line.split("|") for line in ack.decode().split("\r") if line}


def test_accept_in_original_mode_echoes_the_control_id_and_swaps_the_parties() -> None:
    ack = _segments(
        acknowledgement(parse(ORIGINAL), Outcome.ACCEPTED, now=datetime(2026, 1, 1, tzinfo=UTC))
    )
    assert ack["MSA"][1:3] == ["AA", "HZ01-42"]
    assert ack["MSH"][2:6] == ["HEALTHSTREAM", "HS", "HIS", "HZ01"]
    assert ack["MSH"][8] == "ACK^A04^ACK"
    assert ack["MSH"][11] == "2.5"
    assert "ERR" not in ack


def test_enhanced_mode_gets_commit_acknowledgements() -> None:
    message = parse(ENHANCED)
    assert _segments(acknowledgement(message, Outcome.ACCEPTED))["MSA"][1] == "CA"
    assert (
        _segments(acknowledgement(message, Outcome.ERROR, Problem("not_stored", "message", "x")))[
            "MSA"
        ][1]
        == "CE"
    )
    assert (
        _segments(
            acknowledgement(message, Outcome.REJECTED, Problem("hl7.invalid_date", "PID-7", "x"))
        )["MSA"][1]
        == "CR"
    )


def test_an_error_says_where_and_what_in_err() -> None:
    problem = Problem("hl7.invalid_date", "PID-7", "date/time out of range (month, day)")
    ack = _segments(acknowledgement(parse(ORIGINAL), Outcome.ERROR, problem))
    assert ack["MSA"][1] == "AE"
    assert ack["MSA"][3] == "date/time out of range (month, day)"
    assert ack["ERR"][1] == "PID^1^7^102&date/time out of range (month, day)"
    assert ack["ERR"][2] == "PID^1^7"
    assert ack["ERR"][3].startswith("102^Data type error^HL70357")
    assert ack["ERR"][4] == "E"


def test_bytes_without_a_readable_msh_still_get_an_answer() -> None:
    ack = _segments(
        acknowledgement(
            None,
            Outcome.REJECTED,
            Problem("hl7.msh_missing", "segment 1", "message does not start with MSH"),
        )
    )
    assert ack["MSA"][1:3] == ["AR", ""]
    assert ack["ERR"][3].startswith("100^Segment sequence error")


def test_separators_in_the_text_are_escaped() -> None:
    ack = acknowledgement(parse(ORIGINAL), Outcome.ERROR, Problem("x", "PID-3", "a|b^c"))
    assert b"a\\F\\b\\S\\c" in ack
