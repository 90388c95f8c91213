"""FHIR R4 Bundles (transaction) from the regional platform: Patient, Encounter,
Observation, Condition, with LOINC codes and UCUM units."""

from __future__ import annotations

import json
from typing import Any

from hs_synth.events import ANALYSED_AFTER, Diagnosis, LabResult
from hs_synth.formats.clinic import iso
from hs_synth.institutions import LOINC
from hs_synth.registrations import Registration

# The identifier systems this synthetic server uses.
RESIDENT_ID_SYSTEM = "urn:oid:2.16.156.10011.1.3"  # WS/T 500: resident ID card number
MRN_SYSTEM = "urn:hs:F01:patient"


def _bundle(bundle_id: str, resources: list[dict[str, Any]]) -> bytes:
    entries = [
        {
            "fullUrl": f"urn:uuid:{resource['id']}",
            "resource": resource,
            "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
        }
        for resource in resources
    ]
    bundle = {"resourceType": "Bundle", "id": bundle_id, "type": "transaction", "entry": entries}
    return json.dumps(bundle, ensure_ascii=False, separators=(",", ":")).encode()


def patient(r: Registration) -> dict[str, Any]:
    identifiers = [{"use": "usual", "system": MRN_SYSTEM, "value": r.local_id}]
    if r.id_number:
        identifiers.append({"use": "official", "system": RESIDENT_ID_SYSTEM, "value": r.id_number})
    names = []
    if r.family is not None:
        names.append(
            {
                "use": "official",
                "text": f"{r.family}{r.given}",
                "family": r.family,
                "given": [r.given],
            }
        )
    if r.family_pinyin is not None:
        family, given = (
            (r.given_pinyin, r.family_pinyin)
            if r.names_swapped
            else (r.family_pinyin, r.given_pinyin)
        )
        names.append(
            {
                "use": "usual",
                "family": (family or "").capitalize(),
                "given": [(given or "").capitalize()],
            }
        )
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": r.local_id,
        "identifier": identifiers,
        "name": names,
        "gender": "male" if r.male else "female",
        "address": [
            {
                "text": r.address.text,
                "district": r.address.district.district,
                "city": r.address.district.city,
                "state": r.address.district.province,
                "postalCode": None,
                "extension": [
                    {"url": "urn:hs:ext:division-code", "valueCode": r.address.district.code}
                ],
            }
        ],
    }
    if r.birth_date:
        resource["birthDate"] = r.birth_date.isoformat()
    if r.phone:
        resource["telecom"] = [{"system": "phone", "value": r.phone, "use": "mobile"}]
    del resource["address"][0]["postalCode"]
    return resource


def registration_bundle(r: Registration) -> bytes:
    return _bundle(f"reg-{r.local_id}", [patient(r)])


def observations_bundle(results: list[LabResult]) -> bytes:
    first = results[0]
    resources = []
    for index, result in enumerate(results):
        code, display, unit = LOINC[result.test]
        resources.append(
            {
                "resourceType": "Observation",
                "id": f"{first.order_id}-{index}",
                "status": "final",
                "category": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                "code": "laboratory",
                            }
                        ]
                    }
                ],
                "code": {
                    "coding": [{"system": "http://loinc.org", "code": code, "display": display}]
                },
                "subject": {"reference": f"Patient/{first.registration.local_id}"},
                "effectiveDateTime": iso(result.at),
                "issued": iso(result.at + ANALYSED_AFTER),
                "valueQuantity": {
                    "value": result.value,
                    "unit": unit,
                    "system": "http://unitsofmeasure.org",
                    "code": unit,
                },
            }
        )
    return _bundle(f"obs-{first.order_id}", resources)


def condition_bundle(d: Diagnosis) -> bytes:
    condition = {
        "resourceType": "Condition",
        "id": d.visit_id,
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "verificationStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": "confirmed",
                }
            ]
        },
        "code": {
            "coding": [
                {"system": "http://hl7.org/fhir/sid/icd-10", "code": d.icd10, "display": d.display}
            ],
            "text": d.display,
        },
        "subject": {"reference": f"Patient/{d.registration.local_id}"},
        "encounter": {"reference": f"Encounter/{d.visit_id}"},
        "recordedDate": iso(d.at),
    }
    encounter = {
        "resourceType": "Encounter",
        "id": d.visit_id,
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": f"Patient/{d.registration.local_id}"},
        "period": {"start": iso(d.at)},
    }
    return _bundle(f"dx-{d.visit_id}", [encounter, condition])
