"""Typed, frozen settings. Every field is read from the environment variable it names.

Each service defines its own settings class deriving from `RuntimeSettings`, builds it once
in `main()` and passes it in. Secrets are `SecretStr` (masked in repr and logs). Outside
development, unsafe settings are refused at start.
"""

from __future__ import annotations

import socket
from enum import StrEnum
from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class KafkaSecurity(StrEnum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


class RuntimeSettings(BaseSettings):
    """What every service needs: the cluster, the keys, the schemas, metrics, logging."""

    model_config = SettingsConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    environment: Environment = Field(Environment.DEVELOPMENT, alias="HS_ENV")
    instance_id: str = Field(
        default_factory=socket.gethostname,
        alias="HS_INSTANCE_ID",
        description="Stable per replica (pod name); part of the transactional id, "
        "so a restarted replica fences its predecessor.",
    )
    kafka_bootstrap: str = Field(
        "127.0.0.1:9092",
        alias="HS_KAFKA_BOOTSTRAP",
        description="Comma-separated host:port list; point it at an existing cluster "
        "to use that instead of the local broker.",
    )
    kafka_security: KafkaSecurity = Field(
        KafkaSecurity.SASL_SSL,
        alias="HS_KAFKA_SECURITY_PROTOCOL",
        description="SASL_SSL (SCRAM over TLS) or SSL with a client certificate; the others "
        "only outside production.",
    )
    kafka_sasl_mechanism: str = Field("SCRAM-SHA-512", alias="HS_KAFKA_SASL_MECHANISM")
    kafka_sasl_username: str | None = Field(None, alias="HS_KAFKA_SASL_USERNAME")
    kafka_sasl_password: SecretStr | None = Field(None, alias="HS_KAFKA_SASL_PASSWORD")
    kafka_ssl_ca: Path | None = Field(None, alias="HS_KAFKA_SSL_CA_LOCATION")
    kafka_ssl_certificate: Path | None = Field(
        None, alias="HS_KAFKA_SSL_CERTIFICATE_LOCATION", description="mutual TLS: the client's"
    )
    kafka_ssl_key: Path | None = Field(None, alias="HS_KAFKA_SSL_KEY_LOCATION")
    topic_partitions: int = Field(6, ge=1, alias="HS_TOPIC_PARTITIONS")
    topic_replication: int = Field(1, ge=1, alias="HS_TOPIC_REPLICATION")
    keyring_file: Path = Field(
        Path(".local/keyring.json"),
        alias="HS_KEYRING_FILE",
        description="JSON keyring (hs_common.crypto.Keyring) holding only the "
        "sensitivity classes this service may read.",
    )
    schema_dir: Path | None = Field(
        None, alias="HS_SCHEMA_DIR", description="Defaults to the repository's schemas/."
    )
    metrics_port: int = Field(
        0,
        ge=0,
        le=65535,
        alias="HS_METRICS_PORT",
        description="Prometheus /metrics port; 0 turns it off.",
    )
    metrics_host: str = Field(
        "127.0.0.1",
        alias="HS_METRICS_HOST",
        description="Where /metrics listens: loopback, or a scrape network the site secures.",
    )
    log_level: str = Field("INFO", alias="HS_LOG_LEVEL")

    @model_validator(mode="after")
    def _safe_outside_development(self) -> Self:
        if self.environment is Environment.PRODUCTION:
            if self.kafka_security in (KafkaSecurity.PLAINTEXT, KafkaSecurity.SASL_PLAINTEXT):
                raise ValueError(
                    f"HS_KAFKA_SECURITY_PROTOCOL={self.kafka_security} is refused in production: "
                    "use SASL_SSL, or SSL with a client certificate"
                )
            if self.kafka_security is KafkaSecurity.SSL and not self._has_client_certificate():
                raise ValueError(
                    "SSL without a client certificate is refused in production: set "
                    "HS_KAFKA_SSL_CERTIFICATE_LOCATION and HS_KAFKA_SSL_KEY_LOCATION"
                )
            if self.kafka_security is KafkaSecurity.SASL_SSL and not self._has_sasl_login():
                raise ValueError("SASL needs HS_KAFKA_SASL_USERNAME and HS_KAFKA_SASL_PASSWORD")
            if ".local" in self.keyring_file.parts:
                raise ValueError(
                    "HS_KEYRING_FILE points at a development keyring; mount the production keyring"
                )
        return self

    @classmethod
    def from_login_file(cls, path: Path) -> Self:
        """Settings from a login file's HS_* variables (what kafka.sh and `hs-admin
        dev-credentials` write), the environment's for the rest."""
        return cls(**read_env_file(path))  # type: ignore[arg-type]  # names checked by aliases

    def _has_sasl_login(self) -> bool:
        return bool(self.kafka_sasl_username and self.kafka_sasl_password)

    def _has_client_certificate(self) -> bool:
        return self.kafka_ssl_certificate is not None and self.kafka_ssl_key is not None

    def kafka_client_config(self) -> dict[str, str | int | bool]:
        """librdkafka settings shared by producers, consumers and admin clients. Raises
        ValueError when SASL is asked for without a login (`make dev-credentials` writes one
        per principal for the local broker)."""
        config: dict[str, str | int | bool] = {
            "bootstrap.servers": self.kafka_bootstrap,
            "security.protocol": self.kafka_security.value,
        }
        if self.kafka_security.startswith("SASL"):
            if not self._has_sasl_login() or self.kafka_sasl_password is None:
                raise ValueError(
                    f"HS_KAFKA_SECURITY_PROTOCOL={self.kafka_security} needs "
                    "HS_KAFKA_SASL_USERNAME and HS_KAFKA_SASL_PASSWORD"
                )
            config["sasl.mechanism"] = self.kafka_sasl_mechanism
            config["sasl.username"] = self.kafka_sasl_username or ""
            config["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_ssl_ca is not None:
            config["ssl.ca.location"] = str(self.kafka_ssl_ca)
        if self.kafka_ssl_certificate is not None and self.kafka_ssl_key is not None:
            config["ssl.certificate.location"] = str(self.kafka_ssl_certificate)
            config["ssl.key.location"] = str(self.kafka_ssl_key)
        return config


def read_env_file(path: Path) -> dict[str, str]:
    """NAME=value lines; blank lines and # comments are skipped."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {name.strip(): value.strip() for name, value in pairs if not name.startswith("#")}
