"""The REST surface: persons and their observations from the read model, behind bearer
tokens, scopes, roles and per-client rate limits. Every request, allowed or denied, is
written to the audit trail (acks=all) before it is answered; when the trail cannot be
written, the answer is 503 and nothing is served."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from hs_common import topics
from hs_common.codec import Codec, Record
from hs_common.envelope import derived_envelope
from hs_common.errors import NotStoredError
from hs_common.kafka import AsyncDurableProducer
from hs_edge import audit
from hs_edge.auth import Caller, DevIssuer, Refused, Role, TokenValidator
from hs_edge.projector import code_key
from hs_edge.ratelimit import RateLimiter
from hs_edge.store import Store
from hs_edge.trends import Point, Trend, kidney_trend, trend

MAX_PAGE = 200
MAX_BODY = 16 * 1024  # bytes: every request body here is small
PUBLIC = frozenset({"/oauth/token", "/healthz", "/docs", "/openapi.json"})


@dataclass
class AuditTrail:
    """This process's chain, written to the audit topic."""

    producer: AsyncDurableProducer
    codec: Codec
    topic: str
    chain: audit.Chain

    async def record(self, request: audit.Request) -> None:
        entry = self.chain.append(request)
        value = self.codec.encode("hs.edge.AuditEvent", audit.to_record(entry))
        await self.producer.write(self.topic, value, entry.chain)


@dataclass
class Edge:
    store: Store
    codec: Codec
    tokens: TokenValidator
    limiter: RateLimiter
    trail: AuditTrail
    issuer: DevIssuer | None = None  # the development token endpoint, when enabled
    ack_topic: str = topics.VITALS_ACK.name
    review_topic: str = topics.REVIEW_DECISION.name
    poll_seconds: float = 0.5  # how often the live alert stream looks for new alerts
    clock: Callable[[], float] = field(default=time.monotonic)


def problem(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    body = {"type": f"urn:hs:problem:{code}", "title": code, "status": status, "detail": detail}
    return JSONResponse(body, status, headers=headers, media_type="application/problem+json")


Handler = Callable[[Request], Awaitable[Response]]


def check_size(request: Request) -> None:
    length = request.headers.get("content-length", "0")
    if not length.isdigit() or int(length) > MAX_BODY:
        raise Refused("request.too_large", f"request bodies are limited to {MAX_BODY} bytes", 413)


def guard(edge: Edge) -> Callable[[Request, Handler], Awaitable[Response]]:
    """The middleware every request passes."""

    async def guard_request(request: Request, call_next: Handler) -> Response:
        """Authenticate, limit, serve, and audit every request whatever its outcome."""
        caller: Caller | None = None
        reason: str | None = None
        try:
            check_size(request)
            if request.url.path in PUBLIC:  # no token yet: limited by the peer's address
                peer = request.client.host if request.client else "unknown"
                decision = edge.limiter.take(f"peer:{peer}", edge.clock())
                if decision.allowed:
                    response = await call_next(request)
                    reason = getattr(request.state, "refusal", None)
                else:
                    reason = "rate.limited"
                    response = problem(429, reason, "too many requests", decision.headers())
                return await _audited(edge, request, None, response, reason)
            caller = edge.tokens.caller(request.headers.get("authorization"))
            decision = edge.limiter.take(caller.client_id, edge.clock())
            if not decision.allowed:
                reason = "rate.limited"
                response = problem(429, reason, "too many requests", decision.headers())
            else:
                request.state.caller = caller
                response = await call_next(request)
                response.headers.update(decision.headers())
                reason = getattr(request.state, "refusal", None)
        except Refused as refused:
            reason = refused.code
            response = problem(refused.status, refused.code, str(refused))
        return await _audited(edge, request, caller, response, reason)

    return guard_request


def create_app(edge: Edge) -> FastAPI:
    app = FastAPI(title="HealthStream edge", version="1")

    app.middleware("http")(guard(edge))

    @app.exception_handler(Refused)
    async def refused(request: Request, error: Refused) -> Response:
        request.state.refusal = error.code
        return problem(error.status, error.code, str(error))

    _token_routes(app, edge)
    _person_routes(app, edge)
    _alert_routes(app, edge)
    _review_routes(app, edge)
    _trend_routes(app, edge)
    return app


def _token_routes(app: FastAPI, edge: Edge) -> None:
    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/oauth/token")
    async def issue_token(request: Request) -> dict[str, Any]:
        """OAuth2 client credentials (development setups only)."""
        if edge.issuer is None:
            raise Refused("token_endpoint.disabled", "tokens come from the identity provider", 404)
        form = {
            k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace")).items()
        }
        if form.get("grant_type") != "client_credentials":
            raise Refused("grant.unsupported", "only client_credentials is supported", 400)
        request.state.client = form.get("client_id", "")
        return edge.issuer.issue(form.get("client_id", ""), form.get("client_secret", ""),
                                 form.get("scope"))  # fmt: skip


def _person_routes(app: FastAPI, edge: Edge) -> None:
    @app.get("/persons/{person_id}")
    async def get_person(request: Request, person_id: str) -> dict[str, Any]:
        caller: Caller = request.state.caller
        golden, record_keys = _person(edge, caller, person_id, "Patient")
        return person_view(caller, golden, record_keys)

    @app.get("/persons/{person_id}/observations")
    async def list_observations(
        request: Request,
        person_id: str,
        since: datetime | None = None,
        until: datetime | None = None,
        code: Annotated[list[str] | None, Query(max_length=20)] = None,
        category: Annotated[str | None, Query(pattern="^[A-Z_]{1,40}$")] = None,
        count: Annotated[int, Query(alias="_count", ge=1, le=MAX_PAGE)] = 50,
        cursor: Annotated[str | None, Query(max_length=300)] = None,
    ) -> dict[str, Any]:
        _, records = _person(edge, request.state.caller, person_id, "Observation")
        codes = [_code_key(edge.codec, c) for c in code or []]
        try:
            page = edge.store.observations(records, since, until, codes, category, count, cursor)
        except ValueError as error:
            raise Refused("request.cursor", str(error), 400) from None
        items = [observation_view(edge.codec.decode(event).record) for event in page.rows]
        return {"person_id": person_id, "items": items, "next_cursor": page.next_cursor}


def _alert_routes(app: FastAPI, edge: Edge) -> None:
    @app.get("/persons/{person_id}/alerts")
    async def person_alerts(request: Request, person_id: str) -> dict[str, Any]:
        _, records = _person(edge, request.state.caller, person_id, "Flag")
        return {
            "items": [alert_view(edge.codec.decode(e).record) for e in edge.store.alerts(records)]
        }

    @app.get("/alerts/stream")
    async def alert_stream(request: Request) -> StreamingResponse:
        """Server-sent events: each alert event as it reaches the read model. Resumes after
        the Last-Event-ID the client sends."""
        caller: Caller = request.state.caller
        caller.require("Flag")
        records = None
        if caller.role is Role.PATIENT:
            records = _person(edge, caller, caller.person_id or "", "Flag")[1]
        elif caller.role is Role.RESEARCHER:
            raise Refused("role.forbidden", "alerts identify patients: not for research", 403)
        last = request.headers.get("last-event-id", "")
        after = int(last) if last.isdigit() else time.time_ns() // 1000  # new: from now on

        async def events() -> AsyncIterator[str]:
            position = after
            while not await request.is_disconnected():
                for received, event in edge.store.alerts_received_after(position, records):
                    position = received
                    body = json.dumps(alert_view(edge.codec.decode(event).record))
                    yield f"id: {received}\nevent: alert\ndata: {body}\n\n"
                await asyncio.sleep(edge.poll_seconds)

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/alerts/{alert_id}/acknowledgement", status_code=202)
    async def acknowledge(request: Request, alert_id: str) -> dict[str, str]:
        """A clinician acknowledges an open alert: sent on to hs-vitals, which stops its
        escalation."""
        caller: Caller = request.state.caller
        caller.require("Flag", "write")
        caller.require_role(Role.CLINICIAN)
        event = edge.store.alert(alert_id)
        if event is None:
            raise Refused("alert.not_found", "no such open alert", 404)
        alert = edge.codec.decode(event).record
        now = datetime.now(UTC)
        ack = {
            "envelope": derived_envelope(alert["envelope"], now), "alert_id": alert_id,
            "patient_key": alert["patient_key"], "rule_id": alert["rule_id"],
            "acknowledged_by": caller.subject or caller.client_id, "at": now,
        }  # fmt: skip
        await _send(edge, edge.ack_topic, topics.VITALS_ACK.value_schema, ack, alert["patient_key"])
        return {"alert_id": alert_id, "status": "acknowledged"}


class ReviewDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["LINK", "NO_LINK"]
    reason: str | None = Field(None, max_length=200)


def _review_routes(app: FastAPI, edge: Edge) -> None:
    @app.get("/reviews")
    async def list_reviews(request: Request) -> dict[str, Any]:
        """The EMPI's possible matches waiting for a person, with the evidence."""
        caller: Caller = request.state.caller
        caller.require("Patient")
        caller.require_role(Role.ADMINISTRATOR)
        return {
            "items": [review_view(edge.codec.decode(e).record) for e in edge.store.open_reviews()]
        }

    @app.post("/reviews/{record_key}/decision", status_code=202)
    async def decide(request: Request, record_key: str, body: ReviewDecision) -> dict[str, str]:
        """LINK: the record is the suggested person (sent to the EMPI, which merges). NO_LINK:
        it stays its own person, and the review is closed."""
        caller: Caller = request.state.caller
        caller.require("Patient", "write")
        caller.require_role(Role.ADMINISTRATOR)
        event = edge.store.review(record_key)
        if event is None:
            raise Refused("review.not_found", "no open review for this record", 404)
        link = edge.codec.decode(event).record
        now = datetime.now(UTC)
        if body.decision == "LINK":
            decision = {
                "envelope": derived_envelope(link["envelope"], now), "action": "LINK",
                "record_key": record_key, "other_record_key": link["matched_record_key"],
                "decided_by": caller.subject or caller.client_id, "reason": body.reason,
            }  # fmt: skip
            schema = topics.REVIEW_DECISION.value_schema
            await _send(edge, edge.review_topic, schema, decision, record_key)
        edge.store.close_review(record_key, now)
        edge.store.db.commit()
        return {"record_key": record_key, "decision": body.decision}


def review_view(link: Record) -> dict[str, Any]:
    return {
        "record_key": link["record_key"], "person_id": link["person_id"],
        "suggested_person_id": link["review_person_id"],
        "matched_record_key": link["matched_record_key"],
        "probability": link["probability"], "weight": link["weight"],
        "evidence": link["evidence"], "flags": link["flags"],
    }  # fmt: skip


CREATININE = (("http://loinc.org", "2160-0"), ("http://loinc.org", "14682-9"))  # mass; moles
MAX_POINTS = 5_000


def _series(
    edge: Edge, records: list[str], codes: list[str], since: datetime | None, until: datetime | None
) -> list[Record]:
    """Every result of these codes (up to MAX_POINTS), oldest first."""
    results: list[Record] = []
    cursor = None
    while len(results) < MAX_POINTS:
        page = edge.store.observations(records, since, until, codes, None, MAX_PAGE, cursor)
        for event in page.rows:
            observation = edge.codec.decode(event).record
            results.append(observation["result"] | {"effective_at": observation["effective_at"]})
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return results


def _trend_routes(app: FastAPI, edge: Edge) -> None:
    @app.get("/persons/{person_id}/trend")
    async def series_trend(
        request: Request, person_id: str, code: Annotated[str, Query(max_length=200)],
        since: datetime | None = None, until: datetime | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """One code's results over time, with their change and slope a year (e.g. glucose)."""
        _, records = _person(edge, request.state.caller, person_id, "Observation")
        results = _series(edge, records, [_code_key(edge.codec, code)], since, until)
        points = [Point(r["effective_at"], r["value_quantity"]) for r in results
                  if r["value_quantity"] is not None]  # fmt: skip
        series = trend(points)
        return {"code": code, "unit": results[-1]["unit"] if results else None,
                **_trend_view(series)}  # fmt: skip

    @app.get("/persons/{person_id}/egfr")
    async def kidney(request: Request, person_id: str) -> dict[str, Any]:
        """eGFR (CKD-EPI 2021) from every creatinine result, with KDIGO categories and the
        progression flags."""
        person, records = _person(edge, request.state.caller, person_id, "Observation")
        golden = person["golden"] or {}
        if golden.get("birth_date") is None or golden.get("sex") not in ("F", "M"):
            raise Refused("person.no_age_or_sex", "eGFR needs the person's age and sex", 422)
        codes = [code_key(edge.codec, {"system": s, "code": c}) or "" for s, c in CREATININE]
        results = _series(edge, records, codes, None, None)
        creatinine = [(r["effective_at"], r["value_quantity"], r["unit"]) for r in results
                      if r["value_quantity"] is not None]  # fmt: skip
        kidney = kidney_trend(creatinine, golden["birth_date"], golden["sex"] == "F")
        return {
            **_trend_view(kidney.trend), "unit": "mL/min/1.73m2", "stages": list(kidney.stages),
            "certain_drop": kidney.certain_drop, "rapid_progression": kidney.rapid_progression,
        }  # fmt: skip


def _trend_view(series: Trend) -> dict[str, Any]:
    return {
        "points": [{"at": p.at.isoformat(), "value": p.value} for p in series.points],
        "change": series.change, "slope_per_year": series.slope_per_year,
    }  # fmt: skip


async def _send(edge: Edge, topic: str, schema: str, record: Record, key: str) -> None:
    """An event for another service, stored (acks=all) before the request is answered."""
    try:
        await edge.trail.producer.write(topic, edge.codec.encode(schema, record), key)
    except NotStoredError:
        raise Refused("event.unavailable", f"{schema} could not be stored", 503) from None


def _person(edge: Edge, caller: Caller, person_id: str, resource: str) -> tuple[Record, list[str]]:
    """The person (golden record, record keys) when the caller may read `resource` of theirs."""
    caller.require(resource)
    caller.require_person(person_id)
    found = edge.store.person(person_id)
    if found is None:
        raise Refused("person.not_found", "no such person", 404)
    return edge.codec.decode(found[0]).record, found[1]


def alert_view(alert: Record) -> dict[str, Any]:
    return {
        "alert_id": alert["alert_id"], "action": alert["action"], "rule_id": alert["rule_id"],
        "severity": alert["severity"], "person_id": alert["person_id"],
        "at": alert["at"].isoformat(),
        "escalate_at": alert["escalate_at"].isoformat() if alert["escalate_at"] else None,
        "score": alert["score"], "cohort": alert["cohort"],
        "readings": [
            {"metric": r["metric"], "value": r["value"],
             "measured_at": r["measured_at"].isoformat()}
            for r in alert["readings"]
        ],
    }  # fmt: skip


async def _audited(
    edge: Edge, request: Request, caller: Caller | None, response: Response, reason: str | None
) -> Response:
    """Write the request's audit entry (acks=all), then answer; 503 when it cannot be written."""
    route = request.scope.get("route")
    client = caller.client_id if caller else getattr(request.state, "client", None)
    entry = audit.Request(
        at=datetime.now(UTC),
        client_id=client or "unauthenticated",
        subject=caller.subject if caller else None,
        role=caller.role.value if caller else None,
        operation=f"{request.method} {getattr(route, 'path', request.url.path)}",
        person_id=request.path_params.get("person_id"),
        outcome=audit.Outcome.ALLOWED if response.status_code < 400 else audit.Outcome.DENIED,
        status=response.status_code,
        reason=reason,
    )
    try:
        await edge.trail.record(entry)
    except NotStoredError:
        return problem(503, "audit.unavailable", "the request could not be audited")
    return response


def _code_key(codec: Codec, text: str) -> str:
    system, bar, value = text.rpartition("|")
    if not bar or not system or not value:
        raise Refused("request.code", "a code is given as <system>|<code>", 400)
    return code_key(codec, {"system": system, "code": value}) or ""


def mask(identifier: str | None, keep_start: int = 6, keep_end: int = 4) -> str | None:
    if identifier is None or len(identifier) <= keep_start + keep_end:
        return None if identifier is None else "*" * len(identifier)
    hidden = len(identifier) - keep_start - keep_end
    return identifier[:keep_start] + "*" * hidden + identifier[-keep_end:]


def person_view(caller: Caller, person: Record, record_keys: list[str]) -> dict[str, Any]:
    """The golden record as the caller's role may see it."""
    golden = dict(person["golden"] or {})
    if caller.role is Role.RESEARCHER:  # de-identified: no names, numbers or places
        birth = golden.get("birth_date")
        return {
            "person_id": person["person_id"],
            "sex": golden.get("sex"),
            "birth_year": birth.year if birth else None,
            "records": len(record_keys),
        }
    if caller.role in (Role.CLINICIAN, Role.PUBLIC_HEALTH):
        golden["id_number"] = mask(golden.get("id_number"))
        golden["phone"] = mask(golden.get("phone"), 3, 4)
    if golden.get("birth_date") is not None:
        golden["birth_date"] = golden["birth_date"].isoformat()
    return {"person_id": person["person_id"], "golden": golden, "record_keys": record_keys}


def observation_view(observation: Record) -> dict[str, Any]:
    result = observation["result"]
    return {
        "observation_id": observation["observation_id"],
        "institution": observation["envelope"]["source"]["institution"],
        "category": observation["category"],
        "status": observation["status"],
        "effective_at": observation["effective_at"].isoformat(),
        "code": result["code"],
        "value": result["value_quantity"],
        "unit": result["unit"],
        "original_value": result["original_value"],
        "original_unit": result["original_unit"],
        "reference_range": result["reference_range"],
        "interpretation": result["interpretation"],
    }
