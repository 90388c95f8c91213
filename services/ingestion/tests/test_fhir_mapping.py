"""FHIR R4 to canonical events, over the official R4 examples (fhir_examples/, CC0; see
SOURCES.md) and small hand-made cases. Expected values are read from the examples."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from hs_common.codec import Codec
from hs_common.errors import RejectedInput
from hs_ingestion.canonical import Event, Mapped
from hs_ingestion.fhir import normalize_fhir
from hs_ingestion.sources import Source, SourceRegistry, default_sources_dir

EXAMPLES = Path(__file__).parent / "fhir_examples"
AT = datetime(2026, 1, 1, tzinfo=UTC)
ENVELOPE = {
    "event_id": "7d0c3c52-54c4-4c55-9d0a-0d8a4c1e9f10",
    "source": {"institution": "F01", "system": "F01"},
    "occurred_at": AT,
    "received_at": AT,
    "trace_id": "t" * 32,
}


@pytest.fixture(scope="module")
def source() -> Source:
    found = SourceRegistry.load(default_sources_dir()).get("F01")
    assert found is not None
    return found


def example(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text("utf-8"))
    return document


def mapped(document: dict[str, Any], source: Source) -> Mapped:
    return normalize_fhir(json.dumps(document, ensure_ascii=False).encode(), ENVELOPE, source)


def events(document: dict[str, Any], source: Source, schema: str = "") -> list[Event]:
    result = mapped(document, source)
    assert result.failures == []
    return [e for e in result.events if e.schema.endswith(schema)]


def collection(*resources: dict[str, Any], kind: str = "collection") -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {
                "fullUrl": f"http://example.org/fhir/{r['resourceType']}/{r['id']}",
                "resource": r,
            }
            for r in resources
        ],
    }


def by_code(observations: list[Event]) -> dict[str, dict[str, Any]]:
    return {e.record["result"]["local_code"]["code"]: e.record for e in observations}


def test_blood_pressure_components_are_observations_of_the_panel(source: Source) -> None:
    found = by_code(events(example("Observation-blood-pressure"), source))
    assert set(found) == {"85354-9", "8480-6", "8462-4"}  # the panel, without a value
    assert found["85354-9"]["result"]["value_quantity"] is None
    systolic, diastolic = found["8480-6"], found["8462-4"]
    for record in (systolic, diastolic):
        assert record["part_of"]["observation_id"] == "blood-pressure"
        assert record["part_of"]["code"]["code"] == "85354-9"
        assert record["subject"]["local_patient_id"] == "example"
        assert (record["category"], record["status"]) == ("VITAL_SIGNS", "FINAL")
        assert record["result"]["code_origin"] == "SENDER"
        assert record["result"]["original_unit"] == "mm[Hg]"
    assert systolic["result"]["value_quantity"] == 107.0
    assert systolic["result"]["original_value"] == "107"
    assert (systolic["result"]["interpretation"], systolic["result"]["original_flag"]) == (
        "NORMAL",
        "N",
    )
    assert diastolic["result"]["value_quantity"] == 60.0
    assert diastolic["result"]["interpretation"] == "LOW"
    # effectiveDateTime 2012-09-17 (a date): its first moment in the source's zone
    assert systolic["effective_at"] == datetime(2012, 9, 16, 16, tzinfo=UTC)


def test_a_component_with_a_data_absent_reason_has_no_value(source: Source) -> None:
    found = by_code(events(example("Observation-blood-pressure-dar"), source))
    assert found["8480-6"]["result"]["value_quantity"] == 107.0
    absent = found["8462-4"]["result"]
    assert (absent["value_quantity"], absent["original_value"]) == (None, "")
    assert absent["notes"] == ["data absent: Not Performed"]


def test_a_vitals_panel_gives_its_members_in_the_bundle_their_panel(source: Source) -> None:
    bundle = collection(
        example("Observation-vitals-panel"),
        example("Observation-heart-rate"),
        example("Observation-respiratory-rate"),
        example("Observation-blood-pressure"),
    )
    found = by_code(events(bundle, source))
    assert found["85353-1"]["part_of"] is None  # the panel itself, which groups the members
    for code in ("8867-4", "9279-1"):
        assert found[code]["part_of"]["observation_id"] == "vitals-panel"
        assert found[code]["part_of"]["code"]["code"] == "85353-1"
    assert found["8867-4"]["result"]["value_quantity"] == 44.0
    assert found["9279-1"]["result"]["value_quantity"] == 26.0
    # the blood pressure is a member too, but its components belong to it
    assert found["8480-6"]["part_of"]["observation_id"] == "blood-pressure"
    [alone] = events(example("Observation-vitals-panel"), source)  # members not in the body
    assert alone.record["result"]["code"]["code"] == "85353-1"  # the grouping still arrives


def test_glucose_f001(source: Source) -> None:
    [event] = events(example("Observation-f001"), source)
    record = event.record
    result = record["result"]
    assert event.patient == record["subject"]["local_patient_id"] == "f001"
    assert record["observation_id"] == "f001"
    assert result["code"]["code"] == "15074-8"
    assert (result["value_quantity"], result["unit"], result["original_unit"]) == (
        6.3,
        "mmol/L",
        "mmol/L",
    )
    assert result["reference_range"] == {"low": 3.1, "high": 6.2, "text": "3.1-6.2"}
    assert (result["interpretation"], result["interpretation_origin"]) == ("HIGH", "SENDER")
    # effectivePeriod.start 2013-04-02T09:30:10+01:00, issued 2013-04-03T15:30:10+01:00
    assert record["effective_at"] == datetime(2013, 4, 2, 8, 30, 10, tzinfo=UTC)
    assert record["issued_at"] == datetime(2013, 4, 3, 14, 30, 10, tzinfo=UTC)
    assert record["part_of"] is None


def test_a_coded_value_blood_group(source: Source) -> None:
    [event] = events(example("Observation-bloodgroup"), source)
    result = event.record["result"]
    assert result["value_coding"]["system"] == "http://snomed.info/sct"
    assert result["value_coding"]["code"] == "112144000"
    assert (result["value_text"], result["original_value"]) == ("A", "A")
    assert result["value_quantity"] is None
    assert event.record["category"] == "LABORATORY"
    assert event.record["subject"]["local_patient_id"] == "infant"


def test_a_comparator_and_notes_egfr_f205(source: Source) -> None:
    found = by_code(events(example("Observation-f205"), source))
    assert set(found) == {"33914-3", "48643-1", "48642-3"}  # the panel and its components
    limit = found["48643-1"]["result"]
    assert (limit["comparator"], limit["value_quantity"], limit["original_value"]) == (
        ">",
        60.0,
        "60",
    )
    assert limit["interpretation"] == "NONE"  # a limit is not compared with the range
    plain = found["48642-3"]["result"]
    assert plain["comparator"] is None
    assert plain["reference_range"]["text"] == ">=60"
    for code in ("48643-1", "48642-3"):
        record = found[code]
        assert record["part_of"]["observation_id"] == "f205"
        assert record["result"]["notes"][0].startswith("GFR estimating equations")
        assert record["subject"]["local_patient_id"] == "f201"


def test_patient_example_names_and_phones_that_are_current(source: Source) -> None:
    [event] = events(example("Patient-example"), source)
    person = event.record["person"]
    assert event.patient == person["local_patient_id"] == "12345"  # the MR identifier
    assert person["identifiers"] == [
        {"type": "MEDICAL_RECORD", "value": "12345", "assigner": "F01"}
    ]
    # official first, then usual; the maiden name (ended 2002) left out
    assert [(n["family"], n["given"]) for n in person["names"]] == [
        ("Chalmers", "Peter James"),
        (None, "Jim"),
    ]
    # work (rank 1), mobile (rank 2); the old number (ended 2014) and the empty home left out
    assert person["phones"] == ["(03) 5555 6473", "(03) 3410 5613"]
    assert person["birth_date"] == date(1974, 12, 25)
    assert event.record["sex"] == "MALE"
    assert person["address"]["postal_code"] == "3999"


def test_patient_identifier_systems_decide_their_type(source: Source) -> None:
    patient = {
        "resourceType": "Patient",
        "identifier": [
            {"system": "urn:oid:2.16.156.10011.1.3", "value": "11010819870521362X"},
            {
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PPN"}
                    ]
                },
                "value": "E12345678",
                "assigner": {"display": "CHN"},
            },
            {
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "SS"}
                    ]
                },
                "value": "SS-1",
            },
            {"system": "urn:hs:F01:patient", "value": "HZ-42"},
        ],
        "name": [{"use": "official", "text": "李娜", "family": "李", "given": ["娜"]}],
        "telecom": [
            {"system": "phone", "value": "13552001234", "use": "mobile"},
            {"system": "phone", "value": "010-62001234", "period": {"end": "2020-01-01"}},
            {"system": "email", "value": "li@example.cn"},
        ],
    }
    [event] = events(patient, source)
    person = event.record["person"]
    assert person["local_patient_id"] == "HZ-42"  # the source's own system
    assert [(i["type"], i["assigner"]) for i in person["identifiers"]] == [
        ("RESIDENT_ID", "CHN"),
        ("PASSPORT", "CHN"),
        ("INSURANCE", None),
        ("MEDICAL_RECORD", "F01"),
    ]
    assert person["phones"] == ["13552001234"]
    assert person["names"][0]["script"] == "HAN"


def test_the_transaction_example(source: Source) -> None:
    result = mapped(example("Bundle-bundle-transaction"), source)
    assert result.failures == []
    patients = [e.patient for e in result.events]
    # POST with a urn:uuid fullUrl: that uuid; identifiers of no known type: their value;
    # PUT Patient/123: 123. The DELETE, GET and the $lookup Parameters give no events.
    assert patients == [
        "61ebe359-bfdc-4613-8bf2-c5e300945f0a",
        "234234",
        "123",
        "456456",
        "123a",
    ]
    assert [e.item for e in result.events] == [f"/entry/{i}/resource" for i in range(5)]


def test_urn_uuid_references_resolve_through_the_bundle(source: Source) -> None:
    patient_url = "urn:uuid:9f0c3a52-1c2b-4e55-9d0a-0d8a4c1e9f10"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": patient_url,
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [
                        {
                            "type": {
                                "coding": [
                                    {
                                        "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                        "code": "PI",
                                    }
                                ]
                            },
                            "value": "QD7700123",
                        }
                    ],
                },
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:0e1d2c3b-4a59-4876-8a29-187f6e5d4c3b",
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
                    "subject": {"reference": patient_url},
                    "valueQuantity": {
                        "value": 33.3,
                        "comparator": ">",
                        "unit": "mmol/L",
                        "system": "http://unitsofmeasure.org",
                        "code": "mmol/L",
                    },
                    "note": [{"text": "over the meter's limit"}],
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    patient, observation = events(bundle, source)
    assert patient.patient == observation.patient == "QD7700123"
    record = observation.record
    assert record["observation_id"] == "0e1d2c3b-4a59-4876-8a29-187f6e5d4c3b"
    assert record["result"]["comparator"] == ">"
    assert record["result"]["notes"] == ["over the meter's limit"]


def test_a_transaction_entry_that_cannot_be_mapped_refuses_the_whole(source: Source) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:1b3c0d2e-0000-4000-8000-000000000001",
                "resource": {"resourceType": "Practitioner"},
                "request": {"method": "POST", "url": "Practitioner"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "id": "o1",
                    "status": "final",
                    "code": {"text": "glucose"},
                    "subject": {"reference": "urn:uuid:1b3c0d2e-0000-4000-8000-000000000001"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    with pytest.raises(RejectedInput, match="/entry/1/resource/subject"):
        mapped(bundle, source)
    bundle["type"] = "collection"
    result = mapped(bundle, source)
    assert [f.item for f in result.failures] == ["/entry/1/resource"]


def test_a_batch_maps_its_good_entries_and_reports_the_bad(source: Source) -> None:
    good = {
        "resourceType": "Observation",
        "id": "hr1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": "Patient/p1"},
        "valueQuantity": {
            "value": 72,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }
    bad = {**good, "id": "hr2", "status": "done"}
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": good, "request": {"method": "POST", "url": "Observation"}},
            {"resource": bad, "request": {"method": "POST", "url": "Observation"}},
        ],
    }
    result = mapped(bundle, source)
    assert [e.record["observation_id"] for e in result.events] == ["hr1"]
    [failure] = result.failures
    assert (failure.item, failure.reason_code) == ("/entry/1/resource", "fhir.invalid")
    assert "/entry/1/resource/status" in failure.reason


def test_a_report_s_results_belong_to_it_lipids(source: Source) -> None:
    observations = events(example("Bundle-lipids"), source)
    assert [o.record["observation_id"] for o in observations] == [
        "cholesterol",
        "triglyceride",
        "hdlcholesterol",
        "ldlcholesterol",
    ]  # the DiagnosticReport itself is no event
    for observation in observations:
        assert observation.record["part_of"]["observation_id"] == "lipids"
        assert observation.record["part_of"]["code"]["code"] == "24331-1"
        # no effective time of their own: the report's, 2011-03-04T08:30:00+11:00
        assert observation.record["effective_at"] == datetime(2011, 3, 3, 21, 30, tzinfo=UTC)
    cholesterol = observations[0].record["result"]
    assert (cholesterol["value_quantity"], cholesterol["original_unit"]) == (6.3, "mmol/L")
    assert cholesterol["reference_range"]["text"] == "<=4.5"


def test_contained_observations_of_a_report(source: Source) -> None:
    report = {
        **example("DiagnosticReport-f201"),
        "contained": [
            {
                "resourceType": "Observation",
                "id": "k",
                "status": "final",
                "code": {"coding": [{"system": "urn:lis", "code": "K"}], "text": "钾"},
                "valueQuantity": {"value": 4.1, "unit": "mmol/L"},
            }
        ],
        "result": [{"reference": "#k"}],
    }
    [observation] = events(report, source)
    record = observation.record
    assert record["subject"]["local_patient_id"] == "f201"  # the report's subject
    assert record["part_of"]["observation_id"] == "f201"
    assert record["result"]["code"] is None
    assert record["result"]["code_origin"] == "UNMAPPED"
    assert record["result"]["local_code"]["code"] == "K"
    assert events(example("DiagnosticReport-f201"), source) == []


def test_values_of_every_type(source: Source) -> None:
    def value(element: dict[str, Any]) -> dict[str, Any]:
        observation = {
            "resourceType": "Observation",
            "id": "v",
            "status": "final",
            "code": {"coding": [{"system": "urn:lis", "code": "X"}]},
            "subject": {"identifier": {"system": "urn:oid:2.16.156.10011.1.3", "value": "ID1"}},
            **element,
        }
        [event] = events(observation, source)
        assert event.patient == "ID1"
        result: dict[str, Any] = event.record["result"]
        return result

    ranged = value({"valueRange": {"low": {"value": 10, "code": "U/L"}, "high": {"value": 20}}})
    assert (ranged["value_quantity"], ranged["value_upper"], ranged["original_value"]) == (
        10.0,
        20.0,
        "10-20",
    )
    ratio = value({"valueRatio": {"numerator": {"value": 1}, "denominator": {"value": 128}}})
    assert (ratio["value_quantity"], ratio["value_upper"], ratio["original_value"]) == (
        1.0,
        128.0,
        "1:128",
    )
    boolean = value({"valueBoolean": False})
    assert boolean["value_coding"]["code"] == "N"
    assert value({"valueInteger": 3})["value_quantity"] == 3.0
    text = value({"valueString": "阴性"})
    assert (text["value_text"], text["original_value"]) == ("阴性", "阴性")
    assert value({"valueString": "<0.5"})["comparator"] == "<"


def test_conditions_icd10_local_and_snomed_codes_are_all_kept(source: Source) -> None:
    def diagnosis(system: str) -> dict[str, Any]:
        condition = {
            "resourceType": "Condition",
            "id": "c1",
            "code": {"coding": [{"system": system, "code": "E11.900"}]},
            "subject": {"reference": "Patient/p1"},
            "encounter": {"reference": "Encounter/v1"},
        }
        [event] = events(condition, source)
        assert event.record["subject"] == {"local_patient_id": "p1", "encounter_id": "v1"}
        found: dict[str, Any] = event.record["diagnosis"]
        return found

    assert diagnosis("http://hl7.org/fhir/sid/icd-10")["icd10"]["code"] == "E11.900"
    local = diagnosis("http://hl7.org/fhir/sid/icd-10-cn")
    assert local["icd10"] is None
    assert local["local_code"]["system"] == "http://hl7.org/fhir/sid/icd-10-cn"
    [burn] = events(example("Condition-example"), source)
    assert burn.record["diagnosis"]["local_code"]["code"] == "39065001"
    assert burn.record["diagnosis"]["text"] == "Burnt Ear"
    assert burn.record["verification_status"] == "CONFIRMED"


def test_immunization_example(source: Source, codec: Codec) -> None:
    [event] = events(example("Immunization-example"), source)
    record = event.record
    assert event.schema == "hs.clinical.Immunization"
    assert record["subject"] == {"local_patient_id": "example", "encounter_id": "example"}
    assert (record["immunization_id"], record["status"]) == ("example", "COMPLETED")
    assert record["vaccine"]["system"] == "urn:oid:1.2.36.1.2001.1005.17"
    assert record["vaccine"]["code"] == "FLUVAX"
    assert record["lot_number"] == "AAJN11K"
    assert (record["site"]["code"], record["route"]["code"]) == ("LA", "IM")
    assert record["occurred_at"] == datetime(2013, 1, 9, 16, tzinfo=UTC)  # 2013-01-10 local
    codec.encode(event.schema, record)


def test_every_example_encodes_under_its_schema(source: Source, codec: Codec) -> None:
    for path in sorted(EXAMPLES.glob("*.json")):
        for event in mapped(example(path.stem), source).events:
            codec.encode(event.schema, event.record)


def test_a_message_bundle_skips_its_header(source: Source) -> None:
    found = events(example("Bundle-10bb101f-a121-4264-a920-67be9cb82c74"), source)
    assert [e.patient for e in found] == ["654321", "123456"]
    assert found[1].record["sex"] == "UNSPECIFIED"  # gender other
