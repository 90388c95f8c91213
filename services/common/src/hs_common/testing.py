"""Pytest fixtures for tests against a real Kafka broker (and a real PostgreSQL server, see
`postgres_dsn`). Load with `pytest_plugins = ["hs_common.testing"]`.

The session broker is, in order of preference:
1. the cluster named by KAFKA_BOOTSTRAP, with the login the HS_KAFKA_* variables give;
2. the project's own Apache Kafka (infra/kafka/kafka.sh) on free loopback ports, secured as in
   production (SASL_SSL, ACLs), with its state in a temporary folder, stopped at the end of the
   session. Its administrator's login is exported as HS_KAFKA_* variables, so every client the
   tests make (settings, services started as subprocesses, `client_config`) authenticates.
Every test gets fresh topics and consumer groups (uuid names), so tests never share data.
"""

from __future__ import annotations

import asyncio
import atexit
import io
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import fastavro
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from hs_common import control
from hs_common.codec import Codec
from hs_common.crypto import Keyring
from hs_common.processor import ExactlyOnceProcessor
from hs_common.schemas import EventSchema, SchemaCatalogue, default_schema_root
from hs_common.settings import Environment, RuntimeSettings, read_env_file


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def repository_root() -> Path:
    for parent in Path(__file__).resolve().parents:
        if (parent / "infra" / "kafka" / "kafka.sh").exists():
            return parent
    raise RuntimeError("cannot find infra/kafka/kafka.sh above hs_common")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("KAFKA_BOOTSTRAP")
    if configured:
        yield configured
        return
    script = repository_root() / "infra" / "kafka" / "kafka.sh"
    state = tmp_path_factory.mktemp("kafka")
    env = os.environ | {
        "KAFKA_PORT": str(free_port()),
        "KAFKA_CERT_PORT": str(free_port()),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "KAFKA_STATE_DIR": str(state),
    }
    subprocess.run([str(script), "up"], env=env, check=True)
    os.environ.update(read_env_file(state / "admin.env"))
    try:
        yield os.environ["HS_KAFKA_BOOTSTRAP"]
    finally:
        subprocess.run([str(script), "down"], env=env, check=False)


@pytest.fixture(scope="session")
def kafka_state_dir(kafka_bootstrap: str) -> Path:
    """The project broker's state folder (its CA in tls/); only with the project's broker."""
    ca = os.environ.get("HS_KAFKA_SSL_CA_LOCATION")
    if not ca or not (Path(ca).parent / "ca.key").exists():
        pytest.fail("this test needs the project's own broker (unset KAFKA_BOOTSTRAP)")
    return Path(ca).parent.parent


def client_config(
    bootstrap: str, extra: Mapping[str, str | int | bool] | None = None
) -> dict[str, str | int | bool]:
    """librdkafka settings for a test's own client of the session broker: its address, the
    login the environment holds, and `extra`."""
    return RuntimeSettings(HS_KAFKA_BOOTSTRAP=bootstrap).kafka_client_config() | dict(extra or {})


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A PostgreSQL DSN for the session: HS_TEST_POSTGRES_DSN when set, else the project's own
    server (infra/postgres/pg.sh) on a free loopback port, its state in a temporary folder,
    stopped and removed at the end of the session. Tests share the `healthstream` database."""
    configured = os.environ.get("HS_TEST_POSTGRES_DSN")
    if configured:
        yield configured
        return
    script = repository_root() / "infra" / "postgres" / "pg.sh"
    # Not tmp_path_factory: its folders sit under a mode-700 folder of the user running pytest,
    # and as root the server runs as the `postgres` user, which must reach its state folder.
    state = Path(tempfile.mkdtemp(prefix="hs-pg-"))
    state.chmod(0o755)
    env = os.environ | {"PG_PORT": str(free_port()), "PG_STATE_DIR": str(state), "PG_FAST": "1"}
    try:
        started = subprocess.run(
            [str(script), "up"], env=env, check=True, stdout=subprocess.PIPE, text=True
        )
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([str(script), "down"], env=env, check=False)
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def postgres_schema(postgres_dsn: str) -> Iterator[str]:
    """A DSN whose tables land in a schema of this test's own, dropped afterwards."""
    import psycopg  # noqa: PLC0415 - only the tests that use PostgreSQL need it

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in postgres_dsn else "?"
    try:
        yield f"{postgres_dsn}{separator}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def runtime_settings(kafka_bootstrap: str, tmp_path: Path) -> RuntimeSettings:
    return RuntimeSettings(
        HS_ENV=Environment.TEST,
        HS_KAFKA_BOOTSTRAP=kafka_bootstrap,
        HS_INSTANCE_ID=f"test-{uuid.uuid4().hex[:8]}",
        HS_KEYRING_FILE=tmp_path / "keyring.json",
    )


@pytest.fixture
def kafka_admin(kafka_bootstrap: str) -> AdminClient:
    return AdminClient(client_config(kafka_bootstrap))


TopicFactory = Callable[..., str]


@pytest.fixture
def new_topic(kafka_admin: AdminClient) -> TopicFactory:
    """Create a uniquely named topic: new_topic("raw", partitions=3) -> "test-raw-<uuid>"."""

    def create(label: str = "t", partitions: int = 1) -> str:
        name = f"test-{label}-{uuid.uuid4().hex[:12]}"
        futures = kafka_admin.create_topics([NewTopic(name, partitions, 1)], operation_timeout=30)
        futures[name].result(timeout=30)
        return name

    return create


def read_all(
    bootstrap: str,
    topic: str,
    expected: int | None = None,
    timeout: float = 30.0,
    idle: float = 3.0,
    isolation: str = "read_committed",
) -> list[tuple[bytes | None, bytes]]:
    """Every (key, value) on `topic` from the beginning. Stops once `expected` records
    arrived, after `idle` seconds without a new record, or at `timeout`."""
    consumer = Consumer(
        client_config(
            bootstrap,
            {
                "group.id": f"reader-{uuid.uuid4().hex}",
                "isolation.level": isolation,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            },
        )
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        consumer.assign([TopicPartition(topic, p, 0) for p in metadata.topics[topic].partitions])
        records: list[tuple[bytes | None, bytes]] = []
        deadline = time.monotonic() + timeout
        last_arrival = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - last_arrival < idle:
            if expected is not None and len(records) >= expected:
                break
            for message in consumer.consume(500, 0.2):
                if message.error() is None:
                    records.append((message.key(), message.value() or b""))
                    last_arrival = time.monotonic()
        return records
    finally:
        consumer.close()


def writer_headers(codec: Codec, value: bytes) -> list[tuple[str, str | bytes]]:
    """The headers the value's writer adds (hs_common.control's MAC), for a test playing the
    EMPI or the edge."""
    return control.mac_headers(codec.keyring, codec.schema_of(value).name, value)


def golden_example(schema: EventSchema, schema_root: Path) -> dict[str, Any]:
    """The schema's golden example (schemas/examples/<full name>.json, Avro JSON encoding)."""
    path = schema_root / "examples" / f"{schema.name}.json"
    line = json.dumps(json.loads(path.read_text(encoding="utf-8")), ensure_ascii=False)
    records = list(fastavro.json_reader(io.StringIO(line), schema.logical_parsed))
    return cast(dict[str, Any], records[0])


@pytest.fixture(scope="session")
def schema_root() -> Path:
    return default_schema_root()


@pytest.fixture(scope="session")
def catalogue(schema_root: Path) -> SchemaCatalogue:
    return SchemaCatalogue.load(schema_root)


@pytest.fixture(scope="session")
def keyring() -> Keyring:
    return Keyring.generate()


@pytest.fixture(scope="session")
def codec(catalogue: SchemaCatalogue, keyring: Keyring) -> Codec:
    return Codec(catalogue, keyring)


T = TypeVar("T")


class LoopThread:
    """An asyncio loop in a thread, so blocking test code can talk to async servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@contextmanager
def processing(processor: ExactlyOnceProcessor) -> Iterator[None]:
    """Run a processor in a thread for the duration of a `with` block; stop it gracefully."""
    stop = threading.Event()
    thread = threading.Thread(target=processor.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)


class FhirValidator:
    """HAPI FHIR's reference R4 validator (infra/fhir-validator), one Java process for the
    session, asked one resource at a time."""

    def __init__(self) -> None:
        script = repository_root() / "infra" / "fhir-validator" / "validator.sh"
        self._process = subprocess.Popen(
            [str(script), "run"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self._lock = threading.Lock()
        self._answer()  # its first line says the R4 definitions are loaded

    def _answer(self) -> list[dict[str, str]]:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("HAPI's validator stopped; its errors are on stderr")
        return cast(list[dict[str, str]], json.loads(line))

    def issues(self, resource: Mapping[str, Any]) -> list[dict[str, str]]:
        """Everything the validator says about `resource`, each with severity, location and
        message."""
        assert self._process.stdin is not None
        with self._lock:
            self._process.stdin.write(json.dumps(resource, ensure_ascii=False) + "\n")
            self._process.stdin.flush()
            return self._answer()

    def errors(self, resource: Mapping[str, Any]) -> list[str]:
        """The validator's errors about `resource` ("location: message"); warnings left out."""
        return [
            f"{issue['location']}: {issue['message']}"
            for issue in self.issues(resource)
            if issue["severity"] in ("error", "fatal")
        ]

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait(30)


_session_validator: list[FhirValidator] = []


def hapi_errors(resource: Mapping[str, Any]) -> list[str]:
    """HAPI's errors about a FHIR resource, from one validator process per test session."""
    if not _session_validator:
        _session_validator.append(FhirValidator())
        atexit.register(_session_validator[0].close)
    return _session_validator[0].errors(resource)
