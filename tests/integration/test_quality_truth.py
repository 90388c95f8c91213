"""hs-quality against the generator's truth: a feed with data-quality defects injected at known
rates (hs_synth.defects, truth/quality_defects.csv) made into events as ingestion makes them,
linked by the EMPI and scored by hs-quality on the real broker. Each defect kind must be found
by its check (recall at least 0.99 where a rule can see it) without flagging what is clean
(at most 0.1 % of clean records), and the hospital whose nursing system changes its codes
mid-run is alerted within one hourly window. Run with -s to see the figures."""

from __future__ import annotations

import csv
import os
import subprocess
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from hs_common.codec import Codec
from hs_common.crypto import Keyring
from hs_common.kafka import make_producer
from hs_common.settings import RuntimeSettings
from hs_common.testing import TopicFactory, processing, read_all
from hs_quality import rules
from hs_quality.summary import window_start
from hs_synth.defects import DefectConfig
from hs_synth.generate import GeneratorConfig, generate
from tests.feeds import canonical_events, sent_at
from tests.integration.test_empi import empi_processor

pytestmark = pytest.mark.integration
SHANGHAI = ZoneInfo("Asia/Shanghai")
IDENTITY, OBSERVATION, LINK = (
    "hs.identity.PatientIdentity", "hs.clinical.Observation", "hs.identity.PersonLink",
)  # fmt: skip
TOPIC_OF = {IDENTITY: "identity", OBSERVATION: "observation",
            "hs.clinical.Encounter": "encounter", "hs.clinical.Condition": "condition"}  # fmt: skip
CHECKS = {c.check_id: c for c in rules.load()}
PLAUSIBLE = frozenset(c for c, check in CHECKS.items() if check.check_type == "plausibleValue")
FOUND_BY = {  # each defect kind and the checks meant to find it
    "implausible_value": PLAUSIBLE,
    "wrong_unit": frozenset({"unit-conforms"}),
    "duplicate_result": frozenset({"observation-unique"}),
    "late_result": frozenset({"lab-timeliness"}),
    "missing_birth_date": frozenset({"basic-info-missing"}),
    "id_mistyped": frozenset({"resident-id-valid"}),  # the registrations' own noise
}
NEEDS_A_CODE = {"implausible_value", "wrong_unit"}  # a range or unit check needs the LOINC code
DEGRADING, DEGRADING_DAY = "HZ01", 12
START = datetime(2026, 3, 2)
# what the feed cannot say: a report time in the clinics' formats, and when an HTTP body was
# sent (the test imports them now, so that their results are "late" by months)
NOT_SENT = {"observation-issued-present", "lab-timeliness"}
HTTP_SOURCES = {"HZC01", "SHC02", "F01"}
KNOWN_SEX = {"MALE", "FEMALE"}


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("quality-feed")
    defects = DefectConfig(
        implausible_value=0.02, wrong_unit=0.05, duplicate_result=0.02, late_result=0.05,
        missing_birth_date=0.02, degrading_source=DEGRADING, degrading_from_day=DEGRADING_DAY,
    )  # fmt: skip
    courses = {"inpatients": 45, "diabetes_rate": 0.6, "ckd_rate": 0.2, "cgm_patients": 0,
               "cuff_patients": 0, "oximeter_patients": 0, "outbreaks": 0}  # fmt: skip
    config = GeneratorConfig(people=1000, days=21, start=START, bad_rate=0.0, courses=courses,
                             defects=defects)  # fmt: skip
    generate(config, out, progress=False)
    return out


def truth(feed: Path, name: str) -> list[dict[str, str]]:
    with (feed / "truth" / name).open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def utc(local: str) -> datetime:
    return datetime.fromisoformat(local).replace(tzinfo=SHANGHAI).astimezone(UTC)


Key = tuple[Any, ...]


def record_key(schema: str, record: dict[str, Any]) -> Key:
    institution = record["envelope"]["source"]["institution"]
    if schema == IDENTITY:
        return (institution, record["person"]["local_patient_id"])
    if schema == LINK:
        return (record["record"]["institution"], record["record"]["local_patient_id"])
    return (institution, record["subject"]["local_patient_id"])


def defect_key(schema: str, record: dict[str, Any]) -> Key:
    """What a defect row names: the record, and for a result its time."""
    if schema == OBSERVATION:
        return (*record_key(schema, record), record["effective_at"])
    return record_key(schema, record)


@dataclass
class Scored:
    schema: str
    record: dict[str, Any]
    failed: frozenset[str]


@dataclass
class Figures:
    kind: str
    defects: int
    visible: int
    found: int
    flagged: int
    flagged_true: int

    @property
    def recall(self) -> float:
        return self.found / self.visible if self.visible else 1.0

    @property
    def precision(self) -> float:
        return self.flagged_true / self.flagged if self.flagged else 1.0


def sent_over_http(s: Scored) -> bool:
    return s.record["envelope"]["source"]["institution"] in HTTP_SOURCES


def figures(kind: str, rows: Iterable[Key], visible: set[Key], scored: list[Scored]) -> Figures:
    defects = set(rows)
    flagged = {defect_key(s.schema, s.record) for s in scored if s.failed & FOUND_BY[kind]
               and not (kind == "late_result" and sent_over_http(s))}  # fmt: skip
    if kind in ("missing_birth_date", "id_mistyped"):
        flagged = {k[:2] for k in flagged}
    seen = defects & visible
    return Figures(kind, len(defects), len(seen), len(seen & flagged), len(flagged),
                   len(flagged & defects))  # fmt: skip


def cross_source(scored: list[Scored], records: list[dict[str, str]]) -> Figures:
    """Persons (of the truth) whose records at two institutions disagree on birth date or sex
    as registered, against those hs-quality flagged through the EMPI's links. Visible: the
    EMPI linked two of the disagreeing records to one person."""
    person_of = {(r["institution"], r["local_id"]): r["person_id"] for r in records}
    registered: dict[Key, tuple[Any, Any]] = {}
    empi_person: dict[Key, str] = {}
    flagged = set()
    for s in scored:
        key = record_key(s.schema, s.record)
        if s.schema == IDENTITY:
            registered[key] = (s.record["person"]["birth_date"], s.record["sex"])
        elif s.schema == LINK:
            empi_person[key] = s.record["person_id"]
            if "cross-source-consistency" in s.failed:
                flagged.add(person_of[key])
    by_person: dict[str, list[Key]] = defaultdict(list)
    for key in registered:
        by_person[person_of[key]].append(key)

    def disagree(a: Key, b: Key) -> bool:
        (born_a, sex_a), (born_b, sex_b) = registered[a], registered[b]
        return a[0] != b[0] and (
            (born_a is not None and born_b is not None and born_a != born_b)
            or (sex_a in KNOWN_SEX and sex_b in KNOWN_SEX and sex_a != sex_b)
        )

    inconsistent, visible = set(), set()
    for person, keys in by_person.items():
        pairs = [(a, b) for a in keys for b in keys if a < b and disagree(a, b)]
        if pairs:
            inconsistent.add(person)
        if any(empi_person.get(a) == empi_person.get(b) is not None for a, b in pairs):
            visible.add(person)
    return Figures("inconsistent_demographics", len(inconsistent), len(visible),
                   len(visible & flagged), len(flagged), len(flagged & inconsistent))  # fmt: skip


def run_quality(
    env: dict[str, str], inputs: dict[str, str], expected: int, kafka_bootstrap: str
) -> tuple[list[Any], list[Any]]:
    service = subprocess.Popen(["hs-quality"], env=env)
    try:
        results = read_all(kafka_bootstrap, env["HS_QUALITY_RESULT_TOPIC"], expected,
                           timeout=600, idle=120)  # fmt: skip
        alerts = read_all(kafka_bootstrap, env["HS_QUALITY_ALERT_TOPIC"], idle=10)
    finally:
        service.terminate()
        service.wait(30)
    return results, alerts


def test_each_defect_kind_is_found_by_its_check_and_the_degrading_source_is_alerted(
    feed: Path, runtime_settings: RuntimeSettings, codec: Codec, keyring: Keyring,
    new_topic: TopicFactory, kafka_bootstrap: str, tmp_path: Path,
) -> None:  # fmt: skip
    events = canonical_events(feed, codec, received=lambda m: sent_at(m) + timedelta(minutes=1))
    names = {n: new_topic(n) for n in (*TOPIC_OF.values(), "link", "person", "review", "dead")}
    producer = make_producer(runtime_settings, f"truth-feed-{uuid.uuid4().hex[:6]}")
    by_id = {}
    for schema, record in events:
        by_id[str(record["envelope"]["event_id"])] = (schema, record)
        key = codec.keyring.pseudonym(*record_key(schema, record))
        producer.produce(names[TOPIC_OF[schema]], codec.encode(schema, record), key)
    assert producer.flush(30) == 0
    identities = sum(1 for schema, _ in events if schema == IDENTITY)
    processor, _ = empi_processor(runtime_settings, codec, names, f"truth-{uuid.uuid4().hex[:6]}")
    with processing(processor):
        links = read_all(kafka_bootstrap, names["link"], timeout=300, idle=20)
    assert len(links) >= identities  # one per identity, and one per source merge

    keyring.to_file(tmp_path / "keyring.json")
    env = os.environ | {
        "HS_ENV": "test", "HS_KAFKA_BOOTSTRAP": kafka_bootstrap, "HS_METRICS_PORT": "0",
        "HS_KEYRING_FILE": str(tmp_path / "keyring.json"), "HS_LOG_LEVEL": "WARNING",
        "HS_QUALITY_GROUP": f"hs-quality-{uuid.uuid4().hex[:8]}", "HS_TOPIC_PARTITIONS": "1",
        "HS_QUALITY_STATE_DIR": str(tmp_path / "state"),
        # the feed's ward charts 8 to 16 vital signs an hour (a hospital's LIS sends hundreds)
        "HS_QUALITY_ALERT_MIN_RECORDS": "8",
        "HS_QUALITY_INPUT_TOPICS": ",".join(names[n] for n in (*TOPIC_OF.values(), "link")),
        "HS_QUALITY_RESULT_TOPIC": new_topic("result"), "HS_QUALITY_SUMMARY_TOPIC": new_topic("s"),
        "HS_QUALITY_ALERT_TOPIC": new_topic("alert"), "HS_DEAD_LETTER_TOPIC": names["dead"],
        "HS_QUALITY_CLOCK_TOPIC": new_topic("clock"), "HS_QUALITY_PATIENT_TOPIC": new_topic("p"),
        "HS_QUALITY_OBSERVATION_TOPIC": names["observation"],
    }  # fmt: skip
    results, alerts = run_quality(env, names, len(events) + len(links), kafka_bootstrap)
    assert len(results) == len(events) + len(links)

    for _, value in links:
        link = codec.decode(value).record
        by_id[str(link["envelope"]["event_id"])] = (LINK, link)
    scored = []
    for _, value in results:
        result = codec.decode(value).record
        schema, record = by_id[str(result["scored_event_id"])]
        scored.append(Scored(schema, record, frozenset(f["check_id"] for f in result["failures"])))

    defects = truth(feed, "quality_defects.csv")
    records = truth(feed, "records.csv")
    rows: dict[str, list[Key]] = defaultdict(list)
    for d in defects:
        where = (d["institution"], d["local_id"])
        rows[d["kind"]].append(where if not d["at"] or d["kind"] == "degrading_source"
                               else (*where, utc(d["at"])))  # fmt: skip
    rows["id_mistyped"] = [(r["institution"], r["local_id"]) for r in records
                           if "id_mistyped" in r["noise"].split(";")]  # fmt: skip
    mapped = {defect_key(s.schema, s.record) for s in scored
              if s.schema == OBSERVATION and s.record["result"]["code"] is not None}  # fmt: skip
    every = {defect_key(s.schema, s.record) for s in scored} | {
        k[:2] for k in (defect_key(s.schema, s.record) for s in scored)
    }
    table = [figures(kind, rows[kind], mapped if kind in NEEDS_A_CODE else every, scored)
             for kind in FOUND_BY]  # fmt: skip

    # clean: a record with no defect and no registration noise, from before the degradation
    noisy = {(r["institution"], r["local_id"]) for r in records if r["noise"]}
    spoiled = {k for kind in FOUND_BY for k in rows[kind]}
    degrading_from = utc((START + timedelta(days=DEGRADING_DAY)).isoformat())
    clean = [
        s for s in scored
        if s.schema != LINK and record_key(s.schema, s.record) not in noisy | spoiled
        and defect_key(s.schema, s.record) not in spoiled
        and not (s.record["envelope"]["source"]["institution"] == DEGRADING
                 and s.record["envelope"]["received_at"] >= degrading_from)
    ]  # fmt: skip
    false_flags = [s for s in clean if s.failed - (NOT_SENT if sent_over_http(s) else set())]
    false_rate = len(false_flags) / len(clean)

    print(f"\n{'defect kind':<20}{'injected':>9}{'visible':>9}{'found':>7}{'recall':>8}"
          f"{'flagged':>9}{'precision':>11}")  # fmt: skip
    for f in table:
        print(f"{f.kind:<20}{f.defects:>9}{f.visible:>9}{f.found:>7}{f.recall:>8.3f}"
              f"{f.flagged:>9}{f.precision:>11.3f}")  # fmt: skip
    print(f"clean records: {len(clean)}, flagged {len(false_flags)} ({100 * false_rate:.3f} %)")
    consistency = cross_source(scored, records)
    table.append(consistency)
    print(f"{consistency.kind:<20}{consistency.defects:>9}{consistency.visible:>9}"
          f"{consistency.found:>7}{consistency.recall:>8.3f}{consistency.flagged:>9}"
          f"{consistency.precision:>11.3f}   (persons)")  # fmt: skip
    for f in table:
        assert f.visible >= 10, f"too few {f.kind} defects to measure: {f.visible}"
        assert f.recall >= 0.99, f
        assert f.precision >= 0.99, f
    assert false_rate <= 0.001, sorted({c for s in false_flags for c in s.failed})

    opened = sorted(
        (r["window_start"], r["check_id"], r["scored_type"])
        for r in (codec.decode(v).record for _, v in alerts)
        if r["institution"] == DEGRADING and r["action"] == "OPENED"
    )
    mapping = [start for start, check, kind in opened if check == "code-mapped"]
    print(f"degrading source {DEGRADING} from {degrading_from}: code-mapped alerts {mapping}")
    assert mapping and mapping[0] <= window_start(degrading_from, timedelta(hours=1)) + timedelta(
        hours=1
    )
    assert mapping[0] >= degrading_from - timedelta(hours=1)  # not before it degraded
