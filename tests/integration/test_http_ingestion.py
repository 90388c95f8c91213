"""The HTTP intake against a real broker, over a real socket (uvicorn)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client import CollectorRegistry

from hs_common.codec import Codec
from hs_common.kafka import AsyncDurableProducer
from hs_common.settings import RuntimeSettings
from hs_common.testing import LoopThread, TopicFactory, free_port, read_all
from hs_ingestion.httpapi import Intake, create_app
from hs_ingestion.sources import SourceRegistry, default_sources_dir
from hs_ingestion.store import Store

pytestmark = pytest.mark.integration

PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "name": [{"text": "刘薇"}],
    "birthDate": "2015-07-20",
}
BUNDLE = {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": PATIENT}]}
CLINIC = {"jgdm": "HZC01", "lx": "dj", "jmbh": "JM1", "xm": "李佳", "csrq": "1985-08-21"}
CSV = "record_type,patient_no,name,event_time\r\npatient,42,李小玲,2026-01-01 00:15:58\r\n"
READINGS: dict[str, Any] = {
    "device_id": "CGM-1",
    "patient_ref": "HZ01:HZ1",
    "readings": [
        {"type": "glucose", "value": 5.4, "unit": "mmol/L", "time": "2026-01-01T00:00:00+08:00"}
    ],
}


@dataclass
class Running:
    url: str
    raw: str
    dead: str


class Served:
    """The intake app on uvicorn, on a real port, in its own loop thread."""

    def __init__(self, settings: RuntimeSettings, codec: Codec, raw: str, dead: str) -> None:
        self.loop = LoopThread()
        self.producer = AsyncDurableProducer(settings, "http-test", timeout=1.5)
        sources = SourceRegistry.load(default_sources_dir())
        intake = Intake(sources, Store(codec, self.producer, raw, dead), CollectorRegistry(), 4096)
        port = free_port()
        config = uvicorn.Config(
            create_app(intake), host="127.0.0.1", port=port, log_config=None, access_log=False
        )
        self.server = uvicorn.Server(config)
        self.serving = asyncio.run_coroutine_threadsafe(self.server.serve(), self.loop.loop)
        self.url = f"http://127.0.0.1:{port}"
        self.loop.run(self._started())

    async def _started(self) -> None:
        while not self.server.started:
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.serving.result(timeout=15)
        self.producer.close(timeout=2)
        self.loop.stop()


@pytest.fixture
def intake(
    runtime_settings: RuntimeSettings, codec: Codec, new_topic: TopicFactory
) -> Iterator[Running]:
    raw, dead = new_topic("raw", 1), new_topic("dead", 1)
    served = Served(runtime_settings, codec, raw, dead)
    yield Running(served.url, raw, dead)
    served.stop()


def test_a_fhir_bundle_is_stored_before_202(
    intake: Running, kafka_bootstrap: str, codec: Codec
) -> None:
    body = json.dumps(BUNDLE, ensure_ascii=False).encode()
    response = httpx.post(
        f"{intake.url}/fhir",
        content=body,
        headers={"content-type": "application/fhir+json", "x-hs-source": "F01"},
    )
    assert response.status_code == 202
    [(key, value)] = read_all(kafka_bootstrap, intake.raw, expected=1)
    record = codec.decode(value).record
    assert record["payload"] == body
    assert (record["transport"], record["content_type"]) == ("HTTP", "application/fhir+json")
    assert str(record["envelope"]["event_id"]) == response.json()["event_id"]
    assert key == codec.keyring.pseudonym("F01", "p1").encode()


def test_every_bad_field_is_listed_and_the_body_kept(
    intake: Running, kafka_bootstrap: str, codec: Codec
) -> None:
    bad = {
        **BUNDLE,
        "entry": [
            {"resource": {**PATIENT, "birthDate": "1987-13-01"}},
            {"resource": {"resourceType": "Observation", "id": "o1"}},
        ],
    }
    body = json.dumps(bad).encode()
    response = httpx.post(
        f"{intake.url}/fhir",
        content=body,
        headers={"content-type": "application/fhir+json", "x-hs-source": "F01"},
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["reason_code"] == "fhir.invalid"
    assert {e["field"] for e in problem["errors"]} == {
        "/entry/0/resource/birthDate",
        "/entry/1/resource/status",
        "/entry/1/resource/code",
        "/entry/1/resource/subject",
    }
    assert "1987-13-01" not in response.text
    [(_, value)] = read_all(kafka_bootstrap, intake.dead, expected=1)
    assert codec.decode(value).record["original"] == body
    assert read_all(kafka_bootstrap, intake.raw, idle=1) == []


@pytest.mark.parametrize(
    ("path", "content_type", "body", "status", "reason"),
    [
        (
            "/ingest/clinics/HZC01",
            "application/json",
            json.dumps(CLINIC, ensure_ascii=False)[:30],
            400,
            "json.malformed",
        ),
        (
            "/ingest/clinics/HZC01",
            "application/json",
            json.dumps({**CLINIC, "csrq": "1987-02-30"}),
            422,
            "clinic.invalid_field",
        ),
        (
            "/ingest/clinics/SHC02",
            "text/csv",
            "record_type,name\r\npatient,x\r\n",
            400,
            "csv.missing_columns",
        ),
        (
            "/ingest/devices/W01",
            "application/json",
            json.dumps({**READINGS, "readings": [{**READINGS["readings"][0], "value": "high"}]}),
            422,
            "device.invalid_reading",
        ),
        (
            "/ingest/clinics/NOPE",
            "application/json",
            json.dumps(CLINIC),
            404,
            "http.unknown_source",
        ),
        ("/ingest/clinics/HZC01", "text/plain", "hello", 415, "http.media_type"),
        ("/ingest/devices/W01", "application/json", "x" * 5000, 413, "http.too_large"),
    ],
)
def test_bad_input_gets_a_problem_document(
    intake: Running, path: str, content_type: str, body: str, status: int, reason: str
) -> None:
    response = httpx.post(
        f"{intake.url}{path}", content=body.encode(), headers={"content-type": content_type}
    )
    assert response.status_code == status
    assert response.json()["reason_code"] == reason


@pytest.mark.parametrize(
    ("path", "content_type", "body"),
    [
        ("/ingest/clinics/HZC01", "application/json", json.dumps(CLINIC, ensure_ascii=False)),
        ("/ingest/clinics/SHC02", "text/csv; charset=utf-8", CSV),
        ("/ingest/devices/W01", "application/json", json.dumps(READINGS)),
    ],
)
def test_good_input_is_stored(
    intake: Running, kafka_bootstrap: str, path: str, content_type: str, body: str
) -> None:
    response = httpx.post(
        f"{intake.url}{path}", content=body.encode(), headers={"content-type": content_type}
    )
    assert response.status_code == 202, response.text
    assert len(read_all(kafka_bootstrap, intake.raw, expected=1)) == 1


def test_503_with_retry_after_when_kafka_cannot_store(
    runtime_settings: RuntimeSettings, codec: Codec
) -> None:
    unreachable = runtime_settings.model_copy(
        update={"kafka_bootstrap": f"127.0.0.1:{free_port()}"}
    )
    served = Served(unreachable, codec, "hs.ingest.raw.v1", "hs.ops.deadletter.v1")
    try:
        body = json.dumps(READINGS).encode()
        headers = {"content-type": "application/json"}
        response = httpx.post(
            f"{served.url}/ingest/devices/W01", content=body, headers=headers, timeout=10
        )
    finally:
        served.stop()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"


def test_openapi_documents_the_endpoints(intake: Running) -> None:
    paths = httpx.get(f"{intake.url}/openapi.json").json()["paths"]
    assert {"/fhir", "/ingest/clinics/{source}", "/ingest/devices/{source}"} <= set(paths)
