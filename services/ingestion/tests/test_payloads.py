"""Checks on HTTP bodies before they are stored."""

from __future__ import annotations

import json
from collections.abc import Mapping

from hs_ingestion.payloads import check_csv, check_device_batch, check_fhir

PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "name": [{"family": "王", "given": ["伟"]}],
    "birthDate": "1980-01-01",
}


def test_a_valid_fhir_patient_passes() -> None:
    assert check_fhir(json.dumps(PATIENT).encode()).problems == []


def test_fhir_r4_element_errors_are_listed_by_path_without_values() -> None:
    bad = {
        **PATIENT,
        "name": "王伟",
        "telecom": [{"system": "phone", "value": 13812345678, "rank": -1}],
    }
    checked = check_fhir(json.dumps(bad, ensure_ascii=False).encode())
    fields = {p.field for p in checked.problems}
    assert "/name" in fields
    assert any(field.startswith("/telecom/0") for field in fields)
    assert checked.reason_code == "fhir.invalid"
    assert not any("王伟" in p.problem or "13812345678" in p.problem for p in checked.problems)


def test_a_bundle_entry_is_checked_in_place() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": {**PATIENT, "birthDate": "1980-02-30"}}],
    }
    fields = [p.field for p in check_fhir(json.dumps(bundle).encode()).problems]
    assert fields == ["/entry/0/resource/birthDate"]


def test_csv_with_a_stray_carriage_return_is_a_clear_error() -> None:
    checked = check_csv(b"a,b\r\n1,\r2\r\n", ("a",))
    assert checked.reason_code in ("csv.malformed", "csv.ragged_rows", "")
    assert check_csv(b"a,b\n1,2\n", ("a", "c")).problems[0].field == "c"


def test_device_values_must_be_finite_numbers() -> None:
    batch = {
        "device_id": "d",
        "readings": [{"type": "spo2", "value": float("inf"), "unit": "%", "time": "t"}],
    }
    assert [p.field for p in check_device_batch(json.dumps(batch).encode()).problems] == [
        "/readings/0/value"
    ]


def _problems(document: Mapping[str, object]) -> dict[str, str]:
    return {p.field: p.problem for p in check_fhir(json.dumps(document).encode()).problems}


def test_codes_outside_required_value_sets_are_refused_by_path() -> None:
    observation = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "done",
        "code": {"text": "glucose"},
        "subject": {"reference": "Patient/p1"},
        "valueQuantity": {"value": 5.1, "comparator": "~"},
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {**PATIENT, "gender": "F"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {"resource": observation, "request": {"method": "SEND", "url": "Observation"}},
        ],
    }
    problems = _problems(bundle)
    assert set(problems) == {
        "/entry/0/resource/gender",
        "/entry/1/resource/status",
        "/entry/1/resource/valueQuantity/comparator",
        "/entry/1/request/method",
    }
    assert "required value set" in problems["/entry/0/resource/gender"]
    assert "'F'" not in problems["/entry/0/resource/gender"]  # the value is not echoed


def test_condition_status_concepts_need_a_coding_from_their_code_system() -> None:
    condition = {
        "resourceType": "Condition",
        "id": "c1",
        "subject": {"reference": "Patient/p1"},
        "clinicalStatus": {"coding": [{"system": "http://example.org/status", "code": "active"}]},
        "verificationStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": "maybe",
                }
            ]
        },
    }
    assert set(_problems(condition)) == {
        "/clinicalStatus/coding",
        "/verificationStatus/coding/0/code",
    }


def test_fhir_invariants_obs6_and_con5() -> None:
    observation = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"text": "glucose"},
        "subject": {"reference": "Patient/p1"},
        "valueQuantity": {"value": 5.1},
        "dataAbsentReason": {"text": "not measured"},
    }
    assert "obs-6" in _problems(observation)["/dataAbsentReason"]
    condition = {
        "resourceType": "Condition",
        "id": "c1",
        "subject": {"reference": "Patient/p1"},
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
                    "code": "entered-in-error",
                }
            ]
        },
    }
    assert "con-5" in _problems(condition)["/clinicalStatus"]
    del condition["clinicalStatus"]
    assert _problems(condition) == {}
