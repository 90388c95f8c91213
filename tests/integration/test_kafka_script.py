"""infra/kafka/kafka.sh: idempotent up, status, down by its own pid; run in the foreground."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from hs_common.settings import RuntimeSettings
from hs_common.testing import free_port, repository_root

pytestmark = pytest.mark.integration

SCRIPT = repository_root() / "infra" / "kafka" / "kafka.sh"


def _kafka(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), command], env=env, capture_output=True, text=True, check=False, timeout=180
    )


def _brokers_using(state: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "kafka.Kafka" in cmdline and str(state) in cmdline:
                pids.append(int(proc.name))
    return pids


def test_up_is_idempotent_and_down_stops_the_broker_it_started(tmp_path: Path) -> None:
    state = tmp_path / "kafka"
    env = os.environ | {
        "KAFKA_PORT": str(free_port()),
        "KAFKA_CERT_PORT": str(free_port()),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "KAFKA_STATE_DIR": str(state),
    }
    try:
        first = _kafka("up", env)
        assert first.returncode == 0, first.stderr
        pid = int((state / "broker.pid").read_text())
        second = _kafka("up", env)
        assert second.returncode == 0, second.stderr
        assert "already running" in second.stderr
        assert int((state / "broker.pid").read_text()) == pid
        assert _brokers_using(state) == [pid]
        assert _kafka("status", env).returncode == 0
        assert (state / "broker.log").stat().st_size > 0

        down = _kafka("down", env)
        assert down.returncode == 0, down.stderr
        assert _brokers_using(state) == []
        assert not (state / "broker.pid").exists()
        assert _kafka("status", env).returncode != 0
    finally:
        _kafka("down", env)


def test_run_keeps_the_broker_in_the_foreground_under_the_name_clients_use(tmp_path: Path) -> None:
    """As in a container: `run` on all interfaces, advertised and certified as KAFKA_HOST; the
    administrator's login names that host, and a client using it is served over TLS."""
    state = tmp_path / "kafka"
    port = free_port()
    env = os.environ | {
        "KAFKA_PORT": str(port), "KAFKA_CERT_PORT": str(free_port()),
        "KAFKA_CONTROLLER_PORT": str(free_port()), "KAFKA_STATE_DIR": str(state),
        "KAFKA_HOST": "localhost", "KAFKA_LISTEN_HOST": "0.0.0.0",
    }  # fmt: skip
    broker = subprocess.Popen(
        [str(SCRIPT), "run"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        login = state / "admin.env"
        deadline = time.monotonic() + 120
        while not login.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        settings = RuntimeSettings.from_login_file(login)
        assert settings.kafka_bootstrap == f"localhost:{port}"
        admin = AdminClient(settings.kafka_client_config())
        metadata = None
        while metadata is None and time.monotonic() < deadline:
            try:
                metadata = admin.list_topics(timeout=5)
            except KafkaException:
                time.sleep(1)
        assert metadata is not None and metadata.brokers[1].host == "localhost"
        assert broker.poll() is None  # still in the foreground, as a container's process
    finally:
        broker.terminate()
        broker.wait(60)
