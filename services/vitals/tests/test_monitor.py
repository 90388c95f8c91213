"""Per-patient alerting in event time: sustained rules, lifecycle, bad and late readings."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hs_vitals.monitor import (
    Action,
    AlertEvent,
    Metric,
    PatientMonitor,
    Reading,
    from_state,
    to_state,
)

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
FIVE = timedelta(minutes=5)


def glucose(values: list[float], start: datetime = T0, device: str = "cgm-1") -> list[Reading]:
    return [Reading(device, Metric.GLUCOSE, v, start + i * FIVE) for i, v in enumerate(values)]


def run(monitor: PatientMonitor, readings: list[Reading]) -> list[AlertEvent]:
    events: list[AlertEvent] = []
    for reading in readings:
        events += monitor.observe(reading).alerts
    return events


def warmed(device: str = "cgm-1") -> tuple[PatientMonitor, datetime]:
    """A monitor whose device has been worn for two hours (past its warm-up)."""
    monitor = PatientMonitor()
    run(monitor, glucose([6.0] * 24, device=device))
    return monitor, T0 + 24 * FIVE


def test_level_1_hypoglycaemia_opens_after_15_minutes_and_resolves_once() -> None:
    monitor, start = warmed()
    events = run(monitor, glucose([3.5, 3.6, 3.5, 3.4, 3.5, 3.6, 6.2], start))
    assert [(e.rule, e.action) for e in events] == [
        ("glucose.hypo.level1", Action.OPENED),
        ("glucose.hypo.level1", Action.RESOLVED),
    ]
    opened = events[0]
    assert opened.at == start + 3 * FIVE  # the fourth low reading: 15 minutes after the first
    assert [r.value for r in opened.readings] == [3.5, 3.6, 3.5, 3.4]


def test_14_minutes_low_is_not_an_episode() -> None:
    monitor, start = warmed()
    lows = [Reading("cgm-1", Metric.GLUCOSE, 3.5, start + timedelta(minutes=m)) for m in (0, 7, 14)]
    assert (
        run(monitor, [*lows, Reading("cgm-1", Metric.GLUCOSE, 6.0, start + timedelta(minutes=19))])
        == []
    )


def test_readings_out_of_order_within_grace_are_placed_by_event_time_and_repeats_ignored() -> None:
    monitor, start = warmed()
    readings = glucose([3.5, 3.6, 2.9, 2.8, 2.7, 2.9, 6.0], start)
    order = [1, 0, 2, 2, 4, 3, 5, 6]  # swapped neighbours (within the grace) and one repeat
    outcomes = [monitor.observe(readings[i]) for i in order]
    events = [e for o in outcomes for e in o.alerts]
    assert [(e.rule, e.action, e.at) for e in events] == [
        # the late first reading extends the run, so the reading at 20 minutes completes 15
        ("glucose.hypo.level1", Action.OPENED, start + 4 * FIVE),
        # the reading at 15 arrives after the one at 20 and fills the run; 2.9 at 25 opens it
        ("glucose.hypo.level2", Action.OPENED, start + 5 * FIVE),
        ("glucose.hypo.level2", Action.RESOLVED, start + 6 * FIVE),
        ("glucose.hypo.level1", Action.RESOLVED, start + 6 * FIVE),
    ]
    assert [r.at for r in events[0].readings] == [start + i * FIVE for i in (0, 1, 2, 4)]
    assert sum(o.duplicates for o in outcomes) == 1
    assert not any(o.late for o in outcomes)


def test_a_normal_reading_out_of_order_cuts_the_run_it_interrupts() -> None:
    monitor, start = warmed()
    lows = glucose([3.5, 3.5, 3.5, 3.5], start)
    normal = Reading("cgm-1", Metric.GLUCOSE, 6.0, start + FIVE + timedelta(minutes=1))
    events = run(monitor, [lows[0], lows[1], lows[2], normal, lows[3]])
    assert events == []  # low from 10 to 15 minutes only, after the normal reading at 6


def test_a_reading_older_than_the_grace_period_is_reported_late_not_used() -> None:
    monitor, start = warmed()
    for minutes in (30, 40):  # the first reading is 40 minutes older than the newest
        monitor.observe(Reading("cgm-1", Metric.GLUCOSE, 6.0, start + timedelta(minutes=minutes)))
    late = monitor.observe(Reading("cgm-1", Metric.GLUCOSE, 2.5, start))
    assert late.late and not late.alerts


def test_impossible_values_never_alert_and_are_returned_for_quality() -> None:
    monitor = PatientMonitor()
    readings = [Reading("oxi-1", Metric.SPO2, 140.0, T0 + i * FIVE) for i in range(5)]
    readings += [Reading("oxi-1", Metric.HEART_RATE, 0.0, T0 + i * FIVE) for i in range(5)]
    outcomes = [monitor.observe(r) for r in readings]
    assert sum(len(o.implausible) for o in outcomes) == 10
    assert not [e for o in outcomes for e in o.alerts]


def test_a_sensor_gap_and_the_warm_up_suppress_alerts() -> None:
    monitor = PatientMonitor()
    assert run(monitor, glucose([3.2] * 10)) == []  # the first 50 minutes of a new sensor
    monitor, start = warmed()
    before_gap = glucose([3.5, 3.5], start)
    after_gap = glucose([3.5, 3.5], start + timedelta(minutes=25))  # 20 minutes without readings
    assert run(monitor, [*before_gap, *after_gap]) == []


def test_a_blood_pressure_crisis_needs_a_repeat_reading() -> None:
    monitor = PatientMonitor()
    one = [
        Reading("cuff", Metric.SYSTOLIC_BP, 190, T0),
        Reading("cuff", Metric.SYSTOLIC_BP, 150, T0 + FIVE),
    ]
    assert run(monitor, one) == []
    repeat = [
        Reading("cuff", Metric.SYSTOLIC_BP, 192, T0 + 20 * FIVE),
        Reading("cuff", Metric.SYSTOLIC_BP, 188, T0 + 21 * FIVE),
    ]
    events = run(monitor, repeat)
    assert [(e.rule, e.action) for e in events] == [("bp.crisis.systolic", Action.OPENED)]
    assert len(events[0].readings) == 2


def test_an_open_alert_is_escalated_once_unless_acknowledged() -> None:
    monitor, start = warmed()
    events = run(monitor, glucose([3.5] * 12, start))  # open at 15 minutes, still low at 55
    assert [e.action for e in events] == [Action.OPENED, Action.ESCALATED]
    acknowledged, start = warmed()
    first = run(acknowledged, glucose([3.5] * 4, start))
    acknowledged.acknowledge("glucose.hypo.level1")
    later = run(acknowledged, glucose([3.5] * 8, start + 4 * FIVE))
    assert [e.action for e in first] == [Action.OPENED] and later == []


def test_the_state_survives_a_round_trip_through_json_mid_episode() -> None:
    whole, start = warmed()
    readings = glucose([3.5, 3.6, 3.5, 3.4, 3.5] * 3 + [6.0], start)
    expected = run(whole, readings)
    halves, start = warmed()
    events = []
    for reading in readings:
        events += halves.observe(reading).alerts
        halves = from_state(json.loads(json.dumps(to_state(halves))))
    assert [(e.rule, e.action, e.at) for e in events] == [
        (e.rule, e.action, e.at) for e in expected
    ]


def news2_set(monitor: PatientMonitor, at: datetime) -> list[AlertEvent]:
    """A charted set scoring 10: RR 25 (3), SpO2 93 (2), air, SBP 95 (2), HR 125 (2), alert,
    38.5 (1)."""
    values = {
        Metric.RESPIRATORY_RATE: 25, Metric.SPO2: 93, Metric.SUPPLEMENTAL_OXYGEN: 0,
        Metric.SYSTOLIC_BP: 95, Metric.HEART_RATE: 125, Metric.CONSCIOUSNESS: 0,
        Metric.BODY_TEMPERATURE: 38.5,
    }  # fmt: skip
    events: list[AlertEvent] = []
    for metric, value in values.items():  # all charted at the same minute
        events += monitor.observe(Reading("emr", metric, value, at)).alerts
    return events


def test_the_clock_escalates_open_alerts_without_a_reading_unless_acknowledged() -> None:
    monitor = PatientMonitor()
    opened = news2_set(monitor, T0)
    assert {(e.rule, e.action) for e in opened} == {
        ("news2.single_parameter_3", Action.OPENED), ("news2.urgent", Action.OPENED),
        ("news2.emergency", Action.OPENED),
    }  # fmt: skip
    assert all(e.news2 is not None and e.news2.total == 10 for e in opened)
    assert all(e.escalate_at == T0 + timedelta(minutes=15) for e in opened)
    assert monitor.acknowledge("news2.emergency", opened_at=T0)
    assert not monitor.acknowledge("news2.urgent", opened_at=T0 - FIVE)  # not that alert
    assert monitor.check(T0 + timedelta(minutes=14)) == []
    escalated = monitor.check(T0 + timedelta(minutes=15))
    assert sorted(e.rule for e in escalated) == ["news2.single_parameter_3", "news2.urgent"]
    assert all(e.action is Action.ESCALATED and e.opened_at == T0 for e in escalated)
    assert monitor.check(T0 + timedelta(minutes=30)) == []  # once


def test_readings_of_one_moment_are_all_used() -> None:
    """A cuff sends systolic and diastolic with the same time; neither is late."""
    monitor = PatientMonitor(grace=timedelta(0))
    at = T0
    outcomes = [
        monitor.observe(Reading("cuff", metric, value, at + i * FIVE))
        for i in range(2)
        for metric, value in ((Metric.SYSTOLIC_BP, 190), (Metric.DIASTOLIC_BP, 100))
    ]
    assert not any(o.late for o in outcomes)
    assert [e.rule for o in outcomes for e in o.alerts] == ["bp.crisis.systolic"]


def test_a_day_is_summarised_once_the_next_has_begun_beyond_the_grace_period() -> None:
    monitor = PatientMonitor(zone=ZoneInfo("Asia/Shanghai"))
    midnight = datetime(2026, 3, 2, tzinfo=ZoneInfo("Asia/Shanghai"))
    day_one = glucose([6.0] * 288, start=midnight - timedelta(days=1))
    summaries = [s for r in day_one for s in monitor.observe(r).summaries]
    summaries += monitor.observe(Reading("cgm-1", Metric.GLUCOSE, 6.0, midnight)).summaries
    assert summaries == []  # the grace period is not over: a reading of day one may still come
    late_but_in_grace = Reading("cgm-1", Metric.GLUCOSE, 3.1, midnight - timedelta(minutes=2))
    assert not monitor.observe(late_but_in_grace).late
    closing = monitor.observe(Reading("cgm-1", Metric.GLUCOSE, 6.0, midnight + 2 * FIVE))
    (summary,) = closing.summaries
    assert summary.day == date(2026, 3, 1)
    assert summary.glucose_day is not None
    assert summary.glucose_day.readings == 289
    assert summary.glucose_day.time_below_level_1 == round(100 / 289, 2)
    assert summary.glucose_period is not None and not summary.glucose_period.sufficient
    restored = from_state(json.loads(json.dumps(to_state(monitor))))
    after = restored.observe(Reading("cgm-1", Metric.GLUCOSE, 6.0, midnight + 3 * FIVE))
    assert after.summaries == []  # not summarised twice
