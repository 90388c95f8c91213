"""The FHIR R4 view of the read model: golden records as Patient, results as Observation,
diagnoses as Condition, pages of them as searchset Bundles, errors as OperationOutcome. Pure:
dicts in, FHIR JSON (dicts) out.

Masking is the caller's: `patient` shows the golden record it is given, so a caller whose role
may not see the full ID number or phone passes them masked (`operations.visible_golden`) and
says so with `identifiers_visible="masked"`, which labels the resource MASKED. Researchers
(de-identified data only) get no Patient.
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, Literal
from urllib.parse import quote

from hs_terminology.vocab import (
    CODE_OF_INTERPRETATION,
    FHIR_STATUS_OF_RESULT,
    RESIDENT_ID_SYSTEM,
)

Resource = dict[str, Any]
Visibility = Literal["full", "masked"]
Severity = Literal["fatal", "error", "warning", "information"]

RECORD_KEY_SYSTEM = "https://healthstream.dev/fhir/sid/record-key"
INSTITUTION_SYSTEM = "https://healthstream.dev/fhir/sid/institution"
ORIGINAL_RESULT_EXTENSION = "https://healthstream.dev/fhir/StructureDefinition/original-result"
# The extension hs-synth writes and hs-ingestion reads on Patient.address.
DIVISION_CODE_EXTENSION = "urn:hs:ext:division-code"
NAME_REPRESENTATION_EXTENSION = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
VERIFICATION_STATUS = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
SECURITY_LABEL = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
EVERYTHING = "$everything"

FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")

# The golden record's M/F; also hs.identity.AdministrativeSex (a source record's sex).
GENDER = {
    "M": "male", "F": "female",
    "MALE": "male", "FEMALE": "female", "UNSPECIFIED": "other", "UNKNOWN": "unknown",
}  # fmt: skip
CATEGORY = {
    "LABORATORY": ("laboratory", "Laboratory"),
    "VITAL_SIGNS": ("vital-signs", "Vital Signs"),
}
ISSUE_TYPES = frozenset({
    "invalid", "structure", "required", "value", "invariant", "security", "login", "unknown",
    "expired", "forbidden", "suppressed", "processing", "not-supported", "duplicate",
    "multiple-matches", "not-found", "deleted", "too-long", "code-invalid", "extension",
    "too-costly", "business-rule", "conflict", "transient", "lock-error", "no-store",
    "exception", "timeout", "incomplete", "throttled", "informational",
})  # fmt: skip
ISSUE_TYPE_BY_STATUS = {
    400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 409: "conflict",
    410: "deleted", 413: "too-long", 422: "processing", 429: "throttled", 503: "transient",
}  # fmt: skip


def fhir_id(value: str) -> str:
    """`value` when it is a valid FHIR resource id, else ValueError."""
    if not FHIR_ID.fullmatch(value):
        raise ValueError(f"not a FHIR id: {value!r}")
    return value


def source_id_of(institution: str, local_id: str) -> str:
    """The FHIR id of a source's result or diagnosis: the same for the same one, different
    across institutions (source ids repeat between them and may hold characters FHIR ids
    cannot)."""
    key = f"{len(institution)}:{institution}{local_id}".encode()
    return hashlib.sha256(key).hexdigest()[:32]


def _source_identifier(institution: str, kind: str, local_id: str) -> list[Resource]:
    """The id the source gave it, under a system naming the source."""
    system = f"urn:hs:local:{quote(institution, safe='')}:{kind}"
    return [{"system": system, "value": local_id}]


def patient(
    person: Mapping[str, Any], record_keys: list[str], identifiers_visible: Visibility
) -> Resource:
    """A golden record (hs.identity.Person, decoded) as a Patient, showing the values it holds:
    mask the ID number and phone before when the caller may not see them."""
    golden: Mapping[str, Any] = person["golden"] or {}
    resource: Resource = {"resourceType": "Patient", "id": fhir_id(person["person_id"])}
    if identifiers_visible == "masked":
        label = {"system": SECURITY_LABEL, "code": "MASKED", "display": "masked"}
        resource["meta"] = {"security": [label]}
    identifiers = _identifiers(golden, record_keys)
    if identifiers:
        resource["identifier"] = identifiers
    resource["active"] = person["status"] != "MERGED"
    names = _names(golden)
    if names:
        resource["name"] = names
    if golden.get("phone"):
        resource["telecom"] = [{"system": "phone", "value": golden["phone"]}]
    resource["gender"] = GENDER.get(golden.get("sex") or "", "unknown")
    birth = _date_text(golden.get("birth_date"))
    if birth:
        resource["birthDate"] = birth
    address = _address(golden)
    if address:
        resource["address"] = [address]
    if person["status"] == "MERGED" and person.get("merged_into"):
        survivor = f"Patient/{fhir_id(person['merged_into'])}"
        resource["link"] = [{"other": {"reference": survivor}, "type": "replaced-by"}]
    return resource


def _identifiers(golden: Mapping[str, Any], record_keys: list[str]) -> list[Resource]:
    """The resident ID number, then the pseudonyms of the linked source records."""
    identifiers: list[Resource] = []
    if golden.get("id_number"):
        identifiers.append(
            {"use": "official", "system": RESIDENT_ID_SYSTEM, "value": golden["id_number"]}
        )
    for key in record_keys:
        if key:
            identifiers.append({"use": "secondary", "system": RECORD_KEY_SYSTEM, "value": key})
    return identifiers


def _names(golden: Mapping[str, Any]) -> list[Resource]:
    """The Han name, then its pinyin, each marked ideographic or alphabetic."""
    names = []
    for family, given, representation, separator in (
        (golden.get("family_han"), golden.get("given_han"), "IDE", ""),
        (golden.get("family"), golden.get("given"), "ABC", " "),
    ):
        if not family and not given:
            continue
        name: Resource = {
            "extension": [{"url": NAME_REPRESENTATION_EXTENSION, "valueCode": representation}],
            "use": "official",
            "text": separator.join(part for part in (family, given) if part),
        }
        if family:
            name["family"] = family
        if given:
            name["given"] = [given]
        names.append(name)
    return names


def _address(golden: Mapping[str, Any]) -> Resource | None:
    address: Resource = {}
    if golden.get("district"):
        address["extension"] = [{"url": DIVISION_CODE_EXTENSION, "valueCode": golden["district"]}]
    if golden.get("address"):
        address["text"] = golden["address"]
    return address or None


def _date_text(value: date | str | None) -> str | None:
    return value.isoformat() if isinstance(value, date) else value or None


def observation(obs: Mapping[str, Any], patient_id: str) -> Resource:
    """A result (hs.clinical.Observation, decoded) as an Observation of the Patient
    `patient_id` (the person the EMPI linked its subject to): the value in its UCUM unit, the
    value as sent in an extension. The sender's patient id (MRN) is not shown."""
    result: Mapping[str, Any] = obs["result"]
    institution: str = obs["envelope"]["source"]["institution"]
    resource: Resource = {
        "resourceType": "Observation",
        "id": source_id_of(institution, obs["observation_id"]),
    }
    original = _original(result)
    if original:
        resource["extension"] = [original]
    resource["identifier"] = _source_identifier(institution, "observation", obs["observation_id"])
    resource["status"] = FHIR_STATUS_OF_RESULT.get(obs["status"], "unknown")
    if obs["category"] in CATEGORY:
        code, display = CATEGORY[obs["category"]]
        resource["category"] = [
            {"coding": [{"system": OBSERVATION_CATEGORY, "code": code, "display": display}]}
        ]
    resource["code"] = _code(result)
    resource["subject"] = {"reference": f"Patient/{fhir_id(patient_id)}"}
    resource["effectiveDateTime"] = _instant(obs["effective_at"])
    if obs.get("issued_at") is not None:
        resource["issued"] = _instant(obs["issued_at"])
    resource["performer"] = [
        {
            "type": "Organization",
            "identifier": {"system": INSTITUTION_SYSTEM, "value": institution},
            "display": institution,
        }
    ]
    resource.update(_value(result))
    interpretation = _interpretation(result)
    if interpretation:
        resource["interpretation"] = [interpretation]
    reference_range = _reference_range(result)
    if reference_range:
        resource["referenceRange"] = [reference_range]
    return resource


def condition(diagnosis: Mapping[str, Any], patient_id: str) -> Resource:
    """A diagnosis (hs.clinical.Condition, decoded) as an encounter-diagnosis Condition of the
    Patient `patient_id`: ICD-10, ICD-11 and the source's own code, with the text as sent. The
    clinical status is not known from a diagnosis, so it is left out."""
    institution: str = diagnosis["envelope"]["source"]["institution"]
    coded: Mapping[str, Any] = diagnosis["diagnosis"]
    codings = [coded[k] for k in ("icd10", "icd11", "local_code") if coded.get(k)]
    concept: Resource = {"coding": [_coding(c) for c in codings]} if codings else {}
    if coded.get("text"):
        concept["text"] = coded["text"]
    status = diagnosis["verification_status"].lower().replace("_", "-")
    resource: Resource = {
        "resourceType": "Condition",
        "id": source_id_of(institution, diagnosis["condition_id"]),
        "identifier": _source_identifier(institution, "condition", diagnosis["condition_id"]),
        "verificationStatus": {"coding": [{"system": VERIFICATION_STATUS, "code": status}]},
        "category": [{"coding": [{"system": CONDITION_CATEGORY, "code": "encounter-diagnosis"}]}],
        "subject": {"reference": f"Patient/{fhir_id(patient_id)}"},
    }
    if concept:
        resource["code"] = concept
    if diagnosis.get("onset_at") is not None:
        resource["onsetDateTime"] = _instant(diagnosis["onset_at"])
    if diagnosis.get("recorded_at") is not None:
        resource["recordedDate"] = _instant(diagnosis["recorded_at"])
    return resource


def _instant(moment: datetime) -> str:
    if moment.tzinfo is None:  # a naive time would be read in the reader's own zone
        raise ValueError("a time without a time zone")
    return moment.isoformat()


def _coding(coding: Mapping[str, Any]) -> Resource:
    out: Resource = {"system": coding["system"]}
    if coding.get("version"):
        out["version"] = coding["version"]
    out["code"] = coding["code"]
    if coding.get("display"):
        out["display"] = coding["display"]
    return out


def _code(result: Mapping[str, Any]) -> Resource:
    """The mapped code (LOINC) first, then the code as sent."""
    codings = [c for c in (result.get("code"), result["local_code"]) if c]
    concept: Resource = {"coding": [_coding(c) for c in codings]}
    text = next((c["display"] for c in codings if c.get("display")), None)
    if text:
        concept["text"] = text
    return concept


def _quantity(value: float | None, unit: str | None, ucum: bool = True) -> Resource | None:
    if value is None or not math.isfinite(value):
        return None
    quantity: Resource = {"value": value}
    if unit:
        quantity["unit"] = unit
        if ucum:
            quantity |= {"system": UCUM, "code": unit}
    return quantity


def _value(result: Mapping[str, Any]) -> Resource:
    """value[x]: the quantity in its UCUM unit; else the coded or text answer; else (a unit
    that could not be converted) the value as sent, as text."""
    quantity = _quantity(result.get("value_quantity"), result.get("unit"))
    if quantity:
        return {"valueQuantity": quantity}
    if result.get("value_coding"):
        return {"valueCodeableConcept": {"coding": [_coding(result["value_coding"])]}}
    if result.get("value_text"):
        return {"valueString": result["value_text"]}
    sent = " ".join(p for p in (result.get("original_value"), result.get("original_unit")) if p)
    return {"valueString": sent} if sent else {}


def _interpretation(result: Mapping[str, Any]) -> Resource | None:
    found = CODE_OF_INTERPRETATION.get(result.get("interpretation") or "NONE")
    if found:
        return {"coding": [{"system": INTERPRETATION, "code": found[0], "display": found[1]}]}
    if result.get("interpretation") == "OTHER" and result.get("original_flag"):
        return {"text": result["original_flag"]}
    return None


def _reference_range(result: Mapping[str, Any]) -> Resource | None:
    limits = result.get("reference_range")
    if not limits:
        return None
    # Limits are converted with the value; a value left unconverted (unknown or incompatible
    # unit) leaves them in the unit as sent.
    ucum = bool(result.get("unit"))
    unit = result["unit"] if ucum else result.get("original_unit")
    out: Resource = {}
    for end in ("low", "high"):
        quantity = _quantity(limits.get(end), unit, ucum)
        if quantity:
            out[end] = quantity
    text = limits.get("text")
    if text and result.get("unit_status") == "CONVERTED" and result.get("original_unit"):
        text = f"{text} {result['original_unit']}"  # the text is as sent: in the sent unit
    if text:
        out["text"] = text
    return out or None


def _original(result: Mapping[str, Any]) -> Resource | None:
    """The value, unit and abnormal flag exactly as the source sent them."""
    fields = (("value", "original_value"), ("unit", "original_unit"), ("flag", "original_flag"))
    parts = [{"url": url, "valueString": result[f]} for url, f in fields if result.get(f)]
    return {"url": ORIGINAL_RESULT_EXTENSION, "extension": parts} if parts else None


MATCH_GRADE = "http://hl7.org/fhir/StructureDefinition/match-grade"
OPERATION = "http://hl7.org/fhir/OperationDefinition/"
# What the FHIR view serves, each resource's interactions, search parameters (name, type[,
# documentation]) and operations; INCLUDES its _include values. The CapabilityStatement is made
# of these, and the tests try every entry of it.
SERVED: dict[str, tuple[tuple[str, ...], tuple[tuple[str, ...], ...], tuple[str, ...]]] = {
    "Patient": (
        ("read", "search-type"),
        (("identifier", "token"), ("name", "string"), ("birthdate", "date"),
         ("gender", "token", "with name or birthdate: gender alone finds no one")),
        ("match", "everything"),
    ),
    "Observation": (
        ("search-type",),
        (("patient", "reference"), ("subject", "reference", "Patient/<id>: the same as patient"),
         ("patient.identifier", "token"), ("code", "token"),
         ("date", "date", "_sort=date (oldest first, the default) or _sort=-date"),
         ("category", "token")),
        (),
    ),
    "Condition": (
        ("search-type",),
        (("patient", "reference"), ("subject", "reference", "Patient/<id>: the same as patient"),
         ("patient.identifier", "token"), ("code", "token"),
         ("recorded-date", "date", "_sort=recorded-date (the default) or _sort=-recorded-date")),
        (),
    ),
    "MeasureReport": (
        ("search-type",),
        (("reporter", "reference", "Organization/<institution>: a source's data quality, one "
          "report per day (hs-quality)"), ("period", "date")),
        (),
    ),
}  # fmt: skip
INCLUDES = {"Observation": ("Observation:patient",)}
# Result parameters every search takes besides its search parameters (_cursor: our paging).
RESULT_PARAMETERS = frozenset(("_count", "_cursor", "_sort", "_include"))


def unsupported_parameters(kind: str, names: Iterable[str]) -> list[str]:
    """The query parameters of a `kind` search that this view does not support."""
    known = {name for name, *_ in SERVED[kind][1]} | RESULT_PARAMETERS
    return sorted({name for name in names if name not in known})


def capability_statement(base_url: str, version: str, released: str) -> Resource:
    """The server's CapabilityStatement: exactly the resources, interactions, search
    parameters and operations SERVED."""
    resources = []
    for kind, (interactions, params, operations) in SERVED.items():
        entry: Resource = {
            "type": kind,
            "interaction": [{"code": code} for code in interactions],
            "searchParam": [
                {"name": name, "type": kind_} | ({"documentation": note[0]} if note else {})
                for name, kind_, *note in params
            ],
        }
        if kind in INCLUDES:
            entry["searchInclude"] = list(INCLUDES[kind])
        if operations:
            entry["operation"] = [
                {"name": name, "definition": f"{OPERATION}{kind}-{name}"} for name in operations
            ]
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": released,
        "kind": "instance",
        "software": {"name": "HealthStream edge", "version": version},
        "implementation": {"description": "HealthStream's FHIR R4 view", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json"],
        "rest": [{
            "mode": "server",
            "security": {
                "service": [{"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                    "code": "SMART-on-FHIR",
                }]}],
                "description": "OAuth2 bearer tokens with SMART scopes (patient/, user/, system/)",
            },
            "resource": resources,
        }],
    }  # fmt: skip


def bundle(
    kind: str,
    entries: list[Resource],
    base_url: str,
    links: Mapping[str, str],
    total: int | None = None,
    scores: Sequence[tuple[float, str]] = (),
    outcome: Resource | None = None,
) -> Resource:
    """A searchset Bundle of `entries`. `kind` is the resource type searched for: its resources
    are matches, any other (e.g. the Patient of `_include`) an include. For `EVERYTHING`
    (Patient/$everything) every resource of the patient's compartment is a match. `links`
    maps relations (self, next, ...) to URLs; `total`, when known, counts all matches;
    `scores`, per entry, its search score and match grade (certain, probable, possible,
    certainly-not) as MDM servers give them; `outcome`, an OperationOutcome about the search
    (e.g. the parameters it ignored), as the last entry."""
    base = base_url.rstrip("/")
    out: Resource = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        out["total"] = total
    if links:  # FHIR JSON has no empty arrays
        out["link"] = [{"relation": relation, "url": url} for relation, url in links.items()]
    if entries:
        out["entry"] = [
            {
                "fullUrl": f"{base}/{resource['resourceType']}/{fhir_id(resource['id'])}",
                "resource": resource,
                "search": {"mode": _mode(kind, resource)},
            }
            for resource in entries
        ]
        for entry, (score, grade) in zip(out["entry"], scores, strict=False):
            entry["search"] |= {
                "score": round(score, 4),
                "extension": [{"url": MATCH_GRADE, "valueCode": grade}],
            }
    if outcome is not None:
        out.setdefault("entry", []).append({
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",  # an OperationOutcome has no id of its own
            "resource": outcome,
            "search": {"mode": "outcome"},
        })  # fmt: skip
    return out


def _mode(kind: str, resource: Resource) -> str:
    return "match" if kind in (EVERYTHING, resource["resourceType"]) else "include"


def operation_outcome(code: str, diagnostics: str, severity: Severity = "error") -> Resource:
    """An OperationOutcome with one issue; `code` is a FHIR issue type (see `issue_type`)."""
    if code not in ISSUE_TYPES:
        raise ValueError(f"not a FHIR issue type: {code!r}")
    issue: Resource = {"severity": severity, "code": code}
    if diagnostics:
        issue["diagnostics"] = diagnostics
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def issue_type(status: int) -> str:
    """The FHIR issue type for an HTTP error status."""
    return ISSUE_TYPE_BY_STATUS.get(status, "exception")
