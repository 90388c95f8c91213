"""`hs-ingestion`: the MLLP listener, the HTTP intake and the Kafka door in one process."""

from __future__ import annotations

import json
import logging
import ssl
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import uvicorn
import uvloop
from pydantic import Field, model_validator

from hs_common.codec import Codec
from hs_common.kafka import AsyncDurableProducer
from hs_common.metrics import RuntimeMetrics
from hs_common.processor import ExactlyOnceProcessor
from hs_common.runtime import Runtime
from hs_common.settings import Environment, RuntimeSettings
from hs_ingestion.httpapi import Intake, create_app
from hs_ingestion.inbound import STAGE as INBOUND_STAGE
from hs_ingestion.inbound import InboundStage
from hs_ingestion.kafkadoor import inbound_topics
from hs_ingestion.mllp import MllpLimits, MllpServer
from hs_ingestion.recent import read_recent
from hs_ingestion.sources import SourceRegistry, default_sources_dir
from hs_ingestion.store import Store

log = logging.getLogger("hs_ingestion")


class IngestionSettings(RuntimeSettings):
    metrics_port: int = Field(9401, ge=0, le=65535, alias="HS_METRICS_PORT")
    mllp_host: str = Field("127.0.0.1", alias="HS_INGESTION_MLLP_HOST")
    mllp_port: int = Field(2575, ge=0, le=65535, alias="HS_INGESTION_MLLP_PORT")
    http_host: str = Field("127.0.0.1", alias="HS_INGESTION_HTTP_HOST")
    http_port: int = Field(8080, ge=0, le=65535, alias="HS_INGESTION_HTTP_PORT")
    max_message_bytes: int = Field(1 << 20, ge=1024, alias="HS_INGESTION_MAX_MESSAGE_BYTES")
    idle_timeout: float = Field(300.0, gt=0, alias="HS_INGESTION_IDLE_TIMEOUT_SECONDS")
    store_timeout: float = Field(
        10.0, gt=0, alias="HS_INGESTION_STORE_TIMEOUT_SECONDS",
        description="How long a write may wait for Kafka before the sender gets AE/CE or 503.",
    )  # fmt: skip
    sources_dir: Path = Field(default_factory=default_sources_dir, alias="HS_INGESTION_SOURCES_DIR")
    group_id: str = Field("hs-ingestion", alias="HS_INGESTION_GROUP")
    mllp_tls_cert: Path | None = Field(
        None, alias="HS_INGESTION_MLLP_TLS_CERT",
        description="MLLP over TLS (with HS_INGESTION_MLLP_TLS_KEY and _CLIENT_CA): each sender "
        "proves its source with a client certificate (CN=inst-<code>) and may send only as it.",
    )  # fmt: skip
    mllp_tls_key: Path | None = Field(None, alias="HS_INGESTION_MLLP_TLS_KEY")
    mllp_client_ca: Path | None = Field(None, alias="HS_INGESTION_MLLP_CLIENT_CA")
    sender_tokens: Path | None = Field(
        None, alias="HS_INGESTION_SENDER_TOKENS",
        description="JSON {source code: SHA-256 hex of its bearer token}: each HTTP sender "
        "proves its source (`hs-ingestion-tools sender-tokens` makes them).",
    )  # fmt: skip

    @model_validator(mode="after")
    def _senders_authenticated_in_production(self) -> Self:
        if self.environment is not Environment.PRODUCTION:
            return self
        if self.mllp_tls() is None:
            raise ValueError(
                "production MLLP needs client certificates: set HS_INGESTION_MLLP_TLS_CERT, "
                "HS_INGESTION_MLLP_TLS_KEY and HS_INGESTION_MLLP_CLIENT_CA"
            )
        if self.sender_tokens is None:
            raise ValueError("production HTTP intake needs HS_INGESTION_SENDER_TOKENS")
        return self

    def senders(self) -> dict[str, str] | None:
        if self.sender_tokens is None:
            return None
        return {str(k): str(v) for k, v in json.loads(self.sender_tokens.read_text()).items()}

    def mllp_tls(self) -> ssl.SSLContext | None:
        """TLS 1.2+ with a client certificate required, when configured."""
        if not (self.mllp_tls_cert and self.mllp_tls_key and self.mllp_client_ca):
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=self.mllp_client_ca)
        context.load_cert_chain(self.mllp_tls_cert, self.mllp_tls_key)
        context.verify_mode = ssl.CERT_REQUIRED
        context.minimum_version = ssl.TLSVersion.TLSv1_2  # HL7 senders' TLS stacks are older
        return context


async def run(settings: IngestionSettings) -> None:
    """Serve MLLP and HTTP until SIGTERM/SIGINT; then stop accepting, answer what is in hand,
    flush the producer."""
    runtime = Runtime.start("ingestion", settings)
    sources = SourceRegistry.load(settings.sources_dir)
    producer = AsyncDurableProducer(
        settings, f"ingestion-{settings.instance_id}", settings.store_timeout
    )
    limits = MllpLimits(settings.max_message_bytes, settings.idle_timeout)
    registry = runtime.metrics.registry
    store = Store(runtime.codec, producer)
    mllp = MllpServer(sources, store, registry, limits)
    mllp.recent.remember(read_recent(settings, runtime.codec.catalogue, limits.recent_messages))
    runtime.ready()
    tls = settings.mllp_tls()
    listeners = [await mllp.serve(settings.mllp_host, settings.mllp_port, tls)]
    for port in sources.listener_ports():  # senders known by the port they send to
        listeners.append(await mllp.serve(settings.mllp_host, port, tls))
    intake = Intake(sources, store, registry, settings.max_message_bytes, settings.senders())
    kafka_door = start_kafka_door(settings, runtime.codec, sources, runtime.metrics)
    config = uvicorn.Config(
        create_app(intake),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
    )
    log.info("ingestion ready", extra={"port": settings.mllp_port, "count": len(sources)})
    await uvicorn.Server(config).serve()  # returns on SIGTERM/SIGINT, after in-flight requests
    for listener in listeners:
        listener.close()
    await mllp.drain()
    producer.close()
    if kafka_door is not None:
        kafka_door.stop()
    log.info("ingestion stopped")


@dataclass
class KafkaDoor:
    thread: threading.Thread
    stopping: threading.Event

    def stop(self) -> None:
        """Finish the batch in hand, commit it, and close the clients."""
        self.stopping.set()
        self.thread.join(60)


def start_kafka_door(
    settings: IngestionSettings, codec: Codec, sources: SourceRegistry, metrics: RuntimeMetrics
) -> KafkaDoor | None:
    """The inbound topics of the sources that publish to Kafka, read exactly once in a thread."""
    inbound = inbound_topics(sources)
    if not inbound:
        return None
    processor = ExactlyOnceProcessor(
        settings,
        stage=INBOUND_STAGE,
        group_id=f"{settings.group_id}-kafka",
        input_topics=inbound,
        transform=InboundStage(codec, sources, settings.max_message_bytes),
        codec=codec,
        metrics=metrics,
    )
    stopping = threading.Event()
    thread = threading.Thread(
        target=processor.run, args=(stopping,), name="kafka-door", daemon=True
    )
    thread.start()
    log.info("kafka door reading", extra={"count": len(inbound)})
    return KafkaDoor(thread, stopping)


def main() -> int:
    uvloop.run(run(IngestionSettings()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
