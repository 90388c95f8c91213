"""hs-quality on the real broker: canonical events in, one quality result each out, its
failures sealed; the same result twice and one person's records that disagree across
institutions found through what the service remembers; what is not a canonical event (or a
link without the EMPI's MAC) dead-lettered; hourly and daily summaries per source with late
records counted, and alerts opened once and resolved, exactly as an uninterrupted run would
write them across a SIGKILL; a rules file with an error refused, naming the line."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hs_common.codec import Codec
from hs_common.crypto import Keyring, Sealed
from hs_common.kafka import make_producer
from hs_common.schemas import SchemaCatalogue
from hs_common.settings import RuntimeSettings
from hs_common.testing import TopicFactory, golden_example, read_all, writer_headers
from hs_quality import rules
from hs_quality.checks import Checker
from hs_quality.service import remembered
from hs_quality.summary import SourceQuality, Tallied, window_start

pytestmark = pytest.mark.integration
OBSERVATION, LINK = "hs.clinical.Observation", "hs.identity.PersonLink"
T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def service_env(
    bootstrap: str, keyring: Keyring, tmp_path: Path, new_topic: TopicFactory, **settings: str
) -> dict[str, str]:
    """hs-quality's environment for a test: one input topic (it scores by the event's schema)
    and its own output topics, one partition each, so that a run's order is the feed's."""
    keyring.to_file(tmp_path / "keyring.json")
    inputs = new_topic("canonical")
    return os.environ | {
        "HS_ENV": "test", "HS_KAFKA_BOOTSTRAP": bootstrap, "HS_METRICS_PORT": "0",
        "HS_KEYRING_FILE": str(tmp_path / "keyring.json"), "HS_LOG_LEVEL": "WARNING",
        "HS_INSTANCE_ID": "q-0", "HS_QUALITY_GROUP": f"hs-quality-{uuid.uuid4().hex[:8]}",
        "HS_QUALITY_STATE_DIR": str(tmp_path / "state"), "HS_TOPIC_PARTITIONS": "1",
        "HS_QUALITY_INPUT_TOPICS": inputs, "HS_QUALITY_OBSERVATION_TOPIC": inputs,
        "HS_QUALITY_PATIENT_TOPIC": new_topic("patient"),
        "HS_QUALITY_RESULT_TOPIC": new_topic("result"),
        "HS_QUALITY_SUMMARY_TOPIC": new_topic("summary"),
        "HS_QUALITY_ALERT_TOPIC": new_topic("alert"), "HS_DEAD_LETTER_TOPIC": new_topic("dead"),
        # partitioned like the result topic: the clock's ticks meet the results in one step
        "HS_QUALITY_CLOCK_TOPIC": new_topic("clock"),
    } | settings  # fmt: skip


def stop(service: subprocess.Popen[bytes]) -> None:
    service.terminate()
    service.wait(30)


def test_results_sealed_duplicates_and_disagreeing_persons_found_bad_input_kept(
    runtime_settings: RuntimeSettings, codec: Codec, keyring: Keyring, catalogue: SchemaCatalogue,
    schema_root: Path, new_topic: TopicFactory, kafka_bootstrap: str, tmp_path: Path,
) -> None:  # fmt: skip
    env = service_env(kafka_bootstrap, keyring, tmp_path, new_topic)
    observation = golden_example(catalogue.get(OBSERVATION), schema_root)
    implausible = copy.deepcopy(observation)
    implausible["envelope"]["event_id"] = "11111111-2222-4333-8444-555555555555"
    implausible["result"] |= {"value_quantity": 780.0, "original_value": "780"}
    twice = copy.deepcopy(observation)
    twice["envelope"]["event_id"] = "11111111-2222-4333-8444-666666666666"
    identity = golden_example(catalogue.get("hs.identity.PatientIdentity"), schema_root)
    identity["envelope"]["event_id"] = "11111111-2222-4333-8444-999999999999"
    link = golden_example(catalogue.get(LINK), schema_root)
    link["envelope"]["event_id"] = "11111111-2222-4333-8444-888888888888"
    other = copy.deepcopy(link)
    other["envelope"]["event_id"] = "11111111-2222-4333-8444-777777777777"
    other["record_key"], other["record"]["institution"] = "other-record", "OTHER-HOSPITAL"
    other["record"]["sex"] = "M" if link["record"]["sex"] == "F" else "F"
    producer = make_producer(runtime_settings, "quality-feed")
    inputs = env["HS_QUALITY_INPUT_TOPICS"]
    for record, name in ((observation, OBSERVATION), (implausible, OBSERVATION),
                         (twice, OBSERVATION), (identity, "hs.identity.PatientIdentity"),
                         (link, LINK), (other, LINK)):  # fmt: skip
        value = codec.encode(name, record)
        producer.produce(inputs, value, b"person-1" if name == LINK else b"k-1",
                         headers=writer_headers(codec, value))  # fmt: skip
    producer.produce(inputs, b"not an event", b"k-2")
    producer.produce(inputs, codec.encode(LINK, link), b"person-1")  # without the EMPI's MAC
    assert producer.flush(10) == 0

    service = subprocess.Popen(["hs-quality"], env=env)
    try:
        scored = read_all(kafka_bootstrap, env["HS_QUALITY_RESULT_TOPIC"], 6, timeout=90, idle=60)
        letters = read_all(kafka_bootstrap, env["HS_DEAD_LETTER_TOPIC"], 2, timeout=30)
        # the registered patient's PSA, dated before her birth: both need her registration
        before_birth = copy.deepcopy(observation)
        before_birth["envelope"]["event_id"] = "11111111-2222-4333-8444-aaaaaaaaaaaa"
        before_birth["subject"]["local_patient_id"] = identity["person"]["local_patient_id"]
        born = identity["person"]["birth_date"]
        before_birth["effective_at"] = datetime(born.year - 1, 1, 1, tzinfo=UTC)
        before_birth["result"] |= {"code": {"system": "http://loinc.org", "code": "2857-1",
                                            "display": None, "version": None},
                                   "original_value": "1.2"}  # fmt: skip
        patient = codec.keyring.pseudonym(identity["envelope"]["source"]["institution"],
                                          identity["person"]["local_patient_id"])  # fmt: skip
        producer.produce(inputs, codec.encode(OBSERVATION, before_birth), patient)
        assert producer.flush(10) == 0
        later = read_all(kafka_bootstrap, env["HS_QUALITY_RESULT_TOPIC"], 7, timeout=60, idle=30)
    finally:
        stop(service)
    (found,) = [r for r in (codec.decode(v).record for _, v in later)
                if str(r["scored_event_id"]) == before_birth["envelope"]["event_id"]]  # fmt: skip
    assert {f["check_id"] for f in found["failures"]} >= {"observation-after-birth", "psa-male"}
    by_event = {str(r["scored_event_id"]): r for r in (codec.decode(v).record for _, v in scored)}
    assert len(scored) == len(by_event) == 6
    clean = by_event[str(observation["envelope"]["event_id"])]
    assert (clean["score"], clean["failures"], clean["failed_severity"]) == (1.0, [], "NONE")
    assert "observation-unique" in clean["applied"]
    bad = by_event[implausible["envelope"]["event_id"]]
    assert [f["check_id"] for f in bad["failures"]] == ["glucose-serum-mg-in-mmol"]
    assert bad["failed_severity"] == "ERROR" and bad["score"] < 1
    assert "780" not in str(bad["failures"])
    assert bad["envelope"]["trace_id"] == implausible["envelope"]["trace_id"]
    assert [f["check_id"] for f in by_event[twice["envelope"]["event_id"]]["failures"]] == [
        "observation-unique"
    ]
    first_link = by_event[str(link["envelope"]["event_id"])]
    assert "cross-source-consistency" not in first_link["applied"]  # nothing to compare yet
    (disagrees,) = by_event[other["envelope"]["event_id"]]["failures"]
    assert disagrees["check_id"] == "cross-source-consistency" and "sex" in disagrees["reason"]
    assert by_event[other["envelope"]["event_id"]]["envelope"]["source"]["institution"] == (
        "OTHER-HOSPITAL"
    )
    results_by_key = {str(codec.decode(v).record["scored_event_id"]): k for k, v in scored}
    assert results_by_key[other["envelope"]["event_id"]] == b"other-record"

    # without the health key the failures stay sealed: they name the analyte
    outsider = Codec(catalogue, codec.keyring.restricted_to("identifying"))
    sealed = [r for r in (outsider.decode(v).record for _, v in scored)
              if str(r["scored_event_id"]) == implausible["envelope"]["event_id"]]  # fmt: skip
    assert isinstance(sealed[0]["failures"], Sealed) and sealed[0]["score"] == bad["score"]
    kept = {codec.decode(v).record["reason_code"]: codec.decode(v).record for _, v in letters}
    assert set(kept) == {"codec.not_single_object", "control.unauthenticated"}
    assert bytes(kept["codec.not_single_object"]["original"]) == b"not an event"
    assert "without the empi's MAC" in kept["control.unauthenticated"]["reason"]


def test_a_rules_file_with_an_error_is_refused_at_start(tmp_path: Path) -> None:
    bad = tmp_path / "rules.csv"
    lines = rules.default_rules_text().splitlines()
    number = next(n for n, line in enumerate(lines, 1) if ",error," in line and n > 10)
    lines[number - 1] = lines[number - 1].replace(",error,", ",eror,")
    bad.write_text("\n".join(lines) + "\n")
    started = subprocess.run(
        ["hs-quality"], env=os.environ | {"HS_QUALITY_RULES": str(bad)}, capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip
    assert started.returncode != 0
    assert f"{bad} line {number}: severity 'eror'" in started.stderr


def test_a_source_gone_quiet_has_its_window_closed_by_the_clock(
    runtime_settings: RuntimeSettings, codec: Codec, keyring: Keyring, catalogue: SchemaCatalogue,
    schema_root: Path, new_topic: TopicFactory, kafka_bootstrap: str, tmp_path: Path,
) -> None:  # fmt: skip
    env = service_env(kafka_bootstrap, keyring, tmp_path, new_topic,
                      HS_QUALITY_GRACE_SECONDS="2", HS_QUALITY_TICK_SECONDS="0.5")  # fmt: skip
    golden = golden_example(catalogue.get(OBSERVATION), schema_root)
    end = window_start(datetime.now(UTC), HOUR) + HOUR
    producer = make_producer(runtime_settings, "quality-feed")
    for n in range(3):  # sent 5 s before the hour ends; then nothing
        event = copy.deepcopy(golden)
        event["envelope"]["event_id"] = str(uuid.UUID(int=n + 1, version=4))
        event["envelope"]["received_at"] = end - timedelta(seconds=5)
        event["result"]["original_value"] = str(n)
        producer.produce(env["HS_QUALITY_INPUT_TOPICS"], codec.encode(OBSERVATION, event), "k")
    assert producer.flush(10) == 0
    service = subprocess.Popen(["hs-quality"], env=env)
    try:
        written = read_all(kafka_bootstrap, env["HS_QUALITY_SUMMARY_TOPIC"], timeout=40,
                           idle=40)  # fmt: skip
    finally:
        stop(service)
    hours = [s for s in (codec.decode(v).record for _, v in written) if s["window"] == "HOUR"]
    assert [(s["final"], s["window_end"], s["records"]) for s in hours][-1] == (True, end, 3)


EVENTS = 12000
INSTITUTIONS = ("HOSP-A", "HOSP-B")


def feed(golden: dict[str, Any]) -> list[dict[str, Any]]:
    """Glucose results from two hospitals over five hours of sending; HOSP-A sends a tenth of
    its results implausible in its third hour, and some results a day late (its HIS queue)."""
    events = []
    for n in range(EVENTS):
        event = copy.deepcopy(golden)
        institution = INSTITUTIONS[n % 2]
        received = T0 + timedelta(seconds=n * 5 * 3600 / EVENTS)
        if institution == "HOSP-A" and n % 500 == 2:
            received -= timedelta(days=1)  # late for a window already closed
        event["envelope"] |= {
            "event_id": str(uuid.UUID(int=n + 1, version=4)),
            "source": {"institution": institution, "system": "LIS"},
            "received_at": received, "occurred_at": received - timedelta(minutes=30),
        }  # fmt: skip
        event["effective_at"] = received - timedelta(minutes=30)
        event["issued_at"] = received - timedelta(minutes=3 if n % 7 else 40)
        event["observation_id"] = f"R{n}"
        degrading = institution == "HOSP-A" and 2 * HOUR <= received - T0 < 3 * HOUR
        event["result"]["value_quantity"] = 780.0 if degrading and n % 10 == 0 else 5.6
        event["result"]["original_value"] = str(n)
        event["subject"]["local_patient_id"] = f"P{n % 50}"
        events.append(event)
    return events


class Remembered(dict[str, Any]):
    """The service's per-key state, for the uninterrupted run computed here."""

    def set(self, key: str, value: Any) -> None:
        self[key] = value


def uninterrupted(events: list[dict[str, Any]], grace: timedelta) -> tuple[list[Any], list[Any]]:
    """What one uninterrupted run writes, in order: (window start, size, records, late,
    failures per check) per summary, and (action, check, window start) per alert."""
    checker = Checker(rules.load())
    checks = {c.check_id: c for c in checker.checks}
    states: dict[str, Remembered] = {}
    sources = {i: SourceQuality(grace, 20) for i in INSTITUTIONS}
    summaries, alerts = [], []
    for event in events:
        key = f"k{event['subject']['local_patient_id']}"
        context = remembered(OBSERVATION, event, states.setdefault(key, Remembered()))  # type: ignore[arg-type]
        scored = checker.score(OBSERVATION, event, context)
        envelope = event["envelope"]
        institution = envelope["source"]["institution"]
        closed = sources[institution].add(Tallied(
            envelope["event_id"], OBSERVATION, envelope["received_at"], envelope["occurred_at"],
            scored.applied, tuple(f.check_id for f in scored.failures)), checks)  # fmt: skip
        summaries += [(institution, w.start, w.size.value, body["records"], body["late_records"],
                       {r["check_id"]: r["failed"] for r in body["checks"]})
                      for w, body in closed.summaries]  # fmt: skip
        alerts += [(institution, c.action, c.check_id, c.window.start) for c in closed.alerts]
    return summaries, alerts


def test_killed_and_restarted_it_writes_the_summaries_and_alerts_of_an_uninterrupted_run(
    runtime_settings: RuntimeSettings, codec: Codec, keyring: Keyring, catalogue: SchemaCatalogue,
    schema_root: Path, new_topic: TopicFactory, kafka_bootstrap: str, tmp_path: Path,
) -> None:  # fmt: skip
    grace = timedelta(minutes=15)
    env = service_env(kafka_bootstrap, keyring, tmp_path, new_topic,
                      HS_QUALITY_GRACE_SECONDS=str(grace.total_seconds()))  # fmt: skip
    events = feed(golden_example(catalogue.get(OBSERVATION), schema_root))
    expected_summaries, expected_alerts = uninterrupted(events, grace)
    producer = make_producer(runtime_settings, "quality-feed")
    for event in events:
        key = f"k{event['subject']['local_patient_id']}"
        producer.produce(env["HS_QUALITY_INPUT_TOPICS"], codec.encode(OBSERVATION, event), key)
    assert producer.flush(30) == 0

    first = subprocess.Popen(["hs-quality"], env=env)
    uncommitted = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and uncommitted < EVENTS // 4:
        uncommitted = len(read_all(kafka_bootstrap, env["HS_QUALITY_RESULT_TOPIC"], idle=0.5,
                                   timeout=2, isolation="read_uncommitted"))  # fmt: skip
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    assert 0 < uncommitted < EVENTS  # killed mid-run
    second = subprocess.Popen(["hs-quality"], env=env)
    try:
        results = read_all(kafka_bootstrap, env["HS_QUALITY_RESULT_TOPIC"], EVENTS, timeout=300,
                           idle=150)  # fmt: skip
        written = read_all(kafka_bootstrap, env["HS_QUALITY_SUMMARY_TOPIC"],
                           timeout=120, idle=20)  # fmt: skip
        raised = read_all(kafka_bootstrap, env["HS_QUALITY_ALERT_TOPIC"], len(expected_alerts),
                          timeout=30, idle=5)  # fmt: skip
    finally:
        stop(second)
    ids = [str(codec.decode(v).record["scored_event_id"]) for _, v in results]
    assert len(ids) == len(set(ids)) == EVENTS  # each scored once, none lost

    summaries = [s for s in (codec.decode(v).record for _, v in written) if s["final"]]
    assert [(s["institution"], s["window_start"], s["window"], s["records"], s["late_records"],
             {r["check_id"]: r["failed"] for r in s["checks"]}) for s in summaries] \
        == expected_summaries  # fmt: skip
    hours = [s for s in summaries if s["institution"] == "HOSP-A" and s["window"] == "HOUR"]
    assert [s["window_start"] for s in hours] == [T0 + n * HOUR for n in range(4)]
    assert sum(s["late_records"] for s in hours) > 0  # a day late: counted, not in its window
    third = next(s for s in hours if s["window_start"] == T0 + 2 * HOUR)
    glucose = next(r for r in third["checks"] if r["check_id"] == "glucose-serum-mg-in-mmol")
    assert not glucose["passed"] and glucose["change_pct"] > 5 and len(glucose["examples"]) == 5
    indicators = {i["check_id"]: i["status"] for i in third["indicators"]}
    assert indicators["lab-timeliness"] == "FAILED"  # one in 7 reported 40 minutes earlier
    (delay,) = third["delays"]
    assert delay["median_minutes_at_most"] == 30.0  # specimen to receipt: 30 minutes

    alerts = [codec.decode(v).record for _, v in raised]
    assert [(a["institution"], a["action"], a["check_id"], a["window_start"]) for a in alerts] \
        == expected_alerts  # fmt: skip
    glucose_alerts = [(a["action"], a["window_start"]) for a in alerts
                      if a["check_id"] == "glucose-serum-mg-in-mmol"]  # fmt: skip
    assert glucose_alerts == [("OPENED", T0 + 2 * HOUR), ("RESOLVED", T0 + 3 * HOUR)]
    assert len({a["alert_id"] for a in alerts if a["check_id"] == "glucose-serum-mg-in-mmol"}) == 1
