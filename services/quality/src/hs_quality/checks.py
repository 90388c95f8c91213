"""The checks of the rules file run on one decoded canonical event. Pure.

Each check is applicable to a record or not (a range check of glucose says nothing about a
sodium result); an applicable check passes or fails with a reason. A reason names the field
and what is wrong with it, never a value: the result keeps nothing the event would seal."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from typing import Any

from hs_empi.standardize import resident_id
from hs_quality.rules import Check, Dimension, Kahn, Severity
from hs_terminology import loinc, ucum

Record = Mapping[str, Any]
# not applicable (None), passed (""), or failed with a reason
Outcome = str | None
PASSED = ""


@dataclass(frozen=True)
class Failure:
    check_id: str
    kahn: Kahn
    dimension: Dimension
    severity: Severity
    field: str
    reason: str


@dataclass(frozen=True)
class Scored:
    """A record's checks: those that applied, and those of them that failed."""

    applied: tuple[str, ...]
    failures: tuple[Failure, ...]

    @property
    def score(self) -> float:
        """The share of the applicable checks passed (1.0 when none applied)."""
        if not self.applied:
            return 1.0
        return 1.0 - len(self.failures) / len(self.applied)


def path(record: Record, dotted: str) -> Any:
    """The value at a dotted path (None where any step is missing)."""
    value: Any = record
    for step in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(step)
    return value


def _blank(value: Any) -> bool:
    return (
        value is None
        or (isinstance(value, str | list | tuple) and not value)
        or (isinstance(value, str) and not value.strip())
    )


def _is_required(check: Check, record: Record) -> Outcome:
    missing = [f for f in check.field.split("+") if _blank(path(record, f))]
    return f"missing: {', '.join(missing)}" if missing else PASSED


def _value_pattern(check: Check, record: Record) -> Outcome:
    value = path(record, check.field)
    values = [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)]
    if not values:
        return None
    pattern = _pattern(check.parameters["pattern"])
    wrong = sum(1 for v in values if not pattern.search(v.strip()))
    return f"{check.field}: {wrong} of {len(values)} not in the expected form" if wrong else PASSED


_PATTERNS: dict[str, re.Pattern[str]] = {}


def _pattern(text: str) -> re.Pattern[str]:
    if text not in _PATTERNS:
        _PATTERNS[text] = re.compile(text)
    return _PATTERNS[text]


def _resident_id_valid(check: Check, record: Record) -> Outcome:
    numbers = [i["value"] for i in path(record, "person.identifiers") or []
               if i.get("type") == "RESIDENT_ID"]  # fmt: skip
    if not numbers:
        return None
    for number in numbers:
        read = resident_id(number)
        if read is None:
            return "person.identifiers: a resident ID is not 18 characters of digits (and X)"
        if not read.valid:
            return "person.identifiers: a resident ID's check digit or birth date is wrong"
    return PASSED


def _code_mapped(check: Check, record: Record) -> Outcome:
    return "result.code: the local code is not mapped" if path(record, "result.code") is None \
        else PASSED  # fmt: skip


def _unit_conforms(check: Check, record: Record) -> Outcome:
    result = record.get("result") or {}
    if result.get("unit_status") == "INCOMPATIBLE":
        return "result.unit: the unit sent does not fit the analyte"
    code, unit = result.get("code"), result.get("unit")
    if not code or not unit or code.get("system") != "http://loinc.org":
        return None
    known = loinc.lookup(code["code"])
    if known is None or not known.ucum or not ucum.is_valid(unit):
        return None
    try:  # the same kind of quantity, or mass and moles of this analyte (mg/dL, mmol/L)
        ucum.convert(1.0, known.ucum, unit, known.molar_mass)
    except ucum.UcumError:
        return "result.unit: the unit does not fit the analyte's property"
    return PASSED


def _plausible_value(check: Check, record: Record) -> Outcome:
    result = record.get("result") or {}
    value = result.get("value_quantity")
    if value is None or result.get("unit") != check.parameters["unit"]:
        return None
    low, high = float(check.parameters["low"]), float(check.parameters["high"])
    if value < low:
        return "result.value_quantity: below the plausible range for the analyte"
    if value > high:
        return "result.value_quantity: above the plausible range for the analyte"
    return PASSED


LOW_FLAGS = frozenset(("LOW", "CRITICAL_LOW", "BELOW_SCALE"))
HIGH_FLAGS = frozenset(("HIGH", "CRITICAL_HIGH", "ABOVE_SCALE"))


def _flag_agrees(check: Check, record: Record) -> Outcome:
    result = record.get("result") or {}
    flag, value = result.get("interpretation"), result.get("value_quantity")
    reference = result.get("reference_range") or {}
    low, high = reference.get("low"), reference.get("high")
    if (
        result.get("interpretation_origin") != "SENDER"
        or value is None
        or (low is None and high is None)
        or flag not in LOW_FLAGS | HIGH_FLAGS | {"NORMAL"}
    ):
        return None
    comparator = result.get("comparator") or ""  # "<4.0" against 4.0-6.0 is low
    below = low is not None and (value < low or (comparator.startswith("<") and value <= low))
    above = high is not None and (value > high or (comparator.startswith(">") and value >= high))
    expected = "low" if below else "high" if above else "normal"
    sent = "low" if flag in LOW_FLAGS else "high" if flag in HIGH_FLAGS else "normal"
    if sent == expected:
        return PASSED
    return f"result.interpretation: flagged {sent} where the value against its range is {expected}"


def _minutes(check: Check, name: str) -> timedelta:
    return timedelta(minutes=float(check.parameters[name]))


def _not_in_future(check: Check, record: Record) -> Outcome:
    moment, received = path(record, check.field), path(record, "envelope.received_at")
    if not isinstance(moment, datetime) or not isinstance(received, datetime):
        return None
    late = moment - received > _minutes(check, "skew_minutes")
    return f"{check.field}: after the record was received" if late else PASSED


def _time_order(check: Check, record: Record) -> Outcome:
    first, then = path(record, check.field), path(record, check.parameters["before"])
    if not isinstance(first, datetime) or not isinstance(then, datetime):
        return None
    return f"{check.field}: after {check.parameters['before']}" if first > then else PASSED


def _timely(check: Check, record: Record) -> Outcome:
    since, received = path(record, check.parameters["from"]), path(record, "envelope.received_at")
    if not isinstance(since, datetime) or not isinstance(received, datetime):
        return None
    late = received - since > _minutes(check, "within_minutes")
    limit = check.parameters["within_minutes"]
    return f"envelope.received_at: more than {limit} minutes after {check.parameters['from']}" \
        if late else PASSED  # fmt: skip


@dataclass(frozen=True)
class Demographics:
    """What one institution's record of a person says, as the EMPI compared it."""

    institution: str
    birth_date: str | None  # ISO date
    sex: str | None


@dataclass(frozen=True)
class Context:
    """What the service remembers that one record alone does not say."""

    same_as: str | None = None  # the event id of an earlier identical result of the patient
    linked: tuple[Demographics, ...] = ()  # the person's records at other institutions
    born: date | None = None  # the patient's birth date, as registered
    sex: str | None = None  # MALE, FEMALE, ... as registered


def fingerprint(record: Record) -> str:
    """What makes two results the same result: code as sent, time, value and unit, status."""
    result = record.get("result") or {}
    local = result.get("local_code") or {}
    moment = record.get("effective_at")
    parts = (
        local.get("system"), local.get("code"), moment.isoformat() if moment else None,
        result.get("original_value"), result.get("original_unit"), record.get("status"),
    )  # fmt: skip
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:24]


def demographics(link: Record) -> Demographics:
    matched = link.get("record") or {}
    born = matched.get("birth_date")
    return Demographics(matched.get("institution") or "", born.isoformat() if born else None,
                        matched.get("sex"))  # fmt: skip


def _unique(check: Check, record: Record, context: Context) -> Outcome:
    if context.same_as is None:
        return PASSED
    return "result: the same code, time, value and status as an earlier event of the patient"


def _consistent(check: Check, record: Record, context: Context) -> Outcome:
    mine = demographics(record)
    others = [d for d in context.linked if d.institution != mine.institution]
    if not others:
        return None
    wanted = {f.rsplit(".", 1)[-1] for f in check.field.split("+")}
    differ = [name for name in ("birth_date", "sex") if name in wanted and getattr(mine, name)
              and any(getattr(d, name) and getattr(d, name) != getattr(mine, name)
                      for d in others)]  # fmt: skip
    if differ:
        return f"record: {', '.join(differ)} differ from the person's record at another institution"
    return PASSED


def _after_birth(check: Check, record: Record, context: Context) -> Outcome:
    moment = path(record, check.field)
    if context.born is None or not isinstance(moment, datetime):
        return None
    return f"{check.field}: before the patient's birth date" if moment.date() < context.born \
        else PASSED  # fmt: skip


def _sex_specific(check: Check, record: Record, context: Context) -> Outcome:
    if context.sex not in ("MALE", "FEMALE"):
        return None
    wanted = check.parameters["sex"]
    return f"result.code: an analyte for {wanted.lower()} patients" if context.sex != wanted \
        else PASSED  # fmt: skip


REMEMBERING: Mapping[str, Callable[[Check, Record, Context], Outcome]] = {
    "unique": _unique,
    "crossSourceConsistent": _consistent,
    "afterBirth": _after_birth,
    "sexSpecific": _sex_specific,
}
RUN: Mapping[str, Callable[[Check, Record], Outcome]] = {
    "isRequired": _is_required,
    "valuePattern": _value_pattern,
    "residentIdValid": _resident_id_valid,
    "codeMapped": _code_mapped,
    "unitConforms": _unit_conforms,
    "plausibleValue": _plausible_value,
    "flagAgrees": _flag_agrees,
    "notInFuture": _not_in_future,
    "timeOrder": _time_order,
    "timely": _timely,
}


def _coded(record: Record) -> str | None:
    code = path(record, "result.code")
    return f"{code['system']}|{code['code']}" if isinstance(code, Mapping) else None


@cache
def _codes(text: str | None) -> frozenset[str]:
    """`a|b,c|d`: a check's codes (system|code), separated by commas."""
    return frozenset(c.strip() for c in (text or "").split(",") if c.strip())


class Checker:
    """The checks of a rules file, by the event type and the code they apply to (a record
    meets only its own code's checks: a thousand range checks cost a record the few on its
    analyte)."""

    def __init__(self, checks: Sequence[Check]) -> None:
        self.checks = tuple(checks)
        self._by_schema: dict[str, list[Check]] = {}
        self._by_code: dict[tuple[str, str], list[Check]] = {}
        for check in checks:
            if check.code is None:
                self._by_schema.setdefault(check.schema, []).append(check)
            else:
                self._by_schema.setdefault(check.schema, [])
                self._by_code.setdefault((check.schema, check.code), []).append(check)

    def schemas(self) -> frozenset[str]:
        return frozenset(self._by_schema)

    def score(self, schema: str, record: Record, context: Context | None = None) -> Scored:
        """The record's checks; those that need `context` apply only when it is given."""
        applied: list[str] = []
        failures: list[Failure] = []
        coded = _coded(record) if schema == "hs.clinical.Observation" else None
        own = self._by_code.get((schema, coded), ()) if coded is not None else ()
        for check in (*self._by_schema.get(schema, ()), *own):
            wanted = check.parameters.get("category")
            if wanted is not None and record.get("category") != wanted:
                continue
            if coded is not None and coded in _codes(check.parameters.get("except_codes")):
                continue
            remembering = REMEMBERING.get(check.check_type)
            if remembering is None:
                outcome = RUN[check.check_type](check, record)
            else:
                outcome = None if context is None else remembering(check, record, context)
            if outcome is None:
                continue
            applied.append(check.check_id)
            if outcome:
                failures.append(Failure(check.check_id, check.kahn, check.dimension,
                                        check.severity, check.field, outcome))  # fmt: skip
        return Scored(tuple(applied), tuple(failures))
