"""What each role sees of a golden record, and that a masked resident ID cannot be rebuilt from
what is shown next to it."""

from __future__ import annotations

from datetime import date
from itertools import product

import pytest

from hs_common.codec import Record
from hs_edge.auth import Caller, Role
from hs_edge.operations import VISIBLE_FIELDS, visible_golden

# GB 11643-1999: ISO 7064 MOD 11-2 over the first 17 digits
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK = "10X98765432"
PERSON: Record = {
    "person_id": "P1",
    "golden": {
        "family_han": "王", "given_han": "小明", "family": "Wang", "given": "Xiaoming",
        "id_number": "330102198703150023", "birth_date": date(1987, 3, 15), "sex": "male",
        "phone": "13812345678", "address": "浙江省杭州市上城区清波街道1号", "district": "330102",
    },
}  # fmt: skip


def caller(role: Role) -> Caller:
    return Caller(client_id="c", subject="u", role=role, scopes=())


def valid(number: str) -> bool:
    total = sum(int(d) * w for d, w in zip(number[:17], WEIGHTS, strict=True))
    return CHECK[total % 11] == number[17]


@pytest.mark.parametrize(
    "role", [r for r in Role if r not in (Role.PATIENT, Role.RESEARCHER, Role.SOURCE_STAFF)]
)
def test_a_masked_resident_id_leaves_many_candidates_given_all_else_shown(role: Role) -> None:
    """Worst case for the patient: the region is known exactly (the district), and the birth
    date is shown; the digits the mask hides are then guessed."""
    seen = visible_golden(caller(role), PERSON)
    shown = seen["id_number"]
    assert shown is not None and shown.count("*") >= 16
    region = seen["district"] or "330102"
    birth = (seen["birth_date"] or date(1987, 3, 15)).strftime("%Y%m%d")
    tail = shown.lstrip("*")
    hidden = 18 - 14 - len(tail)
    candidates = [
        region + birth + "".join(digits) + tail
        for digits in product("0123456789", repeat=hidden)
        if valid(region + birth + "".join(digits) + tail)
    ]
    assert len(candidates) >= 5, candidates


def test_each_role_sees_its_allow_list_and_patients_their_own_record_whole() -> None:
    assert visible_golden(caller(Role.PATIENT), PERSON) == PERSON["golden"]
    officer = visible_golden(caller(Role.PUBLIC_HEALTH), PERSON)
    assert {k for k, v in officer.items() if v is not None} == VISIBLE_FIELDS[Role.PUBLIC_HEALTH]
    assert officer["family_han"] is None and officer["address"] is None
    clinician = visible_golden(caller(Role.CLINICIAN), PERSON)
    assert clinician["phone"] == "********678" and clinician["family_han"] == "王"
    assert visible_golden(caller(Role.RESEARCHER), PERSON) == dict.fromkeys(PERSON["golden"])
    assert visible_golden(caller(Role.SOURCE_STAFF), PERSON) == dict.fromkeys(PERSON["golden"])
