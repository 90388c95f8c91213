"""The demo's senders authenticate as production's must: `hs-ingestion-tools dev-senders` makes
a token per HTTP source and a client certificate per MLLP source (from the development CA), the
running `hs-ingestion` requires them, and the replay that feeds the demo uses them. Without them
nothing gets in."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from hs_common import admin
from hs_common.crypto import Keyring
from hs_common.settings import Environment, RuntimeSettings, read_env_file
from hs_common.testing import free_port
from hs_ingestion.main import IngestionSettings
from hs_ingestion.tools import dev_senders
from hs_synth.generate import GeneratorConfig, generate
from hs_synth.replay import Targets, replay

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def senders(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("senders")
    assert not dev_senders(IngestionSettings(HS_METRICS_PORT=0), out).startswith("refused")
    return out


@pytest.fixture(scope="module")
def ingestion(senders: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """`hs-ingestion` as the demo starts it: with the credentials dev-senders wrote."""
    admin.create_topics(RuntimeSettings(HS_ENV=Environment.TEST))
    mllp, http = free_port(), free_port()
    keyring = tmp_path_factory.mktemp("keys") / "keyring.json"
    Keyring.generate().to_file(keyring)
    env = os.environ | read_env_file(senders / "ingestion.env") | {
        "HS_INGESTION_MLLP_PORT": str(mllp), "HS_INGESTION_HTTP_PORT": str(http),
        "HS_METRICS_PORT": "0", "HS_INSTANCE_ID": f"senders-{mllp}",
        "HS_KEYRING_FILE": str(keyring),
        "HS_INGESTION_GROUP": f"senders-{mllp}",
    }  # fmt: skip
    service = subprocess.Popen(
        [sys.executable, "-m", "hs_ingestion.main"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{http}/health", timeout=1)
            break
        except OSError:
            assert service.poll() is None, service.stderr.read() if service.stderr else ""
            time.sleep(0.3)
    yield mllp, http
    service.terminate()
    service.wait(30)


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("feed")
    courses: dict[str, float] = {"cgm_patients": 0, "cuff_patients": 1, "inpatients": 1}
    config = GeneratorConfig(people=60, days=3, bad_rate=0.0, courses=courses)
    generate(config, out, progress=False)
    return out


def _outcomes(feed: Path, ingestion: tuple[int, int], senders: Path | None) -> Counter[str]:
    mllp, http = ingestion
    targets = Targets(("127.0.0.1", mllp), f"http://127.0.0.1:{http}", senders=senders)
    summary = asyncio.run(replay(feed, targets, rate=2000, progress=False))
    return sum((r.outcomes for r in summary.sources.values()), Counter())


ACCEPTED = {"AA", "CA", "HTTP 200", "HTTP 201", "HTTP 202"}


def test_the_replay_with_the_demo_credentials_gets_everything_in(
    feed: Path, ingestion: tuple[int, int], senders: Path
) -> None:
    outcomes = _outcomes(feed, ingestion, senders)
    assert outcomes["CA"] + outcomes["AA"] > 0 and outcomes["HTTP 202"] > 0, outcomes
    # all accepted but for what the content itself fails (a 422 names the field)
    assert set(outcomes) <= ACCEPTED | {"HTTP 422"}, outcomes
    assert outcomes["HTTP 422"] <= 0.01 * outcomes.total(), outcomes


def test_without_them_no_sender_gets_in(feed: Path, ingestion: tuple[int, int]) -> None:
    outcomes = _outcomes(feed, ingestion, None)
    assert not ACCEPTED & set(outcomes), outcomes
    assert outcomes["HTTP 401"] > 0, outcomes
