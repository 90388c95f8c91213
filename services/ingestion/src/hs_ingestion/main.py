"""`hs-ingestion`: the MLLP listener (and, as it lands, the HTTP intake) in one process."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

from hs_common.kafka import AsyncDurableProducer
from hs_common.runtime import Runtime
from hs_common.settings import RuntimeSettings
from pydantic import Field

from hs_ingestion.mllp import MllpLimits, MllpServer
from hs_ingestion.sources import SourceRegistry, default_sources_dir

log = logging.getLogger("hs_ingestion")


class IngestionSettings(RuntimeSettings):
    mllp_host: str = Field("127.0.0.1", alias="HS_INGESTION_MLLP_HOST")
    mllp_port: int = Field(2575, ge=0, le=65535, alias="HS_INGESTION_MLLP_PORT")
    max_message_bytes: int = Field(1 << 20, ge=1024, alias="HS_INGESTION_MAX_MESSAGE_BYTES")
    idle_timeout: float = Field(300.0, gt=0, alias="HS_INGESTION_IDLE_TIMEOUT_SECONDS")
    store_timeout: float = Field(
        10.0, gt=0, alias="HS_INGESTION_STORE_TIMEOUT_SECONDS",
        description="How long a write may wait for Kafka before the sender gets AE/CE or 503.",
    )  # fmt: skip
    sources_dir: Path = Field(default_factory=default_sources_dir, alias="HS_INGESTION_SOURCES_DIR")


async def run(settings: IngestionSettings, ready: asyncio.Event | None = None) -> None:
    runtime = Runtime.start("ingestion", settings)
    sources = SourceRegistry.load(settings.sources_dir)
    producer = AsyncDurableProducer(
        settings, f"ingestion-{settings.instance_id}", settings.store_timeout
    )
    limits = MllpLimits(settings.max_message_bytes, settings.idle_timeout)
    mllp = MllpServer(sources, runtime.codec, producer, runtime.metrics.registry, limits)
    server = await mllp.serve(settings.mllp_host, settings.mllp_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if ready is not None:
        ready.set()
    log.info("ingestion ready", extra={"port": settings.mllp_port, "count": len(sources)})
    await stop.wait()
    server.close()  # no new connections; messages in hand are finished and answered
    await mllp.drain()
    producer.close()
    log.info("ingestion stopped")


def main() -> int:
    asyncio.run(run(IngestionSettings()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
