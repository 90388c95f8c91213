"""The gRPC surface (proto/healthstream/edge/v1/edge.proto): the operations REST serves, behind
the same tokens, scopes, roles and per-client rate limits, each call written to the audit
trail (acks=all) before it is answered. Health checking and reflection are served beside it."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal, TypeVar

import grpc
from google.protobuf import json_format, timestamp_pb2
from google.protobuf.message import Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from healthstream.edge.v1 import edge_pb2 as pb
from healthstream.edge.v1 import edge_pb2_grpc
from typing_extensions import override

from hs_common.codec import Record
from hs_common.errors import NotStoredError
from hs_edge import operations as op
from hs_edge import quality
from hs_edge.auth import Caller, Refused
from hs_edge.operations import Edge
from hs_edge.store import StoreUnavailable

log = logging.getLogger("hs.edge.grpc")
SERVICE = pb.DESCRIPTOR.services_by_name["Edge"].full_name
MAX_MESSAGE = 16 * 1024  # bytes: every request here is small
MAX_REASON = 200
STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.FAILED_PRECONDITION,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}
DECISIONS: dict[int, Literal["LINK", "NO_LINK"]] = {
    pb.DecideReviewRequest.LINK: "LINK",
    pb.DecideReviewRequest.NO_LINK: "NO_LINK",
}
Reply = TypeVar("Reply", bound=Message)
Result = TypeVar("Result")
Context = grpc.aio.ServicerContext[Any, Any]


def message(view: dict[str, Any], reply: type[Reply]) -> Reply:
    return json_format.ParseDict(view, reply(), ignore_unknown_fields=False)


def moment(stamp: timestamp_pb2.Timestamp, present: bool) -> datetime | None:
    return stamp.ToDatetime(tzinfo=UTC) if present else None


def timestamp(at: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(at)
    return stamp


def observation(record: Record) -> pb.Observation:
    """The Observation message of a decoded hs.clinical.Observation, built directly: the page
    is the edge's busiest answer (`message` would take about a millisecond for it)."""
    result = record["result"]
    reply = pb.Observation(
        observation_id=record["observation_id"],
        institution=record["envelope"]["source"]["institution"],
        category=record["category"], status=record["status"],
        effective_at=timestamp(record["effective_at"]),
        original_value=result["original_value"], interpretation=result["interpretation"],
    )  # fmt: skip
    if result["code"] is not None:
        reply.code.CopyFrom(pb.Coding(**_present(result["code"])))
    if result["reference_range"] is not None:
        reply.reference_range.CopyFrom(pb.ReferenceRange(**_present(result["reference_range"])))
    for name, value in (("value", result["value_quantity"]), ("unit", result["unit"]),
                        ("original_unit", result["original_unit"])):  # fmt: skip
        if value is not None:
            setattr(reply, name, value)
    return reply


def _present(record: Record) -> Record:
    return {k: v for k, v in record.items() if v is not None}


class EdgeService(edge_pb2_grpc.EdgeServicer):
    def __init__(self, edge: Edge) -> None:
        self.edge = edge

    async def _serve(
        self, context: Context, method: str, person_id: str | None,
        work: Callable[[Caller], Awaitable[Result]],
    ) -> Result:  # fmt: skip
        """Authenticate, limit, serve and audit one call whatever its outcome."""
        call = Call(context, f"gRPC {SERVICE}/{method}", person_id or None)
        op.serving_request()
        caller = await self._admit(call)
        try:
            result = await work(caller)
        except Refused as refused:
            await self._refuse(call, caller, refused)
            raise  # not reached: _refuse aborts the call
        except StoreUnavailable as error:
            await self._refuse(call, caller, Refused("store.unavailable", str(error), 503))
            raise  # not reached
        except Exception as error:  # answered and audited, whatever it was
            # the type only: an exception's text may hold personal data
            log.error("call failed", extra={"error": type(error).__name__})  # noqa: TRY400
            failed = Refused("internal.error", "the call could not be served", 500)
            await self._refuse(call, caller, failed)
            raise  # not reached
        await self._audit(call, caller, 200, None)
        return result

    async def _answer(
        self, context: Context, method: str, person_id: str | None, reply: type[Reply],
        operation: Callable[[Caller], op.View],
    ) -> Reply:  # fmt: skip
        """`_serve` for an operation whose view is the reply as it is."""

        async def work(caller: Caller) -> Reply:
            return message(operation(caller), reply)

        return await self._serve(context, method, person_id, work)

    async def _admit(self, call: Call) -> Caller:
        """The caller admitted by `operations.admit`; else the call is aborted."""
        try:
            admitted = op.admit(
                self.edge, _metadata(call.context).get("authorization"), _peer(call.context)
            )
        except Refused as refused:
            call.trailing = [(k.lower(), v) for k, v in (refused.headers or {}).items()]
            await self._refuse(call, refused.caller, refused)
            raise  # not reached: _refuse aborts the call
        assert admitted.caller is not None
        call.trailing = [(k.lower(), v) for k, v in admitted.headers.items()]
        call.context.set_trailing_metadata(call.trailing)
        return admitted.caller

    async def _refuse(self, call: Call, caller: Caller | None, refused: Refused) -> None:
        await self._audit(call, caller, refused.status, refused.code)
        trailing = (*call.trailing, ("hs-refusal", refused.code))
        status = STATUS.get(refused.status, grpc.StatusCode.INTERNAL)
        await call.context.abort(status, str(refused), trailing)

    async def _audit(
        self, call: Call, caller: Caller | None, status: int, reason: str | None
    ) -> None:
        entry = op.audit_entry(caller, call.operation, call.person_id, status, reason)
        try:
            await self.edge.trail.record(entry)
        except NotStoredError:
            await call.context.abort(grpc.StatusCode.UNAVAILABLE, "the call could not be audited")

    # --- the operations -------------------------------------------------------------------

    @override
    async def GetPerson(self, request: pb.GetPersonRequest, context: Context) -> pb.Person:
        async def work(caller: Caller) -> pb.Person:
            view = op.get_person(self.edge, caller, request.person_id)
            if "golden" not in view:  # the researcher's de-identified view
                view = {"person_id": view.pop("person_id"), "deidentified": view}
            return message(view, pb.Person)

        return await self._serve(context, "GetPerson", request.person_id, work)

    @override
    async def SearchPersons(
        self, request: pb.SearchPersonsRequest, context: Context
    ) -> pb.PersonList:
        async def work(caller: Caller) -> pb.PersonList:
            if request.identifier:
                view = await op.search_persons(self.edge, caller, request.identifier)
                return message({"persons": view["items"]}, pb.PersonList)
            try:
                born = date.fromisoformat(request.birth_date) if request.birth_date else None
            except ValueError:
                raise Refused("request.birth_date", "birth_date is YYYY-MM-DD", 400) from None
            sex = {"male": "M", "female": "F"}.get(request.gender)
            count = request.count or 10
            if not 1 <= count <= 50:
                raise Refused("request.count", "count is 1 to 50", 400)
            wanted = op.Demographics(request.name or None, born, sex)
            matches = await op.match_persons(self.edge, caller, wanted, "gRPC SearchPersons", count)
            return message({
                "persons": [op.person_view(caller, m.person, m.record_keys) for m in matches],
                "scores": [m.score.probability for m in matches],
                "match_grades": [m.grade for m in matches],
            }, pb.PersonList)  # fmt: skip

        return await self._serve(context, "SearchPersons", None, work)

    @override
    async def ListObservations(
        self, request: pb.ListObservationsRequest, context: Context
    ) -> pb.ObservationPage:
        query = op.ObservationQuery(
            moment(request.since, request.HasField("since")),
            moment(request.until, request.HasField("until")),
            tuple(request.codes), request.category or None, request.page_size or 50,
            request.page_token or None, request.newest_first,
        )  # fmt: skip

        async def work(caller: Caller) -> pb.ObservationPage:
            found, next_cursor = op.observation_page(self.edge, caller, request.person_id, query)
            return pb.ObservationPage(
                person_id=request.person_id, items=[observation(o) for o in found],
                next_page_token=next_cursor or "",
            )  # fmt: skip

        return await self._serve(context, "ListObservations", request.person_id, work)

    @override
    async def ListConditions(
        self, request: pb.ListConditionsRequest, context: Context
    ) -> pb.ConditionList:
        return await self._answer(
            context, "ListConditions", request.person_id, pb.ConditionList,
            lambda caller: op.list_conditions(self.edge, caller, request.person_id),
        )  # fmt: skip

    @override
    async def GetTrend(self, request: pb.GetTrendRequest, context: Context) -> pb.Trend:
        since = moment(request.since, request.HasField("since"))
        until = moment(request.until, request.HasField("until"))

        return await self._answer(
            context, "GetTrend", request.person_id, pb.Trend,
            lambda caller: op.series_trend(
                self.edge, caller, request.person_id, request.code, since, until
            ),
        )  # fmt: skip

    @override
    async def GetKidneyFunction(
        self, request: pb.GetKidneyFunctionRequest, context: Context
    ) -> pb.KidneyFunction:
        return await self._answer(
            context, "GetKidneyFunction", request.person_id, pb.KidneyFunction,
            lambda caller: op.kidney_function(self.edge, caller, request.person_id),
        )  # fmt: skip

    @override
    async def ListAlerts(self, request: pb.ListAlertsRequest, context: Context) -> pb.AlertList:
        return await self._answer(
            context, "ListAlerts", request.person_id, pb.AlertList,
            lambda caller: op.person_alerts(self.edge, caller, request.person_id),
        )  # fmt: skip

    @override
    async def StreamAlerts(
        self, request: pb.StreamAlertsRequest, context: Context
    ) -> AsyncIterator[pb.AlertEvent]:
        """Audited when the stream is opened, and for each alert served (`live_alerts`)."""

        async def work(caller: Caller) -> tuple[Caller, list[str] | None]:
            return caller, op.alert_watch(self.edge, caller)

        caller, records = await self._serve(context, "StreamAlerts", None, work)
        position = request.after_position or time.time_ns() // 1000  # new: from now on
        served = op.live_alerts(
            self.edge, caller, f"gRPC {SERVICE}/StreamAlerts", records, position,
            _always,  # a client that leaves cancels this generator
        )  # fmt: skip
        async for received, alert in served:
            yield pb.AlertEvent(position=received, alert=message(alert, pb.Alert))

    @override
    async def AcknowledgeAlert(
        self, request: pb.AcknowledgeAlertRequest, context: Context
    ) -> pb.AcknowledgeAlertResponse:
        async def work(caller: Caller) -> pb.AcknowledgeAlertResponse:
            view = await op.acknowledge(self.edge, caller, request.alert_id)
            return message(view, pb.AcknowledgeAlertResponse)

        return await self._serve(context, "AcknowledgeAlert", None, work)

    @override
    async def ListReviews(self, request: pb.ListReviewsRequest, context: Context) -> pb.ReviewList:
        return await self._answer(
            context, "ListReviews", None, pb.ReviewList,
            lambda caller: op.open_reviews(self.edge, caller),
        )  # fmt: skip

    @override
    async def GetQualityReport(
        self, request: pb.GetQualityReportRequest, context: Context
    ) -> pb.QualityReport:
        since = moment(request.since, request.HasField("since"))
        return await self._answer(
            context, "GetQualityReport", None, pb.QualityReport,
            lambda caller: quality.as_json(op.quality_report(
                self.edge, caller, request.institution, request.window or "DAY", since)),
        )  # fmt: skip

    @override
    async def DecideReview(
        self, request: pb.DecideReviewRequest, context: Context
    ) -> pb.DecideReviewResponse:
        async def work(caller: Caller) -> pb.DecideReviewResponse:
            decision = DECISIONS.get(request.decision)
            if decision is None:
                raise Refused("request.decision", "the decision is LINK or NO_LINK", 400)
            if len(request.reason) > MAX_REASON:
                raise Refused("request.reason", f"a reason is at most {MAX_REASON} characters", 400)
            view = await op.decide_review(
                self.edge, caller, request.record_key, decision, request.reason or None
            )
            return message(view, pb.DecideReviewResponse)

        return await self._serve(context, "DecideReview", None, work)


@dataclass
class Call:
    context: Context
    operation: str
    person_id: str | None
    trailing: list[tuple[str, str]] = field(default_factory=list)


async def _always() -> bool:
    return True


def _metadata(context: Context) -> dict[str, str]:
    return {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}


def _peer(context: Context) -> str:
    """The caller's address without its port ('ipv4:127.0.0.1:50211' -> 'ipv4:127.0.0.1')."""
    return context.peer().rsplit(":", 1)[0]


async def start(
    edge: Edge, address: str, credentials: grpc.ServerCredentials | None
) -> tuple[grpc.aio.Server, int]:
    """The gRPC server, started on `address` (TLS when `credentials`); returns it and its port."""
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", MAX_MESSAGE)],
        maximum_concurrent_rpcs=1000,
    )
    edge_pb2_grpc.add_EdgeServicer_to_server(EdgeService(edge), server)
    checker = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    names = (SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME)  # fmt: skip
    reflection.enable_server_reflection(names, server)
    port = (
        server.add_secure_port(address, credentials)
        if credentials is not None
        else server.add_insecure_port(address)
    )
    await server.start()
    await checker.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    await checker.set("", health_pb2.HealthCheckResponse.SERVING)
    return server, port


def tls(certificate: bytes, private_key: bytes) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials([(private_key, certificate)])
