"""HL7 v2 as other systems send it: each item on its own, every value shape, identity by
identifier type, the envelope's options. Messages written by hand; expected values read from
the messages and from HL7 v2.5.1 (chapters 2, 3 and 7), not from the code's output."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from hs_common.crypto import Keyring
from hs_ingestion.ack import Outcome, answers
from hs_ingestion.canonical import Mapped
from hs_ingestion.devices import normalize_device_batch
from hs_ingestion.hl7 import decode, parse, split_messages
from hs_ingestion.intake import Kept, Refused, receive_hl7
from hs_ingestion.normalize import normalize_raw
from hs_ingestion.sources import Source, SourceRegistry
from hs_ingestion.unmapped import unmapped_codes

LAB = Source(
    "LAB1",
    "A laboratory",
    ("mllp",),
    codes={"GLU": "http://loinc.org|14749-6", "K": "http://loinc.org|2823-3",
           "BP": "http://loinc.org|85354-9", "T": "http://loinc.org|8310-5"},
)  # fmt: skip
MSH = "MSH|^~\\&|LIS|LAB1|HS|HS|20260301080000||ORU^R01^ORU_R01|{id}|P|2.5.1\r"
PID = (
    "PID|1||110101198001010011^^^CHN^NI~L-77^^^LAB1^PI||张^三^^^^^L~李^三^^^^^M||19800101|M"
    "|||||13800000000^PRN^PH~a@b.cn^NET^Internet\r"
)


KEYRING = Keyring.generate()


def _map(text: str, source: Source = LAB) -> Mapped:
    registry = SourceRegistry({source.code: source})
    kept = receive_hl7(text.encode(), registry, KEYRING)
    assert isinstance(kept, Kept), kept
    return normalize_raw(kept.record, source)


def _observations(mapped: Mapped) -> list[dict[str, Any]]:
    return [e.record for e in mapped.events if e.schema == "hs.clinical.Observation"]


def test_one_unreadable_result_is_its_own_failure_and_the_rest_arrive() -> None:
    message = (
        MSH.format(id="M1")
        + PID.replace("19800101", "19800230")
        + "OBR|1|||PANEL\r"
        + "OBX|1|NM|GLU^Glucose^L||<7|mmol/L|3.9-6.1||||F\r"
        + "OBX|2|NM|K^Potassium^L||>7|mmol/L|3.5-5.3||||F\r"
        + "OBX|3|NM|XYZ^Something nobody mapped^L||12|U/L|||||F\r"
        + "OBX|4|NM|GLU^Glucose^L||?7|mmol/L|||||F\r"
        + "OBX|5|NM|K^Potassium^L|||mmol/L|||||X\r"
    )
    mapped = _map(message)
    by_set = {o["observation_id"].rsplit("-", 1)[-1]: o for o in _observations(mapped)}
    assert sorted(by_set) == ["1", "2", "3", "5"]
    assert (by_set["1"]["result"]["comparator"], by_set["1"]["result"]["value_quantity"]) == (
        "<",
        7.0,
    )
    assert (by_set["2"]["result"]["comparator"], by_set["2"]["result"]["value_quantity"]) == (
        ">",
        7.0,
    )
    unmapped = by_set["3"]["result"]
    assert unmapped["code"] is None and unmapped["code_origin"] == "UNMAPPED"
    assert (unmapped["local_code"]["code"], unmapped["value_quantity"], unmapped["unit"]) == (
        "XYZ",
        12.0,
        "U/L",
    )
    assert by_set["5"]["result"]["value_quantity"] is None
    assert by_set["5"]["status"] == "CANNOT_OBTAIN"
    failures = {f.item: f.reason_code for f in mapped.failures}
    assert failures == {"OBX 4": "hl7.invalid_value", "PID-7": "hl7.invalid_date"}
    [identity] = [e.record for e in mapped.events if e.schema == "hs.identity.PatientIdentity"]
    assert identity["person"]["birth_date"] is None  # flagged, not guessed


def test_the_sender_s_own_loinc_is_used_as_sent() -> None:
    message = (
        MSH.format(id="M2")
        + PID
        + "OBR|1|O2||X\r"
        + "OBX|1|NM|2341-6^Glucose [Mass/volume] in Blood^LN||101|mg/dL|||||F\r"
    )
    [observation] = _observations(_map(message))
    result = observation["result"]
    assert (result["code"]["code"], result["code_origin"]) == ("2341-6", "SENDER")
    assert (result["value_quantity"], result["unit"]) == (101.0, "mg/dL")


def test_structured_numeric_values() -> None:
    message = (
        MSH.format(id="M3")
        + PID
        + "OBR|1|O3||X\r"
        + (
            "OBX|1|SN|A^a^L||^182|mg/dL|||||F\r"
            "OBX|2|SN|B^b^L||<^30|mg/dL|||||F\r"
            "OBX|3|SN|C^c^L||^10^-^20|/[HPF]|||||F\r"
            "OBX|4|SN|D^d^L||^1^:^128||||||F\r"
        )
    )
    results = [o["result"] for o in _observations(_map(message))]
    shapes = [(r["comparator"], r["value_quantity"], r["value_upper"]) for r in results]
    assert shapes == [
        (None, 182.0, None),
        ("<", 30.0, None),
        (None, 10.0, 20.0),
        (None, 1.0, 128.0),
    ]
    assert results[1]["original_value"] == "<^30"


def test_hl7_nulls_repetitions_and_comments() -> None:
    message = (
        MSH.format(id="M4")
        + PID
        + "OBR|1|O4||X\r"
        + (
            'OBX|1|ST|A^a^L||""|""|||||F\r'
            "OBX|2|ST|B^b^L||first~second~third||||||F\r"
            "NTE|1||haemolysed sample\r"
            "NTE|2||repeat advised\r"
        )
    )
    first, second = _observations(_map(message))
    assert first["result"]["value_text"] is None and first["result"]["original_unit"] is None
    assert second["result"]["value_text"] == "first"
    assert second["result"]["other_values"] == ["second", "third"]
    assert second["result"]["notes"] == ["haemolysed sample", "repeat advised"]
    assert first["result"]["notes"] == []


def test_a_blood_pressure_sent_as_text_becomes_its_two_parts() -> None:
    message = (
        MSH.format(id="M5") + PID + "OBR|1|O5||X\r" + "OBX|1|ST|BP^血压^L||140/90|mmHg|||||F\r"
    )
    systolic, diastolic = _observations(_map(message))
    assert [systolic["result"]["code"]["code"], diastolic["result"]["code"]["code"]] == [
        "8480-6",
        "8462-4",
    ]
    assert (systolic["result"]["value_quantity"], diastolic["result"]["value_quantity"]) == (
        140.0,
        90.0,
    )
    assert systolic["result"]["unit"] == diastolic["result"]["unit"] == "mm[Hg]"
    assert systolic["part_of"]["observation_id"] == "O5-1"
    assert systolic["category"] == "VITAL_SIGNS"


def test_a_temperature_without_a_unit_is_not_taken_to_be_celsius() -> None:
    message = (
        MSH.format(id="M6")
        + PID
        + "OBR|1|O6||X\r"
        + (
            "OBX|1|NM|T^Temp^L||102.2||||||F\rOBX|2|NM|T^Temp^L||101.3|[degF]|||||F\r"
            "OBX|3|NM|T^Temp^L||38|furlongs|||||F\r"
        )
    )
    bare, fahrenheit, nonsense = (o["result"] for o in _observations(_map(message)))
    assert (bare["unit"], bare["unit_status"]) == (None, "NO_UNIT")
    assert fahrenheit["unit"] == "Cel"
    assert fahrenheit["value_quantity"] == pytest.approx((101.3 - 32) * 5 / 9, abs=1e-6)
    assert (nonsense["value_quantity"], nonsense["unit_status"]) == (None, "UNKNOWN_UNIT")


def test_identity_by_identifier_type_and_current_names_and_phones() -> None:
    mapped = _map(MSH.format(id="M7") + PID + "OBR|1|O7||X\rOBX|1|NM|GLU^g^L||5|mmol/L|||||F\r")
    [identity] = [e for e in mapped.events if e.schema == "hs.identity.PatientIdentity"]
    person = identity.record["person"]
    assert identity.patient == person["local_patient_id"] == "L-77"  # PI, not the resident ID
    assert [i["type"] for i in person["identifiers"]] == ["RESIDENT_ID", "MEDICAL_RECORD"]
    assert [n["family"] for n in person["names"]] == ["张"]  # the maiden name is not current
    assert person["phones"] == ["13800000000"]  # the e-mail address is no phone
    assert all(e.patient == "L-77" for e in mapped.events)


def test_results_without_order_numbers_get_distinct_ids() -> None:
    one = _observations(
        _map(MSH.format(id="A1") + PID + "OBR|1\rOBX|1|NM|GLU^g^L||5|mmol/L|||||F\r")
    )
    two = _observations(
        _map(MSH.format(id="A2") + PID + "OBR|1\rOBX|1|NM|GLU^g^L||6|mmol/L|||||F\r")
    )
    assert one[0]["observation_id"] != two[0]["observation_id"]


@pytest.mark.parametrize(
    ("accept", "application", "outcome", "expected"),
    [("", "", Outcome.ACCEPTED, ["AA"]), ("", "", Outcome.REJECTED, ["AR"]),
     ("AL", "NE", Outcome.ACCEPTED, ["CA"]), ("NE", "NE", Outcome.ACCEPTED, []),
     ("NE", "NE", Outcome.REJECTED, []), ("ER", "NE", Outcome.ACCEPTED, []),
     ("ER", "NE", Outcome.ERROR, ["CE"]), ("SU", "NE", Outcome.ACCEPTED, ["CA"]),
     ("SU", "NE", Outcome.REJECTED, []), ("ER", "AL", Outcome.ACCEPTED, ["AA"]),
     ("AL", "AL", Outcome.ACCEPTED, ["CA", "AA"]), ("AL", "ER", Outcome.REJECTED, ["CR", "AR"])],
)  # fmt: skip
def test_acknowledgement_modes(
    accept: str, application: str, outcome: Outcome, expected: list[str]
) -> None:
    """HL7 v2.5.1 §2.9.3 and table 0155: MSH-15 asks for the commit, MSH-16 for the
    application acknowledgement: AL always, NE never, ER on error, SU on success."""
    text = f"MSH|^~\\&|A|B|C|D|20260101||ADT^A08|1|P|2.5|||{accept}|{application}\rPID|1||X\r"
    frames = answers(parse(text), outcome)
    assert [f.split(b"MSA|")[1][:2].decode() for f in frames] == expected


def test_a_batch_splits_into_its_messages() -> None:
    first = MSH.format(id="B1") + PID
    second = MSH.format(id="B2") + PID
    batch = f"FHS|^~\\&|LIS\rBHS|^~\\&|LIS\r{first}{second}BTS|2\rFTS|1\r".encode()
    assert split_messages(batch) == [first.encode(), second.encode()]


def test_undeclared_utf8_and_common_charset_spellings() -> None:
    utf8 = (MSH.format(id="C1") + PID).encode("utf-8")
    assert decode(utf8) == (utf8.decode("utf-8"), "utf-8")
    gbk = (MSH.format(id="C2").rstrip("\r") + "||||||GBK\r" + PID).encode("gbk")
    assert decode(gbk)[0].count("张") == 1
    undeclared_gbk = (MSH.format(id="C3") + PID).encode("gbk")
    assert decode(undeclared_gbk) == (undeclared_gbk.decode("gb18030"), "gb18030")


def test_senders_by_application_and_facility_or_by_port() -> None:
    lis = replace(LAB, code="LIS1", facility="H1", sending_applications=("LIS",))
    his = replace(LAB, code="HIS1", facility="H1", sending_applications=("HIS",))
    port = replace(LAB, code="PORT1", listener_port=2600)
    registry = SourceRegistry({s.code: s for s in (lis, his, port)})
    keyring = KEYRING
    for application, expected in (("LIS", "LIS1"), ("HIS", "HIS1")):
        text = f"MSH|^~\\&|{application}|H1|HS|HS|20260301||ADT^A08|X|P|2.5\r{PID}"
        kept = receive_hl7(text.encode(), registry, keyring)
        assert (
            isinstance(kept, Kept) and kept.record["envelope"]["source"]["institution"] == expected
        )
    nameless = f"MSH|^~\\&|||HS|HS|20260301||ADT^A08|X|P|2.5\r{PID}".encode()
    assert isinstance(receive_hl7(nameless, registry, keyring), Refused)
    kept = receive_hl7(nameless, registry, keyring, port=2600)
    assert isinstance(kept, Kept) and kept.record["envelope"]["source"]["institution"] == "PORT1"


def test_times_in_the_source_s_zone_with_daylight_saving() -> None:
    berlin = replace(LAB, time_zone="Europe/Berlin")
    times = []
    for stamp in ("20260115120000", "20260715120000"):
        text = (
            MSH.format(id=stamp)
            + PID
            + f"OBR|1|O{stamp}||X|||{stamp}\rOBX|1|NM|GLU^g^L||5|mmol/L|||||F\r"
        )
        [observation] = _observations(_map(text, berlin))
        times.append(observation["effective_at"])
    assert times == [datetime(2026, 1, 15, 11, tzinfo=UTC), datetime(2026, 7, 15, 10, tzinfo=UTC)]


ENVELOPE = {
    "event_id": "e", "source": {"institution": "W01", "system": "W01"},
    "occurred_at": None, "received_at": None, "trace_id": "t" * 32,
}  # fmt: skip


@pytest.mark.parametrize(
    ("metric", "value", "unit", "expected", "canonical", "status"),
    [
        ("glucose", 36.0, "mg/dL", 36 / 18.0156, "mmol/L", "CONVERTED"),
        ("glucose", 100.0, "mg/dL", 100 / 18.0156, "mmol/L", "CONVERTED"),
        ("body_temperature", 101.3, "°F", (101.3 - 32) * 5 / 9, "Cel", "CONVERTED"),
        ("glucose", 5.0, "furlongs", 5.0, "furlongs", "UNKNOWN_UNIT"),
        ("heart_rate", 72.0, "bpm", 72.0, "/min", "RENAMED"),
    ],
)
def test_device_readings_are_converted_or_marked(
    metric: str, value: float, unit: str, expected: float, canonical: str, status: str
) -> None:
    reading = {"type": metric, "value": value, "unit": unit, "time": "2026-03-01T08:00:00+08:00"}
    batch = {"device_id": "D1", "patient_ref": "BJ03:B-1", "readings": [reading]}
    [event] = normalize_device_batch(json.dumps(batch).encode(), ENVELOPE).events
    measurement = event.record["measurement"]
    assert measurement["value"] == pytest.approx(expected, rel=1e-4)
    assert (measurement["unit"], measurement["unit_status"]) == (canonical, status)
    assert (measurement["original_value"], measurement["original_unit"]) == (value, unit)
    assert event.record["binding"] == {
        "device_id": "D1",
        "local_patient_id": "B-1",
        "institution": "BJ03",
    }
    assert (event.institution, event.patient) == ("BJ03", "B-1")


def test_unmapped_codes_come_with_the_line_that_maps_them() -> None:
    message = (
        MSH.format(id="U1")
        + PID
        + "OBR|1|U1||X\r"
        + (
            "OBX|1|NM|XT01^血糖^L||5.6|mmol/L|||||F\r"
            "OBX|2|NM|XT01^血糖^L||6.1|mmol/L|||||F\r"
            "OBX|3|NM|GLU^Glucose^L||5|mmol/L|||||F\r"
        )
    )
    [found] = unmapped_codes(_observations(_map(message)))
    assert (found.institution, found.code, found.results) == ("LAB1", "XT01", 2)
    first = found.source_file_lines()[0]
    assert first.startswith('"XT01" = "14749-6"')  # molar glucose in serum or plasma
