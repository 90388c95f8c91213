"""Runtime pieces that talk over real sockets but need no broker."""

from __future__ import annotations

import urllib.request

import pytest

from hs_common.errors import NotStoredError
from hs_common.kafka import make_producer, produce_durably
from hs_common.metrics import RuntimeMetrics
from hs_common.settings import RuntimeSettings
from hs_common.testing import free_port


def test_metrics_are_served_over_http() -> None:
    metrics = RuntimeMetrics.create()
    metrics.consumed.labels("hs.ingest.raw.v1").inc(3)
    metrics.dead_letters.labels("ingestion.mllp.parse", "hl7.msh_missing").inc()
    port = free_port()
    metrics.serve(port)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body = response.read().decode()
    assert 'hs_messages_consumed_total{topic="hs.ingest.raw.v1"} 3.0' in body
    assert (
        'hs_dead_letters_total{reason_code="hl7.msh_missing",stage="ingestion.mllp.parse"} 1.0'
        in body
    )


def test_an_unconfirmed_write_raises_not_stored() -> None:
    settings = RuntimeSettings(  # nothing listens there
        HS_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}",
        HS_KAFKA_SASL_USERNAME="ingestion",
        HS_KAFKA_SASL_PASSWORD="unused",
    )
    producer = make_producer(settings, "unreachable-test")
    with pytest.raises(NotStoredError, match=r"no delivery confirmation within 1\.0 s"):
        produce_durably(producer, "hs.ingest.raw.v1", b"payload", timeout=1.0)
