"""infra/kafka/kafka.sh: idempotent up, status, down by its own pid."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

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
