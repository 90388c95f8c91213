"""Checks on HTTP payloads before they are kept: well-formed, of the expected shape, with every
bad field listed (for the RFC 7807 problem document). Deeper mapping happens in
normalization; what passes here is stored on the raw topic as received. Pure functions."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from datetime import date
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from hs_ingestion.fhirterms import terminology_problems

FHIR_RESOURCES = {"Bundle", "Patient", "Observation", "Condition", "Encounter"}


@dataclass(frozen=True)
class FieldProblem:
    field: str  # JSON pointer or CSV column / row
    problem: str  # what is wrong, never the value


@dataclass(frozen=True)
class Checked:
    document: Any | None
    problems: list[FieldProblem]
    reason_code: str = ""


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


def check_fhir(body: bytes, charset: str = "utf-8") -> Checked:
    checked = _json(body, charset)
    if checked.document is None:
        return checked
    document = checked.document
    problems: list[FieldProblem] = []
    if not isinstance(document, dict):
        return Checked(
            None, [FieldProblem("", "a FHIR resource must be a JSON object")], "fhir.invalid"
        )
    resources: list[tuple[str, Any]] = [("", document)]
    if document.get("resourceType") == "Bundle":
        entries = document.get("entry")
        if not isinstance(entries, list) or not entries:
            problems.append(FieldProblem("/entry", "a Bundle needs at least one entry"))
            entries = []
        resources += [
            (f"/entry/{i}/resource", e.get("resource") if isinstance(e, dict) else None)
            for i, e in enumerate(entries)
        ]
    for pointer, resource in resources:
        problems += _fhir_resource(pointer, resource)
    if not problems:
        problems = _fhir_r4_problems(document)
    if not problems:
        problems = [
            FieldProblem(where, problem)
            for pointer, resource in resources
            for where, problem in terminology_problems(pointer, resource)
        ]
    return Checked(document, problems, "fhir.invalid" if problems else "")


def _fhir_r4_problems(document: dict[str, Any]) -> list[FieldProblem]:
    """Every element checked against the FHIR R4 (R4B) models of `fhir.resources`."""
    try:
        get_fhir_model_class(document["resourceType"]).model_validate(document)
    except ValidationError as error:
        problems = []
        for detail in error.errors():
            message = str(detail["msg"])
            value = detail.get("input")
            if isinstance(value, str | int | float) and str(value) and str(value) in message:
                message = message.replace(str(value), "…")  # never echo the value
            problems.append(
                FieldProblem("/" + "/".join(str(part) for part in detail["loc"]), message)
            )
        return problems
    return []


def _fhir_resource(pointer: str, resource: Any) -> list[FieldProblem]:
    if not isinstance(resource, dict):
        return [FieldProblem(pointer, "resource must be a JSON object")]
    kind = resource.get("resourceType")
    if not isinstance(kind, str) or kind not in FHIR_RESOURCES:
        return [FieldProblem(f"{pointer}/resourceType", f"must be one of {sorted(FHIR_RESOURCES)}")]
    problems = []
    if kind != "Bundle" and not isinstance(resource.get("id"), str):
        problems.append(FieldProblem(f"{pointer}/id", "required string"))
    if kind == "Patient" and "birthDate" in resource and not _is_date(resource["birthDate"]):
        problems.append(FieldProblem(f"{pointer}/birthDate", "not a valid date (YYYY-MM-DD)"))
    if kind == "Observation":
        for required in ("status", "code", "subject"):
            if required not in resource:
                problems.append(FieldProblem(f"{pointer}/{required}", "required"))
    if kind == "Condition" and "subject" not in resource:
        problems.append(FieldProblem(f"{pointer}/subject", "required"))
    return problems


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
