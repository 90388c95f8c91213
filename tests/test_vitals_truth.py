"""Every hypoglycaemia episode in the generator's truth raises its alert, and no hypoglycaemia
alert is raised outside an episode: CGM feeds as the generator writes them, through the
ingestion mapping, into the vitals monitor."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

from hs_common.crypto import Keyring
from hs_common.envelope import new_envelope
from hs_ingestion.devices import normalize_device_batch
from hs_ingestion.intake import Kept, receive_hl7
from hs_ingestion.normalize import normalize_raw
from hs_ingestion.sources import SourceRegistry, default_sources_dir
from hs_ingestion.tools import hl7_messages
from hs_synth.generate import GeneratorConfig, generate
from hs_vitals.monitor import Action, Metric, PatientMonitor, Reading
from hs_vitals.observations import observation_reading

CHINA = timezone(timedelta(hours=8))
RULE_OF = {
    "hypoglycaemia_level1": "glucose.hypo.level1",
    "hypoglycaemia_level2": "glucose.hypo.level2",
}


def test_generated_hypoglycaemia_episodes_are_detected_and_nothing_else(tmp_path: Path) -> None:
    generate(GeneratorConfig(people=400, days=14, bad_rate=0.0), tmp_path, progress=False)
    readings: dict[str, list[Reading]] = defaultdict(list)
    for line in (tmp_path / "devices" / "W01.ndjson").read_bytes().splitlines():
        batch = json.loads(line)
        if not str(batch["device_id"]).startswith("CGM"):
            continue
        envelope = new_envelope("W01", "cloud", datetime.now(CHINA))
        for event in normalize_device_batch(line, envelope).events:
            record = event.record
            reading = Reading(
                record["binding"]["device_id"], Metric.GLUCOSE,
                record["measurement"]["value"], record["measured_at"],
            )  # fmt: skip
            readings[reading.device].append(reading)

    opened: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
    for device, stream in readings.items():
        monitor = PatientMonitor()
        events = [e for r in stream for e in monitor.observe(r).alerts]
        opened[device] = [
            (e.rule, e.at)
            for e in events
            if e.action is Action.OPENED and e.rule in RULE_OF.values()
        ]

    episodes: dict[str, list[tuple[str, datetime, datetime]]] = defaultdict(list)
    with (tmp_path / "truth" / "episodes.csv").open() as handle:
        for row in csv.DictReader(handle):
            if row["kind"] in RULE_OF:
                start = datetime.fromisoformat(row["start"]).replace(tzinfo=CHINA)
                end = datetime.fromisoformat(row["end"]).replace(tzinfo=CHINA)
                episodes[row["source"]].append((RULE_OF[row["kind"]], start, end))
    assert sum(len(e) for e in episodes.values()) >= 10  # the test has episodes to find

    for device, device_episodes in episodes.items():
        for rule, start, end in device_episodes:
            assert any(r == rule and start <= at <= end for r, at in opened[device]), (
                device,
                rule,
                start,
            )
    for device, alerts in opened.items():
        for rule, at in alerts:
            inside = [
                (start, end) for r, start, end in episodes[device]
                if start <= at <= end and (r == rule or r == "glucose.hypo.level2")
            ]  # fmt: skip
            assert inside, (device, rule, at)  # no alert outside an episode


NEWS2_RULE_OF = {
    "news2_single_3": "news2.single_parameter_3",
    "news2_urgent": "news2.urgent",
    "news2_emergency": "news2.emergency",
}


def test_charted_vital_signs_cross_news2_thresholds_when_the_truth_says(tmp_path: Path) -> None:
    generate(GeneratorConfig(people=400, days=14, bad_rate=0.0), tmp_path, progress=False)
    sources = SourceRegistry.load(default_sources_dir())
    keyring = Keyring.generate()
    readings: dict[str, list[Reading]] = defaultdict(list)
    for path in sorted((tmp_path / "hl7").glob("*.mllp")):
        for chunk in hl7_messages(path.read_bytes()):
            kept = receive_hl7(chunk.payload, sources, keyring)
            if not isinstance(kept, Kept) or kept.message.message_type[:2] != ("ORU", "R01"):
                continue
            source = sources.get(kept.record["envelope"]["source"]["institution"])
            assert source is not None
            for event in normalize_raw(kept.record, source).events:
                reading = (
                    observation_reading(event.record)
                    if event.schema.endswith("Observation")
                    else None
                )
                if reading is not None:
                    readings[f"{source.code}:{event.patient}"].append(reading)

    first_open: dict[tuple[str, str], datetime] = {}
    for patient, stream in readings.items():
        monitor = PatientMonitor()
        for alert in [e for r in stream for e in monitor.observe(r).alerts]:
            if alert.action is Action.OPENED and alert.rule.startswith("news2."):
                first_open.setdefault((patient, alert.rule), alert.at)

    truth: dict[tuple[str, str], datetime] = {}
    with (tmp_path / "truth" / "episodes.csv").open() as handle:
        for row in csv.DictReader(handle):
            if row["kind"] in NEWS2_RULE_OF:
                at = datetime.fromisoformat(row["start"]).replace(tzinfo=CHINA)
                truth[(row["source"], NEWS2_RULE_OF[row["kind"]])] = at
    assert len(truth) >= 5
    assert first_open == truth
