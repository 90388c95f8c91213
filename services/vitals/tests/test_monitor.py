"""Per-patient alerting in event time: sustained rules, lifecycle, bad and late readings."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

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
    return events + monitor.flush()


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


def test_readings_out_of_order_within_grace_and_repeats_give_the_same_alerts() -> None:
    in_order, start = warmed()
    expected = run(in_order, glucose([3.5, 3.6, 2.9, 2.8, 2.7, 2.9, 6.0], start))
    shuffled, start = warmed()
    readings = glucose([3.5, 3.6, 2.9, 2.8, 2.7, 2.9, 6.0], start)
    order = [1, 0, 2, 2, 4, 3, 5, 6]  # swapped neighbours (within the grace) and one repeat
    mixed = [readings[i] for i in order]
    outcomes = [shuffled.observe(r) for r in mixed]
    events = [e for o in outcomes for e in o.alerts] + shuffled.flush()
    assert [(e.rule, e.action, e.at) for e in events] == [
        (e.rule, e.action, e.at) for e in expected
    ]
    assert sum(o.duplicates for o in outcomes) == 1


def test_a_reading_older_than_the_grace_period_is_reported_late_not_used() -> None:
    monitor, start = warmed()
    for minutes in (30, 40):  # the reading at 30 is past the 2-minute grace: handed to the rules
        monitor.observe(Reading("cgm-1", Metric.GLUCOSE, 6.0, start + timedelta(minutes=minutes)))
    late = monitor.observe(Reading("cgm-1", Metric.GLUCOSE, 2.5, start))
    assert late.late and not late.alerts


def test_impossible_values_never_alert_and_are_returned_for_quality() -> None:
    monitor = PatientMonitor()
    readings = [Reading("oxi-1", Metric.SPO2, 140.0, T0 + i * FIVE) for i in range(5)]
    readings += [Reading("oxi-1", Metric.HEART_RATE, 0.0, T0 + i * FIVE) for i in range(5)]
    outcomes = [monitor.observe(r) for r in readings]
    assert sum(len(o.implausible) for o in outcomes) == 10
    assert not [e for o in outcomes for e in o.alerts] and not monitor.flush()


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
    events += halves.flush()
    assert [(e.rule, e.action, e.at) for e in events] == [
        (e.rule, e.action, e.at) for e in expected
    ]
