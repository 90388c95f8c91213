"""What the HTTP door does with a body, before anything is written: keep it as a raw message
(under which key, answered how) or refuse it (answered how, kept as a dead letter or not).
The HTTP counterpart of `intake.receive_hl7`. Pure: no sockets, no Kafka.

The FHIR door answers as FHIR servers do: a single resource `201 Created` with `Location`;
a `transaction` all or nothing (`200` with a transaction-response, or 400/422 with an
OperationOutcome naming every bad entry); a `batch` entry by entry (`200` with a
batch-response: `201 Created` or the entry's own 4xx with its OperationOutcome; each bad
entry its own dead letter, the body kept when one entry is right); errors as
OperationOutcome. The other doors answer `202` JSON and RFC 7807 problem documents.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hs_common.crypto import Keyring
from hs_common.envelope import new_envelope
from hs_ingestion.fhir import logical_id, message_patient
from hs_ingestion.payloads import (
    Checked,
    Entry,
    EntryCheck,
    FieldProblem,
    check_clinic_json,
    check_csv,
    check_device_batch,
    check_fhir,
)
from hs_ingestion.sources import Source, SourceRegistry

STAGE = "ingestion.http"
PROBLEM_JSON = "application/problem+json"
FHIR_JSON = "application/fhir+json"
REASON_SYSTEM = "urn:hs:reason"  # OperationOutcome.issue.details: the dead letter's reason code
NOT_WRITES = ("GET", "HEAD", "DELETE")  # kept with the Bundle, acted on by nobody here


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any] | None
    media_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ItemRefusal:
    """One entry of a batch that cannot be kept: its own dead letter (the entry as sent)."""

    item: str  # '/entry/2/resource'
    reason_code: str
    reason: str
    original: bytes


@dataclass(frozen=True)
class Kept:
    """A body to keep on the raw topic, then answer with `answer`."""

    record: dict[str, Any]  # hs.ingest.RawMessage
    key: str
    answer: Answer
    refusals: tuple[ItemRefusal, ...] = ()


@dataclass(frozen=True)
class Refused:
    """A body that is not kept; answered with `answer`. `dead_letter`: the body goes to the
    dead letters with the reason (not so for an unknown source, a wrong media type or a body
    too large: nothing was read)."""

    answer: Answer
    reason_code: str
    reason: str
    dead_letter: bool
    institution: str = "unknown"
    media_type: str = ""
    refusals: tuple[ItemRefusal, ...] = ()


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome issue (FHIR R4 IssueSeverity and IssueType codes)."""

    severity: str  # fatal | error | warning | information
    code: str  # invalid | required | not-found | not-supported | too-long | transient | ...
    diagnostics: str
    expression: str | None = None  # FHIRPath of the element
    reason_code: str | None = None


def problem(
    status: int,
    title: str,
    detail: str,
    reason_code: str,
    errors: Sequence[FieldProblem] = (),
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """An RFC 7807 problem document."""
    body: dict[str, Any] = {
        "type": f"urn:hs:problem:{reason_code}",
        "title": title,
        "status": status,
        "detail": detail,
        "reason_code": reason_code,
    }
    if errors:
        body["errors"] = [{"field": e.field, "problem": e.problem} for e in errors]
    return Answer(status, body, PROBLEM_JSON, dict(headers or {}))


def outcome(issues: Sequence[Issue]) -> dict[str, Any]:
    """A FHIR R4 OperationOutcome."""
    listed = []
    for issue in issues:
        entry: dict[str, Any] = {
            "severity": issue.severity,
            "code": issue.code,
            "diagnostics": issue.diagnostics,
        }
        if issue.reason_code:
            entry["details"] = {
                "coding": [{"system": REASON_SYSTEM, "code": issue.reason_code}],
                "text": issue.reason_code,
            }
        if issue.expression:
            entry["expression"] = [issue.expression]
        listed.append(entry)
    return {"resourceType": "OperationOutcome", "issue": listed}


def fhir_path(pointer: str, root: str) -> str:
    """'/entry/1/resource/status' as the FHIRPath 'Bundle.entry[1].resource.status'."""
    path = root
    for step in (s for s in pointer.split("/") if s):
        path += f"[{step}]" if step.isdigit() else f".{step}"
    return path


def fhir_error(
    status: int,
    code: str,
    diagnostics: str,
    reason_code: str,
    problems: Sequence[FieldProblem] = (),
    root: str = "Resource",
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """An error as the FHIR door answers it: an OperationOutcome, one issue per problem."""
    issues = [
        Issue("error", _issue_code(p), p.problem, fhir_path(p.field, root), reason_code)
        for p in problems
    ] or [Issue("error", code, diagnostics, None, reason_code)]
    return Answer(status, outcome(issues), FHIR_JSON, dict(headers or {}))


# Refusals before the body is read, by status: (problem title, FHIR issue type).
DOOR_ERRORS = {
    401: ("Sender not authenticated", "login"),
    403: ("Transport not allowed", "forbidden"),
    404: ("Unknown source", "not-found"), 413: ("Body too large", "too-long"),
    415: ("Unsupported media type", "not-supported"), 503: ("Not stored", "transient"),
}  # fmt: skip


def door_error(
    fhir_door: bool,
    status: int,
    detail: str,
    reason_code: str,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """A refusal as the door answers it: an OperationOutcome at the FHIR door, else an
    RFC 7807 problem."""
    title, issue_type = DOOR_ERRORS[status]
    if fhir_door:
        return fhir_error(status, issue_type, detail, reason_code, headers=headers)
    return problem(status, title, detail, reason_code, headers=headers)


def not_stored(fhir_door: bool) -> Answer:
    """Kafka did not confirm the write: resend later."""
    detail = "the platform could not store the body; resend later"
    return door_error(fhir_door, 503, detail, "not_stored", {"Retry-After": "5"})


def receive_http(
    source_code: str,
    formats: tuple[str, ...],
    content_type: str,
    body: bytes,
    sources: SourceRegistry,
    keyring: Keyring,
    max_body_bytes: int,
    request_id: str | None = None,
    received_at: datetime | None = None,
    transport: str | None = "http",
) -> Kept | Refused:
    """Keep or refuse one body sent to the door for `formats` over `transport` (None: the
    caller checked that the source may use it)."""
    received_at = received_at or datetime.now(UTC)
    source = sources.get(source_code)
    fhir_door = formats == ("fhir",) or (source is not None and source.format == "fhir")
    if source is None or source.format not in formats:
        detail = "no registered source of this kind has this code"
        answer = door_error(fhir_door, 404, detail, "http.unknown_source")
        return Refused(answer, "http.unknown_source", detail, False)
    if transport is not None and transport not in source.transports:
        detail = f"this source does not send over {transport}"
        answer = door_error(fhir_door, 403, detail, "http.transport_not_allowed")
        return Refused(answer, "http.transport_not_allowed", detail, False, source.code)
    accepted_types, make_check, patient_field = FORMATS[source.format]
    media_type, _, parameters = content_type.partition(";")
    media_type = media_type.strip().lower()
    if media_type not in accepted_types:
        detail = f"send one of {list(accepted_types)}"
        answer = door_error(fhir_door, 415, detail, "http.media_type")
        return Refused(answer, "http.media_type", detail, False, source.code)
    if len(body) > max_body_bytes:
        detail = f"at most {max_body_bytes} bytes"
        answer = door_error(fhir_door, 413, detail, "http.too_large")
        return Refused(answer, "http.too_large", detail, False, source.code)
    charset = source.charset or _charset(parameters)
    checked = make_check(source)(body, charset)
    if source.format == "fhir":
        return _fhir(body, checked, source, media_type, charset, keyring, request_id, received_at)
    if checked.problems:
        status = 400 if checked.document is None else 422
        answer = problem(
            status,
            "Invalid input",
            "the body was kept as a dead letter; fix and resend",
            checked.reason_code,
            checked.problems,
        )
        return Refused(
            answer, checked.reason_code, _reason(checked.problems), True, source.code, media_type
        )
    record = _record(source, body, media_type, charset, request_id, received_at)
    patient = _field(checked.document, patient_field)
    key = keyring.pseudonym(source.code, patient or source.code)
    envelope = record["envelope"]
    answer = Answer(
        202,
        {"status": "stored", "event_id": envelope["event_id"], "trace_id": envelope["trace_id"]},
    )
    return Kept(record, key, answer)


def _fhir(
    body: bytes,
    checked: Checked,
    source: Source,
    media_type: str,
    charset: str,
    keyring: Keyring,
    request_id: str | None,
    received_at: datetime,
) -> Kept | Refused:
    document = checked.document
    root = document.get("resourceType") if isinstance(document, dict) else None
    root = root if isinstance(root, str) and root else "Resource"
    bundle_type = document.get("type") if isinstance(document, dict) and root == "Bundle" else None

    def refused(status: int, problems: Sequence[FieldProblem]) -> Refused:
        answer = fhir_error(
            status,
            "invalid",
            "the body was kept as a dead letter; fix and resend",
            checked.reason_code or "fhir.invalid",
            problems,
            root,
        )
        reason = _reason(problems)
        return Refused(answer, checked.reason_code, reason, True, source.code, media_type)

    if document is None:
        return refused(400, checked.problems)
    in_entries = {id(p) for check in checked.entries for p in check.problems}
    shell = [p for p in checked.problems if id(p) not in in_entries]
    if shell or (checked.problems and bundle_type != "batch"):
        return refused(422, checked.problems)
    record = _record(source, body, media_type, charset, request_id, received_at, document)
    event_id = str(record["envelope"]["event_id"])
    key = keyring.pseudonym(source.code, message_patient(document, source, event_id) or source.code)
    if bundle_type in ("transaction", "batch"):
        refusals = tuple(_item_refusal(c) for c in checked.entries if c.problems)
        answer = Answer(
            200,
            {
                "resourceType": "Bundle",
                "type": f"{bundle_type}-response",
                "entry": [_response_entry(c, event_id) for c in checked.entries],
            },
            FHIR_JSON,
        )
        if len(refusals) == len(checked.entries):  # a batch of which no entry can be kept
            return Refused(
                answer,
                "fhir.invalid",
                "every entry of the batch was refused",
                False,
                source.code,
                media_type,
                refusals,
            )
        return Kept(record, key, answer, refusals)
    assigned = logical_id(Entry(None, "", {}, document), event_id)
    location = f"{root}/{assigned}"
    information = outcome(
        [Issue("information", "informational", f"stored as {location} (event {event_id})")]
    )
    return Kept(record, key, Answer(201, information, FHIR_JSON, {"Location": location}))


def _response_entry(check: EntryCheck, event_id: str) -> dict[str, Any]:
    """A transaction-response or batch-response entry for one request entry."""
    entry = check.entry
    if check.problems:
        status = (
            "400 Bad Request"
            if any(p.field in (entry.pointer, f"{entry.at}/request") for p in check.problems)
            else "422 Unprocessable Entity"
        )
        issues = [
            Issue("error", _issue_code(p), p.problem, fhir_path(p.field, "Bundle"), "fhir.invalid")
            for p in check.problems
        ]
        return {"response": {"status": status, "outcome": outcome(issues)}}
    if entry.method in NOT_WRITES:
        note = Issue(
            "information",
            "informational",
            f"{entry.method} kept with the Bundle; this door stores what is sent and serves "
            "no reads or deletions",
        )
        return {"response": {"status": "202 Accepted", "outcome": outcome([note])}}
    kind = entry.kind or "Resource"
    return {
        "response": {"status": "201 Created", "location": f"{kind}/{logical_id(entry, event_id)}"}
    }


def _item_refusal(check: EntryCheck) -> ItemRefusal:
    entry = check.entry
    sent = entry.resource if entry.resource is not None else entry.entry
    original = json.dumps(sent, ensure_ascii=False, separators=(",", ":")).encode()
    return ItemRefusal(entry.pointer, "fhir.invalid", _reason(check.problems), original)


def _issue_code(found: FieldProblem) -> str:
    if found.problem.startswith("required") or "bdl-3" in found.problem:
        return "required"
    if "value set" in found.problem or "binding" in found.problem:
        return "code-invalid"
    if re.search(r"\b(obs|con|bdl)-\d+", found.problem):
        return "invariant"
    return "invalid"


def _reason(problems: Sequence[FieldProblem]) -> str:
    return "; ".join(f"{p.field or 'body'}: {p.problem}" for p in problems[:20])


def _record(
    source: Source,
    body: bytes,
    media_type: str,
    charset: str,
    request_id: str | None,
    received_at: datetime,
    document: Any = None,
) -> dict[str, Any]:
    """hs.ingest.RawMessage of a kept body; a Bundle's id names it when no request id does."""
    bundle_id = None
    if isinstance(document, dict) and document.get("resourceType") == "Bundle":
        bundle_id = document.get("id") if isinstance(document.get("id"), str) else None
    return {
        "envelope": new_envelope(source.code, source.code, received_at, received_at),
        "payload": body,
        "content_type": media_type,
        "charset": charset,
        "transport": "HTTP",
        "sender_message_id": request_id or bundle_id,
        "content_sha256": hashlib.sha256(body).digest(),
        "only_items": [],
    }


def _charset(parameters: str) -> str:
    for parameter in parameters.split(";"):
        name, _, value = parameter.strip().partition("=")
        if name.lower() == "charset" and value:
            return value.strip('"').lower()
    return "utf-8"


def _field(document: Any, name: str) -> str | None:
    value = document.get(name) if isinstance(document, dict) and name else None
    return value if isinstance(value, str) else None


# source format -> (accepted media types, the check for a source, the field naming the patient)
FORMATS: dict[
    str, tuple[tuple[str, ...], Callable[[Source], Callable[[bytes, str], Checked]], str]
] = {
    "fhir": ((FHIR_JSON, "application/json"), lambda _: check_fhir, ""),
    "clinic-json": (("application/json",), lambda _: check_clinic_json, "jmbh"),
    "clinic-csv": (
        ("text/csv",),
        lambda source: lambda body, charset: check_csv(body, source.required_columns, charset),
        "",
    ),
    "device-batch": (("application/json",), lambda _: check_device_batch, "patient_ref"),
}
