"""hs-quality on the real broker: canonical events in, one quality result each out, exactly
once, its failures sealed; what is not a canonical event is dead-lettered with its reason;
the service refuses a rules file with an error, naming the line."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from hs_common.codec import Codec
from hs_common.crypto import Keyring, Sealed
from hs_common.kafka import make_producer
from hs_common.processor import ExactlyOnceProcessor
from hs_common.schemas import SchemaCatalogue
from hs_common.settings import RuntimeSettings
from hs_common.testing import TopicFactory, golden_example, processing, read_all
from hs_quality import rules
from hs_quality.checks import Checker
from hs_quality.service import Scorer, rules_version

pytestmark = pytest.mark.integration
EVENTS = 20000


def test_each_event_gets_one_result_with_its_failures_sealed(
    runtime_settings: RuntimeSettings, codec: Codec, catalogue: SchemaCatalogue,
    schema_root: Path, new_topic: TopicFactory, kafka_bootstrap: str,
) -> None:  # fmt: skip
    inputs, results, dead = new_topic("canonical", 2), new_topic("quality", 2), new_topic("dead")
    observation = golden_example(catalogue.get("hs.clinical.Observation"), schema_root)
    implausible = copy.deepcopy(observation)
    implausible["envelope"]["event_id"] = "11111111-2222-4333-8444-555555555555"
    implausible["result"]["value_quantity"] = 780.0
    identity = golden_example(catalogue.get("hs.identity.PatientIdentity"), schema_root)
    producer = make_producer(runtime_settings, "quality-feed")
    sent: list[dict[str, Any]] = [observation, implausible, identity]
    for record, name in zip(sent, ("hs.clinical.Observation", "hs.clinical.Observation",
                                   "hs.identity.PatientIdentity"), strict=True):  # fmt: skip
        producer.produce(inputs, codec.encode(name, record), b"k-1")
    producer.produce(inputs, b"not an event", b"k-2")
    assert producer.flush(10) == 0

    text = rules.default_rules_text()
    scorer = Scorer(codec, Checker(rules.parse(text)), rules_version(text), results)
    processor = ExactlyOnceProcessor(
        runtime_settings, stage="quality.score", group_id=f"quality-{new_topic('g')}",
        input_topics=[inputs], transform=scorer, codec=codec, dead_letter_topic=dead,
        poll_timeout=0.2,
    )  # fmt: skip
    with processing(processor):
        scored = read_all(kafka_bootstrap, results, expected=3, timeout=60)
        letters = read_all(kafka_bootstrap, dead, expected=1, timeout=30)
    assert len(scored) == 3 and {key for key, _ in scored} == {b"k-1"}
    by_event = {str(r["scored_event_id"]): r for r in (codec.decode(v).record for _, v in scored)}
    clean = by_event[str(observation["envelope"]["event_id"])]
    assert (clean["score"], clean["failures"], clean["failed_severity"]) == (1.0, [], "NONE")
    bad = by_event[implausible["envelope"]["event_id"]]
    assert [f["check_id"] for f in bad["failures"]] == ["glucose-serum-mg-in-mmol"]
    assert bad["failed_severity"] == "ERROR" and bad["score"] < 1
    assert (
        "glucose-serum-mg-in-mmol" in bad["applied"]
        and len(bad["applied"]) == bad["checks_applied"]
    )
    assert "780" not in str(bad["failures"])
    assert bad["envelope"]["trace_id"] == implausible["envelope"]["trace_id"]

    # without the health key the failures stay sealed: they name the analyte
    outsider = Codec(catalogue, codec.keyring.restricted_to("identifying"))
    unopened = [outsider.decode(v).record for _, v in scored]
    sealed = [
        r for r in unopened if str(r["scored_event_id"]) == implausible["envelope"]["event_id"]
    ]
    assert isinstance(sealed[0]["failures"], Sealed) and sealed[0]["score"] == bad["score"]
    (letter,) = (codec.decode(v).record for _, v in letters)
    assert bytes(letter["original"]) == b"not an event"


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


def test_killed_and_restarted_it_scores_each_event_once_as_an_uninterrupted_run_would(
    runtime_settings: RuntimeSettings, codec: Codec, keyring: Keyring, catalogue: SchemaCatalogue,
    schema_root: Path, new_topic: TopicFactory, kafka_bootstrap: str, tmp_path: Path,
) -> None:  # fmt: skip
    inputs, results = new_topic("canonical", 3), new_topic("quality", 3)
    golden = golden_example(catalogue.get("hs.clinical.Observation"), schema_root)
    producer = make_producer(runtime_settings, "quality-feed")
    expected = {}
    checker = Checker(rules.load())
    for n in range(EVENTS):
        event = copy.deepcopy(golden)
        event["envelope"]["event_id"] = str(uuid.UUID(int=n + 1, version=4))
        event["result"]["value_quantity"] = 0.1 + (n % 200) * 0.6  # some above 110 mmol/L
        event["subject"]["local_patient_id"] = f"P{n % 50}"
        scored = checker.score("hs.clinical.Observation", event)
        expected[event["envelope"]["event_id"]] = sorted(f.check_id for f in scored.failures)
        producer.produce(inputs, codec.encode("hs.clinical.Observation", event), f"k{n % 50}")
    assert producer.flush(30) == 0
    keyring.to_file(tmp_path / "keyring.json")
    env = os.environ | {
        "HS_ENV": "test", "HS_METRICS_PORT": "0", "HS_LOG_LEVEL": "WARNING",
        "HS_KEYRING_FILE": str(tmp_path / "keyring.json"), "HS_INSTANCE_ID": "q-0",
        "HS_QUALITY_INPUT_TOPICS": inputs, "HS_QUALITY_RESULT_TOPIC": results,
        "HS_QUALITY_GROUP": f"hs-quality-{uuid.uuid4().hex[:8]}",
    }  # fmt: skip
    first = subprocess.Popen(["hs-quality"], env=env)
    uncommitted = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and uncommitted < EVENTS // 10:
        uncommitted = len(read_all(kafka_bootstrap, results, idle=0.5, timeout=2,
                                   isolation="read_uncommitted"))  # fmt: skip
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    assert 0 < uncommitted < EVENTS  # killed mid-run
    second = subprocess.Popen(["hs-quality"], env=env)
    try:
        answered = read_all(kafka_bootstrap, results, expected=EVENTS, timeout=180, idle=20)
    finally:
        second.terminate()
        second.wait(30)
    decoded = [codec.decode(value).record for _, value in answered]
    ids = [str(r["scored_event_id"]) for r in decoded]
    assert len(ids) == EVENTS and set(ids) == set(expected)  # each once, none lost
    got = {str(r["scored_event_id"]): sorted(f["check_id"] for f in r["failures"]) for r in decoded}
    assert got == expected
    assert sum(1 for failures in got.values() if failures) > EVENTS // 10
