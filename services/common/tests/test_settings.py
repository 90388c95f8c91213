from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from hs_common.settings import Environment, KafkaSecurity, RuntimeSettings


@pytest.fixture(autouse=True)
def _no_settings_from_the_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker fixture exports the test cluster's HS_KAFKA_* login; these tests start bare."""
    for name in list(os.environ):
        if name.startswith("HS_"):
            monkeypatch.delenv(name)


def test_each_field_names_its_environment_variable() -> None:
    for name, field in RuntimeSettings.model_fields.items():
        assert field.alias is not None, name
        assert field.alias.startswith("HS_"), name


def test_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HS_KAFKA_BOOTSTRAP", "kafka-0:9092,kafka-1:9092")
    monkeypatch.setenv("HS_TOPIC_PARTITIONS", "12")
    monkeypatch.setenv("HS_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    settings = RuntimeSettings()
    assert settings.kafka_bootstrap == "kafka-0:9092,kafka-1:9092"
    assert settings.topic_partitions == 12
    assert settings.kafka_client_config()["bootstrap.servers"] == "kafka-0:9092,kafka-1:9092"


def test_settings_are_frozen() -> None:
    settings = RuntimeSettings()
    with pytest.raises(ValidationError):
        settings.kafka_bootstrap = "elsewhere:9092"  # type: ignore[misc]


def test_secrets_are_masked() -> None:
    settings = RuntimeSettings(
        HS_KAFKA_SECURITY_PROTOCOL=KafkaSecurity.SASL_SSL,
        HS_KAFKA_SASL_USERNAME="ingestion",
        HS_KAFKA_SASL_PASSWORD="s3cr3t-pw",
    )
    assert "s3cr3t-pw" not in repr(settings)
    assert settings.kafka_client_config()["sasl.password"] == "s3cr3t-pw"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"HS_KAFKA_SECURITY_PROTOCOL": KafkaSecurity.PLAINTEXT}, "PLAINTEXT is refused"),
        ({"HS_KAFKA_SECURITY_PROTOCOL": KafkaSecurity.SASL_PLAINTEXT}, "SASL_PLAINTEXT is"),
        ({"HS_KAFKA_SECURITY_PROTOCOL": KafkaSecurity.SSL}, "SSL without a client certificate"),
        ({}, "SASL needs HS_KAFKA_SASL_USERNAME"),
        (
            {
                "HS_KAFKA_SECURITY_PROTOCOL": KafkaSecurity.SASL_SSL,
                "HS_KAFKA_SASL_USERNAME": "u",
                "HS_KAFKA_SASL_PASSWORD": "p",
            },
            "development keyring",
        ),
    ],
)
def test_production_refuses_unsafe_settings(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RuntimeSettings(HS_ENV=Environment.PRODUCTION, **overrides)  # type: ignore[arg-type]


def test_sasl_without_a_login_is_refused_when_a_client_is_made() -> None:
    with pytest.raises(ValueError, match="needs HS_KAFKA_SASL_USERNAME"):
        RuntimeSettings().kafka_client_config()


def test_mutual_tls_gives_the_client_its_certificate() -> None:
    settings = RuntimeSettings(
        HS_ENV=Environment.PRODUCTION,
        HS_KAFKA_SECURITY_PROTOCOL=KafkaSecurity.SSL,
        HS_KAFKA_SSL_CERTIFICATE_LOCATION=Path("/run/secrets/inst-HZ01.crt"),
        HS_KAFKA_SSL_KEY_LOCATION=Path("/run/secrets/inst-HZ01.key"),
        HS_KEYRING_FILE=Path("/run/secrets/keyring.json"),
    )
    config = settings.kafka_client_config()
    assert config["ssl.certificate.location"] == "/run/secrets/inst-HZ01.crt"
    assert "sasl.username" not in config


def test_production_starts_with_safe_settings() -> None:
    settings = RuntimeSettings(
        HS_ENV=Environment.PRODUCTION,
        HS_KAFKA_SECURITY_PROTOCOL=KafkaSecurity.SASL_SSL,
        HS_KAFKA_SASL_USERNAME="ingestion",
        HS_KAFKA_SASL_PASSWORD="from-a-secret-store",
        HS_KEYRING_FILE=Path("/run/secrets/keyring.json"),
    )
    assert settings.kafka_client_config()["security.protocol"] == "SASL_SSL"
