"""The edge's REST and gRPC surfaces on real sockets, with the audit trail on the real broker:
what a clinician, a patient and a researcher see, every denial named, every request audited."""

from __future__ import annotations

import asyncio
import io
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import psycopg
import pytest
import uvicorn
from fhir.resources.R4B import get_fhir_model_class
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from healthstream.edge.v1 import edge_pb2 as pb
from healthstream.edge.v1 import edge_pb2_grpc
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet
from PIL import Image

from hs_common.codec import Codec
from hs_common.kafka import AsyncDurableProducer
from hs_common.schemas import SchemaCatalogue
from hs_common.settings import RuntimeSettings
from hs_common.testing import (
    TopicFactory,
    free_port,
    golden_example,
    hapi_errors,
    read_all,
    schema_root,
    writer_headers,
)
from hs_edge import audit, charts, grpc_api
from hs_edge.api import create_app
from hs_edge.auth import TokenValidator
from hs_edge.operations import AuditTrail, Edge
from hs_edge.projector import Consumed, Projector
from hs_edge.ratelimit import RateLimiter
from hs_edge.store import Store
from hs_empi.standardize import check_digit

pytestmark = pytest.mark.integration

ISSUER, AUDIENCE = "https://auth.hs.test", "hs-edge"
KEY = ECKey.generate_key("P-256", parameters={"kid": "k1"})
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
GLUCOSE = {"system": "http://loinc.org", "code": "2345-7", "display": None, "version": None}
CREATININE = {"system": "http://loinc.org", "code": "2160-0", "display": None, "version": None}
_ = schema_root  # the fixture is used by name


def token(**claims: object) -> str:
    now = int(time.time())
    body: dict[str, object] = {
        "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300, "sub": "nurse-7",
        "client_id": "ward-app", "role": "clinician",
        "scope": "user/Patient.read user/Observation.read",
    } | claims  # fmt: skip
    return jwt.encode({"alg": "ES256", "kid": "k1"}, body, KEY)


def fill(store: Store, codec: Codec, catalogue: SchemaCatalogue, root: Path) -> None:
    def example(name: str) -> dict[str, Any]:
        return codec.decode(codec.encode(name, golden_example(catalogue.get(name), root))).record

    person = example("hs.identity.Person")
    keys = [codec.keyring.pseudonym("H330102", p) for p in ("A", "B")]
    person |= {"person_id": "P1", "record_keys": keys}
    other = example("hs.identity.Person") | {"person_id": "P2", "record_keys": ["k-other"]}
    values = [codec.encode("hs.identity.Person", p) for p in (person, other)]
    for n in range(30):
        observation = example("hs.clinical.Observation")
        observation["observation_id"] = f"OBS-{n}"
        observation["subject"]["local_patient_id"] = "A" if n % 2 else "B"
        observation["effective_at"] = T0 + timedelta(hours=n)
        observation["result"]["code"] = GLUCOSE if n % 3 == 0 else CREATININE
        values.append(codec.encode("hs.clinical.Observation", observation))
    diagnosis = example("hs.clinical.Condition")  # type 2 diabetes, E11.9
    diagnosis["subject"]["local_patient_id"] = "A"
    values.append(codec.encode("hs.clinical.Condition", diagnosis))
    Projector(store, codec).apply(
        Consumed("t", 0, i, None, v, tuple(writer_headers(codec, v))) for i, v in enumerate(values)
    )


@dataclass
class Running:
    url: str
    audit_topic: str
    ack_topic: str
    review_topic: str
    store: Store
    grpc_target: str
    edge: Edge


@contextmanager
def grpc_serving(edge: Edge) -> Iterator[str]:
    """The gRPC server on its own event loop and thread; yields its address."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    started = asyncio.run_coroutine_threadsafe(grpc_api.start(edge, "127.0.0.1:0", None), loop)
    server, port = started.result(10)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(1), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@pytest.fixture(params=["sqlite", "postgresql"])
def edge_url(
    request: pytest.FixtureRequest, runtime_settings: RuntimeSettings, codec: Codec,
    catalogue: SchemaCatalogue, schema_root: Path, new_topic: TopicFactory, tmp_path: Path,
) -> Iterator[Running]:  # fmt: skip
    """The edge on each backend of the read model."""
    if request.param == "sqlite":
        store = Store.sqlite(tmp_path / "edge.db")
    else:
        store = Store.postgres(request.getfixturevalue("postgres_schema"))
    fill(store, codec, catalogue, schema_root)
    topic = new_topic("audit", 3)
    producer = AsyncDurableProducer(runtime_settings, "edge-test")
    trail = AuditTrail(producer, codec, topic, audit.Chain("edge-test@1", codec.keyring))
    ack_topic, review_topic = new_topic("ack", 1), new_topic("review", 1)
    edge = Edge(store, codec, TokenValidator(KeySet([KEY]), ISSUER, AUDIENCE),
                RateLimiter(rate=0.5, capacity=20), trail, ack_topic=ack_topic,
                review_topic=review_topic,
                poll_seconds=0.05)  # fmt: skip
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(edge), "127.0.0.1", port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        with grpc_serving(edge) as target:
            yield Running(
                f"http://127.0.0.1:{port}", topic, ack_topic, review_topic, store, target, edge
            )
    finally:
        server.should_exit = True
        thread.join(10)
        producer.close()


def get(url: str, path: str, bearer: str | None = None, **params: Any) -> httpx.Response:
    """GET with the token; a FHIR search parameter the edge does not support is refused
    (`Prefer: handling=strict`), so no test passes by a parameter silently ignored."""
    headers = {"Prefer": "handling=strict"} | (
        {"Authorization": f"Bearer {bearer}"} if bearer else {}
    )
    return httpx.get(url + path, headers=headers, params=params, timeout=10)


def test_what_each_role_sees_every_denial_and_the_audit_trail(
    edge_url: Running, codec: Codec, kafka_bootstrap: str
) -> None:
    url, topic = edge_url.url, edge_url.audit_topic
    clinician = token()
    person = get(url, "/persons/P1", clinician).json()
    assert person["golden"]["id_number"] == "****************23"  # masked for a clinician
    assert len(person["record_keys"]) == 2

    first = get(
        url, "/persons/P1/observations", clinician, code="http://loinc.org|2345-7", _count=4
    )
    assert first.status_code == 200 and first.headers["RateLimit-Limit"] == "20"
    page = first.json()
    second = get(url, "/persons/P1/observations", clinician, code="http://loinc.org|2345-7",
                 _count=10, cursor=page["next_cursor"]).json()  # fmt: skip
    ids = [o["observation_id"] for o in page["items"] + second["items"]]
    assert ids == [f"OBS-{n}" for n in range(0, 30, 3)]
    assert second["next_cursor"] is None
    assert page["items"][0]["value"] == 7.8 and page["items"][0]["original_unit"] == "mg/dL"

    researcher = get(url, "/persons/P1", token(role="researcher")).json()
    assert set(researcher) == {"person_id", "sex", "birth_year", "records"}
    research = token(role="researcher", scope="user/*.read")
    studied = get(url, "/persons/P1/observations", research, _count=3).json()["items"]
    assert studied and all(
        o["observation_id"] is None and o["institution"] is None and o["original_value"] is None
        and o["effective_at"].endswith("T00:00:00+00:00")
        for o in studied
    )  # fmt: skip
    assert get(url, "/persons/P1/alerts", research).status_code == 403
    steward = token(role="administrator", sub="steward-3", scope="system/*.*")
    masked = get(url, "/persons/P1", steward).json()["golden"]["id_number"]
    revealed = get(url, "/persons/P1", steward, reveal="patient-request").json()
    assert masked.startswith("****") and "*" not in revealed["golden"]["id_number"]
    assert get(url, "/persons/P1", steward, reveal="curious").status_code == 400
    assert get(url, "/persons/P1", clinician, reveal="patient-request").status_code == 403
    patient = token(role="patient", person_id="P1", sub="patient-1", scope="patient/*.read")
    assert get(url, "/persons/P1", patient).status_code == 200

    denials = {
        "no token": (get(url, "/persons/P1"), 401, "token.missing"),
        "expired": (get(url, "/persons/P1", token(exp=int(time.time()) - 60)), 401,
                    "token.expired"),
        "audience": (get(url, "/persons/P1", token(aud="other")), 401, "token.aud"),
        "scope": (get(url, "/persons/P1/observations", token(scope="user/Patient.read")), 403,
                  "scope.missing"),
        "other patient": (get(url, "/persons/P2", patient), 403, "patient.other_person"),
        "bad count": (get(url, "/persons/P1/observations", clinician, _count=100000), 422, None),
        "bad cursor": (get(url, "/persons/P1/observations", clinician, cursor="x"), 400,
                       "request.cursor"),
        "injection": (get(url, "/persons/P1/observations", clinician, code="x' OR '1'='1|y",
                          category="LAB; DROP TABLE observations"), 422, None),
        "unknown person": (get(url, "/persons/P9'--", clinician), 404, "person.not_found"),
    }  # fmt: skip
    for name, (response, status, code) in denials.items():
        assert response.status_code == status, (name, response.status_code, response.text)
        if code:
            assert response.json()["title"] == code, name
    assert get(url, "/persons/P1/observations", clinician).json()["items"]  # the table survived

    limited = [get(url, "/persons/P1", token(client_id="busy-app")) for _ in range(30)]
    refused = [r for r in limited if r.status_code == 429]
    assert refused and refused[0].headers["Retry-After"] in ("1", "2")
    assert refused[0].headers["RateLimit-Remaining"] == "0"

    headers = {"Authorization": f"Bearer {clinician}", "Content-Type": "application/json"}
    oversized = httpx.post(f"{url}/reviews/x/decision", headers=headers,
                           content=b"{" + b" " * 20_000 + b"}", timeout=10)  # fmt: skip
    assert (oversized.status_code, oversized.json()["title"]) == (413, "request.too_large")
    body = iter([b"{"] + [b" " * 1024] * 40 + [b"}"])  # chunked: no Content-Length
    chunked = httpx.post(f"{url}/reviews/x/decision", headers=headers, content=body, timeout=10)
    assert (chunked.status_code, chunked.json()["title"]) == (413, "request.too_large")
    guesses = [httpx.post(f"{url}/oauth/token", data={"grant_type": "client_credentials"},
                          timeout=10) for _ in range(25)]  # fmt: skip
    assert {g.status_code for g in guesses} == {404, 429}  # no token endpoint here, and limited

    requests = 11 + len(denials) + 1 + len(limited) + 2 + len(guesses)  # every request above
    stored = read_all(kafka_bootstrap, topic, expected=requests, timeout=30)
    entries = [audit.from_record(codec.decode(v).record) for _, v in stored]
    assert len(entries) == requests
    assert audit.verify(
        ((e, i) for i, e in enumerate(sorted(entries, key=lambda e: e.sequence))), codec.keyring
    ).intact
    outcomes = {
        (e.request.reason, e.request.status)
        for e in entries
        if e.request.outcome is audit.Outcome.DENIED
    }
    assert {
        ("token.missing", 401),
        ("patient.other_person", 403),
        ("rate.limited", 429),
    } <= outcomes
    reveals = [e.request for e in entries if e.request.reason == "reveal.patient-request"]
    assert [(r.subject, r.person_id, r.status) for r in reveals] == [("steward-3", "P1", 200)]
    assert all("Bearer" not in str(e.request) for e in entries)


def test_alerts_listed_streamed_live_and_acknowledged_on_to_vitals(
    edge_url: Running, codec: Codec, catalogue: SchemaCatalogue, schema_root: Path,
    kafka_bootstrap: str,
) -> None:  # fmt: skip
    alert = golden_example(catalogue.get("hs.vitals.Alert"), schema_root)
    alert |= {"patient_key": codec.keyring.pseudonym("H330102", "A"), "alert_id": "AL-1"}
    projector = Projector(edge_url.store, codec)
    clinician = token(scope="user/*.read user/Flag.write")
    received: list[str] = []

    def listen() -> None:
        headers = {"Authorization": f"Bearer {clinician}"}
        with httpx.stream("GET", f"{edge_url.url}/alerts/stream", headers=headers, timeout=20) as s:
            for line in s.iter_lines():
                if line.startswith("data: "):
                    received.append(line)
                    return

    listener = threading.Thread(target=listen)
    listener.start()
    time.sleep(0.5)  # subscribed: only alerts from now on are streamed
    projector.apply([Consumed("alerts", 0, 0, None, codec.encode("hs.vitals.Alert", alert))])
    listener.join(20)
    assert received and '"alert_id": "AL-1"' in received[0]
    assert alert["person_id"] is None and '"person_id": "P1"' in received[0]  # linked since
    served = [
        entry.request
        for entry in (audit.from_record(codec.decode(v).record)
                      for _, v in read_all(kafka_bootstrap, edge_url.audit_topic, idle=2))
        if entry.request.reason == "alert.served"
    ]  # fmt: skip
    assert [r.person_id for r in served] == ["P1"]  # whose alert was served

    brief = token(scope="user/*.read user/Flag.write", exp=int(time.time()) + 2)
    opened = time.monotonic()
    brief_headers = {"Authorization": f"Bearer {brief}"}
    with httpx.stream(
        "GET", f"{edge_url.url}/alerts/stream", headers=brief_headers, timeout=20
    ) as stream:
        assert stream.status_code == 200
        for _ in stream.iter_lines():
            pass
    assert time.monotonic() - opened < 10  # ended when its token expired, not left open

    listed = get(edge_url.url, "/persons/P1/alerts", clinician).json()["items"]
    assert [(a["alert_id"], a["action"]) for a in listed] == [("AL-1", "OPENED")]
    headers = {"Authorization": f"Bearer {clinician}"}
    acked = httpx.post(f"{edge_url.url}/alerts/AL-1/acknowledgement", headers=headers, timeout=10)
    assert acked.status_code == 202, acked.text
    (stored,) = read_all(kafka_bootstrap, edge_url.ack_topic, expected=1, timeout=20)
    ack = codec.decode(stored[1]).record
    assert (ack["alert_id"], ack["acknowledged_by"]) == ("AL-1", "nurse-7")
    assert stored[0] == alert["patient_key"].encode()  # keyed like the alert, for hs-vitals
    researcher = token(role="researcher", scope="user/*.read user/Flag.write")
    assert get(edge_url.url, "/alerts/stream", researcher).status_code == 403
    denied = httpx.post(f"{edge_url.url}/alerts/AL-1/acknowledgement",
                        headers={"Authorization": f"Bearer {researcher}"}, timeout=10)  # fmt: skip
    assert denied.status_code == 403
    missing = httpx.post(f"{edge_url.url}/alerts/AL-9/acknowledgement", headers=headers, timeout=10)
    assert missing.status_code == 404


def test_the_review_queue_shows_evidence_and_sends_link_and_no_link_to_the_empi(
    edge_url: Running, codec: Codec, catalogue: SchemaCatalogue, schema_root: Path,
    kafka_bootstrap: str,
) -> None:  # fmt: skip
    link = golden_example(catalogue.get("hs.identity.PersonLink"), schema_root)
    link |= {"action": "REVIEW", "record_key": "rk-new", "person_id": "P-new",
             "review_person_id": "P1", "matched_record_key": "rk-old",
             "probability": 0.41}  # fmt: skip
    other = link | {"record_key": "rk-twin", "person_id": "P-twin", "probability": 0.35}
    values = [codec.encode("hs.identity.PersonLink", event) for event in (link, other)]
    Projector(edge_url.store, codec).apply(
        Consumed("links", 0, n, None, v, tuple(writer_headers(codec, v)))
        for n, v in enumerate(values)
    )
    admin = token(role="administrator", sub="steward-3", scope="system/*.*")
    queue = get(edge_url.url, "/reviews", admin).json()["items"]
    assert [(r["record_key"], r["suggested_person_id"], r["probability"]) for r in queue] == [
        ("rk-new", "P1", 0.41),
        ("rk-twin", "P1", 0.35),
    ]
    assert {e["comparison"] for e in queue[0]["evidence"]} >= {"id_number", "name"}
    assert get(edge_url.url, "/reviews", token()).status_code == 403  # clinicians do not review
    queued, *_ = grpc_call(edge_url.grpc_target, "ListReviews", pb.ListReviewsRequest(), admin)
    assert [(r.record_key, r.suggested_person_id) for r in queued.items] == [
        ("rk-new", "P1"), ("rk-twin", "P1")
    ]  # fmt: skip
    no_decision = pb.DecideReviewRequest(record_key="rk-new")
    _, undecided, trailing = grpc_call(edge_url.grpc_target, "DecideReview", no_decision, admin)
    assert (undecided, trailing["hs-refusal"]) == (
        grpc.StatusCode.INVALID_ARGUMENT, "request.decision"
    )  # fmt: skip

    headers = {"Authorization": f"Bearer {admin}"}
    bad = httpx.post(f"{edge_url.url}/reviews/rk-new/decision", headers=headers,
                     json={"decision": "MAYBE"}, timeout=10)  # fmt: skip
    assert bad.status_code == 422
    link_it = {"decision": "LINK", "reason": "same ID card seen"}
    decided = httpx.post(f"{edge_url.url}/reviews/rk-new/decision", headers=headers,
                         json=link_it, timeout=10)  # fmt: skip
    assert decided.status_code == 202, decided.text
    kept_apart = httpx.post(f"{edge_url.url}/reviews/rk-twin/decision", headers=headers,
                            json={"decision": "NO_LINK"}, timeout=10)  # fmt: skip
    assert kept_apart.status_code == 202, kept_apart.text
    stored = read_all(kafka_bootstrap, edge_url.review_topic, expected=2, timeout=20)
    decisions = [codec.decode(value).record for _, value in stored]
    assert [(d["action"], d["record_key"], d["other_record_key"]) for d in decisions] == [
        ("LINK", "rk-new", "rk-old"),
        ("UNLINK", "rk-twin", "rk-old"),
    ]
    assert {d["decided_by"] for d in decisions} == {"steward-3"}
    assert get(edge_url.url, "/reviews", admin).json()["items"] == []


def test_trends_and_egfr_with_kdigo_progression(
    edge_url: Running, codec: Codec, catalogue: SchemaCatalogue, schema_root: Path
) -> None:
    events = []
    for n, micromol in enumerate([100.0, 125.0, 150.0, 180.0]):  # over a year
        observation = golden_example(catalogue.get("hs.clinical.Observation"), schema_root)
        observation["observation_id"] = f"CR-{n}"
        observation["subject"]["local_patient_id"] = "A"
        observation["effective_at"] = T0 + timedelta(days=120 * n)
        observation["result"] |= {"code": CREATININE, "value_quantity": micromol, "unit": "umol/L"}
        events.append(codec.encode("hs.clinical.Observation", observation))
    Projector(edge_url.store, codec).apply(
        Consumed("creatinine", 0, i, None, e) for i, e in enumerate(events)
    )
    clinician = token()
    kidney = get(edge_url.url, "/persons/P1/egfr", clinician).json()
    assert len(kidney["points"]) == 4  # the creatinine results in mmol/L are left out
    assert kidney["stages"][0] in ("G1", "G2") and kidney["stages"][-1] in ("G3a", "G3b")
    assert kidney["certain_drop"] and kidney["rapid_progression"]
    assert kidney["slope_per_year"] < -5

    glucose = get(edge_url.url, "/persons/P1/trend", clinician, code="http://loinc.org|2345-7")
    assert glucose.status_code == 200, glucose.text
    body = glucose.json()
    assert len(body["points"]) == 10 and body["change"] == 0.0 and body["unit"] == "mmol/L"
    assert body["slope_per_year"] is None  # a day of results is not a yearly trend
    other = token(role="patient", person_id="P2", scope="patient/*.read")
    assert get(edge_url.url, "/persons/P1/egfr", other).status_code == 403

    target = edge_url.grpc_target  # the same over gRPC
    egfr, *_ = grpc_call(target, "GetKidneyFunction",
                         pb.GetKidneyFunctionRequest(person_id="P1"), clinician)  # fmt: skip
    assert list(egfr.stages) == kidney["stages"] and egfr.rapid_progression
    assert egfr.slope_per_year == pytest.approx(kidney["slope_per_year"])
    series, *_ = grpc_call(target, "GetTrend", pb.GetTrendRequest(
        person_id="P1", code="http://loinc.org|2345-7"), clinician)  # fmt: skip
    assert len(series.points) == 10 and series.unit == "mmol/L"
    assert not series.HasField("slope_per_year")


def grpc_call(
    target: str, method: str, request: Any, bearer: str | None = None
) -> tuple[Any, grpc.StatusCode, dict[str, str]]:
    """(reply or None, status, trailing metadata) of one unary call."""
    with grpc.insecure_channel(target) as channel:
        stub = edge_pb2_grpc.EdgeStub(channel)
        try:
            reply, call = getattr(stub, method).with_call(
                request, metadata=bearer_metadata(bearer), timeout=10
            )
        except grpc.RpcError as error:
            failed: Any = error  # a grpc.Call too
            return None, failed.code(), {str(k): str(v) for k, v in failed.trailing_metadata()}
        return reply, call.code(), {str(k): str(v) for k, v in call.trailing_metadata()}


def bearer_metadata(bearer: str | None) -> tuple[tuple[str, str | bytes], ...]:
    return (("authorization", f"Bearer {bearer}"),) if bearer else ()


def test_grpc_serves_the_same_operations_with_the_same_denials_each_audited(
    edge_url: Running, codec: Codec, kafka_bootstrap: str
) -> None:
    target, clinician = edge_url.grpc_target, token()
    person, status, trailing = grpc_call(target, "GetPerson", pb.GetPersonRequest(person_id="P1"),
                                         clinician)  # fmt: skip
    assert status is grpc.StatusCode.OK and trailing["ratelimit-limit"] == "20"
    assert person.golden.id_number == "****************23" and len(person.record_keys) == 2
    researcher, *_ = grpc_call(target, "GetPerson", pb.GetPersonRequest(person_id="P1"),
                               token(role="researcher"))  # fmt: skip
    assert researcher.WhichOneof("view") == "deidentified" and researcher.deidentified.records == 2

    glucose = "http://loinc.org|2345-7"
    first, *_ = grpc_call(target, "ListObservations", pb.ListObservationsRequest(
        person_id="P1", codes=[glucose], page_size=4), clinician)  # fmt: skip
    rest, *_ = grpc_call(target, "ListObservations", pb.ListObservationsRequest(
        person_id="P1", codes=[glucose], page_size=10, page_token=first.next_page_token),
        clinician)  # fmt: skip
    ids = [o.observation_id for o in [*first.items, *rest.items]]
    assert ids == [f"OBS-{n}" for n in range(0, 30, 3)] and rest.next_page_token == ""
    assert first.items[0].value == 7.8 and first.items[0].original_unit == "mg/dL"
    assert first.items[0].effective_at.ToDatetime(tzinfo=UTC) == T0
    window, *_ = grpc_call(target, "ListObservations", pb.ListObservationsRequest(
        person_id="P1", since=grpc_api.timestamp(T0 + timedelta(hours=3)),
        until=grpc_api.timestamp(T0 + timedelta(hours=5))), clinician)  # fmt: skip
    assert [o.observation_id for o in window.items] == ["OBS-3", "OBS-4"]
    via_rest = get(edge_url.url, "/persons/P1/observations", clinician, code=glucose, _count=4)
    assert [o["observation_id"] for o in via_rest.json()["items"]] == ids[:4]

    patient = token(role="patient", person_id="P1", sub="patient-1", scope="patient/*.read")
    observations = pb.ListObservationsRequest
    denials = {
        "no token": (pb.GetPersonRequest(person_id="P1"), None, "UNAUTHENTICATED",
                     "token.missing"),
        "expired": (pb.GetPersonRequest(person_id="P1"), token(exp=int(time.time()) - 60),
                    "UNAUTHENTICATED", "token.expired"),
        "scope": (observations(person_id="P1"), token(scope="user/Patient.read"),
                  "PERMISSION_DENIED", "scope.missing"),
        "other patient": (pb.GetPersonRequest(person_id="P2"), patient, "PERMISSION_DENIED",
                          "patient.other_person"),
        "bad size": (observations(person_id="P1", page_size=100000), clinician,
                     "INVALID_ARGUMENT", "request.count"),
        "bad token": (observations(person_id="P1", page_token="x"), clinician,
                      "INVALID_ARGUMENT", "request.cursor"),
        "injection": (observations(person_id="P1", codes=["x' OR '1'='1|y"]), clinician,
                      "OK", None),
        "unknown person": (pb.GetPersonRequest(person_id="P9'--"), clinician, "NOT_FOUND",
                           "person.not_found"),
    }  # fmt: skip
    for name, (request, bearer, expected, code) in denials.items():
        method = "GetPerson" if isinstance(request, pb.GetPersonRequest) else "ListObservations"
        _, status, trailing = grpc_call(target, method, request, bearer)
        assert (status.name, trailing.get("hs-refusal")) == (expected, code), name
    assert not grpc_call(target, "ListObservations", observations(
        person_id="P1", codes=["x' OR '1'='1|y"]), clinician)[0].items  # fmt: skip

    huge = observations(person_id="P1", codes=["x" * 20_000])
    assert grpc_call(target, "ListObservations", huge, clinician)[1] is (
        grpc.StatusCode.RESOURCE_EXHAUSTED
    )  # refused by size before it is read (and so not audited)

    busy = token(client_id="busy-grpc")
    limited = [grpc_call(target, "GetPerson", pb.GetPersonRequest(person_id="P1"), busy)
               for _ in range(30)]  # fmt: skip
    refused = [trailing for _, status, trailing in limited
               if status is grpc.StatusCode.RESOURCE_EXHAUSTED]  # fmt: skip
    assert refused and refused[0]["retry-after"] in ("1", "2")
    assert refused[0]["hs-refusal"] == "rate.limited"

    calls = 2 + 3 + len(denials) + 1 + len(limited)  # and one REST request
    stored = read_all(kafka_bootstrap, edge_url.audit_topic, expected=calls + 1, timeout=30)
    entries = [audit.from_record(codec.decode(v).record).request for _, v in stored]
    grpc_entries = [e for e in entries if e.operation.startswith("gRPC ")]
    assert len(grpc_entries) == calls
    assert ("gRPC healthstream.edge.v1.Edge/ListObservations", "PERMISSION_DENIED") in {
        (e.operation, "PERMISSION_DENIED") for e in grpc_entries if e.reason == "scope.missing"
    }
    assert {(e.reason, e.status) for e in grpc_entries if e.outcome is audit.Outcome.DENIED} >= {
        ("token.missing", 401), ("patient.other_person", 403), ("rate.limited", 429),
        ("request.cursor", 400),
    }  # fmt: skip


def test_grpc_streams_alerts_acknowledges_and_answers_health_and_reflection(
    edge_url: Running, codec: Codec, catalogue: SchemaCatalogue, schema_root: Path,
    kafka_bootstrap: str,
) -> None:  # fmt: skip
    alert = golden_example(catalogue.get("hs.vitals.Alert"), schema_root)
    alert |= {"patient_key": codec.keyring.pseudonym("H330102", "A"), "alert_id": "AL-7"}
    clinician = token(scope="user/*.read user/Flag.write")
    with grpc.insecure_channel(edge_url.grpc_target) as channel:
        stub = edge_pb2_grpc.EdgeStub(channel)
        stream = stub.StreamAlerts(
            pb.StreamAlertsRequest(), metadata=bearer_metadata(clinician), timeout=20
        )
        time.sleep(0.5)  # subscribed: only alerts from now on are streamed
        Projector(edge_url.store, codec).apply(
            [Consumed("alerts", 0, 0, None, codec.encode("hs.vitals.Alert", alert))]
        )
        event = next(iter(stream))
        stream.cancel()
        assert (event.alert.alert_id, event.alert.action) == ("AL-7", "OPENED") and event.position

        researcher = token(role="researcher", scope="user/*.read")
        denied = stub.StreamAlerts(pb.StreamAlertsRequest(), metadata=bearer_metadata(researcher))
        with pytest.raises(grpc.RpcError) as refused:
            next(iter(denied))
        failed: Any = refused.value  # a grpc.Call too
        assert failed.code() is grpc.StatusCode.PERMISSION_DENIED

        # the stubs' type hints do not know these methods: called by name
        health: Any = health_pb2_grpc.HealthStub(channel)
        checked = health.Check(health_pb2.HealthCheckRequest(service=grpc_api.SERVICE), timeout=5)
        assert checked.status == health_pb2.HealthCheckResponse.SERVING
        reflecting: Any = reflection_pb2_grpc.ServerReflectionStub(channel)
        reflected = reflecting.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        names = {s.name for s in next(iter(reflected)).list_services_response.service}
        assert grpc_api.SERVICE in names and "grpc.health.v1.Health" in names

    listed, *_ = grpc_call(edge_url.grpc_target, "ListAlerts",
                           pb.ListAlertsRequest(person_id="P1"), clinician)  # fmt: skip
    assert [a.alert_id for a in listed.items] == ["AL-7"]
    acknowledge = pb.AcknowledgeAlertRequest(alert_id="AL-7")
    acked, status, _ = grpc_call(edge_url.grpc_target, "AcknowledgeAlert", acknowledge, clinician)
    assert status is grpc.StatusCode.OK and acked.status == "acknowledged"
    (stored,) = read_all(kafka_bootstrap, edge_url.ack_topic, expected=1, timeout=20)
    assert codec.decode(stored[1]).record["alert_id"] == "AL-7"


def fhir_get(url: str, path: str, bearer: str | None = None, **params: Any) -> Any:
    """The status and the FHIR resource answered, `valid_r4`."""
    response = get(url, path, bearer, **params)
    assert response.headers["content-type"].startswith("application/fhir+json"), response.text
    return response.status_code, valid_r4(response.json())


def valid_r4(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource, after HAPI's reference validator found no error in it and fhir.resources
    parsed it."""
    assert hapi_errors(resource) == []
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    return resource


def test_the_fhir_view_is_valid_r4_paged_by_links_and_refuses_in_operation_outcomes(
    edge_url: Running,
) -> None:
    url, clinician = edge_url.url, token()
    status, patient = fhir_get(url, "/fhir/Patient/P1", clinician)
    assert status == 200 and patient["id"] == "P1" and patient["gender"] in ("male", "female")
    resident_id = next(i for i in patient["identifier"] if i["system"].endswith("10011.1.3"))
    assert resident_id["value"] == "****************23"  # masked for a clinician
    assert patient["meta"]["security"][0]["code"] == "MASKED"

    glucose = "http://loinc.org|2345-7"
    status, first = fhir_get(url, "/fhir/Observation", clinician, patient="Patient/P1",
                             code=glucose, _count=4)  # fmt: skip
    assert status == 200 and first["type"] == "searchset"
    pages, bundle = [first], first
    while next_link := {k["relation"]: k["url"] for k in bundle["link"]}.get("next"):
        assert next_link.startswith(f"{url}/fhir/Observation?")
        bundle = valid_r4(
            httpx.get(next_link, headers={"Authorization": f"Bearer {clinician}"}).json()
        )
        pages.append(bundle)
    assert [len(p.get("entry", [])) for p in pages] == [4, 4, 2]
    found = [e["resource"] for p in pages for e in p.get("entry", [])]
    assert [o["identifier"][0]["value"] for o in found] == [f"OBS-{n}" for n in range(0, 30, 3)]
    assert all(o["subject"]["reference"] == "Patient/P1" for o in found)
    assert found[0]["valueQuantity"]["system"] == "http://unitsofmeasure.org"

    since, until = (T0 + timedelta(hours=h) for h in (3, 5))
    _, window = fhir_get(url, "/fhir/Observation", clinician, patient="P1",
                         date=[f"ge{since.isoformat()}", f"lt{until.isoformat()}"])  # fmt: skip
    assert [e["resource"]["identifier"][0]["value"] for e in window["entry"]] == ["OBS-3", "OBS-4"]
    codes, day = f"{glucose},http://loinc.org|2160-0", T0.date().isoformat()
    _, either = fhir_get(url, "/fhir/Observation", clinician, patient="P1", code=codes, date=day)
    assert len(either["entry"]) == 16  # the results of T0's UTC day (08:00 to 23:00), either code

    _, limited = fhir_get(url, "/fhir/Patient/P1/$everything", clinician, _count=1)
    assert [e["resource"]["resourceType"] for e in limited["entry"]] == ["Patient", "Observation"]
    everything_scopes = token(scope="user/Patient.read user/Observation.read user/Condition.read")
    _, everything = fhir_get(url, "/fhir/Patient/P1/$everything", everything_scopes, _count=20)
    kinds = [e["resource"]["resourceType"] for e in everything["entry"]]
    assert kinds == ["Patient", "Condition"] + ["Observation"] * 20
    rest = httpx.get(next(k["url"] for k in everything["link"] if k["relation"] == "next"),
                     headers={"Authorization": f"Bearer {everything_scopes}"}).json()  # fmt: skip
    assert [e["resource"]["resourceType"] for e in rest["entry"]] == ["Observation"] * 10

    patient_b = token(role="patient", person_id="P2", scope="patient/*.read")
    refusals = {
        "no token": (fhir_get(url, "/fhir/Patient/P1"), 401),
        "other patient": (fhir_get(url, "/fhir/Observation", patient_b, patient="P1"), 403),
        "researcher": (fhir_get(url, "/fhir/Patient/P1", token(role="researcher")), 403),
        "bad date": (fhir_get(url, "/fhir/Observation", clinician, patient="P1",
                              date="yesterday"), 400),
        "bad count": (fhir_get(url, "/fhir/Observation", clinician, patient="P1",
                               _count=0), 400),
        "no patient": (fhir_get(url, "/fhir/Observation", clinician), 400),
        "unknown": (fhir_get(url, "/fhir/Patient/P9", clinician), 404),
    }  # fmt: skip
    for name, ((status, resource), expected) in refusals.items():
        assert (status, resource["resourceType"]) == (expected, "OperationOutcome"), name


@pytest.mark.parametrize("edge_url", ["postgresql"], indirect=True)
def test_schemathesis_finds_no_server_error_in_the_openapi_surface(
    edge_url: Running, tmp_path: Path
) -> None:
    """Generated requests (valid and invalid) for every REST and FHIR operation, on the
    PostgreSQL read model (stricter about text than SQLite: NUL bytes, for one): once with any
    person id, once with one that exists, so the requests reach the store."""
    edge_url.edge.limiter = RateLimiter(rate=10_000, capacity=10_000)  # no 429s to hide behind
    bearer = token(scope="user/*.read user/*.write")
    known = tmp_path / "known.toml"
    known.write_text('[parameters]\n"path.person_id" = "P1"\n"query.patient" = "P1"\n')
    for config in (None, known):
        config_file = ["--config-file", str(config)] if config else []
        run = subprocess.run(
            ["schemathesis", *config_file, "run", f"{edge_url.url}/openapi.json",
             "--checks", "not_a_server_error", "--header", f"Authorization: Bearer {bearer}",
             "--max-examples", "25", "--seed", "7", "--phases", "examples,coverage,fuzzing",
             "--exclude-path", "/alerts/stream", "--generation-database", "none",
             "--workers", "1", "--request-timeout", "10", "--suppress-health-check", "all",
             "--no-color"],
            capture_output=True, text=True, timeout=280, check=False, cwd=tmp_path,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        selected = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", run.stdout)
        assert selected, run.stdout[-2000:]
        chosen, total, tested = map(int, selected.groups())
        assert tested == chosen == total - 1  # every operation but the stream


def test_diagnoses_over_rest_grpc_and_fhir(edge_url: Running) -> None:
    clinician = token(scope="user/Patient.read user/Condition.read")
    listed = get(edge_url.url, "/persons/P1/conditions", clinician).json()["items"]
    assert [(c["icd10"]["code"], c["verification_status"]) for c in listed] == [
        ("E11.9", "CONFIRMED")
    ]
    assert get(edge_url.url, "/persons/P1/conditions", token()).status_code == 403  # no scope
    reply, status, _ = grpc_call(edge_url.grpc_target, "ListConditions",
                                 pb.ListConditionsRequest(person_id="P1"), clinician)  # fmt: skip
    assert status is grpc.StatusCode.OK
    assert [(c.icd10.code, c.icd11.code) for c in reply.items] == [("E11.9", "5A11")]
    _, bundle = fhir_get(edge_url.url, "/fhir/Condition", clinician, patient="Patient/P1")
    (entry,) = bundle["entry"]
    codes = [c["code"] for c in entry["resource"]["code"]["coding"]]
    assert codes == ["E11.9", "5A11"] and entry["resource"]["subject"]["reference"] == "Patient/P1"


def test_searches_sort_filter_and_say_which_parameters_they_ignored(edge_url: Running) -> None:
    url, clinician = edge_url.url, token(scope="user/*.read")
    glucose = "http://loinc.org|2345-7"
    pages, link = [], None
    _, bundle = fhir_get(url, "/fhir/Observation", clinician, subject="Patient/P1", code=glucose,
                         _sort="-date", _count=4)  # fmt: skip
    while True:
        pages.append(bundle)
        link = {k["relation"]: k["url"] for k in bundle["link"]}.get("next")
        if link is None:
            break
        bundle = valid_r4(httpx.get(link, headers={"Authorization": f"Bearer {clinician}"}).json())
    newest_first = [e["resource"]["identifier"][0]["value"] for p in pages for e in p["entry"]]
    assert newest_first == [f"OBS-{n}" for n in range(27, -1, -3)]
    rest = get(url, "/persons/P1/observations", clinician, code=glucose, _sort="-effective_at",
               _count=3).json()  # fmt: skip
    assert [o["observation_id"] for o in rest["items"]] == ["OBS-27", "OBS-24", "OBS-21"]
    request = pb.ListObservationsRequest(person_id="P1", codes=[glucose], page_size=2,
                                         newest_first=True)  # fmt: skip
    reply, *_ = grpc_call(edge_url.grpc_target, "ListObservations", request, clinician)
    assert [o.observation_id for o in reply.items] == ["OBS-27", "OBS-24"]
    assert get(url, "/fhir/Observation", clinician, patient="P1", _sort="value").status_code == 400

    icd10 = "http://hl7.org/fhir/sid/icd-10"
    for query, found in [
        ({"code": f"{icd10}|E11.9"}, 1), ({"code": f"{icd10}|I10,{icd10}|E11.9"}, 1),
        ({"code": f"{icd10}|I10"}, 0), ({"recorded-date": "lt2000-01-01"}, 0),
        ({"recorded-date": "ge2026-01-01", "_sort": "-recorded-date"}, 1),
    ]:  # fmt: skip
        _, conditions = fhir_get(url, "/fhir/Condition", clinician, patient="P1", **query)
        assert len(conditions.get("entry", [])) == found, query
    both = get(url, "/fhir/Condition", clinician, patient="P1", subject="Patient/P2")
    assert both.status_code == 400

    # unknown parameters: refused when strict; else ignored, and the Bundle says which
    strict = get(url, "/fhir/Observation", clinician, patient="P1", **{"value-quantity": "gt5"})
    assert strict.status_code == 400 and "value-quantity" in strict.text
    lenient = valid_r4(httpx.get(
        f"{url}/fhir/Observation", params={"patient": "P1", "value-quantity": "gt5", "_count": 2},
        headers={"Authorization": f"Bearer {clinician}"}, timeout=10,
    ).json())  # fmt: skip
    *matches, said = lenient["entry"]
    assert len(matches) == 2 and said["search"]["mode"] == "outcome"
    (issue,) = said["resource"]["issue"]
    assert issue["severity"] == "warning" and "value-quantity" in issue["diagnostics"]


@pytest.mark.parametrize("edge_url", ["postgresql"], indirect=True)
def test_a_lost_database_connection_is_a_503_then_served_again(
    edge_url: Running, postgres_dsn: str
) -> None:
    clinician = token()
    assert get(edge_url.url, "/persons/P1", clinician).status_code == 200
    backend = edge_url.store.db.execute("SELECT pg_backend_pid()").fetchone()[0]
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:  # as a PostgreSQL restart does
        admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
    lost = get(edge_url.url, "/persons/P1", clinician)
    assert (lost.status_code, lost.json()["title"]) == (503, "store.unavailable")
    assert lost.headers["Retry-After"] == "1"
    assert get(edge_url.url, "/persons/P1", clinician).status_code == 200  # connected again


@pytest.mark.parametrize("edge_url", ["sqlite"], indirect=True)
def test_nothing_is_served_unaudited_and_a_failure_is_audited(
    edge_url: Running, runtime_settings: RuntimeSettings, codec: Codec, kafka_bootstrap: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    clinician = token()

    def broken(person_id: str) -> None:
        raise RuntimeError(f"a bug that names {person_id}")

    monkeypatch.setattr(edge_url.store, "person", broken)
    failed = get(edge_url.url, "/persons/P1", clinician)
    assert (failed.status_code, failed.json()["title"]) == (500, "internal.error")
    assert "P1" not in failed.text
    _, status, trailing = grpc_call(edge_url.grpc_target, "GetPerson",
                                    pb.GetPersonRequest(person_id="P1"), clinician)  # fmt: skip
    assert (status, trailing["hs-refusal"]) == (grpc.StatusCode.INTERNAL, "internal.error")
    stored = read_all(kafka_bootstrap, edge_url.audit_topic, expected=2, timeout=20)
    reasons = [audit.from_record(codec.decode(v).record).request.reason for _, v in stored]
    assert reasons == ["internal.error", "internal.error"]
    monkeypatch.undo()

    unwritable = AsyncDurableProducer(runtime_settings, "edge-test-down", timeout=1.0)
    edge_url.edge.trail = AuditTrail(
        unwritable, codec, "no-such-topic", audit.Chain("down@1", codec.keyring)
    )
    try:
        refused = get(edge_url.url, "/persons/P1", clinician)
        assert (refused.status_code, refused.json()["title"]) == (503, "audit.unavailable")
        assert "330102" not in refused.text  # nothing of the person
        _, status, _ = grpc_call(edge_url.grpc_target, "GetPerson",
                                 pb.GetPersonRequest(person_id="P1"), clinician)  # fmt: skip
        assert status is grpc.StatusCode.UNAVAILABLE
    finally:
        unwritable.close()


def test_a_person_is_found_by_resident_id_or_patient_number_on_every_surface(
    edge_url: Running, codec: Codec, kafka_bootstrap: str
) -> None:
    url, clinician = edge_url.url, token()
    resident_id = "330102198703150023"  # the golden example's, which P1 and P2 both carry

    def found(bearer: str, identifier: str) -> list[str]:
        answer = get(url, "/persons", bearer, identifier=identifier)
        assert answer.status_code == 200, answer.text
        return [p["person_id"] for p in answer.json()["items"]]

    assert found(clinician, "H330102|A") == ["P1"]  # an institution's patient number
    assert found(clinician, "urn:hs:local:H330102:patient|B") == ["P1"]
    assert found(clinician, resident_id) == ["P1", "P2"]  # one number, two persons: both shown
    assert found(clinician, f"urn:oid:2.16.156.10011.1.3|{resident_id}") == ["P1", "P2"]
    assert found(clinician, "H330102|nobody") == []
    item = get(url, "/persons", clinician, identifier="H330102|A").json()["items"][0]
    assert item["golden"]["id_number"] == "****************23"  # masked, as when read
    patient = token(role="patient", person_id="P1", sub="patient-1", scope="patient/*.read")
    assert found(patient, resident_id) == ["P1"]  # a patient finds only themselves
    researcher = token(role="researcher", scope="user/*.read")
    assert get(url, "/persons", researcher, identifier=resident_id).status_code == 403
    bad = get(url, "/persons", clinician, identifier="|123")
    assert (bad.status_code, bad.json()["title"]) == (400, "request.identifier")

    status, bundle = fhir_get(url, "/fhir/Patient", clinician, identifier="H330102|A")
    assert status == 200 and bundle["total"] == 1
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["P1"]
    assert fhir_get(url, "/fhir/Patient", researcher, identifier=resident_id)[0] == 403

    search = pb.SearchPersonsRequest(identifier="H330102|B")
    reply, code, _ = grpc_call(edge_url.grpc_target, "SearchPersons", search, clinician)
    assert code == grpc.StatusCode.OK and [p.person_id for p in reply.persons] == ["P1"]
    assert reply.persons[0].golden.id_number == "****************23"

    entries = [audit.from_record(codec.decode(v).record).request
               for _, v in read_all(kafka_bootstrap, edge_url.audit_topic, idle=2)]  # fmt: skip
    served = [(e.subject, e.person_id) for e in entries if e.reason == "person.found"]
    assert ("patient-1", "P1") in served and ("patient-1", "P2") not in served
    assert served.count(("nurse-7", "P1")) >= 6  # each person found is an audit entry


def test_a_person_is_found_by_name_and_birth_date_and_a_namesake_scores_as_one(
    edge_url: Running, codec: Codec, catalogue: SchemaCatalogue, schema_root: Path
) -> None:
    person = golden_example(catalogue.get("hs.identity.Person"), schema_root)
    first17 = "33010219900501001"
    namesake = person | {
        "person_id": "P3", "record_keys": ["k-namesake"],
        "golden": person["golden"] | {"birth_date": date(1990, 5, 1),
                                      "id_number": first17 + check_digit(first17)},
    }  # fmt: skip
    value = codec.encode("hs.identity.Person", namesake)
    headers = tuple(writer_headers(codec, value))
    Projector(edge_url.store, codec).apply([Consumed("t", 0, 99, None, value, headers)])
    url, clinician = edge_url.url, token()

    def ranked(**query: str) -> list[tuple[str, str, float]]:
        answer = get(url, "/persons", clinician, **query)
        assert answer.status_code == 200, answer.text
        return [(i["person_id"], i["match_grade"], i["score"]) for i in answer.json()["items"]]

    wanted = {"name": "王小明", "birthdate": "1987-03-15", "gender": "male"}
    best = ranked(**wanted)
    assert [p for p, _, _ in best] == ["P1", "P2", "P3"]
    assert best[0][2] > 0.5 and best[0][1] != "certainly-not"
    assert best[2][2] < best[0][2] and best[2][1] in ("possible", "certainly-not")
    evidence = get(url, "/persons", clinician, **wanted).json()["items"][2]["evidence"]
    assert {e["comparison"]: e["level"] for e in evidence}["birth_date"] != "exact"
    assert [p for p, _, _ in ranked(name="Wang Xiaoming", birthdate="1987-03-15")][:2] == [
        "P1", "P2",
    ]  # pinyin, as a clerk types it  # fmt: skip
    assert [p for p, _, _ in ranked(name="xiaoming wang", birthdate="1987-03-15")][:2] == [
        "P1", "P2",
    ]  # given name first  # fmt: skip
    assert ranked(birthdate="1990-05-01")[0][0] == "P3"
    assert get(url, "/persons", clinician, gender="male").status_code == 400  # nothing to go by
    researcher = token(role="researcher", scope="user/*.read")
    assert get(url, "/persons", researcher, name="王小明").status_code == 403

    status, bundle = fhir_get(url, "/fhir/Patient", clinician, **wanted)
    assert status == 200 and [e["resource"]["id"] for e in bundle["entry"]] == ["P1", "P2", "P3"]
    scores = [e["search"]["score"] for e in bundle["entry"]]
    assert scores == sorted(scores, reverse=True)
    parameters = {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": {
            "resourceType": "Patient", "name": [{"family": "王", "given": ["小明"]}],
            "birthDate": "1990-05-01", "gender": "male",
            "identifier": [{"system": "urn:oid:2.16.156.10011.1.3",
                            "value": first17 + check_digit(first17)}]}},
        {"name": "count", "valueInteger": 2},
    ]}  # fmt: skip
    posting = {"Authorization": f"Bearer {clinician}", "Content-Type": "application/fhir+json"}
    matched = httpx.post(f"{url}/fhir/Patient/$match", json=parameters, headers=posting, timeout=10)
    assert matched.status_code == 200, matched.text
    result = valid_r4(matched.json())
    assert result["entry"][0]["resource"]["id"] == "P3"
    grades = [e["search"]["extension"][0]["valueCode"] for e in result["entry"]]
    assert len(grades) == 2 and grades[0] in ("certain", "probable")

    search = pb.SearchPersonsRequest(name="王小明", birth_date="1987-03-15", gender="male")
    reply, code, _ = grpc_call(edge_url.grpc_target, "SearchPersons", search, clinician)
    assert code == grpc.StatusCode.OK
    assert [p.person_id for p in reply.persons] == ["P1", "P2", "P3"]
    assert list(reply.scores) == sorted(reply.scores, reverse=True)


def _screenshot(svg: bytes, folder: Path) -> Image.Image:
    """The SVG as headless Chromium renders it."""
    page, shot = folder / "chart.svg", folder / "chart.png"
    page.write_bytes(svg)
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--window-size={charts.WIDTH},{charts.HEIGHT}", f"--screenshot={shot}", page.as_uri()],
        capture_output=True, timeout=90, check=True,
    )  # fmt: skip
    return Image.open(shot).convert("RGB")


def _near(image: Image.Image, x: float, y: float, colour: str) -> bool:
    """Whether a pixel within 2 px of (x, y) has `colour` (within antialiasing)."""
    want = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    around = [image.getpixel((int(x) + dx, int(y) + dy)) for dx in range(-2, 3)
              for dy in range(-2, 3)]  # fmt: skip
    return any(
        isinstance(p, tuple) and all(abs(a - b) <= 40 for a, b in zip(p, want, strict=True))
        for p in around
    )


def test_a_trend_chart_renders_in_a_browser_with_its_range_and_its_abnormal_results(
    edge_url: Running, tmp_path: Path
) -> None:
    url, clinician = edge_url.url, token()
    answer = get(url, "/persons/P1/trend/chart", clinician, code="http://loinc.org|2345-7")
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/svg+xml"
    document = answer.text
    dots = [(float(x), float(y), kind) for kind, x, y in re.findall(
        r'<circle class="(\w+)" cx="([\d.]+)" cy="([\d.]+)"', document)]  # fmt: skip
    assert len(dots) == 10  # the ten glucose results
    assert {kind for _, _, kind in dots} == {"outside"}  # 7.8 mmol/L: above 3.9-6.1
    band = re.search(r'<rect class="band" x="[\d.]+" y="([\d.]+)" width="[\d.]+" '
                     r'height="([\d.]+)"', document)  # fmt: skip
    assert band is not None
    shot = _screenshot(answer.content, tmp_path)  # what a clinician's browser shows
    assert shot.size == (charts.WIDTH, charts.HEIGHT)
    assert all(_near(shot, x, y, charts.ABNORMAL) for x, y, _ in dots)
    band_top, band_height = float(band.group(1)), float(band.group(2))
    assert _near(shot, charts.LEFT + 200, band_top + band_height / 2, charts.REFERENCE_FILL)
    png = get(url, "/persons/P1/trend/chart", clinician, code="http://loinc.org|2345-7",
              image="png")  # fmt: skip
    assert png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size == (charts.WIDTH, charts.HEIGHT)
    egfr = get(url, "/persons/P1/egfr/chart", clinician)
    assert egfr.status_code == 200 and ">G" in egfr.text  # on the KDIGO categories
    patient = token(role="patient", person_id="P1", sub="patient-1", scope="patient/*.read")
    assert get(url, "/persons/P2/egfr/chart", patient).status_code == 403


def test_the_capability_statement_lists_what_is_served_and_everything_it_lists_answers(
    edge_url: Running,
) -> None:
    url, clinician = edge_url.url, token(scope="user/*.read")
    status, statement = fhir_get(url, "/fhir/metadata")  # no token, as FHIR servers answer it
    assert status == 200 and statement["fhirVersion"] == "4.0.1"
    [rest] = statement["rest"]
    listed = {r["type"]: r for r in rest["resource"]}
    assert set(listed) == {"Patient", "Observation", "Condition", "MeasureReport"}
    values = {"identifier": "H330102|A", "name": "王小明", "birthdate": "1987-03-15",
              "gender": "male", "patient": "Patient/P1", "code": "http://loinc.org|2345-7",
              "date": "ge2026-01-01", "category": "laboratory",
              "patient.identifier": "H330102|A", "subject": "Patient/P1",
              "recorded-date": "ge2026-01-01", "reporter": "Organization/H330102",
              "period": "ge2026-01-01"}  # fmt: skip
    quality = token(
        role="administrator", client_id="admin-console", scope="user/MeasureReport.read"
    )
    for kind, resource in listed.items():
        for param in resource["searchParam"]:
            query = {param["name"]: values[param["name"]]}
            if kind == "MeasureReport":
                query["reporter"] = values["reporter"]
            elif kind != "Patient" and param["name"] not in (
                "patient",
                "patient.identifier",
                "subject",
            ):
                query["patient"] = "P1"
            elif kind == "Patient" and "documentation" in param:  # gender: with a birth date
                query["birthdate"] = values["birthdate"]
            bearer = quality if kind == "MeasureReport" else clinician
            answered, bundle = fhir_get(url, f"/fhir/{kind}", bearer, **query)
            assert answered == 200 and bundle["type"] == "searchset", (kind, param)
        for include in resource.get("searchInclude", []):
            found = fhir_get(url, f"/fhir/{kind}", clinician, patient="P1", _include=include)[1]
            assert found["entry"][0]["search"]["mode"] == "include"
        codes = {i["code"] for i in resource["interaction"]}
        if "read" in codes:
            assert fhir_get(url, f"/fhir/{kind}/P1", clinician)[0] == 200
        for operation in resource.get("operation", []):
            if operation["name"] == "everything":
                assert fhir_get(url, "/fhir/Patient/P1/$everything", clinician)[0] == 200
            else:
                patient = {"resourceType": "Patient", "birthDate": "1987-03-15"}
                body = {"resourceType": "Parameters",
                        "parameter": [{"name": "resource", "resource": patient}]}  # fmt: skip
                headers = {"Authorization": f"Bearer {clinician}"}
                posted = httpx.post(f"{url}/fhir/Patient/${operation['name']}", json=body,
                                    headers=headers, timeout=10)  # fmt: skip
                assert posted.status_code == 200, posted.text
                valid_r4(posted.json())


def test_a_recent_result_from_another_institution_stands_in_for_a_repeat_test(
    edge_url: Running, codec: Codec, catalogue: SchemaCatalogue, schema_root: Path
) -> None:
    observation = golden_example(catalogue.get("hs.clinical.Observation"), schema_root)
    observation |= {
        "observation_id": "CREA-RECENT",
        "effective_at": datetime.now(UTC) - timedelta(days=3),
    }
    observation["subject"]["local_patient_id"] = "A"
    observation["result"]["code"] = CREATININE
    value = codec.encode("hs.clinical.Observation", observation)
    Projector(edge_url.store, codec).apply([Consumed("t", 0, 98, None, value)])
    url, clinician = edge_url.url, token()

    def check(code: str, ordering: str = "HZ01") -> httpx.Response:
        return get(url, "/persons/P1/recent-results", clinician, code=code, ordering=ordering)

    creatinine = check("http://loinc.org|2160-0").json()
    assert creatinine["avoidable"] and creatinine["window_days"] == 30
    assert [i["observation_id"] for i in creatinine["items"]] == ["CREA-RECENT"]
    assert creatinine["from_other_institutions"] == 1  # done at H330102, ordered at HZ01
    assert creatinine["items"][0]["reference_range"] and creatinine["items"][0]["institution"]
    glucose = check("http://loinc.org|2345-7").json()  # March's results: older than a day
    assert not glucose["avoidable"] and glucose["items"] == []
    unknown = check("http://loinc.org|1234-5")
    assert (unknown.status_code, unknown.json()["title"]) == (422, "recognition.no_window")
    assert check("http://loinc.org|2160-0", ordering="HZ01'; --").status_code == 400
    registry = edge_url.edge.registry
    counted = {outcome: registry.get_sample_value("hs_edge_recent_result_checks_total",
                                                  {"institution": "HZ01", "outcome": outcome})
               for outcome in ("avoidable", "needed")}  # fmt: skip
    assert counted == {"avoidable": 1.0, "needed": 1.0}


def test_results_and_diagnoses_are_found_by_a_patient_number_at_an_institution(
    edge_url: Running,
) -> None:
    url, clinician = edge_url.url, token(scope="user/*.read")
    chained = {"patient.identifier": "H330102|B", "code": "http://loinc.org|2345-7", "_count": 50}
    by_number = fhir_get(url, "/fhir/Observation", clinician, **chained)[1]
    by_person = fhir_get(url, "/fhir/Observation", clinician, patient="P1",
                         code="http://loinc.org|2345-7", _count=50)[1]  # fmt: skip
    ids = [e["resource"]["id"] for e in by_number["entry"]]
    assert ids and ids == [e["resource"]["id"] for e in by_person["entry"]]  # the whole person
    conditions = fhir_get(url, "/fhir/Condition", clinician, **{"patient.identifier": "H330102|A"})
    assert conditions[0] == 200 and conditions[1]["entry"][0]["resource"]["code"]
    nobody = fhir_get(url, "/fhir/Observation", clinician, **{"patient.identifier": "H330102|Z"})
    assert nobody[0] == 200 and nobody[1]["total"] == 0
    several = fhir_get(
        url, "/fhir/Condition", clinician, **{"patient.identifier": "330102198703150023"}
    )  # P1 and P2 share it
    assert several[0] == 409
    both = fhir_get(
        url, "/fhir/Condition", clinician, patient="P1", **{"patient.identifier": "x|y"}
    )
    assert both[0] == 400
