"""The shipped checks on the golden examples and on each defect a check is there to see; each
failure names its field and never a value."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest

from hs_common.schemas import SchemaCatalogue, default_schema_root
from hs_common.testing import golden_example
from hs_quality import rules
from hs_quality.checks import Checker, Context, Demographics, demographics, fingerprint

CATALOGUE = SchemaCatalogue.load(default_schema_root())
CHECKER = Checker(rules.load())
OBSERVATION, IDENTITY = "hs.clinical.Observation", "hs.identity.PatientIdentity"


def example(name: str) -> dict[str, Any]:
    return copy.deepcopy(golden_example(CATALOGUE.get(name), default_schema_root()))


def failed(name: str, record: dict[str, Any]) -> dict[str, str]:
    return {f.check_id: f.reason for f in CHECKER.score(name, record).failures}


@pytest.mark.parametrize("name", [OBSERVATION, IDENTITY, "hs.clinical.Condition",
                                  "hs.clinical.Encounter"])  # fmt: skip
def test_every_golden_example_passes_every_check_that_applies(name: str) -> None:
    scored = CHECKER.score(name, example(name))
    assert scored.applied and scored.failures == () and scored.score == 1.0


def observation(**result: Any) -> dict[str, Any]:
    record = example(OBSERVATION)
    record["result"] |= result
    return record


def test_a_result_is_checked_against_its_own_analyte_s_plausible_range_only() -> None:
    scored = CHECKER.score(OBSERVATION, observation())
    assert "glucose-serum-mg-in-mmol" in scored.applied and "sodium" not in scored.applied
    assert failed(OBSERVATION, observation(value_quantity=780.0)) == {
        "glucose-serum-mg-in-mmol": "result.value_quantity: above the plausible range for the "
        "analyte"
    }
    in_mg = observation(unit="mg/dL", value_quantity=140.5)  # the range of the unit given
    assert "glucose-serum-mg" in CHECKER.score(OBSERVATION, in_mg).applied
    assert "glucose-serum-mg" not in failed(OBSERVATION, in_mg)


@pytest.mark.parametrize(("change", "check_id"), [
    ({"interpretation": "NORMAL"}, "reference-deviation"),  # 7.8 against 3.9-6.1 is high
    ({"code": None}, "code-mapped"),
    ({"unit_status": "INCOMPATIBLE"}, "unit-conforms"),
    ({"unit": "g"}, "unit-conforms"),  # a mass is not a concentration
    ({"value_quantity": 0.1}, "glucose-serum-mg-in-mmol"),
    ({"original_value": " "}, "observation-value-present"),
])  # fmt: skip
def test_each_result_defect_is_found_by_its_check(change: dict[str, Any], check_id: str) -> None:
    reasons = failed(OBSERVATION, observation(**change))
    assert check_id in reasons
    assert "7.8" not in reasons[check_id] and "0.1" not in reasons[check_id]


def test_a_result_below_the_limit_of_measurement_is_low() -> None:
    at_limit = observation(value_quantity=3.9, comparator="<", interpretation="LOW")
    assert "reference-deviation" not in failed(OBSERVATION, at_limit)
    assert "reference-deviation" in failed(
        OBSERVATION, at_limit | {"result": at_limit["result"] | {"comparator": None}}
    )


def test_times_out_of_order_in_the_future_or_late() -> None:
    late = example(OBSERVATION)
    late["envelope"]["received_at"] = late["issued_at"] + timedelta(minutes=11)
    assert set(failed(OBSERVATION, late)) == {"lab-timeliness"}
    vital = late | {"category": "VITAL_SIGNS"}  # the 10 minutes are for laboratory results
    assert "lab-timeliness" not in failed(OBSERVATION, vital)
    future = example(OBSERVATION)
    future["effective_at"] = future["envelope"]["received_at"] + timedelta(hours=1)
    assert {"observation-not-future", "specimen-before-report"} <= set(failed(OBSERVATION, future))


def test_a_patient_s_basic_information_and_identifiers() -> None:
    record = example(IDENTITY)
    record["person"]["birth_date"] = None
    assert failed(IDENTITY, record) == {"basic-info-missing": "missing: person.birth_date"}
    record = example(IDENTITY)
    ids = record["person"]["identifiers"]
    resident = next(i for i in ids if i["type"] == "RESIDENT_ID")
    resident["value"] = resident["value"][:-1] + ("0" if resident["value"][-1] != "0" else "1")
    assert set(failed(IDENTITY, record)) == {"resident-id-valid"}
    record = example(IDENTITY)
    record["person"]["phones"] = ["+86 138-6311-5029", "13863115029", "0571-87654321"]
    assert "phone-format" not in failed(IDENTITY, record)  # as senders write them
    record["person"]["phones"] = ["12345"]
    assert failed(IDENTITY, record) == {
        "phone-format": "person.phones: 1 of 1 not in the expected form"
    }


def test_a_record_s_score_is_the_share_of_its_applicable_checks_passed() -> None:
    scored = CHECKER.score(OBSERVATION, observation(code=None, interpretation="NORMAL"))
    assert len(scored.failures) == 2
    assert scored.score == pytest.approx(1 - 2 / len(scored.applied))


def test_the_same_result_twice_fails_uniqueness_only_with_what_the_service_remembers() -> None:
    first, again = observation(), observation()
    again["envelope"]["event_id"] = "0a0b0c0d-1e1f-4a2b-8c3d-4e5f6a7b8c9d"
    assert fingerprint(first) == fingerprint(again)
    assert "observation-unique" not in CHECKER.score(OBSERVATION, again).applied  # no context
    remembered = CHECKER.score(OBSERVATION, again, Context(same_as="earlier-event-id"))
    assert [f.check_id for f in remembered.failures] == ["observation-unique"]
    fresh = CHECKER.score(OBSERVATION, first, Context())
    assert "observation-unique" in fresh.applied and fresh.failures == ()
    corrected = observation(original_value="6.2")
    assert fingerprint(corrected) != fingerprint(first)


def test_a_persons_birth_date_and_sex_agree_across_institutions() -> None:
    link = example("hs.identity.PersonLink")
    mine = demographics(link)
    same = Demographics("OTHER-HOSPITAL", mine.birth_date, mine.sex)
    other_sex = Demographics("OTHER-HOSPITAL", mine.birth_date, "M" if mine.sex == "F" else "F")
    own_institution = Demographics(mine.institution, "1901-01-01", mine.sex)
    name = "hs.identity.PersonLink"
    assert CHECKER.score(name, link, Context(linked=(same,))).failures == ()
    assert (
        "cross-source-consistency"
        not in CHECKER.score(name, link, Context(linked=(own_institution,))).applied
    )  # a source's own records are the EMPI's concern, not consistency across sources
    (failure,) = CHECKER.score(name, link, Context(linked=(same, other_sex))).failures
    assert failure.check_id == "cross-source-consistency" and "sex differ" in failure.reason
    assert mine.birth_date and mine.birth_date not in failure.reason


def test_a_panel_whose_values_are_its_components_needs_no_value_of_its_own() -> None:
    panel = observation(original_value="", value_quantity=None)
    panel["result"]["code"] = {"system": "http://loinc.org", "code": "85354-9", "display": None,
                               "version": None}  # fmt: skip
    assert "observation-value-present" not in CHECKER.score(OBSERVATION, panel).applied
    glucose = observation(original_value="", value_quantity=None)
    assert "observation-value-present" in failed(OBSERVATION, glucose)


def test_a_result_before_the_patients_birth_and_an_analyte_of_the_other_sex() -> None:
    record = observation()
    born_after = Context(born=record["effective_at"].date() + timedelta(days=1), sex="FEMALE")
    assert "observation-after-birth" in {
        f.check_id for f in CHECKER.score(OBSERVATION, record, born_after).failures
    }
    born_before = Context(born=record["effective_at"].date(), sex="FEMALE")
    assert not CHECKER.score(OBSERVATION, record, born_before).failures
    assert "observation-after-birth" not in CHECKER.score(OBSERVATION, record, Context()).applied
    psa = observation()
    psa["result"]["code"] = {"system": "http://loinc.org", "code": "2857-1", "display": None,
                             "version": None}  # fmt: skip
    (failure,) = [f for f in CHECKER.score(OBSERVATION, psa, born_before).failures
                  if f.check_id == "psa-male"]  # fmt: skip
    assert failure.reason == "result.code: an analyte for male patients"
    man = Context(born=born_before.born, sex="MALE")
    assert "psa-male" in CHECKER.score(OBSERVATION, psa, man).applied
    assert not [
        f for f in CHECKER.score(OBSERVATION, psa, man).failures if f.check_id == "psa-male"
    ]
