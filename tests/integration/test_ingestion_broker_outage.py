"""The broker stops while a sender streams over MLLP: nothing unstored is acknowledged AA,
and after the restart every AA'd message is on the raw topic exactly once."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client import CollectorRegistry

from hs_common.codec import Codec
from hs_common.kafka import AsyncDurableProducer
from hs_common.settings import RuntimeSettings, read_env_file
from hs_common.testing import (
    LoopThread,
    client_config,
    free_port,
    read_all,
    repository_root,
)
from hs_ingestion.mllp import MllpServer
from hs_ingestion.sources import SourceRegistry, default_sources_dir
from hs_ingestion.store import Store

pytestmark = pytest.mark.integration
SCRIPT = repository_root() / "infra" / "kafka" / "kafka.sh"


class Broker:
    """A broker of this test's own, so stopping it disturbs no other test."""

    def __init__(self, state: Path) -> None:
        self.port = free_port()
        self.state = state
        self.env = os.environ | {
            "KAFKA_PORT": str(self.port),
            "KAFKA_CERT_PORT": str(free_port()),
            "KAFKA_CONTROLLER_PORT": str(free_port()),
            "KAFKA_STATE_DIR": str(state),
        }

    def login(self) -> dict[str, str]:
        return read_env_file(self.state / "admin.env")

    def up(self) -> None:
        subprocess.run([str(SCRIPT), "up"], env=self.env, check=True, capture_output=True)

    def down(self) -> None:
        subprocess.run([str(SCRIPT), "down"], env=self.env, check=True, capture_output=True)


@pytest.fixture
def broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Broker]:
    broker = Broker(tmp_path / "kafka")
    broker.up()
    for name, value in broker.login().items():  # this broker's admin, not the session broker's
        monkeypatch.setenv(name, value)
    yield broker
    broker.down()


def _message(number: int) -> bytes:
    return (
        "MSH|^~\\&|HIS|HZ01|HEALTHSTREAM|HS|20260101080000||ADT^A04^ADT_A01"
        f"|OUT{number:06d}|P|2.5||||||UNICODE UTF-8\r"
        f"PID|1||HZ{number:06d}^^^HZ01^MR||WANG^WEI||19800101|M\r"
    ).encode()


def test_no_accept_without_storage_and_each_accepted_message_stored_once(
    broker: Broker, runtime_settings: RuntimeSettings, codec: Codec
) -> None:
    bootstrap = f"127.0.0.1:{broker.port}"
    admin = AdminClient(client_config(bootstrap))
    for future in admin.create_topics([NewTopic("raw", 1, 1), NewTopic("dead", 1, 1)]).values():
        future.result(30)
    # the environment now holds this broker's address and login (the `broker` fixture)
    settings = RuntimeSettings(
        HS_ENV=runtime_settings.environment, HS_KEYRING_FILE=runtime_settings.keyring_file
    )
    loop = LoopThread()
    producer = AsyncDurableProducer(settings, "outage-test", timeout=2.0)

    async def start() -> int:
        store = Store(codec, producer, "raw", "dead")
        server = MllpServer(SourceRegistry.load(default_sources_dir()), store, CollectorRegistry())
        return int((await server.serve("127.0.0.1", 0)).sockets[0].getsockname()[1])

    port = loop.run(start())
    answers: dict[int, str] = {}
    stop = threading.Event()

    def sender() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            number = 0
            while not stop.is_set():
                sock.sendall(b"\x0b" + _message(number) + b"\x1c\x0d")
                data = b""
                while not data.endswith(b"\x1c\x0d"):
                    data += sock.recv(4096)
                answers[number] = data.split(b"MSA|")[1][:2].decode()
                number += 1

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    try:
        _wait(
            lambda: sum(a == "AA" for a in answers.values()) >= 100, "100 accepts before the outage"
        )
        broker.down()
        outage_began = len(answers)
        _wait(lambda: sum(a == "AE" for a in answers.values()) >= 3, "errors during the outage")
        broker.up()
        _wait(
            lambda: sum(a == "AA" for n, a in answers.items() if n > outage_began) >= 100,
            "accepts after the restart",
        )
    finally:
        stop.set()
        thread.join(30)
        producer.close(timeout=5)
        loop.stop()

    outcomes = Counter(answers.values())
    assert set(outcomes) <= {"AA", "AE"}, outcomes
    stored = Counter(
        codec.decode(value).record["sender_message_id"]
        for _, value in read_all(bootstrap, "raw", timeout=60, idle=3)
    )
    accepted = {f"OUT{n:06d}" for n, a in answers.items() if a == "AA"}
    assert accepted <= set(stored), (
        f"{len(accepted - set(stored))} accepted messages are not stored"
    )
    assert all(stored[c] == 1 for c in accepted), "an accepted message is stored twice"
    assert outcomes["AE"] >= 3


def _wait(condition: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")
