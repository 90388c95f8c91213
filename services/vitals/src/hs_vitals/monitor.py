"""Per-patient alerting on a stream of readings, in event time. Pure.

- Readings are judged as they arrive, so an alert is raised by the reading that shows it. One
  that arrives out of order within the grace period is placed by its event time: it extends a
  run it precedes, or cuts a run it interrupts. Older ones are not used for rules (they are
  reported late). The same device and time counts once.
- A physiologically impossible value (SpO2 140 %, a heart rate of 0 from a loose sensor) never
  reaches a rule: it is returned as implausible, for the quality service.
- A rule fires when its condition holds for its sustained duration without a sensor gap; a
  gap, or a device's warm-up after it is first seen, starts the run again.
- One open alert per patient and rule: it is escalated once when not acknowledged within the
  configured time (on a later reading, or on a check when no reading comes), and resolved when
  a value returns to range.
- A day (in the monitor's time zone) is summarised once the newest reading, less the grace
  period, is in a later day.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from hs_vitals.daily import PERIOD_DAYS, DaySummary, DayTotals, summarise_day
from hs_vitals.news2 import News2, VitalSigns, news2
from hs_vitals.thresholds import DEFAULT, NO_COHORTS, Cohorts, Thresholds


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
COUNTED = (Metric.GLUCOSE, Metric.SYSTOLIC_BP, Metric.DIASTOLIC_BP)  # in daily summaries
MAX_GAP = timedelta(minutes=15)  # longer without a reading of a metric: a sensor gap
WARM_UP = timedelta(minutes=60)  # after a device is first seen (CGM sensor warm-up)
DEFAULT_ZONE = ZoneInfo("Asia/Shanghai")


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
    escalate_at: datetime | None = None  # OPENED: when it escalates unless acknowledged
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
SEVERITY = {rule.rule_id: rule.severity for rule in RULES} | {
    rule_id: severity for rule_id, severity, _ in NEWS2_RULES
}


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
    summaries: list[DaySummary] = field(default_factory=list)


@dataclass
class PatientMonitor:
    """One patient's rules and their state."""

    thresholds: Thresholds = DEFAULT
    grace: timedelta = timedelta(minutes=10)
    rules: tuple[Rule, ...] = RULES
    zone: ZoneInfo = DEFAULT_ZONE  # days are counted in it
    cohort: str | None = None  # the thresholds' cohort (None: the defaults)
    person_id: str | None = None  # the EMPI person, once linked
    person_at: datetime | None = None  # when that link was decided
    _newest: datetime | None = None  # the latest event time seen
    # "device|metric" -> event times (µs) of the grace period, for repeats (older ones are late)
    _seen: dict[str, set[int]] = field(default_factory=dict)
    _pruned: datetime | None = None
    _first_seen: dict[str, datetime] = field(default_factory=dict)
    _last_at: dict[Metric, datetime] = field(default_factory=dict)
    _runs: dict[str, _Run] = field(default_factory=dict)
    _latest: dict[Metric, Reading] = field(default_factory=dict)  # NEWS2 parameters
    _days: dict[date, DayTotals] = field(default_factory=dict)  # the last 14, for summaries
    _first_glucose: date | None = None
    _closed: date | None = None  # the last day summarised

    def observe(self, reading: Reading) -> Outcome:
        """Take one reading (in any order); returns what became due."""
        outcome = Outcome()
        stream, micros = f"{reading.device}|{reading.metric.value}", _micros(reading.at)
        if micros in self._seen.get(stream, ()):
            outcome.duplicates += 1
            return outcome
        low, high = PLAUSIBLE.get(reading.metric, (float("-inf"), float("inf")))
        if not low <= reading.value <= high:
            outcome.implausible.append(reading)
            return outcome
        if self._newest is not None and reading.at < self._newest - self.grace:
            outcome.late.append(reading)
            return outcome
        self._seen.setdefault(stream, set()).add(micros)
        self._newest = max(self._newest or reading.at, reading.at)
        if self._pruned is None or self._newest - self._pruned > self.grace / 4:
            self._forget_before(self._newest - self.grace)
        outcome.alerts += self._apply(reading)
        outcome.summaries += self._count(reading)
        return outcome

    def acknowledge(self, rule_id: str, opened_at: datetime | None = None) -> bool:
        """Acknowledge the rule's open alert (only the one opened at `opened_at`, if given)."""
        run = self._runs.get(rule_id)
        if run is None or run.open_since is None:
            return False
        if opened_at is not None and run.open_since != opened_at:
            return False
        run.acknowledged = True
        return True

    def open_alerts(self) -> dict[str, datetime]:
        """Rule -> when its open alert opened."""
        return {rule: run.open_since for rule, run in self._runs.items() if run.open_since}

    def check(self, now: datetime) -> list[AlertEvent]:
        """Escalate what is due by `now` without waiting for a reading (the escalation clock)."""
        events = []
        for rule_id, run in self._runs.items():
            if run.open_since is not None and self._escalation_due(run, now):
                run.escalated = True
                events.append(
                    AlertEvent(
                        rule_id, Action.ESCALATED, SEVERITY[rule_id], now,
                        tuple(run.readings[-1:]), run.open_since,
                    )
                )  # fmt: skip
        return events

    def join_cohort(self, cohort: str | None, thresholds: Thresholds) -> None:
        self.cohort, self.thresholds = cohort, thresholds

    def escalate_at(self, opened: datetime) -> datetime:
        return opened + timedelta(minutes=self.thresholds.escalate_after_minutes)

    def _escalation_due(self, run: _Run, now: datetime) -> bool:
        assert run.open_since is not None
        return not (run.escalated or run.acknowledged) and now >= self.escalate_at(run.open_since)

    def _count(self, reading: Reading) -> list[DaySummary]:
        """Add the reading to its day; summarise the days that ended before the grace period."""
        day = reading.at.astimezone(self.zone).date()
        if reading.metric in COUNTED and (self._closed is None or day > self._closed):
            totals = self._days.setdefault(day, DayTotals())
            if reading.metric is Metric.GLUCOSE:
                totals.glucose.add(reading.value)
                self._first_glucose = min(self._first_glucose or day, day)
            else:
                pair = totals.systolic if reading.metric is Metric.SYSTOLIC_BP else totals.diastolic
                pair[0] += 1
                pair[1] += reading.value
        assert self._newest is not None
        ended = (self._newest - self.grace).astimezone(self.zone).date() - timedelta(days=1)
        summaries = []
        for open_day in sorted(d for d in self._days if self._closed is None or d > self._closed):
            if open_day > ended:
                break
            summaries.append(summarise_day(self._days, open_day, self._first_glucose))
            self._closed = open_day
        for old in [d for d in self._days if (ended - d).days >= PERIOD_DAYS]:
            del self._days[old]
        return summaries

    def _forget_before(self, horizon: datetime) -> None:
        oldest = _micros(horizon)
        self._seen = {
            stream: kept
            for stream, times in self._seen.items()
            if (kept := {t for t in times if t >= oldest})
        }
        self._pruned = self._newest

    def _apply(self, reading: Reading) -> list[AlertEvent]:
        first = min(self._first_seen.get(reading.device, reading.at), reading.at)
        self._first_seen[reading.device] = first
        previous = self._last_at.get(reading.metric)
        in_order = previous is None or reading.at >= previous
        events = []
        if in_order:
            self._last_at[reading.metric] = reading.at
            gap = previous is not None and reading.at - previous > MAX_GAP
            for rule in self.rules:
                if rule.metric is reading.metric:
                    events += self._rule(rule, reading, gap, reading.at - first < WARM_UP)
        else:
            for rule in self.rules:
                if rule.metric is reading.metric:
                    events += self._place(rule, reading, first)
        latest = self._latest.get(reading.metric)
        if reading.metric in NEWS2_PARAMETERS and (latest is None or reading.at >= latest.at):
            events += self._news2(reading)
        return events

    def _place(self, rule: Rule, reading: Reading, first_seen: datetime) -> list[AlertEvent]:
        """An out-of-order reading (within the grace period) in the rule's current run."""
        run = self._runs.setdefault(rule.rule_id, _Run())
        if not run.readings or run.open_since is not None:
            return []  # no run it could belong to, or the alert is already open
        if not rule.breached(reading.value, self.thresholds):
            run.readings = [r for r in run.readings if r.at > reading.at]  # it cut the run
            return []
        if reading.at < run.readings[0].at - MAX_GAP:
            return []  # before a sensor gap: not part of this run
        run.readings = sorted([*run.readings, reading], key=lambda r: r.at)
        warming = rule.warm_up and run.readings[0].at - first_seen < WARM_UP
        return [] if warming else self._judge(rule, run)

    def _news2(self, reading: Reading) -> list[AlertEvent]:
        """Score the set when this reading completes one (all parameters within the window)."""
        self._latest[reading.metric] = reading
        if len(self._latest) < len(NEWS2_PARAMETERS):
            return []
        readings = tuple(self._latest[m] for m in NEWS2_PARAMETERS)
        if max(r.at for r in readings) - min(r.at for r in readings) > NEWS2_WINDOW:
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
                        rule_id, Action.OPENED, severity, reading.at, readings, reading.at,
                        self.escalate_at(reading.at), result,
                    )
                )  # fmt: skip
            elif reached(result) and run.open_since is not None:
                if self._escalation_due(run, reading.at):
                    run.escalated = True
                    events.append(
                        AlertEvent(
                            rule_id, Action.ESCALATED, severity, reading.at, readings,
                            run.open_since, news2=result,
                        )
                    )  # fmt: skip
            elif not reached(result) and run.open_since is not None:
                events.append(
                    AlertEvent(
                        rule_id,
                        Action.RESOLVED,
                        severity,
                        reading.at,
                        readings,
                        run.open_since,
                        news2=result,
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
        if run.open_since is not None:
            run.readings = [reading]  # an open alert keeps only its latest reading
            return self._escalation(rule, run, reading)
        run.readings.append(reading)
        if rule.warm_up and warming_up:
            run.readings = [reading]
            return []
        return self._judge(rule, run)

    def _judge(self, rule: Rule, run: _Run) -> list[AlertEvent]:
        """Open the alert when the run (in event-time order) has held long enough."""
        latest = run.readings[-1]
        duration = latest.at - run.readings[0].at
        confirmed = len(run.readings) >= 2 and duration <= timedelta(
            minutes=self.thresholds.crisis_confirm_minutes
        )
        if (rule.confirm_by_repeat and confirmed) or (
            not rule.confirm_by_repeat and duration >= rule.sustained(self.thresholds)
        ):
            run.open_since = latest.at
            opened = AlertEvent(
                rule.rule_id, Action.OPENED, rule.severity, latest.at, tuple(run.readings),
                latest.at, self.escalate_at(latest.at),
            )  # fmt: skip
            return [opened]
        if rule.confirm_by_repeat and not confirmed and len(run.readings) >= 2:
            run.readings = [latest]  # the earlier reading is too old to confirm this one
        return []

    def _escalation(self, rule: Rule, run: _Run, reading: Reading) -> list[AlertEvent]:
        if run.open_since is None or not self._escalation_due(run, reading.at):
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
        "newest": _iso(monitor._newest),
        "seen": {stream: sorted(times) for stream, times in monitor._seen.items()},
        "pruned": _iso(monitor._pruned),
        "first_seen": {d: at.isoformat() for d, at in monitor._first_seen.items()},
        "last_at": {m.value: at.isoformat() for m, at in monitor._last_at.items()},
        "latest": [reading(r) for r in monitor._latest.values()],
        "cohort": monitor.cohort,
        "person": [monitor.person_id, _iso(monitor.person_at)],
        "days": {day.isoformat(): totals.to_list() for day, totals in monitor._days.items()},
        "first_glucose": _day(monitor._first_glucose),
        "closed": _day(monitor._closed),
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


def from_state(
    state: dict[str, Any], cohorts: Cohorts = NO_COHORTS, zone: ZoneInfo = DEFAULT_ZONE
) -> PatientMonitor:
    def reading(fields: list[Any]) -> Reading:
        device, metric, value, at = fields
        return Reading(device, Metric(metric), float(value), datetime.fromisoformat(at))

    monitor = PatientMonitor(cohorts.thresholds(state["cohort"]), zone=zone)
    monitor.cohort = state["cohort"]
    monitor.person_id, monitor.person_at = state["person"][0], _time(state["person"][1])
    monitor._days = {
        date.fromisoformat(day): DayTotals.from_list(totals)
        for day, totals in state["days"].items()
    }
    monitor._first_glucose = _date(state["first_glucose"])
    monitor._closed = _date(state["closed"])
    monitor._newest = _time(state["newest"])
    monitor._seen = {stream: set(times) for stream, times in state["seen"].items()}
    monitor._pruned = _time(state["pruned"])
    monitor._first_seen = {d: datetime.fromisoformat(at) for d, at in state["first_seen"].items()}
    monitor._last_at = {Metric(m): datetime.fromisoformat(at) for m, at in state["last_at"].items()}
    monitor._latest = {r.metric: r for r in map(reading, state["latest"])}
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


def _day(day: date | None) -> str | None:
    return day.isoformat() if day else None


def _date(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


def _micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)
