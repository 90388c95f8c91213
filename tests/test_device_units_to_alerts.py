"""Wearable readings in the units vendors send, from the batch through ingestion's mapping,
the contract and vitals' input to the patient's monitor. Expected alerts from the
definitions: 36 mg/dL glucose is 2.0 mmol/L (180.156 g/mol), below the level-2 threshold of
3.0 mmol/L (Battelino 2019); 100 mg/dL is 5.55 mmol/L, in range; 101.3 °F is 38.5 °C; a
unit nobody can read is never taken as mmol/L."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from hs_common.codec import Codec
from hs_common.envelope import new_envelope
from hs_ingestion.devices import normalize_device_batch
from hs_vitals.inputs import from_device
from hs_vitals.monitor import Action, Metric, PatientMonitor, Reading

CHINA = timezone(timedelta(hours=8))
START = datetime(2026, 3, 1, 8, tzinfo=CHINA)
READINGS = 36  # every 5 minutes for 3 hours: past a CGM sensor's hour of warm-up


def _monitor_inputs(codec: Codec, metric: str, value: float, unit: str) -> list[dict[str, object]]:
    times = [(START + timedelta(minutes=5 * i)).isoformat() for i in range(READINGS)]
    readings = [{"type": metric, "value": value, "unit": unit, "time": at} for at in times]
    batch = {"device_id": "CGM-1", "patient_ref": "BJ03:B-1", "readings": readings}
    envelope = new_envelope("W01", "cloud", START)
    inputs = []
    for event in normalize_device_batch(json.dumps(batch).encode(), envelope).events:
        record = codec.decode(codec.encode(event.schema, event.record)).record  # the contract
        inputs += from_device(record, codec.keyring.pseudonym)
    return inputs


def _rules_opened(inputs: list[dict[str, object]]) -> set[str]:
    monitor = PatientMonitor()
    opened = set()
    for item in inputs:
        reading = item["reading"]
        assert isinstance(reading, dict)
        at = item["at"]
        assert isinstance(at, datetime)
        observed = Reading(reading["device"], Metric(reading["metric"]), reading["value"], at)
        outcome = monitor.observe(observed)
        assert outcome.implausible == []
        opened |= {a.rule for a in outcome.alerts if a.action is Action.OPENED}
    return opened


def test_a_low_glucose_in_mg_per_dl_opens_the_level_2_hypoglycaemia_alert(codec: Codec) -> None:
    inputs = _monitor_inputs(codec, "glucose", 36, "mg/dL")
    assert inputs[0]["reading"]["value"] == pytest.approx(36 / 18.0156)  # type: ignore[index]
    opened = _rules_opened(inputs)
    assert "glucose.hypo.level2" in opened
    assert "glucose.hyper" not in opened


def test_a_normal_glucose_in_mg_per_dl_is_used_and_raises_nothing(codec: Codec) -> None:
    inputs = _monitor_inputs(codec, "glucose", 100, "mg/dL")
    assert len(inputs) == READINGS  # none discarded as implausible
    assert _rules_opened(inputs) == set()


def test_a_fever_in_fahrenheit_reaches_the_monitor_in_celsius(codec: Codec) -> None:
    inputs = _monitor_inputs(codec, "body_temperature", 101.3, "[degF]")
    assert len(inputs) == READINGS
    assert inputs[0]["reading"]["value"] == pytest.approx((101.3 - 32) * 5 / 9)  # type: ignore[index]
    _rules_opened(inputs)  # plausible: used, not discarded


def test_a_unit_nobody_can_read_is_not_alerted_on(codec: Codec) -> None:
    assert _monitor_inputs(codec, "glucose", 2.0, "furlongs") == []


def test_a_bound_reading_belongs_to_the_enrolling_institution_s_patient(codec: Codec) -> None:
    [first, *_] = _monitor_inputs(codec, "glucose", 100, "mg/dL")
    assert first["patient_key"] == codec.keyring.pseudonym("BJ03", "B-1")
