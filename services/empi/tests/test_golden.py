"""Survivorship of a person's golden record."""

from __future__ import annotations

from datetime import date

from hs_empi.golden import Linked, golden
from hs_empi.standardize import IdentityFields, standardize

VALID_ID = "11010519491231002X"


def linked(institution: str, arrival: int, **fields: object) -> Linked:
    record = standardize(IdentityFields(institution, f"L{arrival}", **fields))  # type: ignore[arg-type]
    return Linked(record, f"key-{institution}-{arrival}", arrival)


def test_a_record_with_a_valid_id_wins_then_trust_then_recency() -> None:
    records = [
        linked(
            "CLINIC",
            3,
            family="王",
            given="晓明",
            phones=("13900000003",),
            birth_date=date(1949, 12, 13),
        ),
        linked("HOSP", 1, family="王", given="小明", resident_id=VALID_ID, phones=("13900000001",)),
        linked(
            "FHIR", 2, family="WANG", given="XIAOMING", phones=("13900000002",), address="新地址"
        ),
    ]
    values, sources, flags = golden(records, trust={})
    assert (values["family_han"], values["given_han"]) == ("王", "小明")
    assert values["id_number"] == VALID_ID
    assert values["birth_date"] == date(1949, 12, 31)  # read from the valid ID
    assert values["phone"] == "+8613900000001"
    assert values["address"] == "新地址"  # only one record has an address
    assert sources["id_number"] == "key-HOSP-1"
    assert "conflicting_birth_dates" in flags

    without_id = [records[0], records[2]]
    values, _, flags = golden(without_id, trust={"FHIR": 1})
    assert values["phone"] == "+8613900000002"  # the trusted source first
    values, _, _ = golden(without_id, trust={})
    assert values["phone"] == "+8613900000003"  # else the most recent
    assert "no_valid_id" in flags
