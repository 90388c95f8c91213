"""Checks on HTTP bodies before they are stored."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hs_common.codec import Codec
from hs_ingestion.httpintake import Kept, Refused, receive_http
from hs_ingestion.payloads import check_csv, check_device_batch, check_fhir
from hs_ingestion.sources import SourceRegistry, default_sources_dir

EXAMPLES = Path(__file__).parent / "fhir_examples"

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
        "type": "collection",
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


def test_the_r4_examples_pass_the_intake_check() -> None:
    for path in sorted(EXAMPLES.glob("*.json")):
        assert check_fhir(path.read_bytes()).problems == [], path.name


def _entry(resource: dict[str, Any], full_url: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"]},
    }
    if full_url:
        entry["fullUrl"] = full_url
    return entry


PATIENT_URL = "urn:uuid:5d4c3b2a-1e0f-4a9b-8c7d-6e5f4a3b2c1d"
NEW_PATIENT = {
    "resourceType": "Patient",
    "identifier": [{"system": "urn:hs:F01:patient", "value": "HZ-7"}],
    "birthDate": "1980-01-01",
}
OBSERVATION = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
    "subject": {"reference": PATIENT_URL},
    "valueQuantity": {
        "value": 72,
        "unit": "/min",
        "system": "http://unitsofmeasure.org",
        "code": "/min",
    },
}


def _bundle(kind: str, *entries: dict[str, Any]) -> bytes:
    return json.dumps({"resourceType": "Bundle", "type": kind, "entry": list(entries)}).encode()


def test_transaction_and_batch_entries_need_a_request_and_urn_uuids_must_resolve() -> None:
    lonely = {
        **OBSERVATION,
        "subject": {"reference": "urn:uuid:00000000-0000-4000-8000-000000000000"},
    }
    body = _bundle("transaction", {"resource": PATIENT}, _entry(lonely))
    checked = check_fhir(body)
    assert [(c.entry.pointer, [p.field for p in c.problems]) for c in checked.entries] == [
        ("/entry/0/resource", ["/entry/0/request"]),
        ("/entry/1/resource", ["/entry/1/resource/subject/reference"]),
    ]
    assert "bdl-3" in checked.entries[0].problems[0].problem


def test_a_subject_must_be_a_patient_and_bundle_types_are_those_senders_submit() -> None:
    observation = {**OBSERVATION, "subject": {"reference": "Group/g1"}}
    assert "/subject/reference" in _problems(observation)
    assert "/type" in _problems(
        {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": PATIENT}]}
    )


@pytest.fixture(scope="module")
def sources() -> SourceRegistry:
    return SourceRegistry.load(default_sources_dir())


def _send(sources: SourceRegistry, codec: Codec, body: bytes) -> Kept | Refused:
    return receive_http(
        "F01",
        ("fhir",),
        "application/fhir+json",
        body,
        sources,
        codec.keyring,
        1 << 20,
        received_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_a_transaction_is_answered_with_a_transaction_response(
    sources: SourceRegistry, codec: Codec
) -> None:
    body = _bundle(
        "transaction",
        _entry(NEW_PATIENT, PATIENT_URL),
        _entry({**OBSERVATION, "id": "hr1"}),
        {"request": {"method": "DELETE", "url": "Patient/234"}},
    )
    kept = _send(sources, codec, body)
    assert isinstance(kept, Kept)
    assert kept.record["payload"] == body
    assert kept.key == codec.keyring.pseudonym("F01", "HZ-7")  # the patient's, as its events
    answer = kept.answer
    assert (answer.status, answer.media_type) == (200, "application/fhir+json")
    assert answer.body is not None
    assert answer.body["type"] == "transaction-response"
    responses = [e["response"] for e in answer.body["entry"]]
    assert [r["status"] for r in responses] == ["201 Created", "201 Created", "202 Accepted"]
    assert responses[0]["location"] == "Patient/5d4c3b2a-1e0f-4a9b-8c7d-6e5f4a3b2c1d"
    assert responses[1]["location"] == "Observation/hr1"


def test_a_transaction_with_one_bad_entry_is_refused_whole(
    sources: SourceRegistry, codec: Codec
) -> None:
    body = _bundle(
        "transaction",
        _entry(NEW_PATIENT, PATIENT_URL),
        _entry({**OBSERVATION, "status": "done"}),
    )
    refused = _send(sources, codec, body)
    assert isinstance(refused, Refused)
    assert refused.dead_letter and refused.reason_code == "fhir.invalid"
    assert refused.answer.status == 422
    assert refused.answer.body is not None
    assert refused.answer.body["resourceType"] == "OperationOutcome"
    [issue] = refused.answer.body["issue"]
    assert issue["expression"] == ["Bundle.entry[1].resource.status"]
    assert issue["code"] == "code-invalid"
    assert "done" not in json.dumps(refused.answer.body)  # the value is never echoed


def test_a_batch_answers_each_entry_and_refuses_only_the_bad(
    sources: SourceRegistry, codec: Codec
) -> None:
    good = {**OBSERVATION, "id": "hr1", "subject": {"reference": "Patient/p1"}}
    body = _bundle("batch", _entry(good), _entry({**good, "id": "hr2", "status": "done"}))
    kept = _send(sources, codec, body)
    assert isinstance(kept, Kept)
    assert kept.answer.status == 200
    assert kept.answer.body is not None
    responses = [e["response"] for e in kept.answer.body["entry"]]
    assert responses[0] == {"status": "201 Created", "location": "Observation/hr1"}
    assert responses[1]["status"] == "422 Unprocessable Entity"
    assert responses[1]["outcome"]["resourceType"] == "OperationOutcome"
    [refusal] = kept.refusals
    assert refusal.item == "/entry/1/resource"
    assert json.loads(refusal.original)["id"] == "hr2"
    everything_bad = _bundle("batch", _entry({**good, "status": "done"}))
    refused = _send(sources, codec, everything_bad)
    assert isinstance(refused, Refused)
    assert (refused.answer.status, refused.dead_letter, len(refused.refusals)) == (200, False, 1)


def test_a_single_resource_is_created_with_a_location(
    sources: SourceRegistry, codec: Codec
) -> None:
    kept = _send(sources, codec, json.dumps(PATIENT).encode())
    assert isinstance(kept, Kept)
    assert (kept.answer.status, kept.answer.headers["Location"]) == (201, "Patient/p1")
    unnamed = _send(sources, codec, json.dumps(NEW_PATIENT).encode())
    assert isinstance(unnamed, Kept)
    assert unnamed.answer.headers["Location"].startswith("Patient/")  # an id assigned
    message = (EXAMPLES / "Bundle-10bb101f-a121-4264-a920-67be9cb82c74.json").read_bytes()
    kept_message = _send(sources, codec, message)
    assert isinstance(kept_message, Kept)
    assert kept_message.answer.headers["Location"] == (
        "Bundle/10bb101f-a121-4264-a920-67be9cb82c74"
    )
    assert kept_message.record["sender_message_id"] == "10bb101f-a121-4264-a920-67be9cb82c74"


def test_errors_of_the_fhir_door_are_operation_outcomes(
    sources: SourceRegistry, codec: Codec
) -> None:
    malformed = _send(sources, codec, b"{not json")
    assert isinstance(malformed, Refused)
    assert (malformed.answer.status, malformed.dead_letter) == (400, True)
    assert malformed.answer.body is not None
    assert malformed.answer.body["resourceType"] == "OperationOutcome"
    unknown = receive_http(
        "NOPE", ("fhir",), "application/fhir+json", b"{}", sources, codec.keyring, 100
    )
    assert isinstance(unknown, Refused)
    assert (unknown.answer.status, unknown.dead_letter) == (404, False)
    assert unknown.answer.body is not None
    assert unknown.answer.body["issue"][0]["code"] == "not-found"


def test_the_other_doors_still_answer_202_and_problem_documents(
    sources: SourceRegistry, codec: Codec
) -> None:
    record = {"jgdm": "HZC01", "lx": "dj", "jmbh": "JM1", "xm": "李佳"}
    kept = receive_http(
        "HZC01",
        ("clinic-json", "clinic-csv"),
        "application/json",
        json.dumps(record, ensure_ascii=False).encode(),
        sources,
        codec.keyring,
        1 << 20,
    )
    assert isinstance(kept, Kept)
    assert kept.answer.status == 202
    assert kept.key == codec.keyring.pseudonym("HZC01", "JM1")
    refused = receive_http(
        "HZC01", ("clinic-json",), "text/plain", b"x", sources, codec.keyring, 1 << 20
    )
    assert isinstance(refused, Refused)
    assert refused.answer.media_type == "application/problem+json"
    assert refused.answer.body is not None
    assert refused.answer.body["reason_code"] == "http.media_type"
