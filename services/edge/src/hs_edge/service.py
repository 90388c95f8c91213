"""`hs-edge serve`: the read model kept up to date from the topics, and the REST (with the FHIR
view) and gRPC surfaces over TLS, with the audit trail on Kafka."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import ssl
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import uvicorn
from joserfc.jwk import ECKey, KeySet
from pydantic import Field

from hs_common import topics
from hs_common.codec import Codec
from hs_common.kafka import AsyncDurableProducer, read_range
from hs_common.runtime import Runtime
from hs_common.settings import Environment, RuntimeSettings
from hs_edge import audit, clients, grpc_api
from hs_edge.api import create_app
from hs_edge.auth import Role, TokenIssuer, TokenValidator
from hs_edge.devsetup import DevFiles
from hs_edge.operations import AuditTrail, Edge
from hs_edge.projector import Projector, follow
from hs_edge.ratelimit import RateLimiter
from hs_edge.store import Store

DEV = DevFiles(Path(".local/edge"))
log = logging.getLogger("hs.edge")


class EdgeSettings(RuntimeSettings):
    metrics_port: int = Field(9405, ge=0, le=65535, alias="HS_METRICS_PORT")
    host: str = Field("127.0.0.1", alias="HS_EDGE_HOST")
    port: int = Field(8443, ge=0, le=65535, alias="HS_EDGE_PORT")
    grpc_port: int = Field(8444, ge=0, le=65535, alias="HS_EDGE_GRPC_PORT")
    # a SQLite file, or a PostgreSQL DSN (postgresql://user@host/db; the password from
    # PGPASSWORD or ~/.pgpass, never in the DSN)
    database: str = Field(".local/edge/read-model.db", alias="HS_EDGE_DATABASE")
    issuer: str = Field("https://hs-edge.local/dev", alias="HS_EDGE_ISSUER")
    audience: str = Field("hs-edge", alias="HS_EDGE_AUDIENCE")
    jwks_file: Path = Field(DEV.jwks, alias="HS_EDGE_JWKS_FILE")
    tls_cert: Path = Field(DEV.certificate, alias="HS_EDGE_TLS_CERT")
    tls_key: Path = Field(DEV.private_key, alias="HS_EDGE_TLS_KEY")
    # the token endpoint for the registry's clients, signing with this key (its public key
    # must be in the JWKS file); the development clients (refused in production) turn it on
    issue_tokens: bool = Field(False, alias="HS_EDGE_ISSUE_TOKENS")
    dev_clients_file: Path | None = Field(None, alias="HS_EDGE_DEV_CLIENTS")
    signing_key_file: Path = Field(DEV.signing_key, alias="HS_EDGE_SIGNING_KEY")
    # an edge serving demo data only: it also accepts sandbox clients' tokens
    sandbox: bool = Field(False, alias="HS_EDGE_SANDBOX")
    rate_per_second: float = Field(50.0, gt=0, alias="HS_EDGE_RATE_PER_SECOND")
    burst: int = Field(100, ge=1, alias="HS_EDGE_BURST")
    # decoded events kept in memory for pages asked for again (0: none)
    opened_events: int = Field(10_000, ge=0, alias="HS_EDGE_OPENED_EVENTS")
    audit_topic: str = Field(topics.EDGE_AUDIT.name, alias="HS_EDGE_AUDIT_TOPIC")
    person_topic: str = Field(topics.PERSON.name, alias="HS_EDGE_PERSON_TOPIC")
    link_topic: str = Field(topics.PERSON_LINK.name, alias="HS_EDGE_LINK_TOPIC")
    review_topic: str = Field(topics.REVIEW_DECISION.name, alias="HS_EDGE_REVIEW_TOPIC")
    ack_topic: str = Field(topics.VITALS_ACK.name, alias="HS_EDGE_ACK_TOPIC")
    observation_topic: str = Field(topics.OBSERVATION.name, alias="HS_EDGE_OBSERVATION_TOPIC")
    condition_topic: str = Field(topics.CONDITION.name, alias="HS_EDGE_CONDITION_TOPIC")
    alert_topic: str = Field(topics.VITALS_ALERT.name, alias="HS_EDGE_ALERT_TOPIC")
    client_topic: str = Field(topics.EDGE_CLIENT.name, alias="HS_EDGE_CLIENT_TOPIC")
    quality_summary_topic: str = Field(
        topics.QUALITY_SUMMARY.name, alias="HS_EDGE_QUALITY_SUMMARY_TOPIC"
    )
    quality_alert_topic: str = Field(topics.QUALITY_ALERT.name, alias="HS_EDGE_QUALITY_ALERT_TOPIC")


def token_issuer(settings: EdgeSettings) -> TokenIssuer | None:
    if not (settings.issue_tokens or settings.dev_clients_file):
        return None
    key = ECKey.import_key(json.loads(settings.signing_key_file.read_text()))
    return TokenIssuer(key, settings.issuer)


def import_dev_clients(settings: EdgeSettings, store: Store, codec: Codec) -> None:
    """The development clients `hs-edge dev-setup` wrote, into the registry unless there."""
    if settings.dev_clients_file is None:
        return
    if settings.environment is Environment.PRODUCTION:
        raise SystemExit("the development clients are refused in production")
    now = datetime.now(UTC)
    for c in json.loads(settings.dev_clients_file.read_text()):
        if store.client(c["client_id"]) is None:
            client = clients.imported(
                c["client_id"], c["secret_sha256"], Role(c["role"]), c["scope"], c["person_id"],
                now, c.get("institution"),
            )  # fmt: skip
            value = codec.encode(topics.EDGE_CLIENT.value_schema, client)
            store.put_client(client["client_id"], 1, client["status"], value)


def chain_head(settings: EdgeSettings, codec: Codec, instance: str) -> str:
    """The head of this writer's last chain on the audit topic, so the new chain links to it."""
    head = audit.GENESIS
    for message in read_range(settings, settings.audit_topic, "hs-edge-audit-head"):
        key = (message.key() or b"").decode()
        if key.startswith(f"{instance}@"):
            head = codec.decode(message.value() or b"").record["hash"]
    return head


def main() -> int:
    settings = EdgeSettings()
    runtime = Runtime.start("edge", settings)
    projector = Projector(Store.open(settings.database), runtime.codec)
    sources = (
        settings.person_topic, settings.link_topic, settings.observation_topic,
        settings.condition_topic, settings.alert_topic, settings.client_topic,
        settings.audit_topic, settings.quality_summary_topic, settings.quality_alert_topic,
    )  # fmt: skip
    threading.Thread(
        target=follow, args=(settings, projector, sources), name="projector", daemon=True
    ).start()
    asyncio.run(serve(settings, runtime))
    return 0


async def follow_signing_keys(path: Path, tokens: TokenValidator, every: float = 10.0) -> None:
    """Take up the JWKS file again when it changes: a key the identity provider removed stops
    being accepted at once, also for tokens checked before."""
    seen = path.stat().st_mtime_ns
    while True:
        await asyncio.sleep(every)
        try:
            changed = path.stat().st_mtime_ns
            if changed != seen:
                tokens.replace_keys(KeySet.import_key_set(json.loads(path.read_text())))
                seen = changed
                log.info("signing keys reloaded", extra={"count": len(tokens.keys.keys)})
        except (OSError, ValueError) as error:
            log.warning("signing keys not reloaded", extra={"error": type(error).__name__})


async def serve(settings: EdgeSettings, runtime: Runtime) -> None:
    """REST and gRPC, both over TLS, on one event loop and one audit chain."""
    keys = KeySet.import_key_set(json.loads(settings.jwks_file.read_text()))
    instance = settings.instance_id
    chain = audit.Chain(
        f"{instance}@{time.time_ns() // 1_000_000}", runtime.codec.keyring,
        chain_head(settings, runtime.codec, instance),
    )  # fmt: skip
    producer = AsyncDurableProducer(settings, "hs-edge-audit")
    store = Store.open(settings.database)
    trail = AuditTrail(producer, runtime.codec, settings.audit_topic, chain, anchors=store)
    import_dev_clients(settings, store, runtime.codec)
    sandbox = (settings.audience + clients.SANDBOX_SUFFIX,) if settings.sandbox else ()
    edge = Edge(
        store, runtime.codec,
        TokenValidator(keys, settings.issuer, settings.audience, also_audiences=sandbox),
        RateLimiter(settings.rate_per_second, settings.burst), trail, token_issuer(settings),
        settings.ack_topic, settings.review_topic, settings.client_topic,
        opened_size=settings.opened_events, registry=runtime.metrics.registry,
    )  # fmt: skip
    credentials = grpc_api.tls(settings.tls_cert.read_bytes(), settings.tls_key.read_bytes())
    grpc_server, _ = await grpc_api.start(
        edge, f"{settings.host}:{settings.grpc_port}", credentials
    )
    config = uvicorn.Config(
        create_app(edge), host=settings.host, port=settings.port, log_level="warning",
        ssl_certfile=str(settings.tls_cert), ssl_keyfile=str(settings.tls_key),
        timeout_graceful_shutdown=5,
    )  # fmt: skip
    config.load()
    if config.ssl is not None:
        config.ssl.minimum_version = ssl.TLSVersion.TLSv1_3
    rest = uvicorn.Server(config)
    gc.freeze()  # what start-up made lives as long as the process: no collection scans it
    runtime.ready()
    follower = asyncio.create_task(follow_signing_keys(settings.jwks_file, edge.tokens))
    try:
        await rest.serve()
    finally:
        follower.cancel()
        await grpc_server.stop(5)
        trail.anchor()
        producer.close()
