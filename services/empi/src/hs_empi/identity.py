"""What the matcher reads from an hs.identity.PatientIdentity event. Pure."""

from __future__ import annotations

from typing import Any

from hs_empi.standardize import IdentityFields

SEX = {"MALE": "M", "FEMALE": "F"}


def identity_fields(event: dict[str, Any]) -> IdentityFields:
    """The event's person as matching fields: the Han name when there is one (pinyin is
    derived from it), else the romanised one; the resident ID; phones; address."""
    person = event["person"]
    names = person["names"]
    han = next((n for n in names if n["script"] == "HAN"), None)
    name = han or (names[0] if names else None)
    numbers = {i["type"]: i["value"] for i in person["identifiers"]}
    address = person["address"] or {}
    return IdentityFields(
        institution=event["envelope"]["source"]["institution"],
        local_id=person["local_patient_id"],
        family=name["family"] if name else None,
        given=name["given"] if name else None,
        name_text=name["text"] if name else None,
        resident_id=numbers.get("RESIDENT_ID"),
        other_id=None if "RESIDENT_ID" in numbers else numbers.get("PASSPORT"),
        birth_date=person["birth_date"],
        sex=SEX.get(event["sex"]),
        phones=tuple(person["phones"]),
        address=address.get("text"),
        district=address.get("division_code") or event.get("residence_district"),
    )
