"""EMPI decisions as hs.identity.PersonLink records, and back. Pure."""

from __future__ import annotations

from typing import Any

from hs_empi.index import Decision
from hs_empi.standardize import Name, Standard

EMPI = "empi"
SOURCE = "source"
MERGED, UNLINKED = "MERGED", "UNLINKED"


def match_record(record: Standard) -> dict[str, Any]:
    institution, _, local_id = record.record_id.partition(":")
    name = record.name
    return {
        "institution": institution,
        "local_patient_id": local_id,
        "family_han": name.family_han if name else None,
        "given_han": name.given_han if name else None,
        "family": name.family if name else None,
        "given": name.given if name else None,
        "id_number": record.id_number,
        "id_valid": record.id_valid,
        "birth_date": record.birth_date,
        "sex": record.sex,
        "phones": list(record.phones),
        "address": record.address,
        "district": record.district,
        "city": record.city,
        "flags": list(record.flags),
    }


def standard_of(match: dict[str, Any]) -> Standard:
    has_name = match["family"] is not None or match["given"] is not None
    name = (
        Name(match["family_han"], match["given_han"], match["family"] or "", match["given"] or "")
        if has_name
        else None
    )
    return Standard(
        record_id=f"{match['institution']}:{match['local_patient_id']}",
        institution=match["institution"],
        name=name,
        id_number=match["id_number"],
        id_valid=match["id_valid"],
        birth_date=match["birth_date"],
        sex=match["sex"],
        phones=tuple(match["phones"]),
        address=match["address"],
        district=match["district"],
        city=match["city"],
        flags=tuple(match["flags"]),
    )


def link_record(
    envelope: dict[str, Any],
    decision: Decision,
    record: Standard,
    record_key: str,
    key_of: dict[str, str],
) -> dict[str, Any]:
    """A matcher's decision as a PersonLink; `key_of` gives record keys by record id."""
    return {
        "envelope": envelope,
        "action": decision.action,
        "record_key": record_key,
        "person_id": decision.person_id,
        "merged_person_ids": list(decision.merged_persons),
        "review_person_id": decision.review_person,
        "matched_record_key": key_of.get(decision.matched_record or ""),
        "probability": decision.probability,
        "weight": decision.weight,
        "evidence": [
            {"comparison": e.comparison, "level": e.level, "weight": e.weight}
            for e in decision.evidence
        ],
        "flags": list(decision.flags),
        "decided_by": EMPI,
        "reason": None,
        "record": match_record(record),
    }


def decided_record(
    envelope: dict[str, Any],
    action: str,
    record: Standard,
    record_key: str,
    person: str,
    merged: tuple[str, ...],
    decided_by: str,
    reason: str | None = None,
    separated_from: str | None = None,
) -> dict[str, Any]:
    """A source's merge (ADT^A40, MERGED) or a reviewer's LINK (MERGED) or UNLINK (UNLINKED,
    with the person the record was separated from): `record` now belongs to `person`."""
    return {
        "envelope": envelope,
        "action": action,
        "record_key": record_key,
        "person_id": person,
        "merged_person_ids": list(merged),
        "review_person_id": separated_from,
        "matched_record_key": None,
        "probability": 1.0,
        "weight": 0.0,
        "evidence": [],
        "flags": [],
        "decided_by": decided_by,
        "reason": reason,
        "record": match_record(record),
    }
