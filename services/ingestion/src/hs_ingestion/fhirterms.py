"""FHIR R4 required terminology bindings and invariants of the resources ingestion accepts.

`fhir.resources` checks the element structure but not codes: `Observation.status = "done"`
passes it. A required binding means no other code is conformant (FHIR R4 4.0.1, Terminologies
§4.1.5), so a resource with one is refused with the element's path. Value sets below are the
R4 ones, by element. Pure.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Problem = tuple[str, str]  # (JSON pointer, what is wrong: never the value)

NAME_USE = ("usual", "official", "temp", "nickname", "anonymous", "old", "maiden")
CONTACT_SYSTEM = ("phone", "fax", "email", "pager", "url", "sms", "other")
CONTACT_USE = ("home", "work", "temp", "old", "mobile")
ADDRESS_USE = ("home", "work", "temp", "old", "billing")
ADDRESS_TYPE = ("postal", "physical", "both")
IDENTIFIER_USE = ("usual", "official", "temp", "secondary", "old")
GENDER = ("male", "female", "other", "unknown")
ENCOUNTER_STATUS = (
    "planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled",
    "entered-in-error", "unknown",
)  # fmt: skip
OBSERVATION_STATUS = (
    "registered", "preliminary", "final", "amended", "corrected", "cancelled",
    "entered-in-error", "unknown",
)  # fmt: skip
DIAGNOSTIC_REPORT_STATUS = (
    "registered", "partial", "preliminary", "final", "amended", "corrected", "appended",
    "cancelled", "entered-in-error", "unknown",
)  # fmt: skip
COMPARATOR = ("<", "<=", ">=", ">")
BUNDLE_TYPE = (
    "document", "message", "transaction", "transaction-response", "batch", "batch-response",
    "history", "searchset", "collection",
)  # fmt: skip
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"

# (resource type, element path with [] for repeating elements) -> allowed codes
CODES: dict[tuple[str, str], tuple[str, ...]] = {
    ("Bundle", "type"): BUNDLE_TYPE,
    ("Bundle", "entry[].request.method"): ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"),
    ("Bundle", "entry[].search.mode"): ("match", "include", "outcome"),
    ("Patient", "gender"): GENDER,
    ("Patient", "name[].use"): NAME_USE,
    ("Patient", "telecom[].system"): CONTACT_SYSTEM,
    ("Patient", "telecom[].use"): CONTACT_USE,
    ("Patient", "address[].use"): ADDRESS_USE,
    ("Patient", "address[].type"): ADDRESS_TYPE,
    ("Patient", "identifier[].use"): IDENTIFIER_USE,
    ("Patient", "contact[].gender"): GENDER,
    ("Patient", "link[].type"): ("replaced-by", "replaces", "refer", "seealso"),
    ("Observation", "status"): OBSERVATION_STATUS,
    ("Observation", "valueQuantity.comparator"): COMPARATOR,
    ("Observation", "component[].valueQuantity.comparator"): COMPARATOR,
    ("Observation", "identifier[].use"): IDENTIFIER_USE,
    ("Encounter", "status"): ENCOUNTER_STATUS,
    ("Encounter", "statusHistory[].status"): ENCOUNTER_STATUS,
    ("Encounter", "identifier[].use"): IDENTIFIER_USE,
    ("Condition", "identifier[].use"): IDENTIFIER_USE,
    ("Immunization", "status"): ("completed", "entered-in-error", "not-done"),
    ("Immunization", "identifier[].use"): IDENTIFIER_USE,
    ("DiagnosticReport", "status"): DIAGNOSTIC_REPORT_STATUS,
    ("DiagnosticReport", "identifier[].use"): IDENTIFIER_USE,
}

# CodeableConcepts bound to a code system's codes: (resource, element) -> (system, codes)
CONCEPTS: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {
    ("Condition", "clinicalStatus"): (
        CONDITION_CLINICAL,
        ("active", "recurrence", "relapse", "inactive", "remission", "resolved"),
    ),
    ("Condition", "verificationStatus"): (
        CONDITION_VERIFICATION,
        ("unconfirmed", "provisional", "differential", "confirmed", "refuted", "entered-in-error"),
    ),
}


def terminology_problems(pointer: str, resource: dict[str, Any]) -> list[Problem]:
    """Codes outside their required value set, and the invariants below, for one resource."""
    kind = resource.get("resourceType")
    problems: list[Problem] = []
    for (resource_type, path), allowed in CODES.items():
        if resource_type != kind:
            continue
        for where, value in _elements(resource, path.split("."), pointer):
            if value not in allowed:
                problems.append((where, f"code not in the required value set {list(allowed)}"))
    for (resource_type, path), (system, allowed) in CONCEPTS.items():
        if resource_type == kind and path in resource:
            problems += _concept_problems(f"{pointer}/{path}", resource[path], system, allowed)
    return problems + _invariant_problems(pointer, kind, resource)


def _elements(node: Any, steps: list[str], pointer: str) -> Iterator[tuple[str, Any]]:
    if not steps:
        yield pointer, node
        return
    step, rest = steps[0], steps[1:]
    repeating = step.endswith("[]")
    name = step.removesuffix("[]")
    if not isinstance(node, dict) or name not in node:
        return
    child = node[name]
    if repeating and isinstance(child, list):
        for index, item in enumerate(child):
            yield from _elements(item, rest, f"{pointer}/{name}/{index}")
    else:
        yield from _elements(child, rest, f"{pointer}/{name}")


def _concept_problems(
    where: str, concept: Any, system: str, allowed: tuple[str, ...]
) -> list[Problem]:
    codings = concept.get("coding") if isinstance(concept, dict) else None
    ours = [
        (i, c)
        for i, c in enumerate(codings or [])
        if isinstance(c, dict) and c.get("system") == system
    ]
    if not ours:
        return [(f"{where}/coding", f"needs a coding from {system} (required binding)")]
    return [
        (f"{where}/coding/{i}/code", f"code not in the required value set {list(allowed)}")
        for i, coding in ours
        if coding.get("code") not in allowed
    ]


def _invariant_problems(pointer: str, kind: Any, resource: dict[str, Any]) -> list[Problem]:
    has_value = any(key.startswith("value") for key in resource)
    if kind == "Observation" and has_value and "dataAbsentReason" in resource:
        return [
            (
                f"{pointer}/dataAbsentReason",
                "obs-6: dataAbsentReason only when there is no value[x]",
            )
        ]
    if kind == "Condition" and "clinicalStatus" in resource:
        verification = resource.get("verificationStatus")
        codings = verification.get("coding") if isinstance(verification, dict) else None
        codes = [
            c.get("code")
            for c in (codings if isinstance(codings, list) else [])
            if isinstance(c, dict) and c.get("system") == CONDITION_VERIFICATION
        ]
        if "entered-in-error" in codes:
            return [
                (
                    f"{pointer}/clinicalStatus",
                    "con-5: no clinicalStatus when verificationStatus is entered-in-error",
                )
            ]
    return []
