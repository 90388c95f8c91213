"""10,000 malformed or fuzzed inputs across MLLP and HTTP: no crash, every input answered
with a clear error (or accepted when it happens to be valid), every refusal dead-lettered."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from confluent_kafka.admin import AdminClient, NewTopic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from hs_common.codec import Codec
from hs_common.kafka import AsyncDurableProducer
from hs_common.settings import Environment, RuntimeSettings
from hs_common.testing import LoopThread, client_config, free_port, read_all
from hs_ingestion.httpapi import Intake, create_app
from hs_ingestion.mllp import MllpServer
from hs_ingestion.sources import SourceRegistry, default_sources_dir
from hs_ingestion.store import Store

pytestmark = pytest.mark.integration
EXAMPLES = 5000  # per transport
VALID = (
    b"MSH|^~\\&|LIS|BJ03|HEALTHSTREAM|HS|20260101080000||ORU^R01^ORU_R01|F1|P|2.3.1\r"
    b"PID|1||BJ-1^^^BJ03^MR||WANG^WEI||19800101|M\r"
    b"OBR|1|O1|O1-F|LAB^LAB^L|||20260101073000\r"
    b"OBX|1|NM|GLU-S^GLUCOSE^L||126.1|mg/dL|70-110|H|||F|||20260101073000\r"
)
ANSWERS = {"AA", "AE", "AR", "CA", "CE", "CR"}


class Platform:
    """Ingestion's MLLP and HTTP listeners on real ports, with one client connection each
    (kept open: the fuzzing is about what is sent, not about connecting)."""

    def __init__(self, settings: RuntimeSettings, codec: Codec, raw: str, dead: str) -> None:
        self.loop = LoopThread()
        self.producer = AsyncDurableProducer(settings, "fuzz", timeout=10)
        sources = SourceRegistry.load(default_sources_dir())
        store = Store(codec, self.producer, raw, dead)
        mllp = MllpServer(sources, store, CollectorRegistry())
        self.mllp_port = self.loop.run(self._serve_mllp(mllp))
        intake = Intake(sources, store, CollectorRegistry(), 65536)
        port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(
                create_app(intake), host="127.0.0.1", port=port, log_config=None, access_log=False
            )
        )
        self.serving = asyncio.run_coroutine_threadsafe(self.server.serve(), self.loop.loop)
        self.url = f"http://127.0.0.1:{port}"
        self.loop.run(self._started())
        self.http = httpx.Client(base_url=self.url, timeout=20)
        self.mllp = socket.create_connection(("127.0.0.1", self.mllp_port), timeout=20)

    @staticmethod
    async def _serve_mllp(mllp: MllpServer) -> int:
        return int((await mllp.serve("127.0.0.1", 0)).sockets[0].getsockname()[1])

    async def _started(self) -> None:
        while not self.server.started:
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        self.http.close()
        self.mllp.close()
        self.server.should_exit = True
        self.serving.result(timeout=15)
        self.producer.close(timeout=5)
        self.loop.stop()


@pytest.fixture(scope="module")
def platform(kafka_bootstrap: str, codec: Codec) -> Iterator[tuple[Platform, str, str]]:
    raw, dead = f"fuzz-raw-{uuid.uuid4().hex[:8]}", f"fuzz-dead-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(client_config(kafka_bootstrap))
    for future in admin.create_topics([NewTopic(raw, 3, 1), NewTopic(dead, 3, 1)]).values():
        future.result(30)
    settings = RuntimeSettings(
        HS_ENV=Environment.TEST, HS_KAFKA_BOOTSTRAP=kafka_bootstrap, HS_INSTANCE_ID="fuzz"
    )
    running = Platform(settings, codec, raw, dead)
    yield running, raw, dead
    running.stop()


def _frame(payload: bytes) -> bytes:
    return b"\x0b" + payload.replace(b"\x0b", b"").replace(b"\x1c", b"") + b"\x1c\x0d"


def _mutated(data: st.DataObject) -> bytes:
    if data.draw(st.booleans()):
        return data.draw(st.binary(max_size=300))
    message = bytearray(VALID)
    for _ in range(data.draw(st.integers(1, 6))):
        position = data.draw(st.integers(0, len(message) - 1))
        message[position : position + data.draw(st.integers(0, 3))] = data.draw(
            st.binary(max_size=3)
        )
    return bytes(message)


MLLP_ANSWERS: Counter[str] = Counter()
HTTP_ANSWERS: Counter[int | str] = Counter()


@settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
@given(data=st.data())
def test_mllp_answers_every_fuzzed_frame(
    platform: tuple[Platform, str, str], data: st.DataObject
) -> None:
    running, _, _ = platform
    payload = _mutated(data)
    running.mllp.sendall(_frame(payload))
    answer = b""
    while not answer.endswith(b"\x1c\x0d"):
        chunk = running.mllp.recv(65536)
        assert chunk, "connection closed without an answer"
        answer += chunk
    code = answer.split(b"MSA|")[1][:2].decode()
    assert code in ANSWERS
    if code not in ("AA", "CA"):
        assert b"ERR|" in answer  # every refusal says what was wrong
    MLLP_ANSWERS[code] += 1


ENDPOINTS = [
    ("/fhir", "application/fhir+json", {"x-hs-source": "F01"}),
    ("/ingest/clinics/HZC01", "application/json", {}),
    ("/ingest/clinics/SHC02", "text/csv", {}),
    ("/ingest/devices/W01", "application/json", {}),
]


@settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
@given(
    endpoint=st.sampled_from(ENDPOINTS),
    body=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(
                    st.sampled_from(
                        [
                            "resourceType",
                            "id",
                            "entry",
                            "readings",
                            "value",
                            "lx",
                            "jmbh",
                            "device_id",
                            "resource",
                        ]
                    ),
                    inner,
                    max_size=5,
                )
            ),
            max_leaves=12,
        ).map(lambda document: json.dumps(document).encode()),
    ),
)
def test_http_answers_every_fuzzed_body(
    platform: tuple[Platform, str, str], endpoint: tuple[str, str, dict[str, str]], body: bytes
) -> None:
    running, _, _ = platform
    path, content_type, headers = endpoint
    response = httpx.post(
        f"{running.url}{path}",
        content=body,
        headers={"content-type": content_type, **headers},
        timeout=20,
    )
    if path == "/fhir":  # answered as FHIR servers answer
        assert response.status_code in (200, 201, 400, 422), response.text
        assert response.headers["content-type"].startswith("application/fhir+json")
        answer = response.json()
        if response.status_code >= 400:
            assert answer["resourceType"] == "OperationOutcome"
            assert answer["issue"][0]["details"]["coding"][0]["code"]  # the reason code
        elif response.status_code == 200:  # a batch: entry by entry
            statuses = [e["response"]["status"] for e in answer["entry"]]
            HTTP_ANSWERS["entry refused"] += sum(1 for s in statuses if s.startswith("4"))
            HTTP_ANSWERS["batch stored"] += any(s.startswith("2") for s in statuses)
    else:
        assert response.status_code in (202, 400, 422), response.text
        if response.status_code != 202:
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["reason_code"]
    HTTP_ANSWERS[response.status_code] += 1


def test_every_refusal_was_dead_lettered_and_every_accept_stored(
    platform: tuple[Platform, str, str], kafka_bootstrap: str
) -> None:
    _, raw, dead = platform
    refused = (
        sum(n for code, n in MLLP_ANSWERS.items() if code not in ("AA", "CA"))
        + HTTP_ANSWERS[400]
        + HTTP_ANSWERS[422]
        + HTTP_ANSWERS["entry refused"]
    )
    accepted = (
        MLLP_ANSWERS["AA"]
        + MLLP_ANSWERS["CA"]
        + HTTP_ANSWERS[201]
        + HTTP_ANSWERS[202]
        + HTTP_ANSWERS["batch stored"]
    )
    answered = sum(n for code, n in HTTP_ANSWERS.items() if isinstance(code, int))
    assert sum(MLLP_ANSWERS.values()) + answered == 2 * EXAMPLES
    assert len(read_all(kafka_bootstrap, dead, expected=refused, timeout=120)) == refused
    # repeats of the same valid message are answered again without a second write
    assert 0 < len(read_all(kafka_bootstrap, raw, timeout=60, idle=3)) <= accepted
