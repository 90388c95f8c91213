"""Batch import through the same door as the listeners, and dead letters replayed after a
mapping fix, against the real broker."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from hs_common.codec import Codec
from hs_common.processor import ExactlyOnceProcessor
from hs_common.settings import Environment
from hs_common.testing import TopicFactory, processing, read_all
from hs_ingestion.intake import Kept, receive_hl7
from hs_ingestion.main import IngestionSettings
from hs_ingestion.normalizer import Normalizer
from hs_ingestion.sources import SourceRegistry, default_sources_dir
from hs_ingestion.tools import Door, import_folder, replay_dead_letters
from hs_synth.generate import GeneratorConfig, generate

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(kafka_bootstrap: str, tmp_path: Path) -> IngestionSettings:
    sources = tmp_path / "sources"
    shutil.copytree(default_sources_dir(), sources)
    return IngestionSettings(
        HS_ENV=Environment.TEST,
        HS_KAFKA_BOOTSTRAP=kafka_bootstrap,
        HS_INGESTION_SOURCES_DIR=sources,
        HS_METRICS_PORT=0,
    )


def test_import_answers_every_file_item_and_keeps_it(
    settings: IngestionSettings,
    codec: Codec,
    new_topic: TopicFactory,
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    raw, dead = new_topic("raw", 3), new_topic("dead", 1)
    folder = tmp_path / "feed"
    generate(
        GeneratorConfig(
            people=150,
            days=3,
            bad_rate=0.05,
            courses={
                "cgm_patients": 1,
                "cgm_days": 1,
                "cuff_patients": 1,
                "oximeter_patients": 1,
                "inpatients": 1,
            },
        ),
        folder,
        progress=False,
    )
    shutil.rmtree(folder / "truth")

    async def run() -> dict[str, int]:
        door = Door(settings, codec, raw, dead)
        try:
            return dict(await import_folder(door, folder, progress=False))
        finally:
            door.producer.close()

    outcomes = asyncio.run(run())
    accepted = sum(
        n
        for outcome, n in outcomes.items()
        if outcome in ("AA", "CA", "HTTP 200", "HTTP 201", "HTTP 202")
    )
    refused = sum(outcomes.values()) - accepted
    assert accepted > 100
    assert refused > 0
    assert not any(outcome.startswith("skipped") for outcome in outcomes)
    assert len(read_all(kafka_bootstrap, raw, expected=accepted, timeout=60)) == accepted
    assert len(read_all(kafka_bootstrap, dead, expected=refused, timeout=60)) == refused


ORU = (
    "MSH|^~\\&|LIS|BJ03|HEALTHSTREAM|HS|20260101080000||ORU^R01^ORU_R01|FIX1|P|2.3.1\r"
    "PID|1||BJ-7^^^BJ03^MR||WANG^WEI||19800101|M\r"
    "OBR|1|O1|O1-F|LAB^LAB^L|||20260101073000\r"
    "OBX|1|NM|GLU-S^GLUCOSE^L||5.5|mmol/L|3.9-6.1||||F|||20260101073000\r"
    "OBX|2|NM|K-S^POTASSIUM^L||{potassium}|mmol/L|3.5-5.3||||F|||20260101073000\r"
)


def _normalizer(
    settings: IngestionSettings, codec: Codec, raw: str, observations: str, dead: str, group: str
) -> ExactlyOnceProcessor:
    return ExactlyOnceProcessor(
        settings.model_copy(update={"instance_id": group}),
        stage="ingestion.normalize",
        group_id=group,
        input_topics=[raw],
        transform=Normalizer(
            codec,
            SourceRegistry.load(settings.sources_dir),
            dict.fromkeys(
                (
                    "hs.clinical.Observation",
                    "hs.identity.PatientIdentity",
                    "hs.clinical.Encounter",
                    "hs.clinical.Condition",
                ),
                observations,
            ),
            dead_letter_topic=dead,
        ),
        codec=codec,
        dead_letter_topic=dead,
        poll_timeout=0.2,
    )


def _store_raw(settings: IngestionSettings, codec: Codec, raw: str, dead: str, text: str) -> None:
    kept = receive_hl7(text.encode(), SourceRegistry.load(settings.sources_dir), codec.keyring)
    assert isinstance(kept, Kept)

    async def store() -> None:
        door = Door(settings, codec, raw, dead)
        await door.store.keep(kept.record, kept.key)
        door.producer.close()

    asyncio.run(store())


def _replay(settings: IngestionSettings, codec: Codec, raw: str, dead: str) -> dict[str, int]:
    async def replay() -> dict[str, int]:
        door = Door(settings, codec, raw, dead)
        try:
            return dict(await replay_dead_letters(door, settings, None, "ingestion.normalize"))
        finally:
            door.producer.close()

    return asyncio.run(replay())


def test_a_message_dead_lettered_whole_is_replayed_after_the_fix(
    settings: IngestionSettings, codec: Codec, new_topic: TopicFactory, kafka_bootstrap: str
) -> None:
    raw, observations, dead = new_topic("raw", 1), new_topic("obs", 1), new_topic("dead", 1)
    _store_raw(settings, codec, raw, dead, ORU.format(potassium="4.1"))
    source_file = settings.sources_dir / "BJ03.toml"
    kept_aside = source_file.read_text()
    source_file.unlink()  # the normalizer was deployed without the sender's file
    with processing(_normalizer(settings, codec, raw, observations, dead, "normalize-fix")):
        [(_, letter)] = read_all(kafka_bootstrap, dead, expected=1, timeout=60)
    assert codec.decode(letter).record["reason_code"] == "normalize.unknown_source"

    source_file.write_text(kept_aside)  # the fix
    assert _replay(settings, codec, raw, dead) == {"raw message re-queued for normalization": 1}
    with processing(_normalizer(settings, codec, raw, observations, dead, "normalize-fix")):
        results = read_all(kafka_bootstrap, observations, expected=3, timeout=60, idle=5)
    records = [codec.decode(value).record for _, value in results]
    glucose = [r for r in records if r.get("result", {}).get("code", {}).get("code") == "14749-6"]
    assert [r["result"]["value_quantity"] for r in glucose] == [5.5]


def test_an_item_dead_letter_replays_that_item_only(
    settings: IngestionSettings, codec: Codec, new_topic: TopicFactory, kafka_bootstrap: str
) -> None:
    raw, observations, dead = new_topic("raw", 1), new_topic("obs", 1), new_topic("dead", 1)
    _store_raw(settings, codec, raw, dead, ORU.format(potassium="?7"))
    with processing(_normalizer(settings, codec, raw, observations, dead, "normalize-item")):
        [(_, letter)] = read_all(kafka_bootstrap, dead, expected=1, timeout=60)
        first = read_all(kafka_bootstrap, observations, expected=2, timeout=60, idle=3)
    assert codec.decode(letter).record["item"] == "OBX 2"
    assert len(first) == 2  # the identity and the glucose

    assert _replay(settings, codec, raw, dead) == {"item re-queued for normalization": 1}
    with processing(_normalizer(settings, codec, raw, observations, dead, "normalize-item")):
        letters = read_all(kafka_bootstrap, dead, expected=2, timeout=60, idle=3)
    again = codec.decode(letters[-1][1]).record
    assert (again["item"], again["reason_code"]) == ("OBX 2", "hl7.invalid_value")
    assert len(read_all(kafka_bootstrap, observations, idle=3)) == 2  # nothing else re-emitted
