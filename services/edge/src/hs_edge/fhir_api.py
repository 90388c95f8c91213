"""The FHIR R4 view over REST: Patient/{id}, the Patient search (identifier; name, birthdate,
gender, scored) and Patient/$match, Patient/{id}/$everything, the Observation search
(patient, code, date, category, _count, with paging links) and the Condition search (patient).
The same operations, scopes, roles, rate limits and audit as the rest of the edge; refusals are
OperationOutcomes."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response

from hs_common.codec import Record
from hs_edge import fhir, quality
from hs_edge import operations as op
from hs_edge.auth import Caller, Refused, Role
from hs_edge.operations import Edge, ObservationQuery
from hs_terminology.vocab import RESIDENT_ID_SYSTEMS

MEDIA_TYPE = "application/fhir+json"
PREFIXES = ("ge", "gt", "le", "lt", "eq")
CATEGORIES = {"laboratory": "LABORATORY", "vital-signs": "VITAL_SIGNS"}
TICK = timedelta(microseconds=1)


def outcome(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    body = fhir.operation_outcome(fhir.issue_type(status), f"{code}: {detail}")
    return JSONResponse(body, status, headers=headers, media_type=MEDIA_TYPE)


def date_range(values: list[str]) -> tuple[datetime | None, datetime | None]:
    """FHIR `date` search values (ge, gt, le, lt, eq; a date or an instant) as [since, until).
    A date without a time is the whole UTC day."""
    since: datetime | None = None
    until: datetime | None = None
    for value in values:
        prefix = value[:2] if value[:2] in PREFIXES else "eq"
        start, end = _moment(value[2:] if value[:2] in PREFIXES else value)
        if prefix in ("ge", "eq"):
            since = max(since or start, start)
        if prefix == "gt":
            since = max(since or end, end)
        if prefix in ("le", "eq"):
            until = min(until or end, end)
        if prefix == "lt":
            until = min(until or start, start)
    return since, until


def _moment(text: str) -> tuple[datetime, datetime]:
    """The interval a date or an instant stands for."""
    try:
        if len(text) == len("2026-03-01"):
            day = datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
            return day, day + timedelta(days=1)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Refused("request.date", "a date is [prefix]YYYY-MM-DD or an instant", 400) from None
    if moment.tzinfo is None:
        raise Refused("request.date", "an instant needs its time zone", 400)
    return moment, moment + TICK


def _patient(caller: Caller, person: Record, record_keys: list[str]) -> fhir.Resource:
    """The Patient as the caller's role may see it: identifiers masked for clinicians and
    public health; none for researchers (de-identified data only)."""
    if caller.role is Role.RESEARCHER:
        raise Refused("role.forbidden", "researchers get de-identified data: not FHIR Patient", 403)
    masked = caller.role in (Role.CLINICIAN, Role.PUBLIC_HEALTH)
    visible = person | {"golden": op.visible_golden(caller, person)}
    return fhir.patient(visible, record_keys, "masked" if masked else "full")


SEX = {"male": "M", "female": "F"}  # FHIR gender, as the golden record writes it
VERSION, RELEASED = "0.1.0", "2026-12-02"  # this view's version, in the CapabilityStatement


def _no_patients_for_research(caller: Caller) -> None:
    if caller.role is Role.RESEARCHER:
        raise Refused("role.forbidden", "researchers get de-identified data: not FHIR Patient", 403)


def _matches(
    request: Request, caller: Caller, matches: list[op.Match], ignored: fhir.Resource | None = None
) -> fhir.Resource:
    entries = [_patient(caller, m.person, m.record_keys) for m in matches]
    scores = [(m.score.probability, m.grade) for m in matches]
    links = _page_links(request, None)
    return fhir.bundle("Patient", entries, _base(request), links, len(entries), scores, ignored)


def _unsupported(request: Request, kind: str) -> fhir.Resource | None:
    """What a search does with parameters this view does not support: with `Prefer:
    handling=strict` it is refused; else (lenient, as FHIR servers default to) they are ignored,
    and the OperationOutcome returned, to go with the results, names them."""
    unsupported = fhir.unsupported_parameters(kind, request.query_params.keys())
    if not unsupported:
        return None
    listed = ", ".join(unsupported)
    if "handling=strict" in request.headers.get("prefer", "").replace(" ", ""):
        raise Refused("request.parameter", f"not supported here: {listed}", 400)
    return fhir.operation_outcome(
        "not-supported", f"request.parameter: ignored, not supported here: {listed}", "warning"
    )


def _sort(value: str | None, field: str) -> bool:
    """Whether `_sort` asks for the newest first (`-<field>`); the oldest first is the default."""
    if value not in (None, field, f"-{field}"):
        raise Refused("request.sort", f"_sort is {field} or -{field}", 400)
    return value == f"-{field}"


def _match_parameters(body: object) -> tuple[op.Demographics, str | None, int, bool]:
    """(the demographics, a resident ID, count, onlyCertainMatches) of a $match request."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise Refused("request.parameters", "$match takes a Parameters resource", 400)
    named = {p.get("name"): p for p in body.get("parameter", []) if isinstance(p, dict)}
    patient = (named.get("resource") or {}).get("resource")
    if not isinstance(patient, dict) or patient.get("resourceType") != "Patient":
        raise Refused("request.parameters", "the resource parameter holds a Patient", 400)
    names = [n for n in patient.get("name", []) if isinstance(n, dict)]
    name = None
    if names:
        parts = [names[0].get("family") or "", *(names[0].get("given") or [])]
        name = names[0].get("text") or " ".join(p for p in parts if p) or None
    born = _birth_date(patient.get("birthDate"))
    resident = [i.get("value") for i in patient.get("identifier", [])
                if isinstance(i, dict) and i.get("system") in RESIDENT_ID_SYSTEMS]  # fmt: skip
    count = (named.get("count") or {}).get("valueInteger", 10)
    if not isinstance(count, int) or not 1 <= count <= 50:
        raise Refused("request.parameters", "count is 1 to 50", 400)
    certain = (named.get("onlyCertainMatches") or {}).get("valueBoolean") is True
    identifier = str(resident[0]) if resident and resident[0] else None
    sex = SEX.get(str(patient.get("gender")))
    return op.Demographics(name, born, sex), identifier, count, certain


def _birth_date(text: object) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(str(text))
    except ValueError:
        raise Refused("request.birthdate", "a birth date is YYYY-MM-DD", 400) from None


def _page_links(request: Request, next_cursor: str | None) -> dict[str, str]:
    links = {"self": str(request.url)}
    if next_cursor is not None:
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "_cursor"]
        query = urlencode([*params, ("_cursor", next_cursor)])
        links["next"] = str(request.url.replace(query=query))
    return links


def _base(request: Request) -> str:
    return f"{str(request.base_url).rstrip('/')}/fhir"


def fhir_routes(app: FastAPI, edge: Edge) -> None:
    @app.get("/fhir/metadata", response_class=JSONResponse)
    async def metadata(request: Request) -> Response:
        """The CapabilityStatement (no token needed, as FHIR servers answer it)."""
        statement = fhir.capability_statement(_base(request), VERSION, RELEASED)
        return JSONResponse(statement, media_type=MEDIA_TYPE)

    _patient_search_routes(app, edge)
    _record_routes(app, edge)
    _quality_routes(app, edge)


def _quality_routes(app: FastAPI, edge: Edge) -> None:
    @app.get("/fhir/MeasureReport", response_class=JSONResponse)
    async def search_measure_reports(
        request: Request,
        reporter: Annotated[str, Query(min_length=1, max_length=100)],
        period: Annotated[list[str] | None, Query(max_length=2)] = None,
    ) -> Response:
        """A source's data quality per day as MeasureReports (reporter: Organization/<code>),
        each check a group: records it applied to, records violating it, % violating; period:
        ge/gt/le/lt/eq on the day's start (default: the last 30 days)."""
        ignored = _unsupported(request, "MeasureReport")
        institution = reporter.removeprefix("Organization/")
        since, until = date_range(period or [])
        windows = op.quality_windows(edge, request.state.caller, institution, "DAY", since)
        entries = [quality.measure_report(w) for w in windows
                   if until is None or w["window_start"] < until]  # fmt: skip
        body = fhir.bundle("MeasureReport", entries, _base(request), _page_links(request, None),
                           outcome=ignored)  # fmt: skip
        return JSONResponse(body, media_type=MEDIA_TYPE)


def _patient_search_routes(app: FastAPI, edge: Edge) -> None:
    @app.get("/fhir/Patient", response_class=JSONResponse)
    async def search_patients(
        request: Request,
        identifier: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        name: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
        birthdate: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$")] = None,
        gender: Annotated[str | None, Query(pattern="^(male|female)$")] = None,
        count: Annotated[int, Query(alias="_count", ge=1, le=50)] = 10,
    ) -> Response:
        """Patient?identifier=[<system>|]<value>: the resident ID, or an institution's patient
        number (`<institution>|<number>` or `urn:hs:local:<institution>:patient|<number>`).
        Patient?name=&birthdate=&gender=: the best matches, each with its search score."""
        caller: Caller = request.state.caller
        _no_patients_for_research(caller)
        ignored = _unsupported(request, "Patient")
        if identifier is not None:
            persons = await op.find_persons(edge, caller, identifier, "search Patient")
            entries = [_patient(caller, golden, keys) for golden, keys in persons]
            body = fhir.bundle("Patient", entries, _base(request), _page_links(request, None),
                               total=len(entries), outcome=ignored)  # fmt: skip
            return JSONResponse(body, media_type=MEDIA_TYPE)
        wanted = op.Demographics(name, _birth_date(birthdate), SEX.get(gender or ""))
        matches = await op.match_persons(edge, caller, wanted, "search Patient", count)
        return JSONResponse(_matches(request, caller, matches, ignored), media_type=MEDIA_TYPE)

    @app.post("/fhir/Patient/$match", response_class=JSONResponse)
    async def match(request: Request) -> Response:
        """The MDM operation: a Parameters resource with `resource` (a Patient: name,
        birthDate, gender, identifier), and optionally `count` and `onlyCertainMatches`; the
        candidates best first, each with its score and match grade."""
        caller: Caller = request.state.caller
        _no_patients_for_research(caller)
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise Refused("request.parameters", "$match takes a Parameters resource", 400) from None
        wanted, identifier, count, only_certain = _match_parameters(body)
        matches = await op.match_persons(edge, caller, wanted, "Patient/$match", count)
        if identifier is not None:  # a resident ID given: who holds it counts first
            holders = set(op.persons_identified(edge, identifier))
            matches.sort(key=lambda m: (m.person["person_id"] not in holders, -m.score.weight))
        if only_certain:
            matches = [m for m in matches if m.grade == "certain"]
        return JSONResponse(_matches(request, caller, matches), media_type=MEDIA_TYPE)


def _record_routes(app: FastAPI, edge: Edge) -> None:
    @app.get("/fhir/Patient/{person_id}", response_class=JSONResponse)
    async def read_patient(request: Request, person_id: str) -> Response:
        caller: Caller = request.state.caller
        found, record_keys = op.person(edge, caller, person_id, "Patient")
        return JSONResponse(_patient(caller, found, record_keys), media_type=MEDIA_TYPE)

    @app.get("/fhir/Patient/{person_id}/$everything", response_class=JSONResponse)
    async def everything(
        request: Request, person_id: str,
        count: Annotated[int, Query(alias="_count", ge=1, le=op.MAX_PAGE)] = 50,
        cursor: Annotated[str | None, Query(alias="_cursor", max_length=300)] = None,
    ) -> Response:  # fmt: skip
        """The Patient, their diagnoses (when the token may read them) and their observations,
        a page of observations at a time (the Patient and the diagnoses on the first)."""
        caller: Caller = request.state.caller
        found, record_keys = op.person(edge, caller, person_id, "Patient")
        patient = _patient(caller, found, record_keys)
        query = ObservationQuery(count=count, cursor=cursor)
        observations, next_cursor = op.observation_page(edge, caller, person_id, query)
        entries = [fhir.observation(o, person_id) for o in observations]
        if cursor is None:
            diagnoses = (  # the compartment as far as the token's scopes reach
                op.person_conditions(edge, caller, person_id) if caller.may("Condition") else []
            )
            entries[:0] = [patient, *(fhir.condition(d, person_id) for d in diagnoses)]
        links = _page_links(request, next_cursor)
        body = fhir.bundle(fhir.EVERYTHING, entries, _base(request), links)
        return JSONResponse(body, media_type=MEDIA_TYPE)

    @app.get("/fhir/Condition", response_class=JSONResponse)
    async def search_conditions(
        request: Request,
        patient: Annotated[str | None, Query(max_length=200)] = None,
        subject: Annotated[str | None, Query(max_length=200)] = None,
        patient_identifier: Annotated[
            str | None, Query(alias="patient.identifier", max_length=200)
        ] = None,
        code: Annotated[list[str] | None, Query(max_length=20)] = None,
        recorded_date: Annotated[list[str] | None, Query(alias="recorded-date", max_length=2)] = (
            None
        ),
        sort: Annotated[str | None, Query(alias="_sort", max_length=40)] = None,
    ) -> Response:
        """A patient's diagnoses (patient or subject: Patient/<id> or <id>; or
        patient.identifier: a resident ID or <institution>|<patient number>), in one page,
        oldest first (or newest, _sort=-recorded-date); code: <system>|<code> (ICD-10, ICD-11
        or the source's own), commas for any of several; recorded-date: ge/gt/le/lt/eq."""
        ignored = _unsupported(request, "Condition")
        newest_first = _sort(sort, "recorded-date")
        person_id = _subject(edge, request, patient or subject, patient_identifier, subject)
        if person_id is None:
            return _empty(request, "Condition", ignored)
        codes = {c for value in code or () for c in value.split(",") if c}
        since, until = date_range(recorded_date or [])
        diagnoses = [
            d
            for d in op.person_conditions(edge, request.state.caller, person_id)
            if _coded_as(d, codes) and _within(d.get("recorded_at"), since, until)
        ]
        if newest_first:
            diagnoses.reverse()
        entries = [fhir.condition(d, person_id) for d in diagnoses]
        body = fhir.bundle(
            "Condition", entries, _base(request), _page_links(request, None), outcome=ignored
        )
        return JSONResponse(body, media_type=MEDIA_TYPE)

    @app.get("/fhir/Observation", response_class=JSONResponse)
    async def search_observations(
        request: Request,
        patient: Annotated[str | None, Query(max_length=200)] = None,
        subject: Annotated[str | None, Query(max_length=200)] = None,
        patient_identifier: Annotated[
            str | None, Query(alias="patient.identifier", max_length=200)
        ] = None,
        code: Annotated[list[str] | None, Query(max_length=20)] = None,
        date: Annotated[list[str] | None, Query(max_length=2)] = None,
        category: Annotated[str | None, Query(max_length=40)] = None,
        count: Annotated[int, Query(alias="_count", ge=1, le=op.MAX_PAGE)] = 50,
        cursor: Annotated[str | None, Query(alias="_cursor", max_length=300)] = None,
        include: Annotated[str | None, Query(alias="_include", max_length=40)] = None,
        sort: Annotated[str | None, Query(alias="_sort", max_length=40)] = None,
    ) -> Response:
        """Search by patient or subject (Patient/<id> or <id>) or patient.identifier (a
        resident ID or <institution>|<patient number>), code (<system>|<code>, commas for any
        of several), date (ge/gt/le/lt/eq), category (laboratory, vital-signs); oldest first,
        or newest with _sort=-date; _include=Observation:patient adds the Patient on the first
        page."""
        ignored = _unsupported(request, "Observation")
        if include not in (None, "Observation:patient"):
            raise Refused("request.include", "_include is Observation:patient", 400)
        newest_first = _sort(sort, "date")
        person_id = _subject(edge, request, patient or subject, patient_identifier, subject)
        if person_id is None:
            return _empty(request, "Observation", ignored)
        codes = tuple(c for value in code or () for c in value.split(",") if c)
        since, until = date_range(date or [])
        if category is not None and category not in CATEGORIES:
            raise Refused("request.category", f"category is one of {sorted(CATEGORIES)}", 400)
        query = ObservationQuery(
            since, until, codes, CATEGORIES.get(category or ""), count, cursor, newest_first
        )
        observations, next_cursor = op.observation_page(
            edge, request.state.caller, person_id, query
        )
        entries = [fhir.observation(o, person_id) for o in observations]
        if include and cursor is None:
            caller: Caller = request.state.caller
            found, record_keys = op.person(edge, caller, person_id, "Patient")
            entries.insert(0, _patient(caller, found, record_keys))
        links = _page_links(request, next_cursor)
        body = fhir.bundle("Observation", entries, _base(request), links, outcome=ignored)
        return JSONResponse(body, media_type=MEDIA_TYPE)


def _subject(
    edge: Edge, request: Request, patient: str | None, identifier: str | None,
    subject: str | None = None,
) -> str | None:  # fmt: skip
    """The person a search is about: `patient`, or the one person `identifier` names (None:
    it names no one). `subject`, when given too, is refused: one of the three names them."""
    if (patient is None) == (identifier is None) or (
        subject is not None and subject not in (patient, f"Patient/{patient}")
    ):
        raise Refused("request.patient", "give one of patient, subject or patient.identifier", 400)
    if patient is not None:
        person_id = patient.removeprefix("Patient/")
    else:
        assert identifier is not None
        found = op.persons_identified(edge, identifier)
        if len(found) > 1:
            raise Refused("request.patient", "the identifier names several persons", 409)
        if not found:
            return None
        person_id = found[0]
    request.state.person_id = person_id
    return person_id


def _empty(request: Request, kind: str, ignored: fhir.Resource | None) -> Response:
    links = _page_links(request, None)
    body = fhir.bundle(kind, [], _base(request), links, total=0, outcome=ignored)
    return JSONResponse(body, media_type=MEDIA_TYPE)


def _coded_as(diagnosis: Record, codes: set[str]) -> bool:
    """Whether any of the diagnosis's codings is one of `codes` (<system>|<code>); True when
    no code is asked for."""
    coded = diagnosis["diagnosis"]
    codings = [coded[k] for k in ("icd10", "icd11", "local_code") if coded.get(k)]
    return not codes or any(f"{c['system']}|{c['code']}" in codes for c in codings)


def _within(moment: datetime | None, since: datetime | None, until: datetime | None) -> bool:
    if since is None and until is None:
        return True
    return (
        moment is not None
        and (since is None or moment >= since)
        and (until is None or moment < until)
    )


def is_fhir(request: Request) -> bool:
    return request.url.path.startswith("/fhir/")
