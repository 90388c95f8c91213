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
from typing import Any

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
    env, secrets = edge_environment(database, keyring, new_topic, kafka_bootstrap, tmp_path)
    secret = secrets["ward-app"]
    port, grpc_port = int(env["HS_EDGE_PORT"]), int(env["HS_EDGE_GRPC_PORT"])
    people, observations = env["HS_EDGE_PERSON_TOPIC"], env["HS_EDGE_OBSERVATION_TOPIC"]
    audit_topic, dev = env["HS_EDGE_AUDIT_TOPIC"], tmp_path / "dev"
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
        answering(tls, base)
        issued = tls.post(f"{base}/oauth/token", data={
            "grant_type": "client_credentials", "client_id": "ward-app",
            "client_secret": secret, "scope": "user/*.read",
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


def edge_environment(
    database: str, keyring: Keyring, new_topic: TopicFactory, bootstrap: str, folder: Path,
    **settings: str,
) -> tuple[dict[str, str], dict[str, str]]:  # fmt: skip
    """The environment of an `hs-edge serve` on fresh topics with development credentials
    (`hs-edge dev-setup` in folder/dev), and the development clients' secrets."""
    dev = folder / "dev"
    setup = subprocess.run(["hs-edge", "dev-setup", "--folder", str(dev)], capture_output=True,
                           text=True, check=True)  # fmt: skip
    secrets = dict(re.findall(r"^\s*([a-z-]+): (\S+)$", setup.stdout, re.MULTILINE))
    keyring.to_file(folder / "keyring.json")
    env = os.environ | {
        "HS_ENV": "test", "HS_KAFKA_BOOTSTRAP": bootstrap, "HS_METRICS_PORT": "0",
        "HS_KEYRING_FILE": str(folder / "keyring.json"), "HS_LOG_LEVEL": "WARNING",
        "HS_EDGE_PORT": str(free_port()), "HS_EDGE_GRPC_PORT": str(free_port()),
        "HS_EDGE_DATABASE": database,
        "HS_EDGE_JWKS_FILE": str(dev / "jwks.json"),
        "HS_EDGE_TLS_CERT": str(dev / "tls-cert.pem"), "HS_EDGE_TLS_KEY": str(dev / "tls-key.pem"),
        "HS_EDGE_SIGNING_KEY": str(dev / "signing-key.json"),
        "HS_EDGE_DEV_CLIENTS": str(dev / "clients.json"),
        "HS_EDGE_AUDIT_TOPIC": new_topic("audit", 1),
        "HS_EDGE_PERSON_TOPIC": new_topic("persons", 2),
        "HS_EDGE_OBSERVATION_TOPIC": new_topic("observations", 2),
        "HS_EDGE_ALERT_TOPIC": new_topic("alerts", 1), "HS_EDGE_LINK_TOPIC": new_topic("links", 1),
        "HS_EDGE_CONDITION_TOPIC": new_topic("conditions", 1),
        "HS_EDGE_CLIENT_TOPIC": new_topic("clients", 1),
    } | settings  # fmt: skip
    return env, secrets


def answering(tls: httpx.Client, base: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            tls.get(f"{base}/healthz")
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("the edge did not answer")


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


def test_an_integrator_is_registered_rotated_counted_and_revoked(
    runtime_settings: RuntimeSettings, codec: Codec, keyring: Keyring, catalogue: SchemaCatalogue,
    schema_root: Path, new_topic: TopicFactory, kafka_bootstrap: str, tmp_path: Path,
) -> None:  # fmt: skip
    """The open platform as docs/edge.md walks it: an administrator registers a client, the
    client gets a token and searches; its secret is rotated with a grace period, its usage
    counted (requests, refusals, rate-limit hits) and at last it is revoked."""
    env, secrets = edge_environment(
        str(tmp_path / "edge.db"), keyring, new_topic, kafka_bootstrap, tmp_path,
        HS_EDGE_RATE_PER_SECOND="2", HS_EDGE_BURST="10",
    )  # fmt: skip
    person = golden_example(catalogue.get("hs.identity.Person"), schema_root)
    person |= {"person_id": "P1", "record_keys": [codec.keyring.pseudonym("H330102", "MRN0012345")]}
    golden = codec.encode("hs.identity.Person", person)
    producer = make_producer(runtime_settings, "edge-feed")
    producer.produce(
        env["HS_EDGE_PERSON_TOPIC"], golden, "P1", headers=writer_headers(codec, golden)
    )
    assert producer.flush(10) == 0
    service = subprocess.Popen(["hs-edge", "serve"], env=env)
    base = f"https://127.0.0.1:{env['HS_EDGE_PORT']}"
    tls = httpx.Client(
        verify=ssl.create_default_context(cafile=env["HS_EDGE_TLS_CERT"]), timeout=10
    )

    def token(client_id: str, secret: str, **form: str) -> httpx.Response:
        return tls.post(f"{base}/oauth/token", data={"grant_type": "client_credentials",
                        "client_id": client_id, "client_secret": secret} | form)  # fmt: skip

    try:
        answering(tls, base)
        admin = {"Authorization": "Bearer " + token("admin-console", secrets["admin-console"])
                 .json()["access_token"]}  # fmt: skip
        ward = {"Authorization": "Bearer " + token("ward-app", secrets["ward-app"])
                .json()["access_token"]}  # fmt: skip
        wanted = {"name": "城东社区 clinic app", "role": "clinician",
                  "scope": "user/Patient.read user/Observation.read"}  # fmt: skip
        assert tls.post(f"{base}/admin/clients", json=wanted, headers=ward).status_code == 403
        bad = tls.post(f"{base}/admin/clients", json=wanted | {"scope": "patient/*.read"},
                       headers=admin)  # fmt: skip
        assert bad.status_code == 400 and bad.json()["title"] == "client.scope"
        registered = tls.post(f"{base}/admin/clients", json=wanted, headers=admin)
        assert registered.status_code == 201, registered.text
        client_id, first_secret = registered.json()["client_id"], registered.json()["client_secret"]
        assert "secret_sha256" not in registered.text

        # the integrator: a token (form, and HTTP Basic), then the first search
        issued = token(client_id, first_secret)
        assert issued.status_code == 200 and issued.json()["scope"] == wanted["scope"]
        basic = tls.post(f"{base}/oauth/token", data={"grant_type": "client_credentials"},
                         auth=(client_id, first_secret))  # fmt: skip
        assert basic.status_code == 200, basic.text
        bearer = {"Authorization": f"Bearer {issued.json()['access_token']}"}
        assert token(client_id, first_secret, scope="user/*.read").status_code == 400
        found: dict[str, Any] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not found.get("entry"):
            answer = tls.get(f"{base}/fhir/Patient", params={"identifier": "H330102|MRN0012345"},
                             headers=bearer)  # fmt: skip
            found = answer.json() if answer.status_code == 200 else {}
            time.sleep(0.5)
        assert [e["resource"]["id"] for e in found["entry"]] == ["P1"]
        burst = [tls.get(f"{base}/persons/P1", headers=bearer).status_code for _ in range(25)]
        assert burst.count(429) >= 5 and 200 in burst

        # rotation: the old secret works for the grace period only
        time.sleep(1)
        rotated = tls.post(f"{base}/admin/clients/{client_id}/rotate", json={"grace_hours": 1},
                           headers=admin).json()  # fmt: skip
        second_secret = rotated["client_secret"]
        assert token(client_id, second_secret).status_code == 200
        assert token(client_id, first_secret).status_code == 200  # within the grace
        again = tls.post(f"{base}/admin/clients/{client_id}/rotate", json={"grace_hours": 0},
                         headers=admin).json()  # fmt: skip
        assert token(client_id, second_secret).status_code == 401
        assert token(client_id, first_secret).status_code == 401
        assert again["version"] == 3 and again["previous_secret_valid_until"] is not None

        # usage, counted from the audit trail
        usage: dict[str, int] = {}
        while time.monotonic() < deadline + 30 and usage.get("requests", 0) < 26:
            time.sleep(1)
            detail = tls.get(f"{base}/admin/clients/{client_id}", headers=admin).json()
            usage = detail["usage"]
        assert usage["rate_limited"] == burst.count(429)
        assert usage["refusals"] >= burst.count(429) + 3  # the wider scope, two old secrets

        # revocation: no token any more, and the token it holds is refused
        revoked = tls.post(f"{base}/admin/clients/{client_id}/revoke", headers=admin)
        assert revoked.json()["status"] == "revoked"
        refused = tls.get(f"{base}/persons/P1", headers=bearer)
        assert (refused.status_code, refused.json()["title"]) == (401, "client.revoked")
        assert token(client_id, again["client_secret"]).status_code == 401
        listed = tls.get(f"{base}/admin/clients", headers=admin).json()["items"]
        assert {c["client_id"]: c["status"] for c in listed}[client_id] == "revoked"

        # a sandbox client's tokens are for the sandbox audience: this edge serves real data
        sandbox = tls.post(f"{base}/admin/clients", headers=admin, json=wanted | {
            "name": "sandbox", "sandbox": True, "client_id": "try-me"}).json()  # fmt: skip
        sandboxed = token("try-me", sandbox["client_secret"]).json()["access_token"]
        outside = tls.get(f"{base}/persons/P1", headers={"Authorization": f"Bearer {sandboxed}"})
        assert (outside.status_code, outside.json()["title"]) == (401, "token.aud")
    finally:
        tls.close()
        service.terminate()
        service.wait(30)
