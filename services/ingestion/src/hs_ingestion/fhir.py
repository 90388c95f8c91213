"""FHIR R4 resources and Bundles, as servers send them, to canonical events. Pure.

Patient, Observation (values of every type, components, panels with `hasMember`),
DiagnosticReport (its results and contained Observations belong to the report, which is no
event itself), Condition, Encounter and Immunization; other resource types (Practitioner,
Organization, MessageHeader, ...) are kept with the raw message and not mapped.

Every Bundle entry stands alone (`canonical.each_item`): one that cannot be mapped is an
ItemFailure naming its position (`/entry/2/resource`) and the rest become events; in a
`batch` the entries the intake check refused are reported so. A `transaction` is atomic:
one entry that cannot be mapped sends the whole message to the dead letters.

References are resolved inside the Bundle through `fullUrl` (`urn:uuid:...`, absolute URLs)
and `Type/id`; a subject given as a logical reference by identifier is that identifier's
value. Codes go through `terms.resolve`: a code nobody maps is kept as an UNMAPPED result.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

from hs_common.envelope import derived_envelope
from hs_common.errors import RejectedInput
from hs_ingestion import values
from hs_ingestion.canonical import (
    ICD10,
    Event,
    ItemFailure,
    Mapped,
    coding,
    each_item,
    observation_result,
    script_of,
    to_utc,
)
from hs_ingestion.hl7map import IDENTIFIER_TYPES, PERSON_ID_TYPES
from hs_ingestion.payloads import Entry, check_fhir, entries, type_and_id
from hs_ingestion.sources import Source
from hs_ingestion.terms import Term, resolve
from hs_terminology.vocab import RESIDENT_ID_SYSTEMS, RESULT_STATUS_OF_FHIR

ICD11 = "http://id.who.int/icd/release/11/mms"
CVX = "http://hl7.org/fhir/sid/cvx"
UCUM = "http://unitsofmeasure.org"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
V2_0136 = "http://terminology.hl7.org/CodeSystem/v2-0136"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CATEGORIES = {"vital-signs": "VITAL_SIGNS", "laboratory": "LABORATORY"}
MAPPED = frozenset(
    {"Patient", "Observation", "DiagnosticReport", "Condition", "Encounter", "Immunization"}
)
ENCOUNTER_CLASSES = {
    "IMP": "INPATIENT", "ACUTE": "INPATIENT", "NONAC": "INPATIENT",
    "AMB": "OUTPATIENT", "EMER": "EMERGENCY",
}  # fmt: skip
ENCOUNTER_STATUS = {
    "planned": "PLANNED", "arrived": "IN_PROGRESS", "triaged": "IN_PROGRESS",
    "in-progress": "IN_PROGRESS", "onleave": "IN_PROGRESS", "finished": "FINISHED",
    "cancelled": "CANCELLED",
}  # fmt: skip
VERIFICATION = {
    "confirmed": "CONFIRMED", "provisional": "PROVISIONAL", "differential": "DIFFERENTIAL",
    "refuted": "REFUTED", "entered-in-error": "ENTERED_IN_ERROR", "unconfirmed": "UNCONFIRMED",
}  # fmt: skip
IMMUNIZATION_STATUS = {
    "completed": "COMPLETED", "not-done": "NOT_DONE", "entered-in-error": "ENTERED_IN_ERROR",
}  # fmt: skip
SEX = {"male": "MALE", "female": "FEMALE", "other": "UNSPECIFIED", "unknown": "UNKNOWN"}
NOT_CURRENT_USE = frozenset({"old", "maiden", "temp"})
NAME_ORDER = {"official": 0, "usual": 1}


# ---------------------------------------------------------------- Bundle structure, shared


def logical_id(item: Entry, event_id: str) -> str:
    """The id a resource is known by: as sent, else the uuid of its `urn:uuid:` fullUrl (or
    the id in its RESTful fullUrl or PUT url), else one derived from the message's event id
    and the position (the same whenever the message is read again)."""
    resource = item.resource or {}
    sent = resource.get("id")
    if isinstance(sent, str) and sent:
        return sent
    full_url = item.entry.get("fullUrl")
    if isinstance(full_url, str):
        if full_url.startswith("urn:uuid:"):
            return full_url.removeprefix("urn:uuid:")
        named = type_and_id(full_url)
        if named is not None:
            return named[1]
    request = item.entry.get("request")
    url = request.get("url") if isinstance(request, dict) else None
    if item.method == "PUT" and isinstance(url, str) and "?" not in url:
        named = type_and_id(url)
        if named is not None:
            return named[1]
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"urn:hs:event:{event_id}{item.pointer}"))


# ---------------------------------------------------------------- normalization


@dataclass
class _Parent:
    ref: dict[str, Any]  # hs.clinical.PanelRef
    effective: Any  # the panel's or report's effective[x], for members without their own


@dataclass
class _Context:
    envelope: dict[str, Any]
    source: Source
    by_reference: dict[str, Entry] = field(default_factory=dict)
    ids: dict[int, str] = field(default_factory=dict)  # id(resource) -> logical id
    parents: dict[int, _Parent] = field(default_factory=dict)  # id(member) -> its panel
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def id_of(self, item: Entry) -> str:
        key = id(item.resource)
        if key not in self.ids:
            self.ids[key] = logical_id(item, str(self.envelope["event_id"]))
        return self.ids[key]

    def resolve(self, reference: Any) -> Entry | None:
        if not isinstance(reference, str):
            return None
        found = self.by_reference.get(reference)
        if found is None and not reference.startswith("urn:"):
            named = type_and_id(reference)
            found = self.by_reference.get(f"{named[0]}/{named[1]}") if named else None
        return found


def normalize_fhir(payload: bytes, envelope: dict[str, Any], source: Source) -> Mapped:
    """The events of a FHIR body, and a failure for each entry that could not be mapped."""
    document = json.loads(payload)
    if not isinstance(document, dict):
        raise RejectedInput("a FHIR body must be a JSON object", "fhir.invalid")
    received = envelope.get("received_at")
    context = _Context(
        envelope, source, now=received if isinstance(received, datetime) else datetime.now(UTC)
    )
    items = entries(document)
    bundle_type = document.get("type") if document.get("resourceType") == "Bundle" else None
    refused: dict[str, str] = {}
    if bundle_type == "batch":  # the entries the intake refused are in the body too
        for check in check_fhir(payload).entries:
            if check.problems:
                refused[check.entry.pointer] = "; ".join(
                    f"{p.field}: {p.problem}" for p in check.problems[:10]
                )
    _index(items, context)
    mapped = Mapped()
    good = []
    for item in items:
        if item.pointer in refused:
            mapped.failures.append(ItemFailure(item.pointer, "fhir.invalid", refused[item.pointer]))
        elif item.resource is not None:
            good.append((item.pointer, item))
    mapped.add(each_item(good, lambda _, item: _events(item, context)))
    if bundle_type == "transaction" and mapped.failures:
        first = mapped.failures[0]
        raise RejectedInput(
            f"transaction is atomic; {first.item}: {first.reason}"
            + (f" (and {len(mapped.failures) - 1} more)" if len(mapped.failures) > 1 else ""),
            first.reason_code,
        )
    return mapped


def message_patient(document: Any, source: Source, event_id: str = "") -> str | None:
    """The local patient id a body is about (its first Patient, else the first subject), for
    the raw message's key: the same as its events' keys."""
    if not isinstance(document, dict):
        return None
    envelope = {"event_id": event_id, "source": {"institution": source.code}}
    context = _Context(envelope, source)
    items = [i for i in entries(document) if i.resource is not None]
    _index(items, context)
    for item in items:
        if item.kind == "Patient" and item.resource is not None:
            return _local_patient_id(item, context)
    for item in items:
        resource = item.resource or {}
        for element in ("subject", "patient"):
            if isinstance(resource.get(element), dict):
                try:
                    return _patient_of(resource, element, item.pointer, context)
                except RejectedInput:
                    return None
    return None


def _index(items: list[Entry], context: _Context) -> None:
    """References by fullUrl and Type/id; the panel or report each Observation belongs to."""
    for item in items:
        if item.resource is None or item.kind is None:
            continue
        full_url = item.entry.get("fullUrl")
        if isinstance(full_url, str):
            context.by_reference[full_url] = item
        context.by_reference[f"{item.kind}/{context.id_of(item)}"] = item
    for item in items:  # reports first: a panel's own members belong to the panel
        resource = item.resource
        if resource is not None and item.kind == "DiagnosticReport":
            ref = {"observation_id": context.id_of(item), "code": _term(resource, context).code}
            for result in resource.get("result") or []:
                member = context.resolve(
                    result.get("reference") if isinstance(result, dict) else None
                )
                if member is not None and member.resource is not None:
                    context.parents[id(member.resource)] = _Parent(ref, _effective_of(resource))
    for item in items:
        resource = item.resource
        if resource is not None and item.kind == "Observation" and resource.get("hasMember"):
            ref = {"observation_id": context.id_of(item), "code": _term(resource, context).code}
            for link in resource["hasMember"]:
                member = context.resolve(link.get("reference") if isinstance(link, dict) else None)
                if member is not None and member.resource is not None:
                    context.parents[id(member.resource)] = _Parent(ref, _effective_of(resource))


def _events(item: Entry, context: _Context) -> list[Event]:
    resource = item.resource or {}
    mappers: dict[str, Callable[[Entry, _Context], list[Event]]] = {
        "Patient": _patient,
        "Observation": _observation_entry,
        "DiagnosticReport": _report,
        "Condition": _condition,
        "Encounter": _encounter,
        "Immunization": _immunization,
    }
    mapper = mappers.get(str(resource.get("resourceType")))
    return mapper(item, context) if mapper else []


# ---------------------------------------------------------------- elements


def _instant(value: Any, where: str, context: _Context) -> datetime | None:
    """A FHIR date, dateTime or instant as UTC; a partial date is its first moment, a time
    without offset the source's local time."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise RejectedInput(f"{where}: not a FHIR dateTime", "fhir.invalid")
    text = value.strip()
    try:
        if re.fullmatch(r"\d{4}", text):
            parsed = datetime(int(text), 1, 1)
        elif re.fullmatch(r"\d{4}-\d{2}", text):
            parsed = datetime(int(text[:4]), int(text[5:]), 1)
        elif re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            parsed = datetime.combine(date.fromisoformat(text), time())
        else:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise RejectedInput(f"{where}: not a FHIR dateTime", "fhir.invalid") from None
    return to_utc(parsed, context.source.zone)


def _effective_of(resource: dict[str, Any]) -> Any:
    period = resource.get("effectivePeriod")
    return (
        resource.get("effectiveDateTime")
        or resource.get("effectiveInstant")
        or (period.get("start") or period.get("end") if isinstance(period, dict) else None)
    )


def _ended(element: dict[str, Any], context: _Context) -> bool:
    period = element.get("period")
    end = period.get("end") if isinstance(period, dict) else None
    try:
        ended = _instant(end, "period/end", context)
    except RejectedInput:
        return False
    return ended is not None and ended <= context.now


def _current(element: Any, context: _Context) -> bool:
    return (
        isinstance(element, dict)
        and element.get("use") not in NOT_CURRENT_USE
        and not _ended(element, context)
    )


def _codings(concept: Any) -> list[dict[str, Any]]:
    listed = concept.get("coding") if isinstance(concept, dict) else None
    return [c for c in listed or [] if isinstance(c, dict) and isinstance(c.get("code"), str)]


def _coding_of(concept: Any, fallback_system: str) -> dict[str, Any] | None:
    """hs.common.Coding of a CodeableConcept's first coding, or of its text alone."""
    codings = _codings(concept)
    if codings:
        first = codings[0]
        return coding(
            str(first.get("system") or fallback_system), first["code"], first.get("display")
        )
    text = concept.get("text") if isinstance(concept, dict) else None
    return coding(fallback_system, "", text) if isinstance(text, str) and text else None


def _local(source: Source, table: str) -> str:
    return f"urn:hs:local:{source.code}:{table}"


def _term(resource: dict[str, Any], context: _Context) -> Term:
    codings = _codings(resource.get("code"))
    return resolve(
        context.source.codes,
        [(c["code"], str(c.get("system") or ""), c.get("display")) for c in codings],
    )


def _patient_of(resource: dict[str, Any], element: str, pointer: str, context: _Context) -> str:
    """The local patient id of the Patient `element` (subject, patient) refers to."""
    where = f"{pointer}/{element}"
    target = resource.get(element)
    if not isinstance(target, dict):
        raise RejectedInput(f"{where}: a reference to the Patient is required", "fhir.invalid")
    reference = target.get("reference")
    if isinstance(reference, str) and reference:
        found = context.resolve(reference)
        if found is not None and found.kind == "Patient":
            return _local_patient_id(found, context)
        if found is not None or reference.startswith(("urn:", "#")):
            kind = found.kind if found is not None else None
            problem = (
                f"refers to a {kind}, not a Patient" if kind else "refers to no entry of the Bundle"
            )
            raise RejectedInput(f"{where}/reference: {problem}", "fhir.invalid")
        named = type_and_id(reference)
        if named is None or named[0] != "Patient":
            raise RejectedInput(f"{where}/reference: must reference a Patient", "fhir.invalid")
        return named[1]
    identifier = target.get("identifier")
    if isinstance(identifier, dict) and isinstance(identifier.get("value"), str):
        return str(identifier["value"])
    raise RejectedInput(
        f"{where}: needs a reference or an identifier of the Patient", "fhir.invalid"
    )


def _encounter_of(resource: dict[str, Any], context: _Context) -> str | None:
    target = resource.get("encounter")
    reference = target.get("reference") if isinstance(target, dict) else None
    found = context.resolve(reference)
    if found is not None and found.kind == "Encounter":
        return context.id_of(found)
    named = type_and_id(reference) if isinstance(reference, str) else None
    if named is not None and named[0] == "Encounter":
        return named[1]
    identifier = target.get("identifier") if isinstance(target, dict) else None
    if isinstance(identifier, dict) and isinstance(identifier.get("value"), str):
        return str(identifier["value"])
    return None


def _subject(
    resource: dict[str, Any], element: str, pointer: str, context: _Context
) -> dict[str, Any]:
    return {
        "local_patient_id": _patient_of(resource, element, pointer, context),
        "encounter_id": _encounter_of(resource, context),
    }


# ---------------------------------------------------------------- Patient


def _own_systems(source: Source) -> set[str]:
    systems = {f"urn:hs:{source.code}:patient", _local(source, "patient")}
    declared = source.mapping.get("patient_identifier_system")
    return systems | ({str(declared)} if declared else set())


def _identifier_type(identifier: dict[str, Any], source: Source) -> tuple[str, str | None]:
    """(hs.identity.IdentifierType, the v2-0203 code it was typed with)."""
    if identifier.get("system") in RESIDENT_ID_SYSTEMS:
        return "RESIDENT_ID", None
    for typed in _codings(identifier.get("type")):
        if typed.get("system") in (V2_0203, None):
            return IDENTIFIER_TYPES.get(typed["code"], "OTHER"), typed["code"]
    if identifier.get("system") in _own_systems(source):
        return "MEDICAL_RECORD", None
    return "OTHER", None


def _local_patient_id(item: Entry, context: _Context) -> str:
    """The source's own system, else an identifier typed MR/PI/PT, else an untyped identifier
    of no national system, else the Patient's logical id."""
    resource = item.resource or {}
    listed = [
        i
        for i in resource.get("identifier") or []
        if isinstance(i, dict) and isinstance(i.get("value"), str) and i["value"]
        and i.get("use") != "old"
    ]  # fmt: skip
    own = _own_systems(context.source)
    for identifier in listed:
        if identifier.get("system") in own:
            return str(identifier["value"])
    for identifier in listed:
        kind, code = _identifier_type(identifier, context.source)
        if kind == "MEDICAL_RECORD" and code not in PERSON_ID_TYPES:
            return str(identifier["value"])
    for identifier in listed:
        if identifier.get("system") not in RESIDENT_ID_SYSTEMS and not _codings(
            identifier.get("type")
        ):
            return str(identifier["value"])
    return context.id_of(item)


def _patient(item: Entry, context: _Context) -> list[Event]:
    resource = item.resource or {}
    source = context.source
    local_id = _local_patient_id(item, context)
    identifiers = []
    for identifier in resource.get("identifier") or []:
        if not isinstance(identifier, dict) or not identifier.get("value"):
            continue
        kind, _ = _identifier_type(identifier, source)
        assigner = identifier.get("assigner")
        named = assigner.get("display") if isinstance(assigner, dict) else None
        identifiers.append(
            {
                "type": kind,
                "value": str(identifier["value"]),
                "assigner": "CHN"
                if kind == "RESIDENT_ID"
                else source.code
                if kind == "MEDICAL_RECORD"
                else named or identifier.get("system"),
            }
        )
    names = sorted(
        (n for n in resource.get("name") or [] if _current(n, context)),
        key=lambda n: NAME_ORDER.get(str(n.get("use")), 2),
    )
    people = []
    for name in names:
        given = " ".join(g for g in name.get("given") or [] if isinstance(g, str)) or None
        text = name.get("text") or None
        family = name.get("family") or None
        if family or given or text:
            people.append(
                {
                    "script": script_of(f"{text or ''}{family or ''}{given or ''}"),
                    "family": family,
                    "given": given,
                    "text": text,
                }
            )
    phones = [
        t
        for t in resource.get("telecom") or []
        if isinstance(t, dict) and t.get("system") in ("phone", "sms") and t.get("value")
        and _current(t, context)
    ]  # fmt: skip
    phones.sort(key=lambda t: t["rank"] if isinstance(t.get("rank"), int) else 1 << 30)
    birth = resource.get("birthDate")
    addresses = [a for a in resource.get("address") or [] if _current(a, context)]
    addresses.sort(key=lambda a: 0 if a.get("use") == "home" else 1)
    address = addresses[0] if addresses else None
    division = None
    if address:
        division = next(
            (
                e.get("valueCode")
                for e in address.get("extension") or []
                if isinstance(e, dict) and e.get("url") == "urn:hs:ext:division-code"
            ),
            None,
        )
    record = {
        "envelope": derived_envelope(context.envelope),
        "kind": "REGISTER",
        "person": {
            "local_patient_id": local_id,
            "identifiers": identifiers,
            "names": people,
            "birth_date": date.fromisoformat(birth)
            if isinstance(birth, str) and len(birth) == 10
            else None,
            "phones": [str(t["value"]) for t in phones],
            "address": {
                "text": address.get("text") or _address_text(address),
                "division_code": division,
                "postal_code": address.get("postalCode"),
            }
            if address
            else None,
        },
        "prior": None,
        "sex": SEX.get(str(resource.get("gender")), "UNKNOWN"),
        "residence_district": division,
    }
    return [Event("hs.identity.PatientIdentity", record, local_id)]


def _address_text(address: dict[str, Any]) -> str | None:
    parts = [address.get(p) for p in ("state", "city", "district")]
    parts += list(address.get("line") or [])
    text = "".join(p for i, p in enumerate(parts) if isinstance(p, str) and p not in parts[:i])
    return text or None


# ---------------------------------------------------------------- Observation


def _observation_entry(item: Entry, context: _Context) -> list[Event]:
    resource = item.resource or {}
    parent = context.parents.get(id(resource))
    return _observations(resource, item.pointer, context.id_of(item), parent, context)


def _observations(
    resource: dict[str, Any],
    pointer: str,
    observation_id: str,
    parent: _Parent | None,
    context: _Context,
    subject: dict[str, Any] | None = None,
) -> list[Event]:
    """An Observation (a panel too, with or without a value of its own), and one
    observation per component, part of it."""
    subject = subject or _subject(resource, "subject", pointer, context)
    effective = _instant(
        _effective_of(resource) or (parent.effective if parent else None),
        f"{pointer}/effective[x]",
        context,
    )
    issued = _instant(resource.get("issued"), f"{pointer}/issued", context)
    effective = effective or issued or context.envelope["occurred_at"]
    term = _term(resource, context)
    category = next(
        (
            CATEGORIES.get(c["code"], "OTHER")
            for concept in resource.get("category") or []
            for c in _codings(concept)
            if c.get("system") == OBSERVATION_CATEGORY
        ),
        None,
    )
    notes = [n["text"] for n in resource.get("note") or [] if isinstance(n, dict) and n.get("text")]
    base = {
        "envelope": derived_envelope(context.envelope, effective),
        "subject": subject,
        "status": RESULT_STATUS_OF_FHIR.get(str(resource.get("status")), "UNKNOWN"),
        "effective_at": effective,
        "issued_at": issued,
    }
    events = []
    components = [c for c in resource.get("component") or [] if isinstance(c, dict)]
    # A panel without a value of its own still arrives: its grouping is data.
    record = base | {
        "observation_id": observation_id,
        "category": category or _category(term),
        "part_of": parent.ref if parent else None,
        "result": _result(resource, pointer, term, notes, context),
    }
    events.append(Event("hs.clinical.Observation", record, subject["local_patient_id"]))
    panel = {"observation_id": observation_id, "code": term.code}
    seen: set[str] = set()
    for index, component in enumerate(components):
        where = f"{pointer}/component/{index}"
        part = _term(component, context)
        code = next((c["code"] for c in _codings(component.get("code"))), "")
        part_id = (
            f"{observation_id}-{code}" if code and code not in seen else f"{observation_id}-{index}"
        )
        seen.add(code)
        record = base | {
            "observation_id": part_id,
            "category": category or _category(part),
            "part_of": panel,
            "result": _result(component, where, part, notes, context),
        }
        events.append(Event("hs.clinical.Observation", record, subject["local_patient_id"]))
    return events


def _category(term: Term) -> str:
    if term.vital_sign:
        return "VITAL_SIGNS"
    return "LABORATORY" if term.code is not None else "OTHER"


def _result(
    element: dict[str, Any], pointer: str, term: Term, notes: list[str], context: _Context
) -> dict[str, Any]:
    """hs.clinical.ObservationResult of an Observation or one of its components."""
    local = _coding_of(element.get("code"), _local(context.source, "obs"))
    if local is None:
        raise RejectedInput(f"{pointer}/code: neither a coding nor a text", "fhir.invalid")
    value, unit = _value(element, pointer, context)
    absent = element.get("dataAbsentReason")
    if isinstance(absent, dict):
        reason = _coding_of(absent, "http://terminology.hl7.org/CodeSystem/data-absent-reason")
        if reason is not None:
            notes = [*notes, f"data absent: {reason['display'] or reason['code']}"]
    flag = next(
        (c["code"] for concept in element.get("interpretation") or [] for c in _codings(concept)),
        None,
    )
    return observation_result(term, local, value, unit, _range_text(element), flag, notes)


def _number_text(number: Any) -> str:
    return str(number) if isinstance(number, int) else repr(number)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _unit(quantity: dict[str, Any]) -> str | None:
    code, unit = quantity.get("code"), quantity.get("unit")
    if isinstance(code, str) and code and quantity.get("system") in (None, UCUM):
        return code
    return unit if isinstance(unit, str) and unit else None


def _value(
    element: dict[str, Any], pointer: str, context: _Context
) -> tuple[values.Value, str | None]:
    """The value[x] as a Value, and its unit as sent."""
    if "valueQuantity" in element:
        quantity = _dict(element["valueQuantity"])
        sent = quantity.get("value")
        number = _number(sent)
        if sent is None:
            return values.Value(""), _unit(quantity)
        if number is None:
            raise RejectedInput(f"{pointer}/valueQuantity/value: not a number", "fhir.invalid")
        comparator = quantity.get("comparator") or None
        return values.Value(_number_text(sent), number, comparator), _unit(quantity)
    integer = _number(element.get("valueInteger"))
    if integer is not None:
        return values.Value(_number_text(element["valueInteger"]), integer), None
    if "valueCodeableConcept" in element:
        concept = _dict(element["valueCodeableConcept"])
        answer = _coding_of(concept, _local(context.source, "answers"))
        label = concept.get("text") if isinstance(concept.get("text"), str) else None
        shown = label or (answer["display"] or answer["code"] if answer else "")
        return values.Value(shown, coding=answer, free_text=label), None
    if "valueString" in element:
        return values.textual(str(element["valueString"])), None
    if "valueBoolean" in element:
        yes = element["valueBoolean"] is True
        answer = coding(V2_0136, "Y" if yes else "N", "Yes" if yes else "No")
        return values.Value("true" if yes else "false", coding=answer), None
    if "valueRange" in element:
        limits = _dict(element["valueRange"])
        low, high = _dict(limits.get("low")), _dict(limits.get("high"))
        bottom, top = _number(low.get("value")), _number(high.get("value"))
        unit = _unit(low) or _unit(high)
        if bottom is not None:
            text = _number_text(low["value"]) + (
                f"-{_number_text(high['value'])}" if top is not None else ""
            )
            return values.Value(text, bottom, None if top is not None else ">=", top), unit
        if top is not None:
            return values.Value(f"<={_number_text(high['value'])}", top, "<="), unit
        return values.Value(""), unit
    if "valueRatio" in element:
        ratio = _dict(element["valueRatio"])
        numerator, denominator = _dict(ratio.get("numerator")), _dict(ratio.get("denominator"))
        over, under = _number(numerator.get("value")), _number(denominator.get("value"))
        if over is None:
            raise RejectedInput(f"{pointer}/valueRatio/numerator: no number", "fhir.invalid")
        text = _number_text(numerator["value"]) + (
            f":{_number_text(denominator['value'])}" if under is not None else ""
        )
        return values.Value(text, over, numerator.get("comparator"), under), _unit(numerator)
    for key in ("valueDateTime", "valueTime"):
        if isinstance(element.get(key), str):
            return values.Value(element[key], free_text=element[key]), None
    if isinstance(element.get("valuePeriod"), dict):
        period = element["valuePeriod"]
        text = f"{period.get('start') or ''}/{period.get('end') or ''}"
        return values.Value(text, free_text=text), None
    if isinstance(element.get("valueSampledData"), dict):
        data = str(element["valueSampledData"].get("data") or "")
        return values.Value(data, free_text=data or None), None
    return values.Value(""), None


def _range_text(element: dict[str, Any]) -> str | None:
    for limits in element.get("referenceRange") or []:
        if not isinstance(limits, dict):
            continue
        if isinstance(limits.get("text"), str) and limits["text"].strip():
            return str(limits["text"])
        low = _dict(limits.get("low")).get("value")
        high = _dict(limits.get("high")).get("value")
        if _number(low) is not None and _number(high) is not None:
            return f"{_number_text(low)}-{_number_text(high)}"
        if _number(low) is not None:
            return f">={_number_text(low)}"
        if _number(high) is not None:
            return f"<={_number_text(high)}"
    return None


# ---------------------------------------------------------------- DiagnosticReport


def _report(item: Entry, context: _Context) -> list[Event]:
    """No event of itself: its contained Observations, part of the report (the results it
    refers to in the Bundle are mapped as their own entries, with the report as panel)."""
    resource = item.resource or {}
    contained = {
        f"#{c.get('id')}": c
        for c in resource.get("contained") or []
        if isinstance(c, dict) and c.get("resourceType") == "Observation"
    }
    if not contained:
        return []
    report_id = context.id_of(item)
    parent = _Parent(
        {"observation_id": report_id, "code": _term(resource, context).code},
        _effective_of(resource),
    )
    events = []
    for index, observation in enumerate(resource.get("contained") or []):
        if observation not in contained.values():
            continue
        subject = None
        if not isinstance(observation.get("subject"), dict):
            subject = _subject(resource, "subject", item.pointer, context)
        events += _observations(
            observation,
            f"{item.pointer}/contained/{index}",
            f"{report_id}-{observation.get('id') or index}",
            parent,
            context,
            subject,
        )
    return events


# ---------------------------------------------------------------- Condition, Encounter


def _condition(item: Entry, context: _Context) -> list[Event]:
    resource = item.resource or {}
    pointer = item.pointer
    concept = _dict(resource.get("code"))
    codings = _codings(concept)
    icd10 = next((c for c in codings if c.get("system") == ICD10), None)
    icd11 = next((c for c in codings if c.get("system") == ICD11), None)
    other = next((c for c in codings if c not in (icd10, icd11)), None)
    status = next((c["code"] for c in _codings(resource.get("verificationStatus"))), "unconfirmed")
    recorded = _instant(resource.get("recordedDate"), f"{pointer}/recordedDate", context)
    onset = resource.get("onsetDateTime") or _dict(resource.get("onsetPeriod")).get("start")
    subject = _subject(resource, "subject", pointer, context)
    record = {
        "envelope": derived_envelope(context.envelope, recorded),
        "subject": subject,
        "condition_id": context.id_of(item),
        "diagnosis": {
            "icd10": coding(ICD10, icd10["code"], icd10.get("display")) if icd10 else None,
            "icd11": coding(ICD11, icd11["code"], icd11.get("display")) if icd11 else None,
            "local_code": coding(
                str(other.get("system") or _local(context.source, "diagnosis")),
                other["code"],
                other.get("display"),
            )
            if other
            else None,
            "text": concept.get("text") or None,
        },
        "verification_status": VERIFICATION.get(str(status), "UNCONFIRMED"),
        "onset_at": _instant(onset, f"{pointer}/onset[x]", context),
        "recorded_at": recorded,
    }
    return [Event("hs.clinical.Condition", record, subject["local_patient_id"])]


def _encounter(item: Entry, context: _Context) -> list[Event]:
    resource = item.resource or {}
    pointer = item.pointer
    period = _dict(resource.get("period"))
    kind = _dict(resource.get("class"))
    patient = _patient_of(resource, "subject", pointer, context)
    service = resource.get("serviceType")
    record = {
        "envelope": derived_envelope(context.envelope),
        "subject": {"local_patient_id": patient, "encounter_id": context.id_of(item)},
        "encounter_class": ENCOUNTER_CLASSES.get(str(kind.get("code")), "OTHER"),
        "status": ENCOUNTER_STATUS.get(str(resource.get("status")), "UNKNOWN"),
        "started_at": _instant(period.get("start"), f"{pointer}/period/start", context),
        "ended_at": _instant(period.get("end"), f"{pointer}/period/end", context),
        "department": next((c["code"] for c in _codings(service)), None),
    }
    return [Event("hs.clinical.Encounter", record, patient)]


# ---------------------------------------------------------------- Immunization


def _immunization(item: Entry, context: _Context) -> list[Event]:
    resource = item.resource or {}
    pointer = item.pointer
    codings = _codings(resource.get("vaccineCode"))
    chosen = next((c for c in codings if c.get("system") == CVX), codings[0] if codings else None)
    if chosen is None:
        raise RejectedInput(f"{pointer}/vaccineCode: no coding", "fhir.invalid")
    vaccine = coding(
        str(chosen.get("system") or _local(context.source, "vaccine")),
        chosen["code"],
        chosen.get("display") or (resource.get("vaccineCode") or {}).get("text"),
    )
    occurred = (
        _instant(resource.get("occurrenceDateTime"), f"{pointer}/occurrenceDateTime", context)
        or _instant(resource.get("recorded"), f"{pointer}/recorded", context)
        or context.envelope["occurred_at"]
    )
    subject = _subject(resource, "patient", pointer, context)
    dose = next(
        (
            str(p.get("doseNumberPositiveInt") or p.get("doseNumberString"))
            for p in resource.get("protocolApplied") or []
            if isinstance(p, dict) and (p.get("doseNumberPositiveInt") or p.get("doseNumberString"))
        ),
        None,
    )
    lot = resource.get("lotNumber")
    record = {
        "envelope": derived_envelope(context.envelope, occurred),
        "subject": subject,
        "immunization_id": context.id_of(item),
        "status": IMMUNIZATION_STATUS.get(str(resource.get("status")), "UNKNOWN"),
        "vaccine": vaccine,
        "occurred_at": occurred,
        "lot_number": lot if isinstance(lot, str) and lot else None,
        "dose_number": dose,
        "site": _coding_of(resource.get("site"), _local(context.source, "site")),
        "route": _coding_of(resource.get("route"), _local(context.source, "route")),
    }
    return [Event("hs.clinical.Immunization", record, subject["local_patient_id"])]
