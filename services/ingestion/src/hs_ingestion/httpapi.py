"""The HTTP intake (FastAPI): FHIR R4 resources and Bundles, clinic JSON and CSV, wearable
reading batches. What is kept and what is answered is decided by `httpintake.receive_http`
(pure); this module reads the request, writes to Kafka (acks=all) before answering and
answers: 503 with Retry-After when Kafka did not confirm the write. The sending source is
the path segment, or the X-HS-Source header for /fhir; with sender tokens configured it must
prove it with `Authorization: Bearer <its token>` (`sender_tokens`)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from hmac import compare_digest

from fastapi import FastAPI, Header, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter

from hs_common.deadletter import DeadLetter, Origin
from hs_common.errors import NotStoredError
from hs_ingestion.httpintake import (
    FORMATS,
    STAGE,
    Answer,
    ItemRefusal,
    Kept,
    door_error,
    not_stored,
    receive_http,
)
from hs_ingestion.sources import SourceRegistry
from hs_ingestion.store import Store

__all__ = ["FORMATS", "Intake", "create_app"]
log = logging.getLogger(__name__)


class Intake:
    def __init__(
        self,
        sources: SourceRegistry,
        store: Store,
        registry: CollectorRegistry,
        max_body_bytes: int,
        senders: Mapping[str, str] | None = None,
    ) -> None:
        self.sources = sources
        self.store = store
        self.max_body_bytes = max_body_bytes
        self.senders = senders  # source code -> SHA-256 (hex) of its bearer token; None: open
        self.answers = Counter(
            "hs_http_answers", "HTTP intake answers by status", ["status"], registry=registry
        )

    async def receive(
        self, request: Request, source_code: str, formats: tuple[str, ...]
    ) -> Response:
        """An HTTP request: its size checked before the body is read (when declared) and as
        it arrives, then `receive_body`."""
        declared = request.headers.get("content-length", "")
        over = declared.isdigit() and int(declared) > self.max_body_bytes
        proven = self._proven(source_code, request.headers.get("authorization", ""))
        body = None if over or not proven else await _body(request, self.max_body_bytes)
        if not proven:
            detail = "send this source's own token: Authorization: Bearer <token>"
            refusal = door_error(formats == ("fhir",), 401, detail, "http.sender_unauthenticated")
            response = _response(refusal)
        elif body is None:
            detail = f"at most {self.max_body_bytes} bytes"
            response = _response(door_error(formats == ("fhir",), 413, detail, "http.too_large"))
        else:
            peer = f"{request.client.host}:{request.client.port}" if request.client else None
            response = await self.receive_body(
                source_code,
                formats,
                request.headers.get("content-type", ""),
                body,
                peer,
                request.headers.get("x-request-id"),
            )
        self.answers.labels(str(response.status_code)).inc()
        return response

    def _proven(self, source_code: str, authorization: str) -> bool:
        """Whether the request carries the token of the source it names (always, when no
        tokens are configured)."""
        if self.senders is None:
            return True
        scheme, _, token = authorization.partition(" ")
        expected = self.senders.get(source_code)
        offered = hashlib.sha256(token.strip().encode()).hexdigest()
        return (
            scheme.lower() == "bearer"
            and expected is not None
            and compare_digest(offered, expected)
        )

    async def receive_body(
        self,
        source_code: str,
        formats: tuple[str, ...],
        content_type: str,
        body: bytes,
        peer: str | None,
        request_id: str | None,
    ) -> Response:
        """The door for every non-MLLP body (HTTP, batch import): decide, store, answer."""
        decision = receive_http(
            source_code,
            formats,
            content_type,
            body,
            self.sources,
            self.store.codec.keyring,
            self.max_body_bytes,
            request_id,
        )
        source = self.sources.get(source_code)
        fhir_door = formats == ("fhir",) or (source is not None and source.format == "fhir")
        origin = Origin(
            "HTTP",
            peer=peer,
            sender_message_id=request_id,
            content_type=content_type.partition(";")[0].strip().lower() or None,
        )
        institution = source.code if source is not None else "unknown"
        try:
            for refusal in decision.refusals:
                await self._item_letter(refusal, origin, institution)
            if isinstance(decision, Kept):
                await self.store.keep(decision.record, decision.key)
            elif decision.dead_letter:
                await self.store.refuse(
                    STAGE,
                    decision.reason_code,
                    decision.reason,
                    body,
                    origin,
                    decision.institution,
                )
        except NotStoredError:
            return _response(not_stored(fhir_door))
        return _response(decision.answer)

    async def _item_letter(self, refusal: ItemRefusal, origin: Origin, institution: str) -> None:
        """One entry of a batch that could not be kept, as its own dead letter."""
        letter = DeadLetter(
            STAGE,
            refusal.reason_code,
            refusal.reason,
            refusal.original,
            origin,
            institution,
            institution,
            item=refusal.item,
        )
        await self.store.producer.write(
            self.store.dead_letter_topic, letter.encode(self.store.codec), letter.key
        )


async def _body(request: Request, limit: int) -> bytes | None:
    """The body as it arrives; None once more than `limit` bytes came (declared or chunked)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _response(answer: Answer) -> Response:
    content = (
        b""
        if answer.body is None
        else json.dumps(answer.body, ensure_ascii=False, separators=(",", ":")).encode()
    )
    return Response(
        content,
        status_code=answer.status,
        media_type=answer.media_type,
        headers=dict(answer.headers),
    )


def create_app(intake: Intake) -> FastAPI:
    app = FastAPI(
        title="HealthStream ingestion",
        version="0.1.0",
        description="The single door into HealthStream for HTTP senders. Every accepted body is "
        "stored (Kafka, acks=all) before it is answered; every refused one is kept as a dead "
        "letter. The FHIR door answers as a FHIR R4 server: 201 Created with Location for a "
        "resource, a transaction-response or batch-response Bundle, OperationOutcome errors.",
    )

    @app.post(
        "/fhir",
        status_code=201,
        summary="A FHIR R4 resource, or a Bundle (transaction, batch, collection, message, "
        "document)",
    )
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
