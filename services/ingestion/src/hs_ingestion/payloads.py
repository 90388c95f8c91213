"""Checks on HTTP payloads before they are kept: well-formed, of the expected shape, with every
bad field listed (for the RFC 7807 problem document). Deeper mapping happens in
normalization; what passes here is stored on the raw topic as received. Pure functions."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from hs_ingestion.fhirterms import terminology_problems


@dataclass(frozen=True)
class FieldProblem:
    field: str  # JSON pointer or CSV column / row
    problem: str  # what is wrong, never the value


@dataclass(frozen=True)
class Checked:
    document: Any | None
    problems: list[FieldProblem]
    reason_code: str = ""
    entries: tuple[EntryCheck, ...] = ()  # FHIR: each resource with its own problems


def _json(body: bytes, charset: str) -> Checked:
    try:
        return Checked(json.loads(body.decode(charset)), [])
    except UnicodeDecodeError:
        return Checked(None, [FieldProblem("", f"body is not valid {charset}")], "http.charset")
    except json.JSONDecodeError as exc:
        return Checked(
            None,
            [FieldProblem("", f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")],
            "json.malformed",
        )


SUBMITTED_BUNDLES = ("transaction", "batch", "collection", "message", "document")
WRITES_ONLY_WITH_RESOURCE = ("GET", "HEAD", "DELETE")  # request methods that carry no resource
PATIENT_ELEMENT = {
    "Observation": "subject", "Condition": "subject", "Encounter": "subject",
    "Immunization": "patient",
}  # fmt: skip
_TYPE_ID = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


@dataclass(frozen=True)
class Entry:
    """One resource of a FHIR body: a Bundle entry (pointer `/entry/<i>/resource`), or the
    body itself (index None, pointer '')."""

    index: int | None
    pointer: str
    entry: dict[str, Any]  # the Bundle entry ({} for a single resource)
    resource: dict[str, Any] | None

    @property
    def kind(self) -> str | None:
        kind = self.resource.get("resourceType") if self.resource else None
        return kind if isinstance(kind, str) else None

    @property
    def method(self) -> str:
        request = self.entry.get("request")
        method = request.get("method") if isinstance(request, dict) else None
        return method if isinstance(method, str) else "POST"

    @property
    def at(self) -> str:
        """The entry's own pointer (`/entry/2`), '' for a single resource."""
        return "" if self.index is None else f"/entry/{self.index}"


@dataclass(frozen=True)
class EntryCheck:
    entry: Entry
    problems: tuple[FieldProblem, ...]


def entries(document: dict[str, Any]) -> list[Entry]:
    """The resources of a body in order: a Bundle's entries, or the body."""
    if document.get("resourceType") != "Bundle":
        return [Entry(None, "", {}, document)]
    listed = document.get("entry")
    found = []
    for index, sent in enumerate(listed if isinstance(listed, list) else []):
        entry = sent if isinstance(sent, dict) else {}
        resource = entry.get("resource")
        found.append(
            Entry(
                index,
                f"/entry/{index}/resource",
                entry,
                resource if isinstance(resource, dict) else None,
            )
        )
    return found


def type_and_id(reference: str) -> tuple[str, str] | None:
    """('Patient', '123') of 'Patient/123' or 'http://server/fhir/Patient/123/_history/2'."""
    match = _TYPE_ID.search(reference)
    return (match.group(1), match.group(2)) if match else None


def references(node: Any, pointer: str = "") -> Iterator[tuple[str, str]]:
    """(pointer, value) of every Reference.reference under `node`, outside `contained`."""
    if isinstance(node, dict):
        for key, child in node.items():
            if key == "reference" and isinstance(child, str):
                yield f"{pointer}/reference", child
            elif key != "contained":
                yield from references(child, f"{pointer}/{key}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from references(child, f"{pointer}/{index}")


def check_fhir(body: bytes, charset: str = "utf-8") -> Checked:
    """A FHIR R4 resource or Bundle: every problem (Bundle, then entry by entry), and each
    entry's own problems in `entries` (a batch keeps the entries that have none)."""
    checked = _json(body, charset)
    if checked.document is None:
        return checked
    document = checked.document
    if not isinstance(document, dict):
        return Checked(
            None, [FieldProblem("", "a FHIR resource must be a JSON object")], "fhir.invalid"
        )
    items = entries(document)
    bundle_type = document.get("type") if document.get("resourceType") == "Bundle" else None
    shell: list[FieldProblem] = []
    by_entry: dict[int | None, list[FieldProblem]] = {item.index: [] for item in items}
    if document.get("resourceType") == "Bundle":
        for problem in _bundle_problems(document, items):
            index = _entry_index(problem.field)
            by_entry.get(index, shell).append(problem)
    full_urls = {i.entry["fullUrl"] for i in items if isinstance(i.entry.get("fullUrl"), str)}
    for item in items:
        by_entry[item.index] += _entry_problems(item, bundle_type, full_urls)
    checks = tuple(EntryCheck(item, tuple(by_entry[item.index])) for item in items)
    problems = shell + [p for check in checks for p in check.problems]
    return Checked(document, problems, "fhir.invalid" if problems else "", checks)


def _entry_index(pointer: str) -> int | None:
    match = re.match(r"^/entry/(\d+)(?:/|$)", pointer)
    return int(match.group(1)) if match else None


def _bundle_problems(document: dict[str, Any], items: list[Entry]) -> list[FieldProblem]:
    problems = []
    bundle_type = document.get("type")
    if bundle_type not in SUBMITTED_BUNDLES:
        problems.append(FieldProblem("/type", f"must be one of {list(SUBMITTED_BUNDLES)}"))
    if not items:
        problems.append(FieldProblem("/entry", "a Bundle needs at least one entry"))
    elif bundle_type in ("message", "document"):
        first = "MessageHeader" if bundle_type == "message" else "Composition"
        if items[0].kind != first:
            problems.append(
                FieldProblem("/entry/0/resource", f"a {bundle_type} starts with a {first}")
            )
    seen: set[str] = set()
    for item in items:
        full_url = item.entry.get("fullUrl")
        if isinstance(full_url, str):
            if full_url in seen:
                problems.append(FieldProblem(f"{item.at}/fullUrl", "bdl-7: fullUrl used twice"))
            seen.add(full_url)
    shell = {**document, "entry": [_without_resource(i.entry) for i in items]}
    if not items:
        shell.pop("entry")
    problems += _fhir_r4_problems("", shell)
    return problems + [
        FieldProblem(where, problem) for where, problem in terminology_problems("", shell)
    ]


def _without_resource(entry: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in entry.items() if key != "resource"}


def _entry_problems(item: Entry, bundle_type: Any, full_urls: set[str]) -> list[FieldProblem]:
    at = item.at
    if bundle_type in ("transaction", "batch"):
        if not isinstance(item.entry.get("request"), dict):
            return [FieldProblem(f"{at}/request", f"bdl-3: required in a {bundle_type}")]
        if item.method in WRITES_ONLY_WITH_RESOURCE and item.resource is None:
            return []
    if item.resource is None:
        raw = item.entry.get("resource")
        return [
            FieldProblem(
                item.pointer, "required" if raw is None else "resource must be a JSON object"
            )
        ]
    resource = item.resource
    problems = _fhir_resource(item.pointer, resource)
    if not problems:
        problems = _fhir_r4_problems(item.pointer, resource)
    if not problems:
        problems = [
            FieldProblem(where, problem)
            for where, problem in terminology_problems(item.pointer, resource)
        ]
    for where, reference in references(resource, item.pointer):
        if reference.startswith("urn:uuid:") and reference not in full_urls:
            problems.append(FieldProblem(where, "refers to no fullUrl of the Bundle"))
    return problems


def _fhir_r4_problems(pointer: str, resource: dict[str, Any]) -> list[FieldProblem]:
    """Every element checked against the FHIR R4 (R4B) models of `fhir.resources`."""
    try:
        model = get_fhir_model_class(str(resource.get("resourceType")))
    except (KeyError, ValueError, LookupError):
        return [FieldProblem(f"{pointer}/resourceType", "not a FHIR R4 resource type")]
    try:
        model.model_validate(resource)
    except ValidationError as error:
        problems = []
        for detail in error.errors():
            message = str(detail["msg"])
            value = detail.get("input")
            if isinstance(value, str | int | float) and str(value) and str(value) in message:
                message = message.replace(str(value), "…")  # never echo the value
            problems.append(
                FieldProblem(pointer + "/" + "/".join(str(part) for part in detail["loc"]), message)
            )
        return problems
    return []


def _fhir_resource(pointer: str, resource: dict[str, Any]) -> list[FieldProblem]:
    kind = resource.get("resourceType")
    if not isinstance(kind, str) or not kind:
        return [FieldProblem(f"{pointer}/resourceType", "required: the resource type")]
    if kind == "Bundle" and pointer:
        return [FieldProblem(f"{pointer}/resourceType", "a Bundle inside a Bundle is not taken")]
    problems = []
    if "id" in resource and not isinstance(resource.get("id"), str):
        problems.append(FieldProblem(f"{pointer}/id", "must be a string"))
    if kind == "Patient" and "birthDate" in resource and not _is_date(resource["birthDate"]):
        problems.append(FieldProblem(f"{pointer}/birthDate", "not a valid date (YYYY-MM-DD)"))
    if kind == "Observation":
        for required in ("status", "code"):
            if required not in resource:
                problems.append(FieldProblem(f"{pointer}/{required}", "required"))
    element = PATIENT_ELEMENT.get(kind)
    if element is not None:
        problems += _patient_reference_problems(f"{pointer}/{element}", resource.get(element))
    return problems


def _patient_reference_problems(where: str, target: Any) -> list[FieldProblem]:
    """The Patient an event is about: a reference to it, or its identifier."""
    if not isinstance(target, dict):
        return [FieldProblem(where, "required: whom the resource is about")]
    reference = target.get("reference")
    if isinstance(reference, str) and reference:
        if reference.startswith(("urn:", "#")):
            return []
        named = type_and_id(reference)
        if named is None or named[0] != "Patient":
            return [FieldProblem(f"{where}/reference", "must reference a Patient")]
        return []
    identifier = target.get("identifier")
    if isinstance(identifier, dict) and isinstance(identifier.get("value"), str):
        return []
    return [FieldProblem(where, "needs a reference to the Patient or its identifier")]


def _is_date(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        date.fromisoformat(value) if len(value) == 10 else int(value[:4])
    except ValueError:
        return False
    return True


def check_clinic_json(body: bytes, charset: str = "utf-8") -> Checked:
    checked = _json(body, charset)
    if checked.document is None:
        return checked
    document = checked.document
    if not isinstance(document, dict):
        return Checked(
            None,
            [FieldProblem("", "a clinic record must be a JSON object")],
            "clinic.invalid_field",
        )
    problems = []
    if not isinstance(document.get("jmbh"), str) or not document.get("jmbh"):
        problems.append(FieldProblem("/jmbh", "required: the clinic's patient number"))
    if not isinstance(document.get("lx"), str) or document["lx"] not in ("dj", "jy", "zd"):
        problems.append(
            FieldProblem(
                "/lx", "record kind must be dj (registration), jy (results) or zd (diagnosis)"
            )
        )
    if document.get("csrq") is not None and not _is_date(document.get("csrq")):
        problems.append(FieldProblem("/csrq", "birth date is not a valid date (YYYY-MM-DD)"))
    return Checked(document, problems, "clinic.invalid_field" if problems else "")


def check_csv(body: bytes, required_columns: tuple[str, ...], charset: str = "utf-8") -> Checked:
    try:
        text = body.decode(charset)
    except UnicodeDecodeError:
        return Checked(None, [FieldProblem("", f"body is not valid {charset}")], "http.charset")
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        return Checked(None, [FieldProblem("", f"not CSV: {exc}")], "csv.malformed")
    header = rows[0] if rows else None
    if not header:
        return Checked(None, [FieldProblem("", "empty CSV: no header row")], "csv.missing_columns")
    missing = [c for c in required_columns if c not in header]
    if missing:
        return Checked(
            None,
            [FieldProblem(c, "required column missing from the header") for c in missing],
            "csv.missing_columns",
        )
    problems = [
        FieldProblem(f"row {number}", f"has {len(row)} cells, the header has {len(header)}")
        for number, row in enumerate(rows[1:], start=2)
        if row and len(row) != len(header)
    ]
    return Checked(header, problems, "csv.ragged_rows" if problems else "")


def check_device_batch(body: bytes, charset: str = "utf-8") -> Checked:
    checked = _json(body, charset)
    if checked.document is None:
        return checked
    batch = checked.document
    if not isinstance(batch, dict):
        return Checked(
            None,
            [FieldProblem("", "a reading batch must be a JSON object")],
            "device.invalid_reading",
        )
    problems = []
    if not isinstance(batch.get("device_id"), str):
        problems.append(FieldProblem("/device_id", "required string"))
    readings = batch.get("readings")
    if not isinstance(readings, list) or not readings:
        problems.append(FieldProblem("/readings", "required non-empty list"))
        readings = []
    for index, reading in enumerate(readings):
        pointer = f"/readings/{index}"
        if not isinstance(reading, dict):
            problems.append(FieldProblem(pointer, "must be an object"))
            continue
        value = reading.get("value")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            problems.append(FieldProblem(f"{pointer}/value", "must be a finite number"))
        for required in ("type", "unit", "time"):
            if not isinstance(reading.get(required), str):
                problems.append(FieldProblem(f"{pointer}/{required}", "required string"))
    return Checked(batch, problems, "device.invalid_reading" if problems else "")
