"""The FHIR R4 view: every resource built from decoded example events is validated by HAPI
FHIR's reference validator (R4, offline; `hapi_errors`), by fhir.resources (R4B, the
R4-compatible release it ships; the package has no R4 module) and against the required value
sets, which fhir.resources does not check."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from hs_common.codec import Codec
from hs_common.crypto import Keyring
from hs_common.schemas import SchemaCatalogue, default_schema_root
from hs_common.testing import golden_example, hapi_errors
from hs_edge import fhir
from hs_edge.auth import Caller, Role
from hs_edge.operations import visible_golden
from hs_terminology.vocab import RESIDENT_ID_SYSTEM

CATALOGUE = SchemaCatalogue.load(default_schema_root())
CODEC = Codec(CATALOGUE, Keyring.generate())
BASE = "https://edge.example/fhir"
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")

# R4 required bindings: fhir.resources checks only that a code is a code.
REQUIRED = {
    ("Patient", "gender"): {"male", "female", "other", "unknown"},
    ("Observation", "status"): {"registered", "preliminary", "final", "amended", "corrected",
                                "cancelled", "entered-in-error", "unknown"},
    ("Bundle", "type"): {"document", "message", "transaction", "transaction-response", "batch",
                         "batch-response", "history", "searchset", "collection"},
}  # fmt: skip
SEARCH_MODES = {"match", "include", "outcome"}
LINK_TYPES = {"replaced-by", "replaces", "refer", "seealso"}
SEVERITIES = {"fatal", "error", "warning", "information"}


def example(name: str) -> dict[str, Any]:
    record = golden_example(CATALOGUE.get(name), default_schema_root())
    return CODEC.decode(CODEC.encode(name, record)).record


def binding_problems(resource: dict[str, Any]) -> list[str]:
    kind = resource["resourceType"]
    problems = [
        f"{kind}.{field}={resource[field]!r}"
        for (type_, field), codes in REQUIRED.items()
        if type_ == kind and field in resource and resource[field] not in codes
    ]
    problems += [
        f"link.type={x['type']!r}"
        for x in resource.get("link", [])
        if "type" in x and x["type"] not in LINK_TYPES
    ]
    for issue in resource.get("issue", []):
        if issue["severity"] not in SEVERITIES or issue["code"] not in fhir.ISSUE_TYPES:
            problems.append(f"issue={issue!r}")
    for entry in resource.get("entry", []):
        if entry.get("search", {}).get("mode") not in SEARCH_MODES:
            problems.append(f"search={entry.get('search')!r}")
        problems += binding_problems(entry["resource"])
    return problems


def empty_arrays(value: Any, path: str = "") -> list[str]:
    """Where the JSON has an empty array (FHIR JSON has none)."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in empty_arrays(v, f"{path}/{k}")]
    if isinstance(value, list):
        inner = [p for i, v in enumerate(value) for p in empty_arrays(v, f"{path}/{i}")]
        return inner if value else [path]
    return []


def validated(resource: dict[str, Any]) -> Any:
    """The resource parsed by fhir.resources, after checking what that does not, and with no
    error from HAPI's validator."""
    model = get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    assert hapi_errors(resource) == []
    assert binding_problems(resource) == []
    assert empty_arrays(resource) == []
    if "id" in resource:
        assert FHIR_ID.fullmatch(resource["id"])  # fhir.resources does not check the length
    return model


def person(**golden: Any) -> dict[str, Any]:
    record = example("hs.identity.Person")
    record["golden"] |= golden
    return record


def observation(**result: Any) -> dict[str, Any]:
    record = example("hs.clinical.Observation")
    record["result"] |= result
    return record


# Patient


def test_a_golden_record_is_a_valid_patient() -> None:
    record = person()
    resource = fhir.patient(record, record["record_keys"], "full")
    model = validated(resource)
    assert model.id == "P3c9a1f0e7b2d4c6a"
    assert resource["active"] is True
    assert resource["identifier"][0] == {
        "use": "official",
        "system": RESIDENT_ID_SYSTEM,
        "value": "330102198703150023",
    }
    assert [i["value"] for i in resource["identifier"][1:]] == record["record_keys"]
    assert {i["system"] for i in resource["identifier"][1:]} == {fhir.RECORD_KEY_SYSTEM}
    han, pinyin = resource["name"]
    assert (han["family"], han["given"], han["text"]) == ("王", ["小明"], "王小明")
    assert (pinyin["family"], pinyin["given"]) == ("wang", ["xiaoming"])
    assert resource["birthDate"] == "1987-03-15"
    assert resource["telecom"] == [{"system": "phone", "value": "+8613812345678"}]
    assert resource["address"][0]["text"] == "浙江省杭州市上城区解放路1号"
    assert resource["address"][0]["extension"] == [
        {"url": fhir.DIVISION_CODE_EXTENSION, "valueCode": "330102"}
    ]
    assert "meta" not in resource  # nothing masked


@pytest.mark.parametrize(
    ("sex", "gender"),
    [("M", "male"), ("F", "female"), (None, "unknown"), ("UNSPECIFIED", "other"), ("X", "unknown")],
)
def test_gender_from_the_golden_sex(sex: str | None, gender: str) -> None:
    resource = fhir.patient(person(sex=sex), [], "full")
    validated(resource)
    assert resource["gender"] == gender


def test_masked_identifiers_pass_through_and_are_labelled() -> None:
    record = person()
    clinician = Caller("ward-app", "dr-li", Role.CLINICIAN, ())
    resource = fhir.patient(record | {"golden": visible_golden(clinician, record)}, [], "masked")
    validated(resource)
    assert resource["identifier"] == [
        {"use": "official", "system": RESIDENT_ID_SYSTEM, "value": "****************23"}
    ]
    assert resource["telecom"][0]["value"] == "**********5678"
    assert resource["meta"]["security"][0]["code"] == "MASKED"


def test_a_hidden_identifier_is_left_out() -> None:
    resource = fhir.patient(person(id_number=None, phone=None), [], "masked")
    validated(resource)
    assert "identifier" not in resource
    assert "telecom" not in resource


def test_a_merged_person_is_inactive_and_replaced_by_the_survivor() -> None:
    record = person() | {"status": "MERGED", "merged_into": "P0000000000000001"}
    resource = fhir.patient(record, [], "full")
    validated(resource)
    assert resource["active"] is False
    assert resource["link"] == [
        {"other": {"reference": "Patient/P0000000000000001"}, "type": "replaced-by"}
    ]


def test_a_person_without_a_golden_record() -> None:
    record = example("hs.identity.Person") | {"golden": None}
    resource = fhir.patient(record, [], "full")
    validated(resource)
    assert resource == {
        "resourceType": "Patient",
        "id": record["person_id"],
        "active": True,
        "gender": "unknown",
    }


def test_a_birth_date_already_written_as_text() -> None:
    resource = fhir.patient(person(birth_date="1987-03-15"), [], "full")
    assert resource["birthDate"] == fhir.patient(person(), [], "full")["birthDate"]


def test_a_person_id_that_is_no_fhir_id_is_refused() -> None:
    with pytest.raises(ValueError, match="FHIR id"):
        fhir.patient(example("hs.identity.Person") | {"person_id": "P_1"}, [], "full")


# Observation


def test_a_converted_laboratory_result() -> None:
    record = example("hs.clinical.Observation")
    resource = fhir.observation(record, "P1")
    validated(resource)
    assert resource["status"] == "final"
    assert resource["category"][0]["coding"][0] == {
        "system": fhir.OBSERVATION_CATEGORY,
        "code": "laboratory",
        "display": "Laboratory",
    }
    assert resource["code"]["coding"][0] == {"system": "http://loinc.org", "code": "2345-7"}
    assert resource["code"]["coding"][1]["code"] == "GLU"
    assert resource["subject"] == {"reference": "Patient/P1"}
    assert datetime.fromisoformat(resource["effectiveDateTime"]) == record["effective_at"]
    assert resource["effectiveDateTime"].endswith("+00:00")
    assert resource["valueQuantity"] == {
        "value": 7.8,
        "unit": "mmol/L",
        "system": "http://unitsofmeasure.org",
        "code": "mmol/L",
    }
    low, high = resource["referenceRange"][0]["low"], resource["referenceRange"][0]["high"]
    assert (low["value"], high["value"], low["code"], high["system"]) == (
        3.9,
        6.1,
        "mmol/L",
        fhir.UCUM,
    )
    # the range text is as sent: in the unit as sent, not the converted one
    assert resource["referenceRange"][0]["text"] == "70-110 mg/dL"
    assert resource["interpretation"][0]["coding"][0] == {
        "system": fhir.INTERPRETATION,
        "code": "H",
        "display": "High",
    }
    (original,) = resource["extension"]
    assert original["url"] == fhir.ORIGINAL_RESULT_EXTENSION
    assert {e["url"]: e["valueString"] for e in original["extension"]} == {
        "value": "140.5",
        "unit": "mg/dL",
        "flag": "H",
    }
    assert resource["performer"][0]["identifier"] == {
        "system": fhir.INSTITUTION_SYSTEM,
        "value": "H330102",
    }


@pytest.mark.parametrize(
    ("status", "expected"),
    [("FINAL", "final"), ("PRELIMINARY", "preliminary"), ("CORRECTED", "corrected"),
     ("DELETED", "entered-in-error"), ("WITHDRAWN", "entered-in-error"),
     ("CANNOT_OBTAIN", "cancelled"), ("NOT_VERIFIED", "preliminary"), ("PENDING", "registered"),
     ("UNKNOWN", "unknown")],
)  # fmt: skip
def test_result_status(status: str, expected: str) -> None:
    resource = fhir.observation(example("hs.clinical.Observation") | {"status": status}, "P1")
    validated(resource)
    assert resource["status"] == expected


@pytest.mark.parametrize(
    ("category", "code"),
    [("LABORATORY", "laboratory"), ("VITAL_SIGNS", "vital-signs"), ("OTHER", None)],
)
def test_category(category: str, code: str | None) -> None:
    resource = fhir.observation(example("hs.clinical.Observation") | {"category": category}, "P1")
    validated(resource)
    codes = [c["code"] for cc in resource.get("category", []) for c in cc["coding"]]
    assert codes == ([code] if code else [])


@pytest.mark.parametrize(
    ("interpretation", "code"),
    [("NORMAL", "N"), ("LOW", "L"), ("CRITICAL_LOW", "LL"), ("CRITICAL_HIGH", "HH"),
     ("ABNORMAL", "A"), ("ABOVE_SCALE", ">"), ("NOT_DETECTED", "ND"), ("NONE", None)],
)  # fmt: skip
def test_interpretation(interpretation: str, code: str | None) -> None:
    resource = fhir.observation(observation(interpretation=interpretation), "P1")
    validated(resource)
    codes = [c["code"] for i in resource.get("interpretation", []) for c in i["coding"]]
    assert codes == ([code] if code else [])


def test_an_unrecognised_flag_is_shown_as_sent() -> None:
    resource = fhir.observation(observation(interpretation="OTHER", original_flag="B"), "P1")
    validated(resource)
    assert resource["interpretation"] == [{"text": "B"}]


def test_ids_are_valid_deterministic_and_distinct_per_institution() -> None:
    first = fhir.source_id_of("H330102", "LAB260314-0007-1")
    assert FHIR_ID.fullmatch(first)
    assert first == fhir.source_id_of("H330102", "LAB260314-0007-1")
    assert first != fhir.source_id_of("H330103", "LAB260314-0007-1")
    assert first != fhir.source_id_of("H330102", "LAB260314-0007-2")
    # the institution and the id cannot trade characters
    assert fhir.source_id_of("A", "BC") != fhir.source_id_of("AB", "C")
    assert FHIR_ID.fullmatch(fhir.source_id_of("医院 1", "ORD^1_2/3" * 40))

    record = example("hs.clinical.Observation")
    other = example("hs.clinical.Observation")
    other["envelope"]["source"]["institution"] = "H330103"
    here, there = fhir.observation(record, "P1"), fhir.observation(other, "P1")
    assert here["id"] == first == fhir.observation(record, "P1")["id"]
    assert there["id"] != here["id"]
    assert there["identifier"] == [
        {"system": "urn:hs:local:H330103:observation", "value": "LAB260314-0007-1"}
    ]


def test_a_text_result() -> None:
    resource = fhir.observation(
        observation(
            value_quantity=None,
            unit=None,
            value_text="Clear, straw-coloured",
            original_value="Clear, straw-coloured",
            original_unit="n/a",  # sent beside a text answer: not part of it
            unit_status="NO_UNIT",
            reference_range=None,
            interpretation="NONE",
            original_flag=None,
        ),
        "P1",
    )
    validated(resource)
    assert resource["valueString"] == "Clear, straw-coloured"
    assert "valueQuantity" not in resource
    assert "referenceRange" not in resource
    assert "interpretation" not in resource


def test_a_coded_result() -> None:
    answer = {
        "system": "urn:hs:local:H330102:answers",
        "code": "POS",
        "display": "阳性",
        "version": None,
    }
    resource = fhir.observation(
        observation(value_quantity=None, unit=None, value_coding=answer), "P1"
    )
    validated(resource)
    assert resource["valueCodeableConcept"]["coding"] == [
        {"system": "urn:hs:local:H330102:answers", "code": "POS", "display": "阳性"}
    ]


def test_a_result_without_a_unit() -> None:
    resource = fhir.observation(
        observation(
            value_quantity=7.41,
            unit=None,
            original_value="7.41",
            original_unit=None,
            unit_status="NO_UNIT",
            reference_range={"low": 7.35, "high": 7.45, "text": "7.35-7.45"},
        ),
        "P1",
    )
    validated(resource)
    assert resource["valueQuantity"] == {"value": 7.41}
    assert resource["referenceRange"] == [
        {"low": {"value": 7.35}, "high": {"value": 7.45}, "text": "7.35-7.45"}
    ]
    extension = resource["extension"][0]["extension"]
    assert [e["url"] for e in extension] == ["value", "flag"]


def test_a_value_in_a_unit_that_could_not_be_converted_is_shown_as_sent() -> None:
    resource = fhir.observation(
        observation(
            value_quantity=None,
            unit=None,
            original_value="140.5",
            original_unit="mg%",
            unit_status="UNKNOWN_UNIT",
            reference_range={"low": 70.0, "high": 110.0, "text": "70-110"},
        ),
        "P1",
    )
    validated(resource)
    assert resource["valueString"] == "140.5 mg%"
    # the limits stayed in the unit as sent: named, but not claimed to be UCUM
    assert resource["referenceRange"][0]["low"] == {"value": 70.0, "unit": "mg%"}
    assert resource["referenceRange"][0]["text"] == "70-110"


def test_an_observation_time_without_a_zone_is_refused() -> None:
    record = example("hs.clinical.Observation") | {"effective_at": datetime(2026, 3, 1, 8)}
    with pytest.raises(ValueError, match="time zone"):
        fhir.observation(record, "P1")


def test_the_subject_must_be_a_fhir_id() -> None:
    with pytest.raises(ValueError, match="FHIR id"):
        fhir.observation(example("hs.clinical.Observation"), "Patient/P1")


# Condition


@pytest.mark.parametrize(
    ("status", "expected"),
    [("CONFIRMED", "confirmed"), ("PROVISIONAL", "provisional"), ("REFUTED", "refuted"),
     ("ENTERED_IN_ERROR", "entered-in-error"), ("UNCONFIRMED", "unconfirmed")],
)  # fmt: skip
def test_a_diagnosis_is_a_valid_condition(status: str, expected: str) -> None:
    record = example("hs.clinical.Condition") | {"verification_status": status}
    resource = fhir.condition(record, "P1")
    validated(resource)
    (verification,) = resource["verificationStatus"]["coding"]
    assert (verification["system"], verification["code"]) == (fhir.VERIFICATION_STATUS, expected)
    assert "clinicalStatus" not in resource  # not known, and forbidden when entered in error
    assert [c["code"] for c in resource["code"]["coding"]] == ["E11.9", "5A11"]
    assert resource["code"]["text"] == "2型糖尿病"
    assert resource["subject"] == {"reference": "Patient/P1"}
    assert resource["recordedDate"].startswith("2026-03-14T")
    assert resource["id"] == fhir.source_id_of("H330102", "V20260314-0042-DG1-1")


def test_a_diagnosis_in_words_only() -> None:
    record = example("hs.clinical.Condition")
    record["diagnosis"] = {"icd10": None, "icd11": None, "local_code": None, "text": "胸痛待查"}
    record["recorded_at"] = None
    resource = fhir.condition(record, "P1")
    validated(resource)
    assert resource["code"] == {"text": "胸痛待查"} and "recordedDate" not in resource


# Bundle and OperationOutcome


def test_a_searchset_bundle_with_an_included_patient() -> None:
    record = person()
    patient = fhir.patient(record, [], "full")
    observations = [fhir.observation(example("hs.clinical.Observation"), record["person_id"])]
    links = {
        "self": f"{BASE}/Observation?subject=P1&_count=1",
        "next": f"{BASE}/Observation?subject=P1&_count=1&cursor=abc",
    }
    resource = fhir.bundle("Observation", [*observations, patient], BASE + "/", links, total=7)
    validated(resource)
    assert resource["type"] == "searchset"
    assert resource["total"] == 7
    assert resource["link"] == [
        {"relation": "self", "url": links["self"]},
        {"relation": "next", "url": links["next"]},
    ]
    first, second = resource["entry"]
    assert first["fullUrl"] == f"{BASE}/Observation/{observations[0]['id']}"
    assert first["resource"] is observations[0]
    assert first["search"] == {"mode": "match"}
    assert second["fullUrl"] == f"{BASE}/Patient/{record['person_id']}"
    assert second["search"] == {"mode": "include"}


def test_everything_is_a_match_and_total_is_left_out_when_unknown() -> None:
    record = person()
    entries = [
        fhir.patient(record, [], "full"),
        fhir.observation(example("hs.clinical.Observation"), record["person_id"]),
    ]
    resource = fhir.bundle(fhir.EVERYTHING, entries, BASE, {"self": f"{BASE}/Patient/x"})
    validated(resource)
    assert [e["search"]["mode"] for e in resource["entry"]] == ["match", "match"]
    assert "total" not in resource


def test_an_empty_searchset() -> None:
    resource = fhir.bundle("Observation", [], BASE, {"self": f"{BASE}/Observation"}, total=0)
    validated(resource)
    assert resource["total"] == 0
    assert "entry" not in resource


def test_the_validators_are_live() -> None:
    good = fhir.bundle("Observation", [], BASE, {"self": f"{BASE}/Observation"})
    validated(good)
    with pytest.raises(ValidationError):  # not a code at all
        validated(good | {"type": ["searchset"]})
    with pytest.raises(ValidationError):  # no such element
        validated(good | {"kind": "searchset"})
    with pytest.raises(ValidationError):
        validated(fhir.patient(person(), [], "full") | {"birthDate": "15/03/1987"})
    with pytest.raises(ValidationError):  # two values
        validated(fhir.observation(observation(value_text="high"), "P1") | {"valueString": "x"})
    # a code outside the required value set passes fhir.resources: the binding check catches it
    get_fhir_model_class("Bundle").model_validate(good | {"type": "search-set"})
    with pytest.raises(AssertionError):
        validated(good | {"type": "search-set"})
    with pytest.raises(AssertionError):
        validated(fhir.patient(person(), [], "full") | {"gender": "M"})
    with pytest.raises(AssertionError):  # so do empty arrays
        validated(good | {"entry": []})
    # an invariant: a unit's code needs its system (qty-3), which only HAPI checks
    unit_without_system = fhir.observation(observation(), "P1")
    unit_without_system["valueQuantity"].pop("system")
    get_fhir_model_class("Observation").model_validate(unit_without_system)
    assert binding_problems(unit_without_system) == []
    assert any("qty-3" in e for e in hapi_errors(unit_without_system))


def test_an_operation_outcome() -> None:
    resource = fhir.operation_outcome("not-found", "no such person")
    validated(resource)
    assert resource["issue"] == [
        {"severity": "error", "code": "not-found", "diagnostics": "no such person"}
    ]
    warning = fhir.operation_outcome("throttled", "", severity="warning")
    validated(warning)
    assert warning["issue"] == [{"severity": "warning", "code": "throttled"}]


def test_an_operation_outcome_needs_a_fhir_issue_type() -> None:
    with pytest.raises(ValueError, match="issue type"):
        fhir.operation_outcome("person.not_found", "no such person")


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, "invalid"), (401, "login"), (403, "forbidden"), (404, "not-found"),
     (429, "throttled"), (503, "transient"), (500, "exception")],
)  # fmt: skip
def test_issue_type_of_an_http_status(status: int, code: str) -> None:
    assert fhir.issue_type(status) == code
    validated(fhir.operation_outcome(fhir.issue_type(status), "x"))


def test_example_times_are_aware() -> None:
    """The codec's decoding that the view relies on: aware times, dates as dates."""
    record = example("hs.clinical.Observation")
    assert record["effective_at"].tzinfo is UTC or record["effective_at"].utcoffset() is not None
    assert isinstance(example("hs.identity.Person")["golden"]["birth_date"], date)
