"""The HTTP intake against a real broker, over a real socket (uvicorn)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client import CollectorRegistry

from hs_common.codec import Codec
from hs_common.kafka import AsyncDurableProducer
from hs_common.settings import RuntimeSettings, read_env_file
from hs_common.testing import LoopThread, TopicFactory, free_port, read_all
from hs_ingestion.httpapi import Intake, create_app
from hs_ingestion.normalize import normalize_raw
from hs_ingestion.sources import SourceRegistry, default_sources_dir
from hs_ingestion.store import Store
from hs_ingestion.tools import sender_tokens

pytestmark = pytest.mark.integration

PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "name": [{"text": "刘薇"}],
    "birthDate": "2015-07-20",
}
BUNDLE = {
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [{"resource": PATIENT, "request": {"method": "PUT", "url": "Patient/p1"}}],
}
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

    def __init__(
        self, settings: RuntimeSettings, codec: Codec, raw: str, dead: str,
        senders: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        self.loop = LoopThread()
        self.producer = AsyncDurableProducer(settings, "http-test", timeout=1.5)
        sources = SourceRegistry.load(default_sources_dir())
        store = Store(codec, self.producer, raw, dead)
        intake = Intake(sources, store, CollectorRegistry(), 4096, senders)
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


FHIR_HEADERS = {"content-type": "application/fhir+json", "x-hs-source": "F01"}
HEART_RATE = {
    "resourceType": "Observation",
    "id": "hr1",
    "status": "final",
    "category": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "vital-signs",
                }
            ]
        }
    ],
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
    "subject": {"reference": "Patient/p1"},
    "effectiveDateTime": "2026-01-01T08:00:00+08:00",
    "valueQuantity": {
        "value": 72,
        "unit": "/min",
        "system": "http://unitsofmeasure.org",
        "code": "/min",
    },
}


def _post(entry: dict[str, Any]) -> dict[str, Any]:
    return {"resource": entry, "request": {"method": "POST", "url": entry["resourceType"]}}


def test_a_fhir_transaction_is_stored_before_its_transaction_response(
    intake: Running, kafka_bootstrap: str, codec: Codec
) -> None:
    body = json.dumps(BUNDLE, ensure_ascii=False).encode()
    response = httpx.post(f"{intake.url}/fhir", content=body, headers=FHIR_HEADERS)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    answer = response.json()
    assert answer["type"] == "transaction-response"
    assert answer["entry"] == [{"response": {"status": "201 Created", "location": "Patient/p1"}}]
    [(key, value)] = read_all(kafka_bootstrap, intake.raw, expected=1)
    record = codec.decode(value).record
    assert record["payload"] == body
    assert (record["transport"], record["content_type"]) == ("HTTP", "application/fhir+json")
    assert key == codec.keyring.pseudonym("F01", "p1").encode()


def test_a_transaction_with_one_bad_entry_is_refused_whole(
    intake: Running, kafka_bootstrap: str, codec: Codec
) -> None:
    bad = {
        **BUNDLE,
        "entry": [
            _post(PATIENT),
            _post({**HEART_RATE, "status": "done"}),
            _post({"resourceType": "Observation", "id": "o1"}),
        ],
    }
    body = json.dumps(bad, ensure_ascii=False).encode()
    response = httpx.post(f"{intake.url}/fhir", content=body, headers=FHIR_HEADERS)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert {e for issue in outcome["issue"] for e in issue["expression"]} == {
        "Bundle.entry[1].resource.status",
        "Bundle.entry[2].resource.status",
        "Bundle.entry[2].resource.code",
        "Bundle.entry[2].resource.subject",
    }
    assert '"done"' not in response.text
    [(_, value)] = read_all(kafka_bootstrap, intake.dead, expected=1)
    letter = codec.decode(value).record
    assert (letter["original"], letter["reason_code"]) == (body, "fhir.invalid")
    assert read_all(kafka_bootstrap, intake.raw, idle=1) == []


def test_a_batch_answers_each_entry_and_its_good_entries_become_events(
    intake: Running, kafka_bootstrap: str, codec: Codec
) -> None:
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            _post(PATIENT),
            _post({**HEART_RATE, "id": "hr2", "status": "done"}),
            _post(HEART_RATE),
        ],
    }
    body = json.dumps(batch, ensure_ascii=False).encode()
    response = httpx.post(f"{intake.url}/fhir", content=body, headers=FHIR_HEADERS)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in answer["entry"]]
    assert statuses == ["201 Created", "422 Unprocessable Entity", "201 Created"]
    assert answer["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    [(_, letter_value)] = read_all(kafka_bootstrap, intake.dead, expected=1)
    letter = codec.decode(letter_value).record
    assert letter["item"] == "/entry/1/resource"
    assert json.loads(letter["original"])["id"] == "hr2"
    [(_, raw_value)] = read_all(kafka_bootstrap, intake.raw, expected=1)
    raw = codec.decode(raw_value).record
    assert raw["payload"] == body
    source = SourceRegistry.load(default_sources_dir()).get("F01")
    assert source is not None
    mapped = normalize_raw(raw, source)
    assert sorted(e.schema for e in mapped.events) == [
        "hs.clinical.Observation",
        "hs.identity.PatientIdentity",
    ]
    [observation] = [e.record for e in mapped.events if e.schema == "hs.clinical.Observation"]
    assert (observation["observation_id"], observation["result"]["value_quantity"]) == (
        "hr1",
        72.0,
    )
    assert [f.item for f in mapped.failures] == ["/entry/1/resource"]
    for event in mapped.events:
        codec.encode(event.schema, event.record)


def test_a_collection_bundle_is_accepted(
    intake: Running, kafka_bootstrap: str, codec: Codec
) -> None:
    collection = {
        "resourceType": "Bundle",
        "id": "c-1",
        "type": "collection",
        "entry": [
            {"fullUrl": "http://example.org/fhir/Patient/p1", "resource": PATIENT},
            {"fullUrl": "http://example.org/fhir/Observation/hr1", "resource": HEART_RATE},
        ],
    }
    body = json.dumps(collection, ensure_ascii=False).encode()
    response = httpx.post(f"{intake.url}/fhir", content=body, headers=FHIR_HEADERS)
    assert response.status_code == 201, response.text
    assert response.headers["location"] == "Bundle/c-1"
    [(_, value)] = read_all(kafka_bootstrap, intake.raw, expected=1)
    assert codec.decode(value).record["sender_message_id"] == "c-1"


def test_a_single_resource_is_created(intake: Running, kafka_bootstrap: str) -> None:
    body = json.dumps(HEART_RATE).encode()
    response = httpx.post(f"{intake.url}/fhir", content=body, headers=FHIR_HEADERS)
    assert response.status_code == 201
    assert response.headers["location"] == "Observation/hr1"
    assert response.json()["resourceType"] == "OperationOutcome"
    assert len(read_all(kafka_bootstrap, intake.raw, expected=1)) == 1


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


def test_a_chunked_body_is_counted_as_it_arrives(intake: Running) -> None:
    """No Content-Length to check first: the body is refused once over the limit."""

    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            yield b"x" * 1024

    response = httpx.post(
        f"{intake.url}/ingest/devices/W01",
        content=chunks(),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert (response.status_code, response.json()["reason_code"]) == (413, "http.too_large")


def test_with_sender_tokens_a_sender_must_prove_the_source_it_names(
    runtime_settings: RuntimeSettings, codec: Codec, new_topic: TopicFactory, tmp_path: Path,
    kafka_bootstrap: str,
) -> None:  # fmt: skip
    """Tokens made by `hs-ingestion-tools sender-tokens`: HZC01's token sends HZC01's records;
    no token, a wrong one or another source's is refused before the body is read."""
    shown = sender_tokens(SourceRegistry.load(default_sources_dir()), tmp_path)
    assert "sender tokens" in shown
    issued = read_env_file(tmp_path / "tokens.env")
    senders = json.loads((tmp_path / "senders.json").read_text())
    assert set(issued) == set(senders) >= {"HZC01", "W01", "F01"}
    raw, dead = new_topic("raw", 1), new_topic("dead", 1)
    served = Served(runtime_settings, codec, raw, dead, senders)
    body = json.dumps(CLINIC, ensure_ascii=False).encode()
    try:

        def post(token: str | None) -> httpx.Response:
            headers = {"content-type": "application/json"}
            if token is not None:
                headers["authorization"] = f"Bearer {token}"
            return httpx.post(f"{served.url}/ingest/clinics/HZC01", content=body, headers=headers)

        refused = [post(None), post("guess"), post(issued["W01"])]
        accepted = post(issued["HZC01"])
    finally:
        served.stop()
    assert [(r.status_code, r.json()["reason_code"]) for r in refused] == [
        (401, "http.sender_unauthenticated")
    ] * 3
    assert accepted.status_code == 202, accepted.text
    assert len(read_all(kafka_bootstrap, raw, expected=1, idle=2)) == 1
