"""What the edge does, whatever the transport: each operation checks the caller's scopes, role
and person, reads the read model or sends an event on, and returns a view (plain data) that
REST, gRPC and the FHIR view render. A refusal is a `Refused` that names why."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter

from hs_common import control, topics
from hs_common.codec import Codec, Record
from hs_common.envelope import derived_envelope
from hs_common.errors import NotStoredError
from hs_common.kafka import AsyncDurableProducer
from hs_edge import audit, charts, quality
from hs_edge.auth import Caller, Refused, Role, TokenIssuer, TokenValidator
from hs_edge.clients import RevokedClients
from hs_edge.projector import code_key, demographic_key, identifier_key
from hs_edge.ratelimit import Decision, RateLimiter
from hs_edge.recognition import Window, load_windows, standing
from hs_edge.store import Page, Store, StoreUnavailable
from hs_edge.trends import KidneyTrend, Point, Trend, kidney_trend, trend
from hs_empi.model import Model, Score
from hs_empi.service import DEFAULT_MODEL
from hs_empi.standardize import IdentityFields, Standard, standardize
from hs_terminology.vocab import RESIDENT_ID_SYSTEM, RESIDENT_ID_SYSTEMS

log = logging.getLogger("hs.edge")
MAX_PAGE = 200
CREATININE = (("http://loinc.org", "2160-0"), ("http://loinc.org", "14682-9"))  # mass; moles
MAX_POINTS = 5_000
View = dict[str, Any]


# The entries of what the request being served served, written with its own entry.
_SERVED: ContextVar[list[audit.Request] | None] = ContextVar("hs_edge_served", default=None)


def serving_request() -> None:
    """Begin a request's scope: what it serves is audited with it, in one write."""
    _SERVED.set([])


@dataclass
class AuditTrail:
    """This process's chain, written to the audit topic; its head is anchored in `anchors` (the
    read model's database) after every entry, before the request is answered (at most every
    `anchor_seconds` when set), and by `anchor()`."""

    producer: AsyncDurableProducer
    codec: Codec
    topic: str
    chain: audit.Chain
    anchors: Store | None = None
    anchor_seconds: float = 0.0
    clock: Callable[[], float] = field(default=time.monotonic)
    _anchored_at: float = field(default=float("-inf"), init=False)
    _written: audit.Entry | None = field(default=None, init=False)

    async def record(self, request: audit.Request) -> None:
        """A request's entry, after the entries of what it served (`record_served`), all
        written together."""
        served = _SERVED.get()
        entries = [*served, request] if served else [request]
        if served:
            served.clear()
        await self.record_all(entries)

    async def record_served(self, requests: list[audit.Request]) -> None:
        """The entries of what the current request served (each person found or matched):
        written with the request's own entry, when the request is in a scope
        (`serving_request`); else at once."""
        served = _SERVED.get()
        if served is None:
            await self.record_all(requests)
        else:
            served.extend(requests)

    async def record_all(self, requests: list[audit.Request]) -> None:
        """Entries in this order, written together (one round trip to the broker), then
        anchored."""
        if not requests:
            return
        entries = [self.chain.append(request) for request in requests]
        values = [self.codec.encode("hs.edge.AuditEvent", audit.to_record(e)) for e in entries]
        # produced in order as the writes start; awaited together
        await asyncio.gather(*(self.producer.write(self.topic, v, e.chain)
                               for e, v in zip(entries, values, strict=True)))  # fmt: skip
        self._written = entries[-1]
        if self.clock() - self._anchored_at >= self.anchor_seconds:
            self.anchor()

    def anchor(self) -> None:
        """Record the head of what was written (a truncated trail then shows)."""
        if self.anchors is not None and self._written is not None:
            self._anchored_at = self.clock()
            head = self._written
            try:
                self.anchors.put_anchor(head.chain, head.sequence, head.hash)
            except StoreUnavailable:
                log.warning("audit head not anchored: the database did not answer")


class Opened:
    """Events decoded (sealed fields opened), the `size` most recently served kept: a page asked
    for again, as a dashboard polling a patient does, is not opened again. Callers do not
    change the records they get."""

    def __init__(self, codec: Codec, size: int) -> None:
        self.codec, self.size = codec, size
        self._records: OrderedDict[bytes, Record] = OrderedDict()

    def __call__(self, event: bytes) -> Record:
        record = self._records.get(event)
        if record is not None:
            self._records.move_to_end(event)
            return record
        record = self.codec.decode(event).record
        if self.size > 0:
            self._records[event] = record
            if len(self._records) > self.size:
                self._records.popitem(last=False)
        return record


def shipped_model() -> Model:
    """The EMPI's shipped model (its m and u probabilities and name frequencies)."""
    return Model.from_json(json.loads(DEFAULT_MODEL.read_text()))


@dataclass
class Edge:
    store: Store
    codec: Codec
    tokens: TokenValidator
    limiter: RateLimiter
    trail: AuditTrail
    issuer: TokenIssuer | None = None  # the token endpoint for registered clients, when on
    ack_topic: str = topics.VITALS_ACK.name
    review_topic: str = topics.REVIEW_DECISION.name
    client_topic: str = topics.EDGE_CLIENT.name
    poll_seconds: float = 0.5  # how often the live alert stream looks for new alerts
    clock: Callable[[], float] = field(default=time.monotonic)
    opened_size: int = 10_000  # decoded events kept (0: none)
    # Tokens not accepted, per peer: a peer past this limit is refused before its token is
    # even checked (guessing and flooding cost it, not the edge).
    bad_tokens: RateLimiter = field(default_factory=lambda: RateLimiter(rate=0.5, capacity=20))
    matcher: Model = field(default_factory=shipped_model)  # scores demographic searches
    windows: dict[str, Window] = field(default_factory=load_windows)  # 检验结果互认
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    opened: Opened = field(init=False)
    recognitions: Counter = field(init=False)
    revoked: RevokedClients = field(init=False)

    def __post_init__(self) -> None:
        self.opened = Opened(self.codec, self.opened_size)
        self.revoked = RevokedClients(self.store.revoked_clients)
        self.recognitions = Counter(
            "hs_edge_recent_result_checks",
            "Checks for a recent result before ordering a test, by ordering institution and "
            "outcome (avoidable: a result within its validity window stands in for a new test)",
            ["institution", "outcome"], registry=self.registry,
        )  # fmt: skip


# --- admission and audit: one path for REST and gRPC -----------------------------------------


@dataclass(frozen=True)
class Admission:
    caller: Caller | None  # None on a public path
    headers: dict[str, str]  # the rate limit's, for the answer


def admit(edge: Edge, authorization: str | None, peer: str, public: bool = False) -> Admission:
    """The caller and its rate headers, or Refused: a peer that sent too many tokens that were
    not accepted, a token not accepted, or too many requests. A public path (no token yet) is
    limited by the peer's address."""
    now = edge.clock()
    if public:
        return Admission(None, _within(edge.limiter.take(f"peer:{peer}", now)))
    if edge.bad_tokens.exhausted(peer, now):
        raise Refused("rate.limited", "too many requests with tokens that were not accepted", 429)
    try:
        caller = edge.tokens.caller(authorization)
    except Refused:
        edge.bad_tokens.take(peer, now)
        raise
    if caller.client_id in edge.revoked:
        raise Refused("client.revoked", "the client's access was revoked", 401, caller=caller)
    return Admission(caller, _within(edge.limiter.take(caller.client_id, now), caller))


def _within(decision: Decision, caller: Caller | None = None) -> dict[str, str]:
    if not decision.allowed:
        raise Refused("rate.limited", "too many requests", 429, decision.headers(), caller)
    return decision.headers()


def audit_entry(
    caller: Caller | None, operation: str, person_id: str | None, status: int,
    reason: str | None, client: str | None = None,
) -> audit.Request:  # fmt: skip
    """The audit entry of one request or call, allowed or denied."""
    return audit.Request(
        at=datetime.now(UTC),
        client_id=caller.client_id if caller else client or "unauthenticated",
        subject=caller.subject if caller else None,
        role=caller.role.value if caller else None,
        operation=operation,
        person_id=person_id,
        outcome=audit.Outcome.ALLOWED if status < 400 else audit.Outcome.DENIED,
        status=status,
        reason=reason,
    )


@dataclass(frozen=True)
class ObservationQuery:
    since: datetime | None = None
    until: datetime | None = None
    codes: tuple[str, ...] = ()  # "<system>|<code>"
    category: str | None = None
    count: int = 50
    cursor: str | None = None
    newest_first: bool = False


# --- persons and observations ---------------------------------------------------------------


def person(edge: Edge, caller: Caller, person_id: str, resource: str) -> tuple[Record, list[str]]:
    """The person (golden record, record keys) when the caller may read `resource` of theirs."""
    caller.require(resource)
    caller.require_person(person_id)
    found = edge.store.person(person_id)
    if found is None:
        raise Refused("person.not_found", "no such person", 404)
    return edge.opened(found[0]), found[1]


# Why an administrator may see a person's identifiers whole; the reason is audited.
REVEAL_REASONS = frozenset(("patient-request", "identity-correction", "legal-order"))


def get_person(edge: Edge, caller: Caller, person_id: str, reveal: str | None = None) -> View:
    """The person as the caller's role may see it; with `reveal` (one of REVEAL_REASONS), an
    administrator sees the identifiers unmasked."""
    if reveal is not None:
        caller.require_role(Role.ADMINISTRATOR)
        if reveal not in REVEAL_REASONS:
            raise Refused("reveal.reason", f"reveal needs one of {sorted(REVEAL_REASONS)}", 400)
    golden, record_keys = person(edge, caller, person_id, "Patient")
    return person_view(caller, golden, record_keys, revealed=reveal is not None)


# An institution's patient number: <institution code>|<number>, or this system (the one the
# FHIR view names source identifiers by) with the number.
PATIENT_NUMBER_SYSTEM = re.compile(r"^urn:hs:local:(?P<institution>[^:|]+):patient$")


def persons_identified(edge: Edge, identifier: str) -> list[str]:
    """The persons an identifier names: a resident ID (`<value>`, or under a resident-ID
    system), or an institution's patient number (`<institution>|<number>`); merged persons
    are found as the person they were merged into."""
    system, bar, value = identifier.strip().rpartition("|")
    value = value.strip()
    if not value or (bar and not system):
        raise Refused("request.identifier", "an identifier is [<system>|]<value>", 400)
    if not bar or system in RESIDENT_ID_SYSTEMS:
        key = identifier_key(edge.codec, RESIDENT_ID_SYSTEM, value.upper())
        return edge.store.persons_with_identifier(key)
    numbered = PATIENT_NUMBER_SYSTEM.match(system)
    institution = numbered.group("institution") if numbered else system
    person_id = edge.store.person_of_record(edge.codec.keyring.pseudonym(institution, value))
    return [person_id] if person_id else []


async def find_persons(
    edge: Edge, caller: Caller, identifier: str, operation: str
) -> list[tuple[Record, list[str]]]:
    """The persons an identifier names that the caller may see (a patient: only themselves),
    each found person an audit entry. Researchers do not search by identifiers."""
    caller.require("Patient")
    if caller.role is Role.RESEARCHER:
        raise Refused("role.forbidden", "researchers do not search by identifiers", 403)
    persons = visible_persons(edge, caller, persons_identified(edge, identifier))
    await edge.trail.record_served([
        audit_entry(caller, operation, golden["person_id"], 200, "person.found")
        for golden, _ in persons
    ])  # fmt: skip
    return persons


def visible_persons(
    edge: Edge, caller: Caller, person_ids: list[str]
) -> list[tuple[Record, list[str]]]:
    """The golden records and record keys of those persons the caller may see (a patient:
    only themselves)."""
    if caller.role is Role.PATIENT:
        person_ids = [p for p in person_ids if p == caller.person_id]
    stored = (edge.store.person(p) for p in person_ids)
    return [(edge.opened(event), keys) for event, keys in (s for s in stored if s is not None)]


async def search_persons(edge: Edge, caller: Caller, identifier: str) -> View:
    persons = await find_persons(edge, caller, identifier, "search persons")
    items = [person_view(caller, golden, keys) for golden, keys in persons]
    return {"items": items, "total": len(items)}


@dataclass(frozen=True)
class Demographics:
    """What a clerk types to find a person: a name (Han characters or pinyin, family name
    first or not), a birth date, a sex ("M" or "F")."""

    name: str | None = None
    birth_date: date | None = None
    sex: str | None = None

    def standard(self) -> Standard:
        return standardize(IdentityFields(
            "search", "search", name_text=self.name, birth_date=self.birth_date, sex=self.sex
        ))  # fmt: skip


@dataclass(frozen=True)
class Match:
    person: Record
    record_keys: list[str]
    score: Score

    @property
    def grade(self) -> str:
        """The FHIR match-grade of the probability the EMPI's model gives."""
        p = self.score.probability
        return "certain" if p >= 0.99 else "probable" if p >= 0.9 else (
            "possible" if p >= 0.5 else "certainly-not"
        )  # fmt: skip


CANDIDATES = 200  # persons scored for one search by demographics, at most
NAMESAKES = 10  # of them, namesakes outside the birth-date blocks


def golden_standard(person: Record) -> Standard:
    """A golden record as the EMPI standardizes a record, to score it against a search."""
    golden = person["golden"] or {}
    return standardize(IdentityFields(
        "golden", person["person_id"],
        family=golden.get("family_han") or golden.get("family"),
        given=golden.get("given_han") or golden.get("given"),
        resident_id=golden.get("id_number"), birth_date=golden.get("birth_date"),
        sex=golden.get("sex"), phones=tuple(p for p in [golden.get("phone")] if p),
        address=golden.get("address"), district=golden.get("district"),
    ))  # fmt: skip


async def match_persons(
    edge: Edge, caller: Caller, wanted: Demographics, operation: str, count: int = 10
) -> list[Match]:
    """Persons like `wanted`, best first, each with the EMPI model's score and evidence (a
    namesake born on another day scores low, and says why)."""
    caller.require("Patient")
    if caller.role is Role.RESEARCHER:
        raise Refused("role.forbidden", "researchers do not search for persons", 403)
    query = wanted.standard()
    if query.name is None and query.birth_date is None:
        raise Refused("request.demographics", "give a name, a birth date, or both", 400)
    found = visible_persons(edge, caller, candidates(edge, query))
    matches = [
        Match(golden, record_keys, edge.matcher.score(query, golden_standard(golden)))
        for golden, record_keys in found
    ]
    matches = sorted(matches, key=lambda m: -m.score.weight)[:count]
    await edge.trail.record_served([
        audit_entry(caller, operation, m.person["person_id"], 200, "person.matched")
        for m in matches
    ])  # fmt: skip
    return matches


def candidates(edge: Edge, query: Standard) -> list[str]:
    """The persons worth scoring. With a birth date: those with the whole name born that year,
    the family name born that day, or the given name born that day (either order of the name:
    romanised names come given name first), and a few namesakes born at other times, to be
    shown with the low score they earn; when none of them, those born that day. Without a birth
    date: those with the whole name."""
    names = (
        [(query.name.family, query.name.given), (query.name.given, query.name.family)]
        if query.name else []
    )  # fmt: skip
    whole = [demographic_key(edge.codec, "name", f + g) for f, g in names if f and g]
    if query.birth_date is None:
        return edge.store.persons_with_any(whole, CANDIDATES)
    born, year = query.birth_date.isoformat(), str(query.birth_date.year)
    keys = [demographic_key(edge.codec, "name-year", f + g, year) for f, g in names if f and g]
    keys += [demographic_key(edge.codec, "family-birth", f, born) for f, _ in names if f]
    keys += [demographic_key(edge.codec, "given-birth", g, born) for _, g in names if g]
    found = edge.store.persons_with_any(keys, CANDIDATES)
    found += [p for p in edge.store.persons_with_any(whole, NAMESAKES) if p not in found]
    if not found:
        found = edge.store.persons_with_any([demographic_key(edge.codec, "birth", born)],
                                            CANDIDATES)  # fmt: skip
    return found


async def search_by_demographics(
    edge: Edge, caller: Caller, wanted: Demographics, count: int = 10
) -> View:
    matches = await match_persons(edge, caller, wanted, "search persons", count)
    items = [
        person_view(caller, m.person, m.record_keys) | {
            "score": round(m.score.probability, 4), "match_grade": m.grade,
            "evidence": [{"comparison": e.comparison, "level": e.level, "weight": e.weight}
                         for e in m.score.evidence],
        }
        for m in matches
    ]  # fmt: skip
    return {"items": items, "total": len(items)}


def observation_page(
    edge: Edge, caller: Caller, person_id: str, query: ObservationQuery
) -> tuple[list[Record], str | None]:
    """One page of a person's observations (decoded events), and the cursor of the next."""
    _, records = person(edge, caller, person_id, "Observation")
    if not 1 <= query.count <= MAX_PAGE:
        raise Refused("request.count", f"a page holds 1 to {MAX_PAGE} items", 400)
    codes = [parse_code(edge.codec, c) for c in query.codes]
    try:
        page: Page = edge.store.observations(
            records,
            query.since,
            query.until,
            codes,
            query.category,
            query.count,
            query.cursor,
            query.newest_first,
        )
    except ValueError as error:
        raise Refused("request.cursor", str(error), 400) from None
    return [edge.opened(event) for event in page.rows], page.next_cursor


def list_observations(edge: Edge, caller: Caller, person_id: str, query: ObservationQuery) -> View:
    observations, next_cursor = observation_page(edge, caller, person_id, query)
    items = [for_role(caller, observation_view(o)) for o in observations]
    return {"person_id": person_id, "items": items, "next_cursor": next_cursor}


def person_conditions(edge: Edge, caller: Caller, person_id: str) -> list[Record]:
    """A person's diagnoses (decoded events), oldest first."""
    _, records = person(edge, caller, person_id, "Condition")
    return [edge.opened(event) for event in edge.store.conditions(records)]


def list_conditions(edge: Edge, caller: Caller, person_id: str) -> View:
    items = [
        for_role(caller, condition_view(c)) for c in person_conditions(edge, caller, person_id)
    ]
    return {"person_id": person_id, "items": items}


# What a researcher's views leave out: identifiers a sender assigned, who sent it (one clinic can
# be enough to find a patient), and free text; times are coarsened to the day.
RESEARCH_WITHHELD = ("observation_id", "condition_id", "institution", "text", "original_value")
RESEARCH_DAY_FIELDS = ("effective_at", "onset_at", "recorded_at")


def for_role(caller: Caller, view: View) -> View:
    """A result or diagnosis view as the caller's role may see it: de-identified for research."""
    if caller.role is not Role.RESEARCHER:
        return view
    out = dict(view) | dict.fromkeys(set(RESEARCH_WITHHELD) & set(view))
    for name in RESEARCH_DAY_FIELDS:
        if isinstance(out.get(name), str):
            out[name] = f"{out[name][:10]}T00:00:00+00:00"
    return out


def parse_code(codec: Codec, text: str) -> str:
    """The stored pseudonym of a code given as <system>|<code>."""
    system, bar, value = text.rpartition("|")
    if not bar or not system or not value:
        raise Refused("request.code", "a code is given as <system>|<code>", 400)
    return code_key(codec, {"system": system, "code": value}) or ""


# --- trends ---------------------------------------------------------------------------------


def _series(
    edge: Edge, records: list[str], codes: list[str], since: datetime | None, until: datetime | None
) -> list[Record]:
    """Every result of these codes (up to MAX_POINTS), oldest first."""
    return [
        o["result"] | {"effective_at": o["effective_at"]}
        for o in _observations(edge, records, codes, since, until)
    ]


@dataclass(frozen=True)
class Series:
    points: list[Point]
    unit: str | None
    reference: tuple[float | None, float | None]  # the latest result's reference range
    name: str  # the code's display, else the code


def code_series(
    edge: Edge, caller: Caller, person_id: str, code: str,
    since: datetime | None = None, until: datetime | None = None,
) -> Series:  # fmt: skip
    """One code's numeric results of the person, oldest first."""
    _, records = person(edge, caller, person_id, "Observation")
    results = _series(edge, records, [parse_code(edge.codec, code)], since, until)
    points = [Point(r["effective_at"], r["value_quantity"]) for r in results
              if r["value_quantity"] is not None]  # fmt: skip
    last = results[-1] if results else {}
    reference = last.get("reference_range") or {}
    name = ((last.get("code") or {}).get("display") or (last.get("local_code") or {}).get(
        "display") or code.rpartition("|")[2])  # fmt: skip
    return Series(points, last.get("unit"), (reference.get("low"), reference.get("high")), name)


def series_trend(
    edge: Edge, caller: Caller, person_id: str, code: str,
    since: datetime | None = None, until: datetime | None = None,
) -> View:  # fmt: skip
    """One code's results over time, with their change and slope a year (e.g. glucose)."""
    series = code_series(edge, caller, person_id, code, since, until)
    return {"code": code, "unit": series.unit, **trend_view(trend(series.points))}


def trend_chart(
    edge: Edge, caller: Caller, person_id: str, code: str, image: Literal["svg", "png"],
    since: datetime | None = None, until: datetime | None = None,
) -> bytes:  # fmt: skip
    """The results of one code as a chart, the reference range shaded, those outside it
    marked."""
    series = code_series(edge, caller, person_id, code, since, until)
    chart = charts.layout(series.name, series.unit or "", series.points,
                          charts.reference_bands(*series.reference))  # fmt: skip
    return charts.svg(chart).encode() if image == "svg" else charts.png(chart)


def kidney_function(edge: Edge, caller: Caller, person_id: str) -> View:
    """eGFR (CKD-EPI 2021) from every creatinine result, with KDIGO categories and the
    progression flags."""
    kidney = kidney_series(edge, caller, person_id)
    return {
        **trend_view(kidney.trend), "unit": "mL/min/1.73m2", "stages": list(kidney.stages),
        "certain_drop": kidney.certain_drop, "rapid_progression": kidney.rapid_progression,
    }  # fmt: skip


def kidney_chart(edge: Edge, caller: Caller, person_id: str, image: Literal["svg", "png"]) -> bytes:
    """eGFR over time, on the KDIGO categories G1 to G5."""
    points = list(kidney_series(edge, caller, person_id).trend.points)
    chart = charts.layout("eGFR (CKD-EPI 2021)", "mL/min/1.73m2", points, charts.kdigo_bands())
    return charts.svg(chart).encode() if image == "svg" else charts.png(chart)


def kidney_series(edge: Edge, caller: Caller, person_id: str) -> KidneyTrend:
    found, records = person(edge, caller, person_id, "Observation")
    golden = found["golden"] or {}
    if golden.get("birth_date") is None or golden.get("sex") not in ("F", "M"):
        raise Refused("person.no_age_or_sex", "eGFR needs the person's age and sex", 422)
    codes = [code_key(edge.codec, {"system": s, "code": c}) or "" for s, c in CREATININE]
    results = _series(edge, records, codes, None, None)
    creatinine = [(r["effective_at"], r["value_quantity"], r["unit"]) for r in results
                  if r["value_quantity"] is not None]  # fmt: skip
    return kidney_trend(creatinine, golden["birth_date"], golden["sex"] == "F")


def trend_view(series: Trend) -> View:
    return {
        "points": [{"at": p.at.isoformat(), "value": p.value} for p in series.points],
        "change": series.change, "slope_per_year": series.slope_per_year,
    }  # fmt: skip


# --- results done elsewhere (检验结果互认) ---------------------------------------------------

INSTITUTION_CODE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def recent_results(
    edge: Edge, caller: Caller, person_id: str, code: str, ordering: str | None,
    now: datetime | None = None,
) -> View:  # fmt: skip
    """The person's results of an analyte about to be ordered, within its validity window,
    from any institution; `avoidable` when one stands in for the new test. Each check is
    counted by the ordering institution."""
    window = edge.windows.get(code)
    if window is None:
        raise Refused("recognition.no_window", "no validity window is set for this analyte", 422)
    if ordering is not None and not INSTITUTION_CODE.match(ordering):
        raise Refused("request.ordering", "the ordering institution is its code", 400)
    now = now or datetime.now(UTC)
    _, records = person(edge, caller, person_id, "Observation")
    found = _observations(edge, records, [parse_code(edge.codec, code)], window.opens(now), now)
    results = standing(found)
    items = [for_role(caller, observation_view(o)) for o in results]
    elsewhere = sum(1 for o in results if o["envelope"]["source"]["institution"] != ordering)
    avoidable = bool(results)
    outcome = "avoidable" if avoidable else "needed"
    edge.recognitions.labels(ordering or "unknown", outcome).inc()
    return {
        "code": code, "analyte": window.name, "window_days": window.days,
        "since": window.opens(now).isoformat(), "avoidable": avoidable,
        "from_other_institutions": elsewhere, "items": items,
    }  # fmt: skip


def _observations(
    edge: Edge, records: list[str], codes: list[str], since: datetime | None,
    until: datetime | None,
) -> list[Record]:  # fmt: skip
    """Every observation of these codes in [since, until) (up to MAX_POINTS), oldest first."""
    found: list[Record] = []
    cursor = None
    while len(found) < MAX_POINTS:
        page = edge.store.observations(records, since, until, codes, None, MAX_PAGE, cursor)
        found += [edge.opened(event) for event in page.rows]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return found


# --- alerts ---------------------------------------------------------------------------------


def no_alerts_for_research(caller: Caller) -> None:
    if caller.role is Role.RESEARCHER:
        raise Refused("role.forbidden", "alerts identify patients: not for research", 403)


def person_alerts(edge: Edge, caller: Caller, person_id: str) -> View:
    no_alerts_for_research(caller)
    found, records = person(edge, caller, person_id, "Flag")
    person_id = found["person_id"]  # the person merged into, when it was merged
    return {"items": [alert_view(edge.opened(e), person_id) for e in edge.store.alerts(records)]}


def alert_watch(edge: Edge, caller: Caller) -> list[str] | None:
    """The records whose alerts the caller may follow live: all (None) for clinicians and
    public health, their own for a patient."""
    caller.require("Flag")
    no_alerts_for_research(caller)
    if caller.role is Role.PATIENT:
        return person(edge, caller, caller.person_id or "", "Flag")[1]
    return None


async def live_alerts(
    edge: Edge, caller: Caller, operation: str, records: list[str] | None, position: int,
    connected: Callable[[], Awaitable[bool]],
) -> AsyncIterator[tuple[int, View]]:  # fmt: skip
    """Alert events as they reach the read model, while the client is connected and its token
    is in date (at its expiry the stream ends: the client comes back with a new token). Each
    alert served is an audit entry naming its person."""
    while await connected():
        if caller.expires_at is not None and edge.tokens.now() >= caller.expires_at:
            await edge.trail.record(audit_entry(caller, operation, None, 401, "token.expired"))
            return
        for received, alert in alerts_after(edge, position, records):
            served = audit_entry(caller, operation, alert["person_id"], 200, "alert.served")
            await edge.trail.record(served)
            position = received
            yield received, alert
        await asyncio.sleep(edge.poll_seconds)


def alerts_after(edge: Edge, position: int, records: list[str] | None) -> list[tuple[int, View]]:
    """Alert events that reached the read model after `position`, with their own positions."""
    served = []
    for received, event in edge.store.alerts_received_after(position, records):
        alert = edge.opened(event)
        served.append((received, alert_view(alert, alert_person(edge, alert))))
    return served


def alert_person(edge: Edge, alert: Record) -> str | None:
    """The person an alert is about: the EMPI's link as it stands when the alert is served
    (an alert raised before its patient was linked, or a merged person's), else what vitals
    knew when it raised it."""
    return edge.store.person_of_record(alert["patient_key"]) or alert["person_id"]


async def acknowledge(edge: Edge, caller: Caller, alert_id: str) -> View:
    """A clinician acknowledges an open alert: sent on to hs-vitals, which stops its
    escalation."""
    caller.require("Flag", "write")
    caller.require_role(Role.CLINICIAN)
    event = edge.store.alert(alert_id)
    if event is None:
        raise Refused("alert.not_found", "no such open alert", 404)
    alert = edge.opened(event)
    now = datetime.now(UTC)
    ack = {
        "envelope": derived_envelope(alert["envelope"], now), "alert_id": alert_id,
        "patient_key": alert["patient_key"], "rule_id": alert["rule_id"],
        "acknowledged_by": caller.subject or caller.client_id, "at": now,
    }  # fmt: skip
    await send(edge, edge.ack_topic, topics.VITALS_ACK.value_schema, ack, alert["patient_key"])
    return {"alert_id": alert_id, "status": "acknowledged"}


def alert_view(alert: Record, person_id: str | None) -> View:
    return {
        "alert_id": alert["alert_id"], "action": alert["action"], "rule_id": alert["rule_id"],
        "severity": alert["severity"], "person_id": person_id,
        "at": alert["at"].isoformat(),
        "escalate_at": alert["escalate_at"].isoformat() if alert["escalate_at"] else None,
        "score": alert["score"], "cohort": alert["cohort"],
        "readings": [
            {"metric": r["metric"], "value": r["value"],
             "measured_at": r["measured_at"].isoformat()}
            for r in alert["readings"]
        ],
    }  # fmt: skip


# --- the EMPI's review queue ----------------------------------------------------------------


def open_reviews(edge: Edge, caller: Caller) -> View:
    """The EMPI's possible matches waiting for a person, with the evidence."""
    caller.require("Patient")
    caller.require_role(Role.ADMINISTRATOR)
    return {"items": [review_view(edge.opened(e)) for e in edge.store.open_reviews()]}


async def decide_review(
    edge: Edge, caller: Caller, record_key: str, decision: Literal["LINK", "NO_LINK"],
    reason: str | None,
) -> View:  # fmt: skip
    """LINK: the record is the suggested person (the EMPI merges). NO_LINK: the record stays
    its own person (the EMPI keeps them apart). Either is sent on to the EMPI."""
    caller.require("Patient", "write")
    caller.require_role(Role.ADMINISTRATOR)
    event = edge.store.review(record_key)
    if event is None:
        raise Refused("review.not_found", "no open review for this record", 404)
    link = edge.opened(event)
    now = datetime.now(UTC)
    record = {
        "envelope": derived_envelope(link["envelope"], now),
        "action": "LINK" if decision == "LINK" else "UNLINK",
        "record_key": record_key, "other_record_key": link["matched_record_key"],
        "decided_by": caller.subject or caller.client_id, "reason": reason,
    }  # fmt: skip
    await send(edge, edge.review_topic, topics.REVIEW_DECISION.value_schema, record, record_key)
    edge.store.close_review(record_key, now)
    return {"record_key": record_key, "decision": decision}


def review_view(link: Record) -> View:
    return {
        "record_key": link["record_key"], "person_id": link["person_id"],
        "suggested_person_id": link["review_person_id"],
        "matched_record_key": link["matched_record_key"],
        "probability": link["probability"], "weight": link["weight"],
        "evidence": link["evidence"], "flags": link["flags"],
    }  # fmt: skip


# --- shared ---------------------------------------------------------------------------------


async def send(edge: Edge, topic: str, schema: str, record: Record, key: str) -> bytes:
    """An event for another service, stored (acks=all) before the request is answered; its
    bytes as stored."""
    value = edge.codec.encode(schema, record)
    try:
        await edge.trail.producer.write(
            topic, value, key, control.mac_headers(edge.codec.keyring, schema, value)
        )
    except NotStoredError:
        raise Refused("event.unavailable", f"{schema} could not be stored", 503) from None
    return value


def mask(identifier: str | None, keep_end: int) -> str | None:
    """Only the last `keep_end` characters, and never more than a third of the value."""
    if identifier is None:
        return None
    shown = min(keep_end, len(identifier) // 3)
    return "*" * (len(identifier) - shown) + identifier[len(identifier) - shown :]


# Minimum necessary: the golden-record fields each role sees, and which of them masked.
# Public health sees what a case report's follow-up needs (sex, birth date, district), not the
# name, full number or address; researchers see no golden record at all (person_view).
GOLDEN_FIELDS = frozenset(
    ("family_han", "given_han", "family", "given", "id_number", "birth_date", "sex", "phone",
     "address", "district")
)  # fmt: skip
VISIBLE_FIELDS: dict[Role, frozenset[str]] = {
    Role.PATIENT: GOLDEN_FIELDS,
    Role.CLINICIAN: GOLDEN_FIELDS,
    Role.ADMINISTRATOR: GOLDEN_FIELDS - {"address"},
    Role.PUBLIC_HEALTH: frozenset(("id_number", "birth_date", "sex", "district")),
}
# Characters left visible, for every role but the patient's own. A resident ID is the region (6
# digits, guessable from the district), the birth date (8, shown), a sequence (3) and a check
# digit: its last 4 would rebuild it; its last 2 leave about ten candidates.
MASKED_FIELDS = {"id_number": 2, "phone": 4}


def visible_golden(caller: Caller, person: Record, revealed: bool = False) -> Record:
    """The golden record as the caller's role may see it: its fields only, identifiers masked
    unless they are the caller's own or `revealed` (an administrator's audited reveal)."""
    golden = dict(person["golden"] or {})
    allowed = VISIBLE_FIELDS.get(caller.role, frozenset())
    visible = {name: (value if name in allowed else None) for name, value in golden.items()}
    if caller.role is not Role.PATIENT and not revealed:
        for name, keep in MASKED_FIELDS.items():
            visible[name] = mask(visible.get(name), keep)
    return visible


def person_view(
    caller: Caller, person: Record, record_keys: list[str], revealed: bool = False
) -> View:
    """The golden record as the caller's role may see it."""
    if caller.role is Role.RESEARCHER:  # de-identified: no names, numbers or places
        birth = (person["golden"] or {}).get("birth_date")
        return {
            "person_id": person["person_id"],
            "sex": (person["golden"] or {}).get("sex"),
            "birth_year": birth.year if birth else None,
            "records": len(record_keys),
        }
    golden = visible_golden(caller, person, revealed)
    if golden.get("birth_date") is not None:
        golden["birth_date"] = golden["birth_date"].isoformat()
    return {"person_id": person["person_id"], "golden": golden, "record_keys": record_keys}


def condition_view(condition: Record) -> View:
    diagnosis = condition["diagnosis"]
    return {
        "condition_id": condition["condition_id"],
        "institution": condition["envelope"]["source"]["institution"],
        "icd10": diagnosis["icd10"], "icd11": diagnosis["icd11"],
        "local_code": diagnosis["local_code"], "text": diagnosis["text"],
        "verification_status": condition["verification_status"],
        "onset_at": condition["onset_at"].isoformat() if condition["onset_at"] else None,
        "recorded_at": condition["recorded_at"].isoformat() if condition["recorded_at"] else None,
    }  # fmt: skip


def observation_view(observation: Record) -> View:
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


# --- data quality (hs-quality's windows): platform staff see every source, a source's own
# staff theirs only ------------------------------------------------------------------------

QUALITY_ROLES = (Role.ADMINISTRATOR, Role.SOURCE_STAFF)
WINDOW_SIZES = ("HOUR", "DAY")


def _quality_reader(caller: Caller) -> None:
    caller.require("MeasureReport")
    caller.require_role(*QUALITY_ROLES)


def quality_sources(edge: Edge, caller: Caller) -> View:
    _quality_reader(caller)
    sources = edge.store.quality_sources()
    if caller.role is Role.SOURCE_STAFF:
        sources = [s for s in sources if s == caller.institution]
    return {"sources": sources}


def quality_windows(
    edge: Edge, caller: Caller, institution: str, size: str, since: datetime | None
) -> list[Record]:
    """The source's closed windows of `size` from `since` (None: the last 2 days of hours,
    30 of days), oldest first."""
    _quality_reader(caller)
    caller.require_institution(institution)
    if size not in WINDOW_SIZES:
        raise Refused("quality.window", "the window is HOUR or DAY", 400)
    back = timedelta(days=2) if size == "HOUR" else timedelta(days=30)
    found = edge.store.quality_windows(institution, size, since or datetime.now(UTC) - back)
    return [edge.codec.decode(value).record for value in found]


def quality_report(
    edge: Edge, caller: Caller, institution: str, size: str, since: datetime | None
) -> Record:
    windows = quality_windows(edge, caller, institution, size, since)
    alerts = [edge.codec.decode(v).record for v in edge.store.quality_alerts(institution)]
    if not windows and not alerts:
        raise Refused("quality.unknown_source", "no quality windows for this source", 404)
    return quality.report(institution, size, windows, alerts)
