"""The HTTP intake (FastAPI): FHIR R4 resources and Bundles, clinic JSON and CSV, wearable
reading batches. Each body is checked, then written to Kafka (acks=all) before the answer:
202 when kept on the raw topic; 400 (malformed) or 422 (wrong shape) with an RFC 7807
problem document listing every bad field, the body kept as a dead letter; 503 with
Retry-After when Kafka did not confirm the write. The sending source is the path segment,
or the X-HS-Source header for /fhir."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, Counter

from hs_common.deadletter import Origin
from hs_common.envelope import new_envelope
from hs_common.errors import NotStoredError
from hs_ingestion.payloads import (
    Checked,
    FieldProblem,
    check_clinic_json,
    check_csv,
    check_device_batch,
    check_fhir,
)
from hs_ingestion.sources import Source, SourceRegistry
from hs_ingestion.store import Store

log = logging.getLogger(__name__)
STAGE = "ingestion.http"
PROBLEM_JSON = "application/problem+json"


def problem(
    status: int,
    title: str,
    detail: str,
    reason_code: str,
    errors: Sequence[FieldProblem] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"urn:hs:problem:{reason_code}",
        "title": title,
        "status": status,
        "detail": detail,
        "reason_code": reason_code,
    }
    if errors:
        body["errors"] = [{"field": e.field, "problem": e.problem} for e in errors]
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


class Intake:
    def __init__(
        self,
        sources: SourceRegistry,
        store: Store,
        registry: CollectorRegistry,
        max_body_bytes: int,
    ) -> None:
        self.sources = sources
        self.store = store
        self.max_body_bytes = max_body_bytes
        self.answers = Counter(
            "hs_http_answers", "HTTP intake answers by status", ["status"], registry=registry
        )

    async def receive(
        self, request: Request, source_code: str, formats: tuple[str, ...]
    ) -> Response:
        """An HTTP request: size checked before the body is read, then `receive_body`."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            response: Response = _too_large(self.max_body_bytes)
        else:
            peer = f"{request.client.host}:{request.client.port}" if request.client else None
            response = await self.receive_body(
                source_code,
                formats,
                request.headers.get("content-type", ""),
                await request.body(),
                peer,
                request.headers.get("x-request-id"),
            )
        self.answers.labels(str(response.status_code)).inc()
        return response

    async def receive_body(
        self,
        source_code: str,
        formats: tuple[str, ...],
        content_type: str,
        body: bytes,
        peer: str | None,
        request_id: str | None,
    ) -> JSONResponse:
        """The door for every non-MLLP body (HTTP, batch import): check, store, answer."""
        source = self.sources.get(source_code)
        if source is None or source.format not in formats:
            return problem(
                404,
                "Unknown source",
                "no registered source of this kind has this code",
                "http.unknown_source",
            )
        accepted_types, make_check, patient_field = FORMATS[source.format]
        media_type, _, parameters = content_type.partition(";")
        media_type = media_type.strip().lower()
        if media_type not in accepted_types:
            return problem(
                415,
                "Unsupported media type",
                f"send one of {list(accepted_types)}",
                "http.media_type",
            )
        if len(body) > self.max_body_bytes:
            return _too_large(self.max_body_bytes)
        charset = source.charset or _charset(parameters)
        checked = make_check(source)(body, charset)
        received_at = datetime.now(UTC)
        if checked.problems:
            try:
                await self._dead_letter(body, source, media_type, checked, peer, request_id)
            except NotStoredError:
                return self._not_stored()
            status = 400 if checked.document is None else 422
            return problem(
                status,
                "Invalid input",
                "the body was kept as a dead letter; fix and resend",
                checked.reason_code,
                checked.problems,
            )
        record: dict[str, Any] = {
            "envelope": new_envelope(source.code, source.code, received_at, received_at),
            "payload": body,
            "content_type": media_type,
            "charset": charset,
            "transport": "HTTP",
            "sender_message_id": request_id,
            "content_sha256": hashlib.sha256(body).digest(),
        }
        patient = _patient_reference(checked.document, patient_field)
        key = self.store.codec.keyring.pseudonym(source.code, patient or source.code)
        try:
            await self.store.keep(record, key)
        except NotStoredError:
            return self._not_stored()
        envelope = record["envelope"]
        return JSONResponse(
            {
                "status": "stored",
                "event_id": envelope["event_id"],
                "trace_id": envelope["trace_id"],
            },
            status_code=202,
        )

    def _not_stored(self) -> JSONResponse:
        return problem(
            503,
            "Not stored",
            "the platform could not store the body; resend later",
            "not_stored",
            headers={"Retry-After": "5"},
        )

    async def _dead_letter(
        self,
        body: bytes,
        source: Source,
        content_type: str,
        checked: Checked,
        peer: str | None,
        request_id: str | None,
    ) -> None:
        reason = "; ".join(f"{p.field or 'body'}: {p.problem}" for p in checked.problems[:20])
        origin = Origin("HTTP", peer=peer, sender_message_id=request_id, content_type=content_type)
        await self.store.refuse(STAGE, checked.reason_code, reason, body, origin, source.code)


def _too_large(limit: int) -> JSONResponse:
    return problem(413, "Body too large", f"at most {limit} bytes", "http.too_large")


# source format -> (accepted media types, the check for a source, the field naming the patient)
FORMATS: dict[
    str, tuple[tuple[str, ...], Callable[[Source], Callable[[bytes, str], Checked]], str]
] = {
    "fhir": (("application/fhir+json", "application/json"), lambda _: check_fhir, "id"),
    "clinic-json": (("application/json",), lambda _: check_clinic_json, "jmbh"),
    "clinic-csv": (
        ("text/csv",),
        lambda source: lambda body, charset: check_csv(body, source.required_columns, charset),
        "",
    ),
    "device-batch": (("application/json",), lambda _: check_device_batch, "patient_ref"),
}


def _charset(parameters: str) -> str:
    for parameter in parameters.split(";"):
        name, _, value = parameter.strip().partition("=")
        if name.lower() == "charset" and value:
            return value.strip('"').lower()
    return "utf-8"


def _patient_reference(document: Any, field: str) -> str | None:
    if isinstance(document, dict):
        value = document.get(field)
        if isinstance(value, str):
            return value
        entries = document.get("entry")
        if isinstance(entries, list):
            for entry in entries:
                resource = entry.get("resource", {}) if isinstance(entry, dict) else {}
                if resource.get("resourceType") == "Patient":
                    return str(resource.get("id"))
                subject = resource.get("subject", {})
                if isinstance(subject, dict) and isinstance(subject.get("reference"), str):
                    return str(subject["reference"]).removeprefix("Patient/")
    return None


def create_app(intake: Intake) -> FastAPI:
    app = FastAPI(
        title="HealthStream ingestion",
        version="0.1.0",
        description="The single door into HealthStream for HTTP senders. Every accepted body is "
        "stored (Kafka, acks=all) before the 202; every refused one is kept as a dead letter.",
    )

    @app.post("/fhir", status_code=202, summary="A FHIR R4 resource or transaction Bundle")
    async def fhir(
        request: Request, x_hs_source: str = Header(..., description="The sending source's code")
    ) -> Response:
        return await intake.receive(request, x_hs_source, ("fhir",))

    @app.post(
        "/ingest/clinics/{source}",
        status_code=202,
        summary="A clinic's own JSON record or CSV batch",
    )
    async def clinic(request: Request, source: str) -> Response:
        return await intake.receive(request, source, ("clinic-json", "clinic-csv"))

    @app.post("/ingest/devices/{source}", status_code=202, summary="A batch of wearable readings")
    async def devices(request: Request, source: str) -> Response:
        return await intake.receive(request, source, ("device-batch",))

    @app.get("/health", summary="Liveness")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
