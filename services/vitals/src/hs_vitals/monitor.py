"""Per-patient alerting on a stream of readings, in event time. Pure.

- Readings are put in event-time order within a grace period; later ones are not used for
  rules (they are reported late). The same device and time counts once.
- A physiologically impossible value (SpO2 140 %, a heart rate of 0 from a loose sensor) never
  reaches a rule: it is returned as implausible, for the quality service.
- A rule fires when its condition holds for its sustained duration without a sensor gap; a
  gap, or a device's warm-up after it is first seen, starts the run again.
- One open alert per patient and rule: it is escalated once when not acknowledged within the
  configured time, and resolved when a value returns to range.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from hs_vitals.news2 import News2, VitalSigns, news2
from hs_vitals.thresholds import DEFAULT, Thresholds


class Metric(StrEnum):
    GLUCOSE = "GLUCOSE"  # mmol/L
    SYSTOLIC_BP = "SYSTOLIC_BP"  # mmHg
    DIASTOLIC_BP = "DIASTOLIC_BP"
    HEART_RATE = "HEART_RATE"  # /min
    SPO2 = "SPO2"  # %
    BODY_TEMPERATURE = "BODY_TEMPERATURE"  # Cel
    RESPIRATORY_RATE = "RESPIRATORY_RATE"  # /min
    CONSCIOUSNESS = "CONSCIOUSNESS"  # 0: Alert; 1: new Confusion, Voice, Pain or Unresponsive
    SUPPLEMENTAL_OXYGEN = "SUPPLEMENTAL_OXYGEN"  # 0: air; 1: oxygen


class Severity(StrEnum):
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"


# Values outside these cannot come from a living patient: sensor faults, not clinical events.
PLAUSIBLE: dict[Metric, tuple[float, float]] = {
    Metric.GLUCOSE: (1.0, 40.0),
    Metric.SYSTOLIC_BP: (50.0, 300.0),
    Metric.DIASTOLIC_BP: (20.0, 200.0),
    Metric.HEART_RATE: (20.0, 300.0),
    Metric.SPO2: (50.0, 100.0),
    Metric.BODY_TEMPERATURE: (25.0, 45.0),
    Metric.RESPIRATORY_RATE: (2.0, 80.0),
    Metric.CONSCIOUSNESS: (0.0, 1.0),
    Metric.SUPPLEMENTAL_OXYGEN: (0.0, 1.0),
}
NEWS2_PARAMETERS = (
    Metric.RESPIRATORY_RATE, Metric.SPO2, Metric.SUPPLEMENTAL_OXYGEN, Metric.SYSTOLIC_BP,
    Metric.HEART_RATE, Metric.CONSCIOUSNESS, Metric.BODY_TEMPERATURE,
)  # fmt: skip
NEWS2_WINDOW = timedelta(minutes=30)  # a full set: all seven parameters within this
# NEWS2 response thresholds (RCP 2017, Chart 4): each is an alert with its own lifecycle
NEWS2_RULES: tuple[tuple[str, Severity, Callable[[News2], bool]], ...] = (
    ("news2.single_parameter_3", Severity.MEDIUM, lambda n: max(n.scores.values()) >= 3),
    ("news2.urgent", Severity.MEDIUM, lambda n: n.total >= 5),
    ("news2.emergency", Severity.HIGH, lambda n: n.total >= 7),
)
MAX_GAP = timedelta(minutes=15)  # longer without a reading of a metric: a sensor gap
WARM_UP = timedelta(minutes=60)  # after a device is first seen (CGM sensor warm-up)


class Action(StrEnum):
    OPENED = "OPENED"
    ESCALATED = "ESCALATED"
    RESOLVED = "RESOLVED"


@dataclass(frozen=True)
class Reading:
    device: str
    metric: Metric
    value: float
    at: datetime


@dataclass(frozen=True)
class AlertEvent:
    rule: str
    action: Action
    severity: Severity
    at: datetime  # event time of the reading that caused it
    readings: tuple[Reading, ...]  # what triggered (or resolved) it
    opened_at: datetime  # when the alert opened: with the rule, it names the alert
    news2: News2 | None = None  # for NEWS2 rules: the score of the set


@dataclass(frozen=True)
class Rule:
    rule_id: str
    metric: Metric
    severity: Severity
    breached: Callable[[float, Thresholds], bool]
    sustained: Callable[[Thresholds], timedelta]
    warm_up: bool = False  # suppressed while the device warms up (CGM)
    confirm_by_repeat: bool = False  # a second breaching reading confirms (blood pressure)


def _minutes(name: str) -> Callable[[Thresholds], timedelta]:
    return lambda t: timedelta(minutes=float(getattr(t, name)))


_GLUCOSE_SUSTAINED = _minutes("glucose_sustained_minutes")

RULES: tuple[Rule, ...] = (
    Rule("glucose.hypo.level2", Metric.GLUCOSE, Severity.HIGH,
         lambda v, t: v < t.glucose_low_level_2, _GLUCOSE_SUSTAINED, warm_up=True),
    Rule("glucose.hypo.level1", Metric.GLUCOSE, Severity.MEDIUM,
         lambda v, t: v < t.glucose_low_level_1, _GLUCOSE_SUSTAINED, warm_up=True),
    Rule("glucose.hyper", Metric.GLUCOSE, Severity.MEDIUM,
         lambda v, t: v > t.glucose_high, _GLUCOSE_SUSTAINED, warm_up=True),
    Rule("bp.crisis.systolic", Metric.SYSTOLIC_BP, Severity.HIGH,
         lambda v, t: v > t.systolic_crisis, lambda t: timedelta(0), confirm_by_repeat=True),
    Rule("bp.crisis.diastolic", Metric.DIASTOLIC_BP, Severity.HIGH,
         lambda v, t: v > t.diastolic_crisis, lambda t: timedelta(0), confirm_by_repeat=True),
    Rule("spo2.below_target", Metric.SPO2, Severity.HIGH,
         lambda v, t: v < t.spo2_low, _minutes("spo2_sustained_minutes")),
    Rule("heart_rate.out_of_range", Metric.HEART_RATE, Severity.MEDIUM,
         lambda v, t: v <= t.heart_rate_low or v > t.heart_rate_high,
         _minutes("heart_rate_sustained_minutes")),
)  # fmt: skip


@dataclass
class _Run:
    """The current uninterrupted stretch of breaching readings for one rule."""

    readings: list[Reading] = field(default_factory=list)
    open_since: datetime | None = None
    escalated: bool = False
    acknowledged: bool = False


@dataclass
class Outcome:
    alerts: list[AlertEvent] = field(default_factory=list)
    implausible: list[Reading] = field(default_factory=list)
    late: list[Reading] = field(default_factory=list)
    duplicates: int = 0


@dataclass
class PatientMonitor:
    """One patient's rules and their state."""

    thresholds: Thresholds = DEFAULT
    grace: timedelta = timedelta(minutes=2)
    rules: tuple[Rule, ...] = RULES
    _pending: list[tuple[datetime, int, Reading]] = field(default_factory=list)
    _sequence: int = 0
    _watermark: datetime | None = None  # readings at or before this were handed to the rules
    _newest: datetime | None = None  # the latest event time seen
    _seen: deque[tuple[str, Metric, datetime]] = field(default_factory=lambda: deque(maxlen=4096))
    _first_seen: dict[str, datetime] = field(default_factory=dict)
    _last_at: dict[Metric, datetime] = field(default_factory=dict)
    _runs: dict[str, _Run] = field(default_factory=dict)
    _latest: dict[Metric, Reading] = field(default_factory=dict)  # NEWS2 parameters

    def observe(self, reading: Reading) -> Outcome:
        """Take one reading (in any order); returns what became due."""
        outcome = Outcome()
        key = (reading.device, reading.metric, reading.at)
        if key in self._seen:
            outcome.duplicates += 1
            return outcome
        self._seen.append(key)
        low, high = PLAUSIBLE.get(reading.metric, (float("-inf"), float("inf")))
        if not low <= reading.value <= high:
            outcome.implausible.append(reading)
            return outcome
        if self._watermark is not None and reading.at <= self._watermark:
            outcome.late.append(reading)
            return outcome
        heapq.heappush(self._pending, (reading.at, self._sequence, reading))
        self._sequence += 1
        self._newest = max(self._newest or reading.at, reading.at)
        for due in self._due(self._newest - self.grace):
            outcome.alerts += self._apply(due)
        return outcome

    def flush(self) -> list[AlertEvent]:
        """Hand every held reading to the rules (end of stream, or a test)."""
        events: list[AlertEvent] = []
        if self._newest is not None:
            for due in self._due(self._newest):
                events += self._apply(due)
        return events

    def acknowledge(self, rule_id: str) -> None:
        run = self._runs.get(rule_id)
        if run is not None and run.open_since is not None:
            run.acknowledged = True

    def _due(self, until: datetime) -> Iterator[Reading]:
        while self._pending and self._pending[0][0] <= until:
            _, _, reading = heapq.heappop(self._pending)
            self._watermark = reading.at
            yield reading

    def _apply(self, reading: Reading) -> list[AlertEvent]:
        first = self._first_seen.setdefault(reading.device, reading.at)
        previous = self._last_at.get(reading.metric)
        self._last_at[reading.metric] = reading.at
        gap = previous is not None and reading.at - previous > MAX_GAP
        events = []
        for rule in self.rules:
            if rule.metric is reading.metric:
                events += self._rule(rule, reading, gap, reading.at - first < WARM_UP)
        if reading.metric in NEWS2_PARAMETERS:
            events += self._news2(reading)
        return events

    def _news2(self, reading: Reading) -> list[AlertEvent]:
        """Score the set when this reading completes one (all parameters within the window)."""
        self._latest[reading.metric] = reading
        if len(self._latest) < len(NEWS2_PARAMETERS):
            return []
        readings = tuple(self._latest[m] for m in NEWS2_PARAMETERS)
        if reading.at - min(r.at for r in readings) > NEWS2_WINDOW:
            return []
        value = {r.metric: r.value for r in readings}
        result = news2(
            VitalSigns(
                respiration_rate=value[Metric.RESPIRATORY_RATE], spo2=value[Metric.SPO2],
                on_oxygen=value[Metric.SUPPLEMENTAL_OXYGEN] >= 0.5,
                systolic=value[Metric.SYSTOLIC_BP], pulse=value[Metric.HEART_RATE],
                alert=value[Metric.CONSCIOUSNESS] < 0.5,
                temperature=value[Metric.BODY_TEMPERATURE], scale_2=self.thresholds.spo2_low < 90,
            )
        )  # fmt: skip
        events = []
        for rule_id, severity, reached in NEWS2_RULES:
            run = self._runs.setdefault(rule_id, _Run())
            if reached(result) and run.open_since is None:
                run.open_since = reading.at
                events.append(
                    AlertEvent(
                        rule_id, Action.OPENED, severity, reading.at, readings, reading.at, result
                    )
                )
            elif not reached(result) and run.open_since is not None:
                events.append(
                    AlertEvent(
                        rule_id,
                        Action.RESOLVED,
                        severity,
                        reading.at,
                        readings,
                        run.open_since,
                        result,
                    )
                )
                self._runs[rule_id] = _Run()
        return events

    def _rule(self, rule: Rule, reading: Reading, gap: bool, warming_up: bool) -> list[AlertEvent]:
        run = self._runs.setdefault(rule.rule_id, _Run())
        if not rule.breached(reading.value, self.thresholds):
            if run.open_since is not None:
                self._runs[rule.rule_id] = _Run()
                resolved = AlertEvent(
                    rule.rule_id, Action.RESOLVED, rule.severity, reading.at, (reading,),
                    run.open_since,
                )  # fmt: skip
                return [resolved]
            run.readings.clear()
            return []
        if gap and run.open_since is None:
            run.readings.clear()  # a sensor gap: the stretch starts again
        run.readings.append(reading)
        if run.open_since is not None:
            return self._escalation(rule, run, reading)
        if rule.warm_up and warming_up:
            run.readings = [reading]
            return []
        duration = reading.at - run.readings[0].at
        confirmed = len(run.readings) >= 2 and duration <= timedelta(
            minutes=self.thresholds.crisis_confirm_minutes
        )
        if (rule.confirm_by_repeat and confirmed) or (
            not rule.confirm_by_repeat and duration >= rule.sustained(self.thresholds)
        ):
            run.open_since = reading.at
            trigger = tuple(run.readings)
            opened = AlertEvent(
                rule.rule_id, Action.OPENED, rule.severity, reading.at, trigger, reading.at
            )
            return [opened]
        if rule.confirm_by_repeat and not confirmed and len(run.readings) >= 2:
            run.readings = [reading]  # the earlier reading is too old to confirm this one
        return []

    def _escalation(self, rule: Rule, run: _Run, reading: Reading) -> list[AlertEvent]:
        assert run.open_since is not None
        due = run.open_since + timedelta(minutes=self.thresholds.escalate_after_minutes)
        if run.escalated or run.acknowledged or reading.at < due:
            return []
        run.escalated = True
        escalated = AlertEvent(
            rule.rule_id, Action.ESCALATED, rule.severity, reading.at, (reading,), run.open_since
        )
        return [escalated]


# --- state as JSON, for the stream processor's state store ------------------------------


def to_state(monitor: PatientMonitor) -> dict[str, Any]:
    def reading(r: Reading) -> list[Any]:
        return [r.device, r.metric.value, r.value, r.at.isoformat()]

    return {
        "pending": [reading(r) for _, _, r in sorted(monitor._pending)],
        "watermark": _iso(monitor._watermark),
        "newest": _iso(monitor._newest),
        "seen": [[d, m.value, at.isoformat()] for d, m, at in monitor._seen],
        "first_seen": {d: at.isoformat() for d, at in monitor._first_seen.items()},
        "last_at": {m.value: at.isoformat() for m, at in monitor._last_at.items()},
        "latest": [reading(r) for r in monitor._latest.values()],
        "runs": {
            rule: {
                "readings": [reading(r) for r in run.readings],
                "open_since": _iso(run.open_since),
                "escalated": run.escalated,
                "acknowledged": run.acknowledged,
            }
            for rule, run in monitor._runs.items()
        },
    }


def from_state(state: dict[str, Any], thresholds: Thresholds = DEFAULT) -> PatientMonitor:
    def reading(fields: list[Any]) -> Reading:
        device, metric, value, at = fields
        return Reading(device, Metric(metric), float(value), datetime.fromisoformat(at))

    monitor = PatientMonitor(thresholds)
    for held in state["pending"]:
        r = reading(held)
        heapq.heappush(monitor._pending, (r.at, monitor._sequence, r))
        monitor._sequence += 1
    monitor._watermark = _time(state["watermark"])
    monitor._newest = _time(state["newest"])
    monitor._seen.extend((d, Metric(m), datetime.fromisoformat(at)) for d, m, at in state["seen"])
    monitor._first_seen = {d: datetime.fromisoformat(at) for d, at in state["first_seen"].items()}
    monitor._last_at = {Metric(m): datetime.fromisoformat(at) for m, at in state["last_at"].items()}
    monitor._latest = {r.metric: r for r in map(reading, state.get("latest", []))}
    monitor._runs = {
        rule: _Run(
            [reading(r) for r in run["readings"]],
            _time(run["open_since"]),
            run["escalated"],
            run["acknowledged"],
        )
        for rule, run in state["runs"].items()
    }
    return monitor


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None
