"""Normalization of every generated HL7 message and wearable batch into canonical events that
the contracts accept; malformed ones refused with the reason the generator's truth expects."""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hs_common.codec import Codec
from hs_common.errors import RejectedInput
from hs_ingestion.devices import normalize_device_batch
from hs_ingestion.intake import Kept, receive_hl7
from hs_ingestion.normalize import normalize_raw
from hs_ingestion.sources import SourceRegistry, default_sources_dir
from hs_synth.generate import GeneratorConfig, generate
from hs_synth.replay import mllp_frames


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("normalize")
    generate(
        GeneratorConfig(
            people=800,
            days=20,
            bad_rate=0.03,
            courses={"inpatients": 4, "cgm_patients": 2, "cgm_days": 2},
        ),
        out,
        progress=False,
    )
    return out


@pytest.fixture(scope="module")
def sources() -> SourceRegistry:
    return SourceRegistry.load(default_sources_dir())


def _bad(data: Path) -> dict[tuple[str, int], str]:
    with (data / "truth" / "bad_inputs.csv").open() as f:
        return {
            (row["file"], int(row["index"])): row["expected_reason"] for row in csv.DictReader(f)
        }


def test_every_hl7_message_becomes_events_or_the_expected_refusal(
    data: Path, sources: SourceRegistry, codec: Codec
) -> None:
    bad = _bad(data)
    produced: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    for path in sorted((data / "hl7").glob("*.mllp")):
        name = f"hl7/{path.name}"
        for index, frame in enumerate(mllp_frames(path.read_bytes())):
            expected = bad.get((name, index))
            if not frame.well_formed:
                assert expected == "mllp.framing"
                continue
            kept = receive_hl7(frame.payload[1:-2], sources, codec.keyring)
            if not isinstance(kept, Kept):
                assert expected == kept.problem.reason_code, (name, index, kept.problem)
                refused[kept.problem.reason_code] += 1
                continue
            source = sources.get(kept.record["envelope"]["source"]["institution"])
            assert source is not None
            try:
                mapped = normalize_raw(kept.record, source)
            except RejectedInput as error:
                assert expected == error.reason_code, (name, index, str(error))
                refused[error.reason_code] += 1
                continue
            failures = [f.reason_code for f in mapped.failures]
            assert failures == ([expected] if expected else []), (name, index, failures)
            refused.update(failures)
            assert mapped.events  # one bad item never loses the rest of the message
            for event in mapped.events:
                codec.encode(event.schema, event.record)  # the contract accepts it
                produced[event.schema] += 1
    assert produced["hs.identity.PatientIdentity"] > 500
    assert produced["hs.clinical.Observation"] > 300
    assert produced["hs.clinical.Condition"] > 0
    assert produced["hs.clinical.Encounter"] > 0
    hl7_bad = [
        reason
        for (file, _), reason in bad.items()
        if file.startswith("hl7/") and reason != "mllp.framing"
    ]
    assert sum(refused.values()) == len(hl7_bad)
    assert {"hl7.invalid_date", "hl7.msh_missing", "hl7.delimiters"} <= set(refused)


def test_mg_per_dl_glucose_is_converted_with_its_range(
    sources: SourceRegistry, codec: Codec
) -> None:
    payload = (
        b"MSH|^~\\&|LIS|BJ03|HEALTHSTREAM|HS|20260101080000||ORU^R01^ORU_R01|C1|P|2.3.1\n"
        b"PID|1||BJ-1^^^BJ03^MR||WANG^WEI||19800101|M\n"
        b"OBR|1|O1|O1-F|LAB^LAB^L|||20260101073000\n"
        b"OBX|1|NM|GLU-S^GLUCOSE SERUM^L||126.1|mg/dL|70-110||||F|||20260101073000\n"
    )
    kept = receive_hl7(payload, sources, codec.keyring)
    assert isinstance(kept, Kept)
    [identity, event] = normalize_raw(kept.record, sources.get("BJ03")).events  # type: ignore[arg-type]
    assert identity.schema == "hs.identity.PatientIdentity"
    result = event.record["result"]
    assert result["code"]["code"] == "14749-6"
    assert result["value_quantity"] == pytest.approx(7.0, abs=0.01)
    assert (result["unit"], result["unit_status"]) == ("mmol/L", "CONVERTED")
    assert (result["original_value"], result["original_unit"]) == ("126.1", "mg/dL")
    assert result["reference_range"]["low"] == pytest.approx(3.885, abs=0.01)
    assert (result["interpretation"], result["interpretation_origin"]) == ("HIGH", "COMPUTED")
    assert event.record["category"] == "LABORATORY"
    assert event.record["effective_at"] == datetime(
        2025, 12, 31, 23, 30, tzinfo=UTC
    )  # sent as local time
    assert event.patient == "BJ-1"


def test_a_merge_carries_the_prior_identifier(sources: SourceRegistry, codec: Codec) -> None:
    payload = (
        "MSH|^~\\&|HIS|HZ01|HEALTHSTREAM|HS|20260101080000+0800||ADT^A40^ADT_A39|C2|P|2.5"
        "||||||UNICODE UTF-8\r"
        "EVN|A40|20260101080000\rPID|1||HZ2^^^HZ01^MR||王^伟||19800101|M\rMRG|HZ9^^^HZ01^MR\r"
    ).encode()
    kept = receive_hl7(payload, sources, codec.keyring)
    assert isinstance(kept, Kept)
    [event] = normalize_raw(kept.record, sources.get("HZ01")).events  # type: ignore[arg-type]
    assert event.record["kind"] == "MERGE"
    assert event.record["prior"]["local_patient_id"] == "HZ9"
    assert event.record["person"]["names"][0] == {
        "script": "HAN",
        "family": "王",
        "given": "伟",
        "text": None,
    }


def test_wearable_batches_become_readings(data: Path, codec: Codec) -> None:
    lines = (data / "devices" / "W01.ndjson").read_bytes().splitlines()
    envelope = {
        "event_id": "x",
        "source": {"institution": "W01", "system": "W01"},
        "occurred_at": None,
        "received_at": None,
        "trace_id": "t" * 32,
    }
    readings = 0
    for line in lines:
        if b'"high"' in line:
            continue
        for event in normalize_device_batch(line, envelope).events:
            readings += 1
            assert event.record["measurement"]["metric"] in {
                "GLUCOSE",
                "SYSTOLIC_BP",
                "DIASTOLIC_BP",
                "HEART_RATE",
                "SPO2",
            }
    assert readings == sum(
        len(json.loads(line)["readings"]) for line in lines if b'"high"' not in line
    )


def _raw_record(payload: bytes, source: str, charset: str = "utf-8") -> dict[str, object]:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    envelope = {
        "event_id": "e",
        "source": {"institution": source, "system": source},
        "occurred_at": at,
        "received_at": at,
        "trace_id": "t" * 32,
    }
    return {"payload": payload, "charset": charset, "envelope": envelope, "content_type": "x"}


def test_clinic_json_csv_and_fhir_map_through_their_source_files(
    data: Path, sources: SourceRegistry, codec: Codec
) -> None:
    bad = _bad(data)
    produced: Counter[tuple[str, str]] = Counter()
    plays: list[tuple[str, str, bytes]] = []
    for name, code in (("clinics/HZC01.ndjson", "HZC01"), ("fhir/F01.ndjson", "F01")):
        for index, line in enumerate((data / name).read_bytes().splitlines()):
            if (name, index) not in bad:
                plays.append((name, code, line))
    for batch in sorted((data / "clinics" / "SHC02").glob("*.csv")):
        if (f"clinics/SHC02/{batch.name}", 0) not in bad:
            plays.append(("SHC02", "SHC02", batch.read_bytes()))
    for _, code, payload in plays:
        source = sources.get(code)
        assert source is not None
        for event in normalize_raw(_raw_record(payload, code), source).events:
            codec.encode(event.schema, event.record)
            produced[(code, event.schema)] += 1
    for code in ("HZC01", "SHC02", "F01"):
        assert produced[(code, "hs.identity.PatientIdentity")] > 0, code
    assert produced[("HZC01", "hs.clinical.Observation")] > 0
    assert (
        produced[("F01", "hs.clinical.Observation")] + produced[("F01", "hs.clinical.Condition")]
        > 0
    )


def test_clinic_glucose_in_mg_per_dl_is_converted(sources: SourceRegistry) -> None:
    item = {"xmdm": "xt", "xmmc": "血糖", "jg": 126.1, "dw": "mg/dL", "ckfw": "70-110"}
    document = {
        "lx": "jy",
        "jmbh": "JM1",
        "jcsj": "2026-01-02T08:00:00+08:00",
        "jybh": "J1",
        "xm": [item],
    }
    source = sources.get("HZC01")
    assert source is not None
    [event] = normalize_raw(
        _raw_record(json.dumps(document, ensure_ascii=False).encode(), "HZC01"), source
    ).events
    result = event.record["result"]
    assert (result["unit"], result["unit_status"], result["interpretation"]) == (
        "mmol/L",
        "CONVERTED",
        "HIGH",
    )
    assert result["value_quantity"] == pytest.approx(7.0, abs=0.01)
    assert event.patient == "JM1"


def test_a_clinic_code_without_mapping_arrives_unmapped(sources: SourceRegistry) -> None:
    document = {
        "lx": "jy",
        "jmbh": "JM1",
        "jcsj": "2026-01-02T08:00:00+08:00",
        "xm": [{"xmdm": "zzz", "jg": 1, "dw": "U/L"}, {"xmdm": "xt", "jg": "?", "dw": "mmol/L"}],
    }
    source = sources.get("HZC01")
    assert source is not None
    mapped = normalize_raw(_raw_record(json.dumps(document).encode(), "HZC01"), source)
    unmapped, text = (e.record["result"] for e in mapped.events)
    assert (unmapped["code"], unmapped["code_origin"], unmapped["value_quantity"]) == (
        None,
        "UNMAPPED",
        1.0,
    )
    assert (text["value_quantity"], text["value_text"]) == (None, "?")
    assert mapped.failures == []


def test_times_without_an_offset_are_read_in_the_source_s_own_offset(
    sources: SourceRegistry,
) -> None:
    shc02 = sources.get("SHC02")
    assert shc02 is not None
    csv_batch = (
        b"record_type,patient_no,event_time,item_code,result,unit\r\n"
        b"lab,42,2026-01-02 08:00:00,FBG,5.5,mmol/L\r\n"
    )
    for zone, hour in (("Asia/Shanghai", 0), ("UTC", 8), ("+05:30", 2)):
        source = replace(shc02, time_zone=zone)
        [event] = normalize_raw(_raw_record(csv_batch, "SHC02"), source).events
        minute = 30 if zone == "+05:30" else 0
        assert event.record["effective_at"] == datetime(2026, 1, 2, hour, minute, tzinfo=UTC)
