"""hs-vitals as a process against the real broker: device readings, charted observations,
person links, diagnoses and acknowledgements in; alerts, escalations and daily summaries out,
sealed, exactly once across a SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from confluent_kafka.admin import AdminClient

from hs_common.codec import Codec
from hs_common.crypto import Keyring
from hs_common.envelope import new_envelope
from hs_common.kafka import make_producer
from hs_common.settings import RuntimeSettings
from hs_common.testing import TopicFactory, read_all, writer_headers
from hs_vitals.cgm import summarise_readings
from hs_vitals.monitor import NEWS2_PARAMETERS, Metric, PatientMonitor, Reading
from hs_vitals.observations import UNIT_OF
from hs_vitals.service import alert_id

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
FIVE = timedelta(minutes=5)


SOURCES = ("READING", "OBSERVATION", "CONDITION", "PERSON", "ACK")
OUTPUTS = ("ALERT", "SUMMARY", "FLAG")  # one partition each, read in order by the tests


def service_env(
    bootstrap: str,
    keyring: Keyring,
    tmp_path: Path,
    new_topic: TopicFactory,
    partitions: int = 3,
    **settings: str,
) -> dict[str, str]:
    """hs-vitals's environment for a test: its own topics (HS_VITALS_<NAME>_TOPIC, made here
    unless given), group, keys and state folder."""
    keyring.to_file(tmp_path / "keyring.json")
    env = os.environ | {
        "HS_ENV": "test", "HS_KAFKA_BOOTSTRAP": bootstrap,
        "HS_KEYRING_FILE": str(tmp_path / "keyring.json"), "HS_METRICS_PORT": "0",
        "HS_LOG_LEVEL": "WARNING", "HS_VITALS_GROUP": f"vitals-{uuid.uuid4().hex[:6]}",
        "HS_VITALS_STATE_DIR": str(tmp_path / "state"), "HS_TOPIC_PARTITIONS": str(partitions),
        "HS_DEAD_LETTER_TOPIC": new_topic("dead", 1),
    }  # fmt: skip
    for name in (*SOURCES, "INPUT", *OUTPUTS):
        env[f"HS_VITALS_{name}_TOPIC"] = new_topic(
            name.lower(), 1 if name in OUTPUTS else partitions
        )
    return env | settings


WARD = "WARD01"
LOINC = "http://loinc.org"
CHARTED = {  # metric -> (code system, code) as the normalizer writes them
    Metric.RESPIRATORY_RATE: (LOINC, "9279-1"),
    Metric.SPO2: (LOINC, "59408-5"),
    Metric.SYSTOLIC_BP: (LOINC, "8480-6"),
    Metric.HEART_RATE: (LOINC, "8867-4"),
    Metric.BODY_TEMPERATURE: (LOINC, "8310-5"),
    Metric.CONSCIOUSNESS: (LOINC, "80288-4"),
    Metric.SUPPLEMENTAL_OXYGEN: ("urn:hs:analyte", "supplemental_oxygen"),
}


DEVICE_UNIT = {**UNIT_OF, Metric.GLUCOSE: "mmol/L"}  # what ingestion converts readings into


class Feed:
    """Writes source records the way ingestion, the EMPI and the edge write them."""

    def __init__(self, settings: RuntimeSettings, codec: Codec, env: dict[str, str]) -> None:
        self.codec, self.env = codec, env
        self.producer = make_producer(settings, f"feed-{uuid.uuid4().hex[:4]}")

    def key(self, institution: str, patient: str) -> str:
        return self.codec.keyring.pseudonym(institution, patient)

    def _send(self, source: str, schema: str, key: str, record: Mapping[str, Any]) -> None:
        value = self.codec.encode(schema, record)
        topic, headers = self.env[f"HS_VITALS_{source}_TOPIC"], writer_headers(self.codec, value)
        self.producer.produce(topic, value=value, key=key, headers=headers)

    def device(
        self,
        patient: str,
        metric: Metric,
        value: float,
        at: datetime,
        institution: str = "CGMVENDOR",
    ) -> None:
        record = {
            "envelope": new_envelope(institution, "cloud", at),
            "binding": {"device_id": f"DEV-{patient}", "local_patient_id": patient},
            "measurement": {"metric": metric.value, "value": value, "unit": DEVICE_UNIT[metric]},
            "measured_at": at,
        }
        key = self.key(institution, f"DEV-{patient}")
        self._send("READING", "hs.device.DeviceReading", key, record)

    def charted(self, patient: str, metric: Metric, value: float, at: datetime) -> None:
        system, code = CHARTED[metric]
        coded = metric in (Metric.CONSCIOUSNESS, Metric.SUPPLEMENTAL_OXYGEN)
        answer = ("A" if value < 0.5 else "V") if metric is Metric.CONSCIOUSNESS else "N"
        answer = "Y" if metric is Metric.SUPPLEMENTAL_OXYGEN and value >= 0.5 else answer
        coding = {"system": "urn:test", "code": answer, "display": None, "version": None}
        record = {
            "envelope": new_envelope(WARD, "EMR", at),
            "subject": {"local_patient_id": patient, "encounter_id": None},
            "observation_id": uuid.uuid4().hex,
            "category": "VITAL_SIGNS",
            "status": "FINAL",
            "effective_at": at,
            "issued_at": at,
            "result": {
                "code": {"system": system, "code": code, "display": None, "version": None},
                "local_code": {
                    "system": "urn:test",
                    "code": code,
                    "display": None,
                    "version": None,
                },
                "value_quantity": None if coded else value,
                "unit": None if coded else UNIT_OF[metric],
                "value_coding": coding if coded else None,
                "value_text": None,
                "original_value": str(value),
                "original_unit": None if coded else UNIT_OF[metric],
                "unit_status": "NO_UNIT" if coded else "UCUM_AS_SENT",
                "reference_range": None,
                "interpretation": "NONE",
                "interpretation_origin": "NONE",
                "original_flag": None,
            },
        }
        self._send("OBSERVATION", "hs.clinical.Observation", self.key(WARD, patient), record)

    def person(self, person_id: str, patients: list[str], at: datetime) -> None:
        record = {
            "envelope": new_envelope(WARD, "empi", at),
            "person_id": person_id, "status": "ACTIVE", "merged_into": None,
            "record_keys": [self.key(WARD, p) for p in patients],
            "golden": None, "field_sources": {}, "flags": [],
        }  # fmt: skip
        self._send("PERSON", "hs.identity.Person", person_id, record)

    def diagnosis(self, patient: str, icd10: str, at: datetime) -> None:
        record = {
            "envelope": new_envelope(WARD, "HIS", at),
            "subject": {"local_patient_id": patient, "encounter_id": None},
            "condition_id": uuid.uuid4().hex,
            "diagnosis": {
                "icd10": {"system": "http://hl7.org/fhir/sid/icd-10", "code": icd10,
                          "display": None, "version": None},
                "icd11": None, "local_code": None, "text": None,
            },
            "verification_status": "CONFIRMED", "onset_at": None, "recorded_at": at,
        }  # fmt: skip
        self._send("CONDITION", "hs.clinical.Condition", self.key(WARD, patient), record)

    def acknowledge(self, alert: Mapping[str, Any], at: datetime) -> None:
        record = {
            "envelope": new_envelope(WARD, "edge", at),
            "alert_id": alert["alert_id"], "patient_key": alert["patient_key"],
            "rule_id": alert["rule_id"], "acknowledged_by": "nurse-7", "at": at,
        }  # fmt: skip
        self._send("ACK", "hs.vitals.Acknowledgement", str(alert["patient_key"]), record)

    def raw(self, source: str, value: bytes) -> None:
        self.producer.produce(self.env[f"HS_VITALS_{source}_TOPIC"], value=value, key=b"x")

    def flush(self) -> None:
        assert self.producer.flush(10) == 0


def decoded_alerts(
    codec: Codec, received: list[tuple[bytes | None, bytes]]
) -> list[dict[str, Any]]:
    return [codec.decode(value).record for _, value in received]


def start(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["hs-vitals"], env=env)


def stop(service: subprocess.Popen[bytes]) -> None:
    service.terminate()
    service.wait(30)


def test_a_cgm_low_becomes_one_alert_that_opens_and_resolves(
    runtime_settings: RuntimeSettings, codec: Codec, keyring: Keyring, new_topic: TopicFactory,
    kafka_bootstrap: str, kafka_admin: AdminClient, tmp_path: Path,
) -> None:  # fmt: skip
    env = service_env(kafka_bootstrap, keyring, tmp_path, new_topic)
    feed = Feed(runtime_settings, codec, env)
    trace = [6.0] * 24 + [3.5, 3.6, 3.4, 3.5, 3.6] + [6.1] * 3  # worn 2 h, 20 min low, back
    for patient in ("U1", "U2"):
        values = trace if patient == "U1" else [6.0] * len(trace)
        for i, value in enumerate(values):
            feed.device(patient, Metric.GLUCOSE, value, T0 + i * FIVE)
    feed.flush()

    service = start(env)
    try:
        received = read_all(kafka_bootstrap, env["HS_VITALS_ALERT_TOPIC"], 2, timeout=90, idle=60)
    finally:
        stop(service)
    decoded = decoded_alerts(codec, received)
    assert [(a["rule_id"], a["action"]) for a in decoded] == [
        ("glucose.hypo.level1", "OPENED"),
        ("glucose.hypo.level1", "RESOLVED"),
    ]
    opened, resolved = decoded
    assert opened["alert_id"] == resolved["alert_id"]
    assert opened["at"] == T0 + 27 * FIVE  # 15 minutes after the first low reading
    assert opened["escalate_at"] == opened["at"] + timedelta(minutes=15)
    assert [r["value"] for r in opened["readings"]] == [3.5, 3.6, 3.4, 3.5]
    assert opened["patient_key"] == codec.keyring.pseudonym("CGMVENDOR", "U1")
    assert b"3.5" not in received[0][1]  # the readings travel sealed

    # what hs-vitals keeps outside the process (its input topic, the state changelog) is sealed
    group = env["HS_VITALS_GROUP"]
    changelogs = [t for t in kafka_admin.list_topics(timeout=10).topics if group in t]
    assert any("changelog" in t for t in changelogs)
    for topic in [env["HS_VITALS_INPUT_TOPIC"], *changelogs]:
        stored = [data for _, data in read_all(kafka_bootstrap, topic, idle=2)]
        assert stored, topic
        for data in stored:
            assert b"GLUCOSE" not in data and b"U1" not in data and b'"pending"' not in data


def test_a_ward_news2_person_cohort_acknowledgement_and_escalation_by_the_clock(
    runtime_settings: RuntimeSettings, codec: Codec, keyring: Keyring, new_topic: TopicFactory,
    kafka_bootstrap: str, tmp_path: Path,
) -> None:  # fmt: skip
    cohorts = tmp_path / "cohorts.toml"
    cohorts.write_text(
        "[defaults]\nescalate_after_minutes = 0.5\n"
        '[cohorts.copd]\nconditions = ["J44"]\nspo2_low = 88.0\n'
    )
    env = service_env(
        kafka_bootstrap, keyring, tmp_path, new_topic,
        HS_VITALS_COHORTS_FILE=str(cohorts), HS_VITALS_GRACE_SECONDS="0",
    )  # fmt: skip
    feed = Feed(runtime_settings, codec, env)
    now = datetime.now(UTC).replace(microsecond=0)
    feed.person("P-W1", ["W1"], now - timedelta(days=1))
    feed.diagnosis("W2", "J44.1", now - timedelta(days=1))  # COPD: SpO2 target 88-92%
    feed.flush()
    service = start(env)
    try:
        read_all(kafka_bootstrap, env["HS_VITALS_INPUT_TOPIC"], 2, timeout=60, idle=60)
        # W1: a charted set with the monitor's SpO2, heart rate and blood pressure: NEWS2 10
        for metric, value in [
            (Metric.RESPIRATORY_RATE, 25), (Metric.BODY_TEMPERATURE, 38.5),
            (Metric.CONSCIOUSNESS, 0), (Metric.SUPPLEMENTAL_OXYGEN, 0),
        ]:  # fmt: skip
            feed.charted("W1", metric, value, now)
        for metric, value in [
            (Metric.SPO2, 93), (Metric.HEART_RATE, 125), (Metric.SYSTOLIC_BP, 95),
        ]:  # fmt: skip
            feed.device("W1", metric, value, now, institution=WARD)
        # W2 (COPD) and W3: SpO2 89% for ten minutes
        for minute in range(11):
            for patient in ("W2", "W3"):
                feed.device(patient, Metric.SPO2, 89, now + timedelta(minutes=minute), WARD)
        feed.flush()
        alerts = env["HS_VITALS_ALERT_TOPIC"]
        opened = decoded_alerts(codec, read_all(kafka_bootstrap, alerts, 4, timeout=60, idle=60))
        emergency = next(a for a in opened if a["rule_id"] == "news2.emergency")
        feed.acknowledge(emergency, datetime.now(UTC))
        feed.flush()
        received = read_all(kafka_bootstrap, alerts, 7, timeout=120, idle=120)
        received += read_all(kafka_bootstrap, alerts, idle=5)[len(received) :]
    finally:
        stop(service)
    events = decoded_alerts(codec, received)
    w1, w3 = feed.key(WARD, "W1"), feed.key(WARD, "W3")
    assert Counter((a["patient_key"], a["rule_id"], a["action"]) for a in events) == Counter({
        (w1, "news2.single_parameter_3", "OPENED"): 1, (w1, "news2.urgent", "OPENED"): 1,
        (w1, "news2.emergency", "OPENED"): 1,
        (w1, "news2.single_parameter_3", "ESCALATED"): 1, (w1, "news2.urgent", "ESCALATED"): 1,
        (w3, "spo2.below_target", "OPENED"): 1, (w3, "spo2.below_target", "ESCALATED"): 1,
    })  # fmt: skip  # the acknowledged emergency is not escalated; W2 is within its target
    for alert in events:
        if alert["patient_key"] == w1:
            assert alert["person_id"] == "P-W1"
            assert alert["score"] == (10 if alert["action"] == "OPENED" else None)
            assert alert["envelope"]["source"]["institution"] == WARD
        else:
            assert alert["person_id"] is None
            assert alert["cohort"] is None
    for alert in events:
        assert (alert["escalate_at"] is not None) == (alert["action"] == "OPENED")


def test_daily_summaries_flagged_readings_and_unreadable_input_kept(
    runtime_settings: RuntimeSettings, codec: Codec, keyring: Keyring, new_topic: TopicFactory,
    kafka_bootstrap: str, tmp_path: Path,
) -> None:  # fmt: skip
    env = service_env(kafka_bootstrap, keyring, tmp_path, new_topic)
    feed = Feed(runtime_settings, codec, env)
    midnight = datetime(2026, 3, 1, tzinfo=ZoneInfo("Asia/Shanghai"))
    pattern = [6.0] * 200 + [3.5] * 10 + [12.0] * 60 + [15.0] * 18  # 288 a day
    worn = []
    for day in range(15):
        for i, value in enumerate(pattern):
            if day == 4 and i % 4 == 0:
                continue  # a day with 75% wear
            at = midnight + timedelta(days=day) + i * FIVE
            worn.append((at, value))
            feed.device("S1", Metric.GLUCOSE, value, at)
            if day == 2 and i in (96, 240):  # a cuff at 08:00 and 20:00: grade 1, isolated
                feed.device("S1", Metric.SYSTOLIC_BP, 150 if i == 96 else 146, at)
                feed.device("S1", Metric.DIASTOLIC_BP, 85 if i == 96 else 87, at)
    for i in range(7):  # the next day begins: day 15 can be summarised
        feed.device("S1", Metric.GLUCOSE, 6.0, midnight + timedelta(days=15) + i * FIVE)
    feed.device("S1", Metric.SPO2, 140, midnight + timedelta(days=15, minutes=31))  # impossible
    feed.device("S1", Metric.GLUCOSE, 2.2, midnight + timedelta(days=14, minutes=1))  # a day late
    feed.raw("READING", b"not an event")
    forged = {
        "envelope": new_envelope(WARD, "edge", midnight), "alert_id": "A-any",
        "patient_key": feed.key(WARD, "S1"), "rule_id": "glucose.hypo.level1",
        "acknowledged_by": "nobody", "at": midnight,
    }  # fmt: skip
    feed.raw("ACK", codec.encode("hs.vitals.Acknowledgement", forged))  # no edge MAC
    feed.flush()
    service = start(env)
    try:
        topic = env["HS_VITALS_SUMMARY_TOPIC"]
        received = read_all(kafka_bootstrap, topic, 15, timeout=120, idle=120)
        dead = read_all(kafka_bootstrap, env["HS_DEAD_LETTER_TOPIC"], 2, timeout=30)
        flags = read_all(kafka_bootstrap, env["HS_VITALS_FLAG_TOPIC"], 2, timeout=30)
    finally:
        stop(service)
    summaries = [codec.decode(value).record for _, value in received]
    assert [s["day"] for s in summaries] == [
        (midnight + timedelta(days=d)).date() for d in range(15)
    ]
    first, third, fifth, last = summaries[0], summaries[2], summaries[4], summaries[14]
    assert first["summary"]["glucose_day"]["time_in_range"] == round(100 * 200 / 288, 2)
    assert not first["summary"]["glucose_14d"]["sufficient"]  # one day is not 14
    assert first["summary"]["glucose_14d"]["time_in_range"] is None
    assert fifth["summary"]["glucose_day"]["wear"] == 0.75
    assert third["summary"]["blood_pressure"] == {
        "readings": 2, "mean_systolic": 148.0, "mean_diastolic": 86.0,
        "grade": "GRADE_1", "isolated_systolic": True,
    }  # fmt: skip
    assert first["summary"]["blood_pressure"] is None
    period = last["summary"]["glucose_14d"]
    expected = summarise_readings(worn, midnight + timedelta(days=1), midnight + timedelta(days=15))
    assert period["sufficient"] and period["days"] == 14
    for name in (
        "time_in_range",
        "time_below_level_1",
        "time_above_level_2",
        "cv_percent",
        "gmi_percent",
    ):
        assert period[name] == getattr(expected, name), name
    assert [
        (f["flag"], f["metric"], f["reading"]["value"])
        for f in (codec.decode(value).record for _, value in flags)
    ] == [("IMPLAUSIBLE", "SPO2", 140.0), ("LATE", "GLUCOSE", 2.2)]
    letters = sorted((codec.decode(value).record for _, value in dead), key=lambda d: d["reason"])
    assert [d["stage"] for d in letters] == ["vitals", "vitals"]
    assert {bytes(d["original"]) for d in letters} >= {b"not an event"}
    assert any("MAC" in d["reason"] for d in letters)  # the forged acknowledgement


def test_killed_mid_stream_and_restarted_no_alert_is_duplicated_or_missing(
    runtime_settings: RuntimeSettings, codec: Codec, keyring: Keyring, new_topic: TopicFactory,
    kafka_bootstrap: str, tmp_path: Path,
) -> None:  # fmt: skip
    env = service_env(kafka_bootstrap, keyring, tmp_path, new_topic)
    episode = [3.5, 3.6, 3.4, 3.5, 3.6, 6.1, 6.2, 6.0, 6.1, 6.0, 6.2]
    trace = [6.0] * 24 + episode * 4  # worn 2 h, then four lows of 20 minutes
    patients = [f"K{n}" for n in range(40)]
    wards = [f"N{n}" for n in range(10)]  # charted hourly; they deteriorate, then recover
    course = [(16, 96, 0, 120, 80, 0, 37.0), (22, 94, 0, 105, 112, 0, 38.4),
              (26, 91, 1, 95, 125, 1, 39.2), (18, 96, 0, 118, 84, 0, 37.2)] * 2  # fmt: skip
    half_cgm, half_ward = len(trace) // 2 + 3, len(course) // 2 + 1  # episodes open at the kill
    expected: Counter[tuple[str, str, str, str]] = Counter()

    def replay(key: str, stream: list[Reading]) -> None:
        monitor = PatientMonitor()
        events = [e for r in stream for e in monitor.observe(r).alerts]
        expected.update(
            (key, e.rule, e.action.value, alert_id(key, e.rule, e.opened_at)) for e in events
        )

    def cgm(patient: str) -> list[Reading]:
        return [
            Reading(f"DEV-{patient}", Metric.GLUCOSE, v, T0 + i * FIVE) for i, v in enumerate(trace)
        ]

    def charted(patient: str) -> list[list[Reading]]:
        return [
            [Reading(f"{WARD}:EMR", m, float(v), T0 + timedelta(hours=h, minutes=i))
             for i, (m, v) in enumerate(zip(NEWS2_PARAMETERS, vitals, strict=True))]
            for h, vitals in enumerate(course)
        ]  # fmt: skip

    for patient in patients:
        replay(codec.keyring.pseudonym("CGMVENDOR", patient), cgm(patient))
    for patient in wards:
        replay(codec.keyring.pseudonym(WARD, patient), [r for s in charted(patient) for r in s])

    def feed(first_half: bool) -> None:
        sender = Feed(runtime_settings, codec, env)
        for patient in patients:
            part = cgm(patient)[:half_cgm] if first_half else cgm(patient)[half_cgm:]
            for r in part:
                sender.device(patient, r.metric, r.value, r.at)
        for patient in wards:
            sets = charted(patient)[:half_ward] if first_half else charted(patient)[half_ward:]
            for r in [r for s in sets for r in s]:
                sender.charted(patient, r.metric, r.value, r.at)
        sender.flush()

    alerts = env["HS_VITALS_ALERT_TOPIC"]
    feed(first_half=True)
    service = start(env)
    try:
        read_all(kafka_bootstrap, alerts, expected=1, timeout=90, idle=60)  # it is working
        service.send_signal(signal.SIGKILL)
        service.wait(10)
        feed(first_half=False)
        service = start(env)
        received = read_all(kafka_bootstrap, alerts, sum(expected.values()), timeout=300, idle=150)
    finally:
        stop(service)
    got: Counter[tuple[str, str, str, str]] = Counter()
    for alert in decoded_alerts(codec, received):
        got[(alert["patient_key"], alert["rule_id"], alert["action"], alert["alert_id"])] += 1
    assert any(rule.startswith("news2.") for _, rule, _, _ in expected)
    missing, extra = expected - got, got - expected
    assert not missing and not extra, (sorted(missing)[:20], sorted(extra)[:20])
