"""What a service builds once in main(): logging, the codec with its keys, metrics."""

from __future__ import annotations

import gc
from dataclasses import dataclass

from hs_common.codec import Codec
from hs_common.crypto import Keyring
from hs_common.errors import KeyringError
from hs_common.logs import configure_logging
from hs_common.metrics import RuntimeMetrics
from hs_common.schemas import SchemaCatalogue, default_schema_root
from hs_common.settings import RuntimeSettings


@dataclass(frozen=True)
class Runtime:
    settings: RuntimeSettings
    codec: Codec
    metrics: RuntimeMetrics

    @classmethod
    def start(cls, service: str, settings: RuntimeSettings) -> Runtime:
        configure_logging(service, settings.log_level)
        catalogue = SchemaCatalogue.load(settings.schema_dir or default_schema_root())
        if not settings.keyring_file.exists():
            raise KeyringError(
                f"keyring file {settings.keyring_file} not found: set HS_KEYRING_FILE, "
                "or run `make dev-keys` for a development keyring"
            )
        codec = Codec(catalogue, Keyring.from_file(settings.keyring_file))
        metrics = RuntimeMetrics.create()
        metrics.serve(settings.metrics_port, settings.metrics_host)
        return cls(settings, codec, metrics)

    @staticmethod
    def ready() -> None:
        """Call once start-up (imports, schemas, warmed caches) is done. What exists by then
        lives as long as the process; freezing it keeps the collector from scanning it again in
        every full collection, pauses that otherwise reach tens of milliseconds and show up as
        the slowest acknowledgements."""
        gc.collect()
        gc.freeze()
