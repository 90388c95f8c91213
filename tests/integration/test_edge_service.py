"""`hs-edge serve` as a process: REST and gRPC over TLS, the development token endpoint, the read
model kept up from the topics (SQLite or PostgreSQL), and an audit trail that `hs-edge
verify-audit` finds intact."""

from __future__ import annotations

import os
import re
import ssl
import subprocess
import time
from pathlib import Path

import grpc
import httpx
import psycopg
import pytest
from healthstream.edge.v1 import edge_pb2 as pb
from healthstream.edge.v1 import edge_pb2_grpc

from hs_common.codec import Codec
from hs_common.crypto import Keyring
from hs_common.kafka import make_producer
from hs_common.schemas import SchemaCatalogue
from hs_common.settings import RuntimeSettings
from hs_common.testing import TopicFactory, free_port, golden_example, writer_headers

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_edge_serves_over_tls_what_the_topics_hold(
    backend: str, request: pytest.FixtureRequest, runtime_settings: RuntimeSettings,
    codec: Codec, keyring: Keyring, catalogue: SchemaCatalogue, schema_root: Path,
    new_topic: TopicFactory, kafka_bootstrap: str, tmp_path: Path,
) -> None:  # fmt: skip
    database = (
        str(tmp_path / "edge.db") if backend == "sqlite"
        else request.getfixturevalue("postgres_schema")
    )  # fmt: skip
    setup = subprocess.run(
        ["hs-edge", "dev-setup", "--folder", str(tmp_path / "dev")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    secret = re.search(r"ward-app: (\S+)", setup.stdout)
    assert secret is not None
    keyring.to_file(tmp_path / "keyring.json")
    people, observations = new_topic("persons", 2), new_topic("observations", 2)
    audit_topic, alerts = new_topic("audit", 1), new_topic("alerts", 1)
    port, grpc_port = free_port(), free_port()
    dev = tmp_path / "dev"
    env = os.environ | {
        "HS_ENV": "test", "HS_KAFKA_BOOTSTRAP": kafka_bootstrap, "HS_METRICS_PORT": "0",
        "HS_KEYRING_FILE": str(tmp_path / "keyring.json"), "HS_LOG_LEVEL": "WARNING",
        "HS_EDGE_PORT": str(port), "HS_EDGE_GRPC_PORT": str(grpc_port),
        "HS_EDGE_DATABASE": database,
        "HS_EDGE_JWKS_FILE": str(dev / "jwks.json"),
        "HS_EDGE_TLS_CERT": str(dev / "tls-cert.pem"), "HS_EDGE_TLS_KEY": str(dev / "tls-key.pem"),
        "HS_EDGE_SIGNING_KEY": str(dev / "signing-key.json"),
        "HS_EDGE_DEV_CLIENTS": str(dev / "clients.json"), "HS_EDGE_AUDIT_TOPIC": audit_topic,
        "HS_EDGE_PERSON_TOPIC": people, "HS_EDGE_OBSERVATION_TOPIC": observations,
        "HS_EDGE_ALERT_TOPIC": alerts, "HS_EDGE_LINK_TOPIC": new_topic("links", 1),
        "HS_EDGE_CONDITION_TOPIC": new_topic("conditions", 1),
    }  # fmt: skip
    person = golden_example(catalogue.get("hs.identity.Person"), schema_root)
    person |= {"person_id": "P1", "record_keys": [codec.keyring.pseudonym("H330102", "MRN0012345")]}
    observation = golden_example(catalogue.get("hs.clinical.Observation"), schema_root)
    producer = make_producer(runtime_settings, "edge-feed")
    golden = codec.encode("hs.identity.Person", person)
    producer.produce(people, golden, "P1", headers=writer_headers(codec, golden))
    producer.produce(observations, codec.encode("hs.clinical.Observation", observation), None)
    assert producer.flush(10) == 0

    service = subprocess.Popen(["hs-edge", "serve"], env=env)
    base = f"https://127.0.0.1:{port}"
    tls = httpx.Client(verify=ssl.create_default_context(cafile=dev / "tls-cert.pem"), timeout=10)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                tls.get(f"{base}/healthz")
                break
            except httpx.TransportError:
                time.sleep(0.2)
        issued = tls.post(f"{base}/oauth/token", data={
            "grant_type": "client_credentials", "client_id": "ward-app",
            "client_secret": secret.group(1), "scope": "user/*.read",
        })  # fmt: skip
        assert issued.status_code == 200, issued.text
        bearer = {"Authorization": f"Bearer {issued.json()['access_token']}"}
        wrong = tls.post(f"{base}/oauth/token", data={
            "grant_type": "client_credentials", "client_id": "ward-app", "client_secret": "guess",
        })  # fmt: skip
        assert wrong.status_code == 401
        listed: dict[str, object] = {}
        while time.monotonic() < deadline and not listed.get("items"):
            answer = tls.get(f"{base}/persons/P1/observations", headers=bearer)
            listed = answer.json() if answer.status_code == 200 else {}
            time.sleep(0.2)
        assert listed["items"], listed
        if backend == "postgresql":  # the database drops every connection of the edge's
            drop_connections(database, tls, base, bearer)
            second = observation | {"observation_id": "OBS-AFTER"}
            producer.produce(observations, codec.encode("hs.clinical.Observation", second), None)
            assert producer.flush(10) == 0
            while time.monotonic() < deadline and len(listed["items"]) < 2:  # type: ignore[arg-type]
                answer = tls.get(f"{base}/persons/P1/observations", headers=bearer)
                listed = answer.json() if answer.status_code == 200 else listed
                time.sleep(0.2)
            assert len(listed["items"]) == 2, listed  # type: ignore[arg-type]
        with pytest.raises((httpx.ConnectError, httpx.RemoteProtocolError)):  # no plain HTTP
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)

        trusted = grpc.ssl_channel_credentials((dev / "tls-cert.pem").read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{grpc_port}", trusted) as channel:
            page = edge_pb2_grpc.EdgeStub(channel).ListObservations(
                pb.ListObservationsRequest(person_id="P1"), timeout=10,
                metadata=(("authorization", bearer["Authorization"]),),
            )  # fmt: skip
        rest_ids = [item["observation_id"] for item in listed["items"]]  # type: ignore[attr-defined]
        assert [o.observation_id for o in page.items] == rest_ids
        plain = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")  # no plain gRPC
        with plain, pytest.raises(grpc.RpcError):
            edge_pb2_grpc.EdgeStub(plain).GetPerson(pb.GetPersonRequest(person_id="P1"), timeout=5)
    finally:
        tls.close()
        service.terminate()
        service.wait(30)
    verified = subprocess.run(
        ["hs-edge", "verify-audit", "--topic", audit_topic], env=env, capture_output=True,
        text=True, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "intact" in verified.stdout and "anchored heads held: 1" in verified.stdout


def drop_connections(dsn: str, tls: httpx.Client, base: str, bearer: dict[str, str]) -> None:
    """Every connection to the edge's database ends, as in a PostgreSQL restart; the next
    request is refused (503) and the one after is served."""
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    statuses = [tls.get(f"{base}/persons/P1", headers=bearer).status_code for _ in range(2)]
    assert statuses == [503, 200]
