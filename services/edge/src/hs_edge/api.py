"""The REST surface: the edge's operations from the read model, behind bearer tokens, scopes,
roles and per-client rate limits. Every request, allowed or denied, is written to the audit
trail (acks=all) before it is answered; when the trail cannot be written, the answer is 503
and nothing is served."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, unquote_plus

from fastapi import FastAPI, Query, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hs_common.errors import NotStoredError
from hs_edge import clients, fhir_api, platform, quality
from hs_edge import operations as op
from hs_edge.auth import Caller, Refused, Role
from hs_edge.fhir_api import is_fhir
from hs_edge.operations import Edge
from hs_edge.store import StoreUnavailable

log = logging.getLogger("hs.edge.api")
MAX_BODY = 16 * 1024  # bytes: every request body here is small
PUBLIC = frozenset({"/oauth/token", "/healthz", "/docs", "/openapi.json", "/fhir/metadata"})


def problem(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    body = {"type": f"urn:hs:problem:{code}", "title": code, "status": status, "detail": detail}
    return JSONResponse(body, status, headers=headers, media_type="application/problem+json")


def refusal(
    request: Request, status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> Response:
    """A problem document (RFC 9457), or an OperationOutcome on the FHIR view."""
    render = fhir_api.outcome if is_fhir(request) else problem
    return render(status, code, detail, headers)


def check_size(request: Request) -> None:
    length = request.headers.get("content-length", "0")
    if not length.isdigit() or int(length) > MAX_BODY:
        raise Refused("request.too_large", f"request bodies are limited to {MAX_BODY} bytes", 413)


async def _read_body(receive: Receive) -> Receive:
    """A `receive` handing the app the whole body, read first and counted as it arrived (a
    chunked body declares no length); Refused once more than MAX_BODY bytes have come."""
    body, more = bytearray(), True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) > MAX_BODY:
            raise Refused(
                "request.too_large", f"request bodies are limited to {MAX_BODY} bytes", 413
            )
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()  # what comes after the body: the client's disconnect
        delivered = True
        return {"type": "http.request", "body": bytes(body), "more_body": False}

    return replay


class Guard:
    """The ASGI middleware every request passes: authenticate, limit, serve, and audit it
    whatever its outcome. The audit entry is written (acks=all) when the answer starts, before
    any of it is sent; when it cannot be written, the answer is a 503 instead."""

    def __init__(self, app: ASGIApp, edge: Edge) -> None:
        self.app, self.edge = app, edge

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        answer = _Answer(self.edge, request, send)
        op.serving_request()
        try:
            self._admit(request, answer)
            receive = await _read_body(receive)
            await self.app(scope, receive, answer.send)
        except Refused as refused:
            answer.caller = answer.caller or refused.caller
            await answer.refuse(refused.status, refused.code, str(refused), refused.headers)
        except Exception as error:  # noqa: BLE001 - answered and audited, whatever it was
            # the type only: an exception's text may hold personal data
            log.error("request failed", extra={"error": type(error).__name__})  # noqa: TRY400
            await answer.refuse(500, "internal.error", "the request could not be served")

    def _admit(self, request: Request, answer: _Answer) -> None:
        """The caller on the answer and in the request's state, or Refused: body too large, or
        refused by `operations.admit`."""
        check_size(request)
        admitted = op.admit(
            self.edge,
            request.headers.get("authorization"),
            request.client.host if request.client else "unknown",
            public=request.url.path in PUBLIC,
        )
        answer.caller = request.state.caller = admitted.caller
        if admitted.caller is not None:
            answer.headers = admitted.headers


@dataclass
class _Answer:
    """One request's answer, audited when it starts."""

    edge: Edge
    request: Request
    downstream: Send
    caller: Caller | None = None
    headers: dict[str, str] = field(default_factory=dict)  # the rate limit's, added
    started: bool = False
    replaced: bool = False  # by a 503: the answer could not be audited

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            status, reason = message["status"], getattr(self.request.state, "refusal", None)
            if not await _audited(self.edge, self.request, self.caller, status, reason):
                self.replaced = True
                response = refusal(self.request, 503, "audit.unavailable", "not audited")
                await response(self.request.scope, self.request.receive, self.downstream)
                return
            self.started = True
            message["headers"] = [
                *message.get("headers", []),
                *((k.lower().encode(), v.encode()) for k, v in self.headers.items()),
            ]
        elif self.replaced:
            return
        await self.downstream(message)

    async def refuse(
        self, status: int, code: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        """Answer with a refusal (audited), unless the answer has already started."""
        if self.started:
            return
        self.request.state.refusal = code
        response = refusal(self.request, status, code, detail, headers)
        await response(self.request.scope, self.request.receive, self.send)


def create_app(edge: Edge) -> FastAPI:
    app = FastAPI(title="HealthStream edge", version="1")

    app.add_middleware(Guard, edge=edge)

    @app.exception_handler(Refused)
    async def refused(request: Request, error: Refused) -> Response:
        request.state.refusal = error.code
        return refusal(request, error.status, error.code, str(error))

    @app.exception_handler(StoreUnavailable)
    async def unavailable(request: Request, error: StoreUnavailable) -> Response:
        request.state.refusal = "store.unavailable"
        return refusal(request, 503, "store.unavailable", str(error), {"Retry-After": "1"})

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> Response:
        if not is_fhir(request):
            return await request_validation_exception_handler(request, error)
        request.state.refusal = "request.invalid"
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in error.errors())
        return fhir_api.outcome(400, "request.invalid", f"invalid: {fields}")

    _token_routes(app, edge)
    _client_routes(app, edge)
    _person_routes(app, edge)
    _alert_routes(app, edge)
    _review_routes(app, edge)
    _quality_routes(app, edge)
    fhir_api.fhir_routes(app, edge)
    return app


def _token_routes(app: FastAPI, edge: Edge) -> None:
    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/oauth/token")
    async def issue_token(request: Request) -> dict[str, Any]:
        """OAuth2 client credentials for the registry's clients: the client id and secret in
        the form, or as HTTP Basic (RFC 6749 2.3.1)."""
        form = {
            k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace")).items()
        }
        if form.get("grant_type") != "client_credentials":
            raise Refused("grant.unsupported", "only client_credentials is supported", 400)
        client_id, secret = _client_credentials(request, form)
        request.state.client = client_id
        return platform.issue_token(edge, client_id, secret, form.get("scope"))


def _client_credentials(request: Request, form: dict[str, str]) -> tuple[str, str]:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return form.get("client_id", ""), form.get("client_secret", "")
    try:
        client_id, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        raise Refused("client.invalid", "the Basic credentials cannot be read", 401) from None
    return unquote_plus(client_id), unquote_plus(secret)


class NewClient(BaseModel):
    """A client to register: who it is for, its role, its scopes (SMART), a patient app's
    person, whether it is a sandbox client, and optionally its id."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    role: Role
    scope: str = Field(min_length=1, max_length=1000)
    person_id: str | None = Field(None, max_length=100)
    sandbox: bool = False
    client_id: str | None = Field(None, max_length=63)
    institution: str | None = Field(None, max_length=40)


class Rotation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grace_hours: float = Field(24.0, ge=0, le=24 * 7)


def _client_routes(app: FastAPI, edge: Edge) -> None:
    @app.post("/admin/clients", status_code=201)
    async def register_client(request: Request, wanted: NewClient) -> dict[str, Any]:
        """Register a client; the secret is in this answer only."""
        registration = clients.Registration(
            wanted.name, wanted.role, wanted.scope, wanted.person_id, wanted.sandbox,
            wanted.client_id, wanted.institution,
        )  # fmt: skip
        return await platform.register_client(edge, request.state.caller, registration)

    @app.get("/admin/clients")
    async def list_clients(request: Request) -> dict[str, Any]:
        """Every client with its usage."""
        return platform.list_clients(edge, request.state.caller)

    @app.get("/admin/clients/{client_id}")
    async def client_detail(request: Request, client_id: str) -> dict[str, Any]:
        """The client and its usage per UTC day: requests, refusals, rate-limit hits."""
        return platform.client_detail(edge, request.state.caller, client_id)

    @app.post("/admin/clients/{client_id}/rotate")
    async def rotate_secret(
        request: Request, client_id: str, rotation: Rotation | None = None
    ) -> dict[str, Any]:
        """A new secret (in this answer only); the old one works for `grace_hours` more."""
        grace = timedelta(hours=(rotation or Rotation()).grace_hours)
        return await platform.rotate_secret(edge, request.state.caller, client_id, grace)

    @app.post("/admin/clients/{client_id}/revoke")
    async def revoke_client(request: Request, client_id: str) -> dict[str, Any]:
        """No more tokens for the client, and the tokens it holds are refused."""
        return await platform.revoke_client(edge, request.state.caller, client_id)


CHART_TYPES = {"svg": "image/svg+xml", "png": "image/png"}


def _person_routes(app: FastAPI, edge: Edge) -> None:
    @app.get("/persons")
    async def search_persons(
        request: Request,
        identifier: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        name: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
        birthdate: date | None = None,
        gender: Literal["male", "female"] | None = None,
        count: Annotated[int, Query(alias="_count", ge=1, le=50)] = 10,
    ) -> dict[str, Any]:
        """The persons an identifier names: a resident ID (`<number>`, or
        `urn:oid:2.16.156.10011.1.3|<number>`) or an institution's patient number
        (`<institution>|<number>`). Or, by name (Han characters or pinyin), birth date and
        gender: the best matches first, each with the EMPI model's score, match grade and
        evidence. As the caller's role may see them."""
        if identifier is not None:
            return await op.search_persons(edge, request.state.caller, identifier)
        wanted = op.Demographics(name, birthdate, fhir_api.SEX.get(gender or ""))
        return await op.search_by_demographics(edge, request.state.caller, wanted, count)

    @app.get("/persons/{person_id}")
    async def get_person(
        request: Request, person_id: str, reveal: str | None = None
    ) -> dict[str, Any]:
        """`reveal=<reason>` (administrators: patient-request, identity-correction,
        legal-order): the identifiers unmasked, the reason in the audit entry."""
        view = op.get_person(edge, request.state.caller, person_id, reveal)
        if reveal is not None:
            request.state.refusal = f"reveal.{reveal}"  # the audit entry's reason
        return view

    @app.get("/persons/{person_id}/observations")
    async def list_observations(
        request: Request,
        person_id: str,
        since: datetime | None = None,
        until: datetime | None = None,
        code: Annotated[list[str] | None, Query(max_length=20)] = None,
        category: Annotated[str | None, Query(pattern="^[A-Z_]{1,40}$")] = None,
        count: Annotated[int, Query(alias="_count", ge=1, le=op.MAX_PAGE)] = 50,
        cursor: Annotated[str | None, Query(max_length=300)] = None,
        sort: Annotated[Literal["effective_at", "-effective_at"], Query(alias="_sort")] = (
            "effective_at"
        ),
    ) -> dict[str, Any]:
        """Oldest first, or newest first with `_sort=-effective_at`."""
        query = op.ObservationQuery(
            since, until, tuple(code or ()), category, count, cursor, sort.startswith("-")
        )
        return op.list_observations(edge, request.state.caller, person_id, query)

    @app.get("/persons/{person_id}/conditions")
    async def list_conditions(request: Request, person_id: str) -> dict[str, Any]:
        """The person's diagnoses (ICD-10, ICD-11, the source's code and text), oldest first."""
        return op.list_conditions(edge, request.state.caller, person_id)

    @app.get("/persons/{person_id}/trend")
    async def series_trend(
        request: Request, person_id: str, code: Annotated[str, Query(max_length=200)],
        since: datetime | None = None, until: datetime | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """One code's results over time, with their change and slope a year (e.g. glucose)."""
        return op.series_trend(edge, request.state.caller, person_id, code, since, until)

    @app.get("/persons/{person_id}/trend/chart", response_class=Response)
    async def trend_chart(
        request: Request, person_id: str, code: Annotated[str, Query(max_length=200)],
        image: Literal["svg", "png"] = "svg",
        since: datetime | None = None, until: datetime | None = None,
    ) -> Response:  # fmt: skip
        """The code's results as a chart (SVG or PNG): the reference range shaded, results
        outside it in red."""
        chart = op.trend_chart(edge, request.state.caller, person_id, code, image, since, until)
        return Response(chart, media_type=CHART_TYPES[image])

    @app.get("/persons/{person_id}/recent-results")
    async def recent_results(
        request: Request, person_id: str, code: Annotated[str, Query(max_length=200)],
        ordering: Annotated[str | None, Query(max_length=32)] = None,
    ) -> dict[str, Any]:  # fmt: skip
        """检验结果互认: before ordering `code` at `ordering` (an institution code), the
        person's results of it within its validity window, from any institution."""
        return op.recent_results(edge, request.state.caller, person_id, code, ordering)

    @app.get("/persons/{person_id}/egfr/chart", response_class=Response)
    async def kidney_chart(
        request: Request, person_id: str, image: Literal["svg", "png"] = "svg"
    ) -> Response:
        """eGFR over time as a chart (SVG or PNG), on the KDIGO categories G1 to G5."""
        chart = op.kidney_chart(edge, request.state.caller, person_id, image)
        return Response(chart, media_type=CHART_TYPES[image])

    @app.get("/persons/{person_id}/egfr")
    async def kidney(request: Request, person_id: str) -> dict[str, Any]:
        """eGFR (CKD-EPI 2021) from every creatinine result, with KDIGO categories and the
        progression flags."""
        return op.kidney_function(edge, request.state.caller, person_id)


def _alert_routes(app: FastAPI, edge: Edge) -> None:
    @app.get("/persons/{person_id}/alerts")
    async def person_alerts(request: Request, person_id: str) -> dict[str, Any]:
        return op.person_alerts(edge, request.state.caller, person_id)

    @app.get("/alerts/stream")
    async def alert_stream(request: Request) -> StreamingResponse:
        """Server-sent events: each alert event as it reaches the read model. Resumes after
        the Last-Event-ID the client sends."""
        records = op.alert_watch(edge, request.state.caller)
        last = request.headers.get("last-event-id", "")
        after = int(last) if last.isdigit() else time.time_ns() // 1000  # new: from now on

        async def connected() -> bool:
            return not await request.is_disconnected()

        async def events() -> AsyncIterator[str]:
            caller = request.state.caller
            served = op.live_alerts(edge, caller, "GET /alerts/stream", records, after, connected)
            async for received, alert in served:
                yield f"id: {received}\nevent: alert\ndata: {json.dumps(alert)}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/alerts/{alert_id}/acknowledgement", status_code=202)
    async def acknowledge(request: Request, alert_id: str) -> dict[str, Any]:
        """A clinician acknowledges an open alert: sent on to hs-vitals, which stops its
        escalation."""
        return await op.acknowledge(edge, request.state.caller, alert_id)


class ReviewDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["LINK", "NO_LINK"]
    reason: str | None = Field(None, max_length=200)


def _review_routes(app: FastAPI, edge: Edge) -> None:
    @app.get("/reviews")
    async def list_reviews(request: Request) -> dict[str, Any]:
        """The EMPI's possible matches waiting for a person, with the evidence."""
        return op.open_reviews(edge, request.state.caller)

    @app.post("/reviews/{record_key}/decision", status_code=202)
    async def decide(request: Request, record_key: str, body: ReviewDecision) -> dict[str, Any]:
        """LINK: the record is the suggested person (the EMPI merges). NO_LINK: it stays its
        own person, kept apart from the suggested one. Either is sent on to the EMPI."""
        return await op.decide_review(
            edge, request.state.caller, record_key, body.decision, body.reason
        )


QualityWindow = Annotated[Literal["HOUR", "DAY"], Query(alias="window")]
Since = Annotated[datetime | None, Query(description="default: 2 days of hours, 30 of days")]


def _quality_routes(app: FastAPI, edge: Edge) -> None:
    @app.get("/quality/sources")
    async def quality_sources(request: Request) -> dict[str, Any]:
        """The sources hs-quality has windows for (a source's own staff: theirs)."""
        return op.quality_sources(edge, request.state.caller)

    @app.get("/quality/sources/{institution}")
    async def quality_report(
        request: Request, institution: str, size: QualityWindow = "DAY", since: Since = None
    ) -> dict[str, Any]:
        """A source's data-quality report: the seed's four indicators per window, the worst
        checks with example record ids, delays, top unmapped codes and open alerts."""
        report = op.quality_report(edge, request.state.caller, institution, size, since)
        return quality.as_json(report)

    @app.get("/quality/sources/{institution}/report", response_class=HTMLResponse)
    async def quality_page(
        request: Request, institution: str, size: QualityWindow = "DAY", since: Since = None,
        download: bool = False,
    ) -> HTMLResponse:  # fmt: skip
        """The report as a page with a chart per indicator (download=true: as a file)."""
        report = op.quality_report(edge, request.state.caller, institution, size, since)
        headers = ({"Content-Disposition": f'attachment; filename="quality-{institution}.html"'}
                   if download else {})  # fmt: skip
        return HTMLResponse(quality.page(report), headers=headers)


async def _audited(
    edge: Edge, request: Request, caller: Caller | None, status: int, reason: str | None
) -> bool:
    """Write the request's audit entry (acks=all); False when it cannot be written."""
    route = request.scope.get("route")
    entry = op.audit_entry(
        caller,
        f"{request.method} {getattr(route, 'path', request.url.path)}",
        request.path_params.get("person_id") or getattr(request.state, "person_id", None),
        status,
        reason,
        getattr(request.state, "client", None),
    )
    try:
        await edge.trail.record(entry)
    except NotStoredError:
        return False
    return True
