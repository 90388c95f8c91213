"""What every format's mapping produces: canonical events with their keys and positions, the
items that could not be mapped, and the observation result shared by the HL7, clinic and
FHIR mappings. Pure."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from hs_common.errors import RejectedInput
from hs_ingestion.terms import Term
from hs_ingestion.units import normalize
from hs_ingestion.values import Value, reference_range
from hs_terminology.vocab import INTERPRETATION_OF_CODE

HAN = re.compile(r"[\u3400-\u9fff]")
ICD10 = "http://hl7.org/fhir/sid/icd-10"


@dataclass(frozen=True)
class Event:
    schema: str
    record: dict[str, Any]
    patient: str  # local patient id (or device id) the key is made from
    item: str | None = None  # its position in the message (OBX 3, /entry/2), for replays
    # The institution whose patient number `patient` is, when not the sender's own (a
    # wearable bound to a hospital's patient): the key is made from it.
    institution: str | None = None


@dataclass(frozen=True)
class ItemFailure:
    """One item of a message that could not become an event: kept as its own dead letter."""

    item: str  # position: 'OBX 3', 'PID-7', '/entry/2/resource', '/readings/5'
    reason_code: str
    reason: str  # what was wrong, never the value


@dataclass
class Mapped:
    events: list[Event] = field(default_factory=list)
    failures: list[ItemFailure] = field(default_factory=list)

    def add(self, other: Mapped) -> None:
        self.events += other.events
        self.failures += other.failures


T = TypeVar("T")


def each_item(items: Iterable[tuple[str, T]], map_item: Callable[[str, T], list[Event]]) -> Mapped:
    """Map every item on its own: one that cannot be mapped is a failure, the rest events."""
    mapped = Mapped()
    for position, item in items:
        try:
            events = map_item(position, item)
        except (RejectedInput, ValueError) as error:
            mapped.failures.append(
                ItemFailure(position, getattr(error, "reason_code", "item.invalid"), str(error))
            )
            continue
        mapped.events += [
            event if event.item else replace(event, item=position) for event in events
        ]
    return mapped


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    return {"system": system, "code": code, "display": display or None, "version": None}


def observation_result(
    term: Term,
    local_code: dict[str, Any],
    value: Value,
    unit_as_sent: str | None,
    range_text: str | None,
    flag: str | None,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """hs.clinical.ObservationResult: the value in the code's UCUM unit where it can be
    converted, the range converted alike, the flag from the sender or computed."""
    unit_as_sent = unit_as_sent.strip() if unit_as_sent and unit_as_sent.strip() else None
    result: dict[str, Any] = {
        "code": term.code, "local_code": local_code, "code_origin": term.origin,
        "comparator": value.comparator, "value_upper": None,
        "value_quantity": None, "unit": None, "value_coding": value.coding,
        "value_text": value.free_text, "original_value": value.text, "original_unit": unit_as_sent,
        "unit_status": "NO_UNIT", "reference_range": None, "interpretation": "NONE",
        "interpretation_origin": "NONE", "original_flag": flag or None,
        "other_values": list(value.others), "notes": notes or [],
    }  # fmt: skip
    converted = None
    if value.number is not None:
        converted = normalize(
            value.number, unit_as_sent, term.unit, term.molar_mass, term.code_value
        )
        result.update(
            value_quantity=converted.value, unit=converted.unit, unit_status=converted.status
        )
        if value.upper is not None and converted.value is not None:
            upper = converted.convert(value.upper) if converted.convert else value.upper
            result["value_upper"] = round(upper, 6)
    if range_text and range_text.strip() and range_text.strip() != '""':
        result["reference_range"] = _reference_range(range_text, converted)
    if flag:
        result.update(
            interpretation=INTERPRETATION_OF_CODE.get(flag, "OTHER"), interpretation_origin="SENDER"
        )
    elif converted is not None and converted.value is not None and value.comparator is None:
        limits = result["reference_range"]
        if limits and (limits["low"] is not None or limits["high"] is not None):
            result.update(
                interpretation=_computed(converted.value, limits["low"], limits["high"]),
                interpretation_origin="COMPUTED",
            )
    return result


def _reference_range(text: str, converted: Any) -> dict[str, Any]:
    """The range as sent; its limits read and converted like the value when they can be."""
    limits = reference_range(text)
    low, high = limits if limits else (None, None)
    if converted is None or converted.value is None:
        low = high = None
    elif converted.convert is not None:
        low = None if low is None else round(converted.convert(low), 6)
        high = None if high is None else round(converted.convert(high), 6)
    return {"low": low, "high": high, "text": text}


def _computed(value: float, low: float | None, high: float | None) -> str:
    if low is not None and value < low:
        return "LOW"
    if high is not None and value > high:
        return "HIGH"
    return "NORMAL"


def script_of(name: str) -> str:
    """hs.identity.NameScript of a name as written."""
    return "HAN" if HAN.search(name) else "LATIN"


def source_zone(time_zone: str) -> tzinfo:
    """An IANA zone name (Asia/Shanghai, Europe/Berlin: daylight saving applied) or a fixed
    offset written +08:00."""
    if time_zone[:1] in "+-" and ":" in time_zone:
        hours, minutes = time_zone[1:].split(":")
        offset = timedelta(hours=int(hours), minutes=int(minutes))
        return timezone(offset if time_zone[0] == "+" else -offset)
    return ZoneInfo(time_zone)


def to_utc(moment: datetime, zone: tzinfo) -> datetime:
    """An aware UTC time; a time sent without an offset is the source's local time."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)
