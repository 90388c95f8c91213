"""hs-edge: one person's observations, a page of 20, over REST and gRPC, authentication on.

Figures, for each of REST (`GET /persons/P1/observations?_count=20`) and gRPC
(`ListObservations(person_id=P1, page_size=20)`), both over TLS with a bearer token:
- at a constant 1,000 requests/s (20 s): p50, p99, success ratio, the rate answered;
- the highest sustained rate: 50 requests in flight, each sent as soon as one is answered
  (20 s), with its p50 and p99;
- at a constant 100 requests/s (5 s), a load the edge carries here: p50 and p99;
- CPU per request of the server, the broker and the load generator (/proc and rusage), and
  afterwards the cost of each step of an answer, timed alone in this process.
Rounds (3) interleave the edge and the baseline; the table gives the medians.
Each request is the real path: token verified (ES256), rate limit taken, read model read,
events decoded, answer encoded, audit entry hash-chained and written to Kafka (acks=all).

Baseline, same run, same load tools, same TLS, same answer bytes: a minimal server with the
edge's shape (uvicorn + FastAPI and grpc.aio on one asyncio loop) answering a precomputed page,
with no token, limit, store or audit. Every figure is printed with its ratio edge / baseline.

Load comes from Go tools (vegeta for REST, ghz for gRPC; `bench/tools.sh` installs them into
.local/bin), so that the client costs little of the 2 cores. The broker is HS_KAFKA_BOOTSTRAP
when one answers there (`make kafka-up`), else one started for the run and stopped after.
    uv run --frozen python bench/edge_bench.py [--seconds 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import resource
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import grpc
import httpx
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
from healthstream.edge.v1 import edge_pb2 as pb
from healthstream.edge.v1 import edge_pb2_grpc

from hs_common.codec import Codec
from hs_common.crypto import Keyring
from hs_common.kafka import make_producer
from hs_common.schemas import SchemaCatalogue, default_schema_root
from hs_common.settings import RuntimeSettings
from hs_common.testing import free_port, golden_example, repository_root

PERSON_ID = "P1"
INSTITUTION, MRN = "H330102", "MRN0012345"  # the golden Observation's patient
OBSERVATIONS = 2_000
PAGE_SIZE = 20
PACED_RATE = 1_000
LIGHT_RATE = 100  # a load the edge carries on this machine: its latency when not saturated
TARGET_P99_MS = 50.0
PACED_WORKERS = 200  # enough in flight that the tools keep the pace at tens of ms
CONCURRENCY = 50  # requests in flight for the highest rate
REPO = repository_root()
TOOLS = REPO / ".local" / "bin"
PROTO_ROOT = REPO / "proto"
GRPC_METHOD = "healthstream.edge.v1.Edge.ListObservations"


@dataclass(frozen=True)
class Server:
    """A server under load: the edge or the baseline, its two TLS ports and its process."""

    name: str
    rest_port: int
    grpc_port: int
    pid: int


@dataclass(frozen=True)
class Measurement:
    requests: int  # answered
    sent_per_s: float
    answered_per_s: float  # successful answers a second, over the whole run
    success: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]  # what went wrong, and how often
    cpu_us: dict[str, float] = field(default_factory=dict)  # CPU per answered request


@dataclass(frozen=True)
class Setup:
    """What the bench made: its folder (credentials, keyring, read model), the ward-app
    client's secret, and the edge's settings."""

    folder: Path
    secret: str
    env: dict[str, str]

    @property
    def certificate(self) -> Path:
        return self.folder / "dev" / "tls-cert.pem"


# --- the broker ---------------------------------------------------------------------------


def broker_answers(bootstrap: str) -> bool:
    try:
        AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(timeout=5)
    except KafkaException:
        return False
    return True


@contextmanager
def broker() -> Iterator[tuple[str, int | None]]:
    """(bootstrap, broker pid when known): the configured broker, or one of our own."""
    configured = RuntimeSettings().kafka_bootstrap
    if broker_answers(configured):
        pid_file = REPO / ".local" / "kafka" / "broker.pid"  # `make kafka-up`'s broker
        pid = int(pid_file.read_text()) if pid_file.exists() else None
        yield configured, pid if pid and Path(f"/proc/{pid}").exists() else None
        return
    state = Path(tempfile.mkdtemp(prefix="hs-edge-bench-kafka-"))
    port = free_port()
    env = os.environ | {"KAFKA_PORT": str(port), "KAFKA_CONTROLLER_PORT": str(free_port()),
                        "KAFKA_STATE_DIR": str(state)}  # fmt: skip
    script = REPO / "infra" / "kafka" / "kafka.sh"
    print(f"no broker at {configured}: starting one on 127.0.0.1:{port}")
    try:
        subprocess.run([str(script), "up"], env=env, check=True, capture_output=True)
        yield f"127.0.0.1:{port}", int((state / "broker.pid").read_text())
    finally:
        subprocess.run([str(script), "down"], env=env, check=False, capture_output=True)
        shutil.rmtree(state, ignore_errors=True)


def create_topics(bootstrap: str) -> dict[str, str]:
    run = uuid.uuid4().hex[:8]
    labels = ("persons", "observations", "audit", "alerts", "links", "conditions")
    names = {label: f"bench-edge-{label}-{run}" for label in labels}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    partitions = {"observations": 2}
    new = [NewTopic(name, partitions.get(label, 1), 1) for label, name in names.items()]
    for future in admin.create_topics(new, operation_timeout=30).values():
        future.result(30)
    return names


# --- the data: one golden record and its observations --------------------------------------


def person_record(codec: Codec, catalogue: SchemaCatalogue) -> bytes:
    person = golden_example(catalogue.get("hs.identity.Person"), default_schema_root())
    person |= {"person_id": PERSON_ID, "record_keys": [codec.keyring.pseudonym(INSTITUTION, MRN)]}
    return codec.encode("hs.identity.Person", person)


def observation_records(codec: Codec, catalogue: SchemaCatalogue) -> list[bytes]:
    """OBSERVATIONS results of the golden Observation's patient, an hour apart."""
    golden = golden_example(catalogue.get("hs.clinical.Observation"), default_schema_root())
    records = []
    for i in range(OBSERVATIONS):
        envelope = golden["envelope"] | {"event_id": str(uuid.uuid4())}
        at = golden["effective_at"] - timedelta(hours=i)
        record = golden | {"envelope": envelope, "observation_id": f"BENCH-{i:05d}",
                           "effective_at": at}  # fmt: skip
        records.append(codec.encode("hs.clinical.Observation", record))
    return records


def feed(bootstrap: str, codec: Codec, names: dict[str, str]) -> None:
    catalogue = codec.catalogue
    producer = make_producer(RuntimeSettings(HS_KAFKA_BOOTSTRAP=bootstrap), "bench-edge-feed")
    producer.produce(names["persons"], person_record(codec, catalogue), PERSON_ID)
    for value in observation_records(codec, catalogue):
        producer.produce(names["observations"], value, None)
        producer.poll(0)
    if producer.flush(30) != 0:
        raise SystemExit("the bench's records were not all written")


# --- the servers ----------------------------------------------------------------------------


def dev_setup(folder: Path) -> str:
    """Development credentials in folder/dev; returns the ward-app client's secret."""
    shown = subprocess.run(["hs-edge", "dev-setup", "--folder", str(folder / "dev")],
                           capture_output=True, text=True, check=True)  # fmt: skip
    found = re.search(r"ward-app: (\S+)", shown.stdout)
    if found is None:
        raise SystemExit("hs-edge dev-setup printed no ward-app secret")
    return found.group(1)


def edge_env(
    bootstrap: str, folder: Path, names: dict[str, str], opened_events: int
) -> dict[str, str]:
    dev = folder / "dev"
    return os.environ | {
        "HS_ENV": "test", "HS_KAFKA_BOOTSTRAP": bootstrap, "HS_METRICS_PORT": "0",
        "HS_INSTANCE_ID": f"bench-{uuid.uuid4().hex[:8]}", "HS_LOG_LEVEL": "WARNING",
        "HS_KEYRING_FILE": str(folder / "keyring.json"),
        "HS_EDGE_PORT": str(free_port()), "HS_EDGE_GRPC_PORT": str(free_port()),
        "HS_EDGE_DATABASE": str(folder / "read-model.db"),
        "HS_EDGE_JWKS_FILE": str(dev / "jwks.json"), "HS_EDGE_SIGNING_KEY": str(dev / "signing-key.json"),
        "HS_EDGE_TLS_CERT": str(dev / "tls-cert.pem"), "HS_EDGE_TLS_KEY": str(dev / "tls-key.pem"),
        "HS_EDGE_DEV_CLIENTS": str(dev / "clients.json"),
        # the limiter still runs on every request; it just never says no
        "HS_EDGE_RATE_PER_SECOND": "1000000000", "HS_EDGE_BURST": "1000000000",
        "HS_EDGE_AUDIT_TOPIC": names["audit"], "HS_EDGE_PERSON_TOPIC": names["persons"],
        "HS_EDGE_OBSERVATION_TOPIC": names["observations"], "HS_EDGE_ALERT_TOPIC": names["alerts"],
        "HS_EDGE_LINK_TOPIC": names["links"], "HS_EDGE_CONDITION_TOPIC": names["conditions"],
        "HS_EDGE_OPENED_EVENTS": str(opened_events),
    }  # fmt: skip


@contextmanager
def process(name: str, command: list[str], env: dict[str, str], log: Path) -> Iterator[int]:
    """A server process for the duration of a `with` block; its pid."""
    with log.open("wb") as output:
        started = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        yield started.pid
    finally:
        started.terminate()
        try:
            started.wait(30)
        except subprocess.TimeoutExpired:
            started.kill()
            started.wait(10)
        if started.returncode not in (0, -15):
            tail = log.read_text(errors="replace")[-2000:]
            print(f"{name} ended with status {started.returncode}; the end of its log:\n{tail}")


def tls_client(setup: Setup) -> httpx.Client:
    return httpx.Client(verify=ssl.create_default_context(cafile=setup.certificate), timeout=10)


def wait_until_serving(client: httpx.Client, port: int, pid: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            raise SystemExit(f"the server on port {port} ended before it answered")
        try:
            client.get(f"https://127.0.0.1:{port}/healthz")
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit(f"nothing answered on port {port} within {timeout:.0f} s")


def bearer(client: httpx.Client, setup: Setup, port: int) -> str:
    """A fresh ward-app token (they live 5 minutes)."""
    issued = client.post(f"https://127.0.0.1:{port}/oauth/token", data={
        "grant_type": "client_credentials", "client_id": "ward-app",
        "client_secret": setup.secret, "scope": "user/*.read",
    })  # fmt: skip
    issued.raise_for_status()
    return f"Bearer {issued.json()['access_token']}"


def listed_observations(client: httpx.Client, port: int, token: str) -> int:
    """How many of P1's observations the edge's read model holds, page by page."""
    total, cursor = 0, None
    while True:
        params = {"_count": "200"} | ({"cursor": cursor} if cursor else {})
        answer = client.get(f"https://127.0.0.1:{port}/persons/{PERSON_ID}/observations",
                            params=params, headers={"Authorization": token})  # fmt: skip
        if answer.status_code != 200:
            return total
        page = answer.json()
        total += len(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            return total


def wait_for_read_model(
    client: httpx.Client, setup: Setup, port: int, timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    token = bearer(client, setup, port)
    while listed_observations(client, port, token) < OBSERVATIONS:
        if time.monotonic() > deadline:
            raise SystemExit(f"the read model did not reach {OBSERVATIONS} observations")
        time.sleep(0.5)


def save_pages(client: httpx.Client, setup: Setup, edge: Server) -> None:
    """The page the load asks for, as REST's JSON bytes and gRPC's message: what the baseline
    answers with."""
    token = bearer(client, setup, edge.rest_port)
    answer = client.get(f"https://127.0.0.1:{edge.rest_port}/persons/{PERSON_ID}/observations",
                        params={"_count": str(PAGE_SIZE)}, headers={"Authorization": token})  # fmt: skip
    answer.raise_for_status()
    (setup.folder / "page.json").write_bytes(answer.content)
    trusted = grpc.ssl_channel_credentials(setup.certificate.read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{edge.grpc_port}", trusted) as channel:
        page = edge_pb2_grpc.EdgeStub(channel).ListObservations(
            pb.ListObservationsRequest(person_id=PERSON_ID, page_size=PAGE_SIZE), timeout=10,
            metadata=(("authorization", token),),
        )  # fmt: skip
    (setup.folder / "page.pb").write_bytes(page.SerializeToString())
    print(f"answer: {PAGE_SIZE} observations, {len(answer.content):,} bytes of JSON, "
          f"{page.ByteSize():,} bytes of protobuf")  # fmt: skip


# --- the baseline server (its own process: `--baseline-server FOLDER REST_PORT GRPC_PORT`) ---


async def serve_baseline(folder: Path, rest_port: int, grpc_port: int) -> None:
    """REST and gRPC on one asyncio loop, as `hs-edge serve` runs them, answering the page."""
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import Response

    page_json = (folder / "page.json").read_bytes()
    page = pb.ObservationPage.FromString((folder / "page.pb").read_bytes())
    dev = folder / "dev"
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/persons/{person_id}/observations")
    async def observations(person_id: str) -> Response:
        return Response(page_json, media_type="application/json")

    async def list_observations(
        request: pb.ListObservationsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ObservationPage:
        return page

    # what add_EdgeServicer_to_server registers for this method, with the same (de)serializers
    handler = grpc.unary_unary_rpc_method_handler(
        list_observations, request_deserializer=pb.ListObservationsRequest.FromString,
        response_serializer=pb.ObservationPage.SerializeToString,
    )  # fmt: skip
    service = GRPC_METHOD.rsplit(".", 1)[0]
    server = grpc.aio.server(maximum_concurrent_rpcs=1000)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(service, {"ListObservations": handler})]
    )
    key, certificate = (dev / "tls-key.pem").read_bytes(), (dev / "tls-cert.pem").read_bytes()
    credentials = grpc.ssl_server_credentials([(key, certificate)])
    server.add_secure_port(f"127.0.0.1:{grpc_port}", credentials)
    await server.start()
    rest = uvicorn.Server(uvicorn.Config(
        app, host="127.0.0.1", port=rest_port, log_level="warning",
        ssl_certfile=str(dev / "tls-cert.pem"), ssl_keyfile=str(dev / "tls-key.pem"),
    ))  # fmt: skip
    try:
        await rest.serve()
    finally:
        await server.stop(5)


# --- load -----------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, threads included (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU time of the finished children: here, the load generator's runs."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def metered(processes: dict[str, int], run: Callable[[], tuple[Measurement, float]]) -> Measurement:
    """Run a load and charge each process's CPU, and the load generator's, to its requests."""
    before = {name: cpu_seconds(pid) for name, pid in processes.items()}
    load_before = children_cpu_seconds()
    measured, load_cpu = run()
    used = {name: cpu_seconds(pid) - before[name] for name, pid in processes.items()}
    used["load generator"] = children_cpu_seconds() - load_before - load_cpu
    requests = max(1, measured.requests)
    return replace(measured, cpu_us={name: 1e6 * s / requests for name, s in used.items()})


def vegeta(
    server: Server, setup: Setup, token: str, seconds: float, rate: int | None, out: Path
) -> tuple[Measurement, float]:
    """A REST load: `rate` requests/s (open loop), or CONCURRENCY workers flat out.
    Returns the measurement and the CPU the report step used (not part of the load)."""
    target = f"GET https://127.0.0.1:{server.rest_port}/persons/{PERSON_ID}/observations?_count={PAGE_SIZE}\n"
    pace = ([f"-rate={rate}/1s", f"-max-workers={PACED_WORKERS}"] if rate
            else ["-rate=0", f"-workers={CONCURRENCY}", f"-max-workers={CONCURRENCY}"])  # fmt: skip
    if REST_CONNECTIONS:  # a client's connection pool: no new TLS handshakes under a backlog
        pace.append(f"-max-connections={REST_CONNECTIONS}")
    attack = [str(TOOLS / "vegeta"), "attack", f"-duration={seconds}s", "-timeout=10s",
              f"-root-certs={setup.certificate}", f"-header=Authorization: {token}",
              f"-output={out}", *pace]  # fmt: skip
    subprocess.run(attack, input=target.encode(), check=True)
    before = children_cpu_seconds()
    report = subprocess.run([str(TOOLS / "vegeta"), "report", "-type=json", str(out)],
                            capture_output=True, check=True)  # fmt: skip
    result = json.loads(report.stdout)
    latencies = result["latencies"]
    answered = round(result["requests"] * result["success"])
    errors = {f"HTTP {code}": n for code, n in result["status_codes"].items() if code != "200"}
    errors |= dict.fromkeys(result["errors"] or [], -1)  # vegeta names its errors, uncounted
    measured = Measurement(answered, result["rate"], result["throughput"], result["success"],
                           latencies["50th"] / 1e6, latencies["99th"] / 1e6, errors)  # fmt: skip
    return measured, children_cpu_seconds() - before


def ghz(
    server: Server, setup: Setup, token: str, seconds: float, rate: int | None, out: Path
) -> tuple[Measurement, float]:
    """A gRPC load, as `vegeta` does for REST; one HTTP/2 connection. Like vegeta, it waits for
    the calls in flight when the time is up (ghz cancels them by default, counted as errors)."""
    pace = (
        ["--rps", str(rate), "--concurrency", str(PACED_WORKERS)]
        if rate
        else ["--concurrency", str(CONCURRENCY)]
    )
    command = [str(TOOLS / "ghz"), "--cacert", str(setup.certificate),
               "--proto", str(PROTO_ROOT / "healthstream/edge/v1/edge.proto"),
               "--import-paths", str(PROTO_ROOT), "--call", GRPC_METHOD,
               "--data", json.dumps({"person_id": PERSON_ID, "page_size": PAGE_SIZE}),
               "--metadata", json.dumps({"authorization": token}),
               "--duration", f"{seconds}s", "--duration-stop", "wait", "--timeout", "10s", "--format", "json",
               "--output", str(out), *pace, f"127.0.0.1:{server.grpc_port}"]  # fmt: skip
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    result = json.loads(out.read_text())
    ok = result.get("statusCodeDistribution", {}).get("OK", 0)
    count = max(1, result["count"])
    percentiles = {d["percentage"]: d["latency"] for d in result["latencyDistribution"] or []}
    total_s = result["total"] / 1e9
    errors = {
        f"{code}": n for code, n in result.get("statusCodeDistribution", {}).items() if code != "OK"
    }
    measured = Measurement(ok, count / seconds, ok / total_s, ok / count,
                           percentiles.get(50, 0) / 1e6, percentiles.get(99, 0) / 1e6, errors)  # fmt: skip
    return measured, 0.0


LOADS = {"REST": vegeta, "gRPC": ghz}
REST_CONNECTIONS = int(os.environ.get("HS_BENCH_REST_CONNECTIONS", "0"))  # 0: as vegeta opens


def measure(
    protocol: str, server: Server, setup: Setup, edge: Server, broker_pid: int | None,
    seconds: float, rate: int | None,
) -> Measurement:  # fmt: skip
    with tls_client(setup) as client:
        token = bearer(client, setup, edge.rest_port)
    processes = {"server": server.pid} | ({"broker": broker_pid} if broker_pid else {})
    out = setup.folder / f"load-{uuid.uuid4().hex[:6]}"
    try:
        return metered(processes, lambda: LOADS[protocol](server, setup, token, seconds, rate, out))
    finally:
        out.unlink(missing_ok=True)


# --- where the edge's CPU goes: its steps, in this process ---------------------------------


def step_costs(setup: Setup, token: str) -> dict[str, float]:
    """µs per call of each step of one answer, run alone in this process on the edge's files."""
    from joserfc.jwk import KeySet
    from pydantic import TypeAdapter

    from hs_edge import audit, grpc_api
    from hs_edge import operations as op
    from hs_edge.auth import TokenValidator
    from hs_edge.ratelimit import RateLimiter
    from hs_edge.store import Store

    env = setup.env
    codec = Codec(SchemaCatalogue.load(default_schema_root()),
                  Keyring.from_file(Path(env["HS_KEYRING_FILE"])))  # fmt: skip
    keys = KeySet.import_key_set(json.loads(Path(env["HS_EDGE_JWKS_FILE"]).read_text()))
    tokens = TokenValidator(keys, "https://hs-edge.local/dev", "hs-edge")
    unremembered = TokenValidator(keys, "https://hs-edge.local/dev", "hs-edge", remembered=0)
    caller = tokens.caller(token)
    limiter = RateLimiter(1e9, 1_000_000_000)
    store = Store.open(env["HS_EDGE_DATABASE"])
    # the read path uses neither the trail nor the issuer
    edge = op.Edge(store, codec, tokens, limiter, cast("op.AuditTrail", None))
    cold = op.Edge(store, codec, tokens, limiter, cast("op.AuditTrail", None), opened_size=0)
    query = op.ObservationQuery(count=PAGE_SIZE)
    found = store.person(PERSON_ID)
    assert found is not None
    person_event, record_keys = found
    events = [person_event, *store.observations(record_keys, limit=PAGE_SIZE).rows]
    view = op.list_observations(edge, caller, PERSON_ID, query)
    grpc_view = view | {"next_page_token": view["next_cursor"] or ""}
    del grpc_view["next_cursor"]
    chain = audit.Chain("bench@0", codec.keyring)
    rest_answer = TypeAdapter(dict[str, Any])  # FastAPI's response field for `-> dict[str, Any]`

    def read_rows() -> object:
        person = store.person(PERSON_ID)
        assert person is not None
        return store.observations(person[1], limit=PAGE_SIZE)

    def audit_entry() -> bytes:
        request = audit.Request(datetime.now(UTC), "ward-app", "ward-app", "clinician",
                                "GET /persons/{person_id}/observations", PERSON_ID,
                                audit.Outcome.ALLOWED, 200, None)  # fmt: skip
        return codec.encode("hs.edge.AuditEvent", audit.to_record(chain.append(request)))

    def rest_body() -> bytes:
        return rest_answer.dump_json(rest_answer.validate_python(view))

    records = [edge.opened(e) for e in events[1:]]

    def grpc_body() -> bytes:
        page = pb.ObservationPage(person_id=PERSON_ID, items=map(grpc_api.observation, records))
        return page.SerializeToString()

    steps: dict[str, Callable[[], object]] = {
        "token verification (ES256 JWT), first use": lambda: unremembered.caller(token),
        "token, remembered": lambda: tokens.caller(token),
        "rate limit": lambda: limiter.take(caller.client_id, time.monotonic()),
        "list_observations, events opened before:": lambda: op.list_observations(edge, caller, PERSON_ID, query),
        "list_observations, nothing kept opened:": lambda: op.list_observations(cold, caller, PERSON_ID, query),
        "  SQLite: the person, 20 rows": read_rows,
        "  decode 21 events (2 sealed fields each)": lambda: [codec.decode(e) for e in events],
        "REST answer (validate + dump_json, as FastAPI)": rest_body,
        "gRPC answer (built directly + serialize)": grpc_body,
        "audit entry (SM3 chain + Avro encode)": audit_entry,
    }  # fmt: skip
    return {name: per_call_us(step) for name, step in steps.items()}


def per_call_us(step: Callable[[], object], calls: int = 1_000) -> float:
    step()
    began = time.perf_counter()
    for _ in range(calls):
        step()
    return 1e6 * (time.perf_counter() - began) / calls


# --- the report -----------------------------------------------------------------------------


def median_of(runs: list[Measurement], figure: Callable[[Measurement], float]) -> float:
    return statistics.median(figure(m) for m in runs)


def print_round(protocol: str, label: str, server: str, m: Measurement) -> None:
    cpu = ", ".join(f"{name} {us:,.0f}" for name, us in m.cpu_us.items())
    errors = "".join(f"; {n if n >= 0 else 'some'} x {e}" for e, n in m.errors.items())
    print(f"  {protocol:<4} {server:<8} {label:<8} sent {m.sent_per_s:>7,.0f}/s  "
          f"answered {m.answered_per_s:>7,.0f}/s  ok {m.success:6.1%}  p50 {m.p50_ms:6.1f} ms  "
          f"p99 {m.p99_ms:7.1f} ms  CPU µs/request: {cpu}{errors}")  # fmt: skip


@dataclass(frozen=True)
class Load:
    """One kind of load: paced at `rate` requests/s, or flat out (None)."""

    label: str
    rate: int | None
    seconds: float


def loads(args: argparse.Namespace) -> list[Load]:
    return [Load("1,000/s", PACED_RATE, args.seconds), Load("highest", None, args.seconds),
            Load("100/s", LIGHT_RATE, args.light_seconds)]  # fmt: skip


Row = tuple[str, str, Callable[[Measurement], float], str]
ROWS: list[Row] = [
    ("1,000/s", "p50 at 1,000/s (ms)", lambda m: m.p50_ms, ".1f"),
    ("1,000/s", "p99 at 1,000/s (ms)", lambda m: m.p99_ms, ".1f"),
    ("1,000/s", "answered at 1,000/s (/s)", lambda m: m.answered_per_s, ",.0f"),
    ("1,000/s", "success at 1,000/s", lambda m: m.success, ".2%"),
    ("highest", "highest sustained (/s)", lambda m: m.answered_per_s, ",.0f"),
    ("highest", "p50 at the highest (ms)", lambda m: m.p50_ms, ".1f"),
    ("highest", "p99 at the highest (ms)", lambda m: m.p99_ms, ".1f"),
    ("highest", "server CPU per request (µs)", lambda m: m.cpu_us["server"], ",.0f"),
    ("highest", "server CPU (% of one core)", lambda m: m.cpu_us["server"] * m.answered_per_s / 1e4, ".0f"),
    ("highest", "broker CPU per request (µs)", lambda m: m.cpu_us.get("broker", float("nan")), ",.0f"),
    ("highest", "load generator CPU per request (µs)", lambda m: m.cpu_us["load generator"], ",.0f"),
    ("100/s", "p50 at 100/s (ms)", lambda m: m.p50_ms, ".1f"),
    ("100/s", "p99 at 100/s (ms)", lambda m: m.p99_ms, ".1f"),
]  # fmt: skip


def print_table(results: dict[tuple[str, str, str], list[Measurement]]) -> None:
    print("\nmedians of the rounds; ratio = edge / baseline")
    columns = [
        f"{protocol} {server}" for protocol in LOADS for server in ("edge", "baseline", "ratio")
    ]
    print(f"{'figure':<38}" + "".join(f"{c:>15}" for c in columns))
    for label, name, figure, spec in ROWS:
        cells = []
        for protocol in LOADS:
            edge = median_of(results[(protocol, "edge", label)], figure)
            base = median_of(results[(protocol, "baseline", label)], figure)
            cells += [format(edge, spec), format(base, spec), f"{edge / base:.2f}" if base else "-"]
        print(f"{name:<38}" + "".join(f"{c:>15}" for c in cells))


def print_verdict(results: dict[tuple[str, str, str], list[Measurement]]) -> None:
    """The target holds only where 1,000/s was actually answered and p99 stayed within it."""
    for protocol in LOADS:
        runs = results[(protocol, "edge", "1,000/s")]
        answered = median_of(runs, lambda m: m.answered_per_s)
        p99 = median_of(runs, lambda m: m.p99_ms)
        met = answered >= 0.98 * PACED_RATE and p99 <= TARGET_P99_MS
        print(f"target {protocol}: p99 <= {TARGET_P99_MS:.0f} ms at {PACED_RATE:,}/s: "
              f"{'met' if met else 'NOT met'} (answered {answered:,.0f}/s, p99 {p99:,.1f} ms)")  # fmt: skip


# --- the run ---------------------------------------------------------------------------------


def prepare(folder: Path, bootstrap: str, opened_events: int) -> Setup:
    keyring = Keyring.generate()
    keyring.to_file(folder / "keyring.json")
    codec = Codec(SchemaCatalogue.load(default_schema_root()), keyring)
    secret = dev_setup(folder)
    names = create_topics(bootstrap)
    feed(bootstrap, codec, names)
    return Setup(folder, secret, edge_env(bootstrap, folder, names, opened_events))


def ensure_tools() -> None:
    if not all((TOOLS / tool).exists() for tool in ("vegeta", "ghz")):
        subprocess.run([str(REPO / "bench" / "tools.sh")], check=True)


def run(args: argparse.Namespace) -> None:
    ensure_tools()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"broker, servers and load generator share the cores")  # fmt: skip
    with ExitStack() as stack:
        bootstrap, broker_pid = stack.enter_context(broker())
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hs-edge-bench-")))
        setup = prepare(folder, bootstrap, args.opened_events)
        env = setup.env
        edge_pid = stack.enter_context(
            process("hs-edge", ["hs-edge", "serve"], env, folder / "edge.log")
        )
        edge = Server("edge", int(env["HS_EDGE_PORT"]), int(env["HS_EDGE_GRPC_PORT"]), edge_pid)
        client = stack.enter_context(tls_client(setup))
        wait_until_serving(client, edge.rest_port, edge.pid)
        wait_for_read_model(client, setup, edge.rest_port)
        save_pages(client, setup, edge)
        ports = (free_port(), free_port())
        base_command = [
            sys.executable,
            __file__,
            "--baseline-server",
            str(folder),
            *map(str, ports),
        ]
        base_pid = stack.enter_context(
            process("baseline", base_command, env, folder / "baseline.log")
        )
        baseline = Server("baseline", *ports, base_pid)
        wait_until_serving(client, baseline.rest_port, baseline.pid)
        results = measure_all(args, setup, edge, baseline, broker_pid)
        print_table(results)
        print_verdict(results)
        print("\nwhere the edge's CPU goes, each step alone in this process (µs per call):")
        for step, us in step_costs(setup, bearer(client, setup, edge.rest_port)).items():
            print(f"  {step:<48} {us:8.1f}")


def measure_all(
    args: argparse.Namespace, setup: Setup, edge: Server, baseline: Server, broker_pid: int | None
) -> dict[tuple[str, str, str], list[Measurement]]:
    results: dict[tuple[str, str, str], list[Measurement]] = {}
    for protocol in LOADS:
        for server in (edge, baseline):  # warm-up: connections, caches, the first audit writes
            measure(protocol, server, setup, edge, broker_pid, 3, 200)
    for round_number in range(1, args.rounds + 1):
        print(f"round {round_number}:")
        for protocol in LOADS:
            for load in loads(args):
                for server in (edge, baseline):
                    m = measure(protocol, server, setup, edge, broker_pid, load.seconds, load.rate)
                    results.setdefault((protocol, server.name, load.label), []).append(m)
                    print_round(protocol, load.label, server.name, m)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each load")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every measurement")
    parser.add_argument(
        "--light-seconds", type=float, default=5.0, help=f"length of the {LIGHT_RATE}/s loads"
    )
    parser.add_argument(
        "--opened-events", type=int, default=10_000,
        help="HS_EDGE_OPENED_EVENTS of the edge (0: every page decoded again)",
    )  # fmt: skip
    parser.add_argument("--baseline-server", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_server:
        folder, rest_port, grpc_port = args.baseline_server
        asyncio.run(serve_baseline(Path(folder), int(rest_port), int(grpc_port)))
        return
    run(args)


if __name__ == "__main__":
    main()
