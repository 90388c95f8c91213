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
    accepted = sum(n for outcome, n in outcomes.items() if outcome in ("AA", "CA", "HTTP 202"))
    refused = sum(outcomes.values()) - accepted
    assert accepted > 100
    assert refused > 0
    assert not any(outcome.startswith("skipped") for outcome in outcomes)
    assert len(read_all(kafka_bootstrap, raw, expected=accepted, timeout=60)) == accepted
    assert len(read_all(kafka_bootstrap, dead, expected=refused, timeout=60)) == refused


UNMAPPED = (
    "MSH|^~\\&|LIS|BJ03|HEALTHSTREAM|HS|20260101080000||ORU^R01^ORU_R01|FIX1|P|2.3.1\r"
    "PID|1||BJ-7^^^BJ03^MR||WANG^WEI||19800101|M\r"
    "OBR|1|O1|O1-F|LAB^LAB^L|||20260101073000\r"
    "OBX|1|NM|NEWGLU^GLUCOSE^L||5.5|mmol/L|3.9-6.1||||F|||20260101073000\r"
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
        ),
        codec=codec,
        dead_letter_topic=dead,
        poll_timeout=0.2,
    )


def test_dead_letters_replayed_after_a_mapping_fix_become_events(
    settings: IngestionSettings, codec: Codec, new_topic: TopicFactory, kafka_bootstrap: str
) -> None:
    raw, observations, dead = new_topic("raw", 1), new_topic("obs", 1), new_topic("dead", 1)
    kept = receive_hl7(UNMAPPED.encode(), SourceRegistry.load(settings.sources_dir), codec.keyring)
    assert isinstance(kept, Kept)

    async def store_raw() -> None:
        door = Door(settings, codec, raw, dead)
        await door.store.keep(kept.record, kept.key)
        door.producer.close()

    asyncio.run(store_raw())
    with processing(_normalizer(settings, codec, raw, observations, dead, "normalize-before-fix")):
        [(_, letter)] = read_all(kafka_bootstrap, dead, expected=1, timeout=60)
    assert codec.decode(letter).record["reason_code"] == "code.unknown"

    mapping = settings.sources_dir / "BJ03.toml"
    mapping.write_text(
        mapping.read_text() + '"NEWGLU" = "glucose"\n'
    )  # the fix: a new line in the source file

    async def replay() -> dict[str, int]:
        door = Door(settings, codec, raw, dead)
        try:
            return dict(await replay_dead_letters(door, settings, "code.unknown", None))
        finally:
            door.producer.close()

    assert asyncio.run(replay()) == {"raw message re-queued for normalization": 1}
    with processing(_normalizer(settings, codec, raw, observations, dead, "normalize-after-fix")):
        [(_, value)] = read_all(kafka_bootstrap, observations, expected=1, timeout=60)
    record = codec.decode(value).record
    assert record["result"]["code"]["code"] == "14749-6"
    assert record["result"]["value_quantity"] == 5.5
