"""A source's windows: pass rates against the rules' thresholds, the seed's indicators, the
change from the window before, late records, delays, unmapped codes and alerts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hs_quality import rules
from hs_quality.summary import Size, SourceQuality, SourceWindow, Tallied, summary, window_start

CHECKS = {c.check_id: c for c in rules.load()}
HOUR = timedelta(hours=1)
T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
GRACE = timedelta(minutes=15)
IDENTITY = "hs.identity.PatientIdentity"


def identity(n: int, at: datetime, missing: bool = False, delay_minutes: float = 1) -> Tallied:
    failed = ("basic-info-missing",) if missing else ()
    return Tallied(f"ev-{n}", IDENTITY, at, at - timedelta(minutes=delay_minutes),
                   ("basic-info-missing", "patient-id-present"), failed)  # fmt: skip


def test_windows_are_tumbling_in_event_time() -> None:
    assert window_start(T0 + timedelta(minutes=59, seconds=59), HOUR) == T0
    assert window_start(T0 + HOUR, HOUR) == T0 + HOUR
    assert window_start(T0 + timedelta(hours=5), timedelta(days=1)) == T0 - timedelta(hours=9)


def window(missing: int, of: int, start: datetime = T0) -> SourceWindow:
    """`of` identities of one source, `missing` of them without their basic information."""
    kept = SourceWindow(Size.HOUR, start)
    for n in range(of):
        kept.add(identity(n, start + timedelta(seconds=n), missing=n < missing))
    return kept


def rate(body: dict, check_id: str) -> dict:  # type: ignore[type-arg]
    (row,) = [r for r in body["checks"] if r["check_id"] == check_id]
    return row  # type: ignore[no-any-return]


def test_a_check_fails_for_a_source_above_its_threshold_only() -> None:
    within = summary(window(missing=1, of=100), CHECKS)  # 1 % allowed
    assert {"check_id": "basic-info-missing", "status": "PASSED"} in within["indicators"]
    above = summary(window(missing=2, of=100), CHECKS)
    row = rate(above, "basic-info-missing")
    assert (row["failed"], row["violated_pct"], row["passed"]) == (2, 2.0, False)
    assert row["examples"] == ["ev-0", "ev-1"] and row["dimension"] == "completeness"
    assert {i["check_id"]: i["status"] for i in above["indicators"]} == {
        "basic-info-missing": "FAILED", "reference-deviation": "NOT_MEASURED",
        "cross-source-consistency": "NOT_MEASURED", "lab-timeliness": "NOT_MEASURED",
    }  # fmt: skip


def test_the_change_from_the_window_before() -> None:
    after = summary(window(missing=10, of=50, start=T0 + HOUR), CHECKS, {"basic-info-missing": 0})
    assert rate(after, "basic-info-missing")["change_pct"] == 20.0 and after["records"] == 50
    assert after["window_end"] == T0 + 2 * HOUR
    assert rate(summary(window(1, 50), CHECKS), "basic-info-missing")["change_pct"] is None


def test_delays_per_data_type_and_the_top_unmapped_codes() -> None:
    kept = SourceWindow(Size.HOUR, T0)
    for n, minutes in enumerate((0.5, 3, 3, 8, 45, 20000)):
        kept.add(identity(n, T0 + timedelta(minutes=1), delay_minutes=minutes))
    for n, code in enumerate(("L|GLU-X", "L|NA-Y", "L|GLU-X")):
        kept.add(Tallied(f"o-{n}", "hs.clinical.Observation", T0, T0, (), (), code))
    body = summary(kept, CHECKS)
    delays = {d["scored_type"]: d for d in body["delays"]}
    # 4 of 6 within 10 min; the median (3rd) in the 5-minute bucket, the 90th in the open one
    assert delays[IDENTITY]["within_10_minutes_pct"] == round(400 / 6, 3)
    assert (delays[IDENTITY]["median_minutes_at_most"], delays[IDENTITY]["p90_minutes_at_most"]) \
        == (5.0, None)  # fmt: skip
    assert body["unmapped_codes"] == [{"code": "L|GLU-X", "count": 2},
                                      {"code": "L|NA-Y", "count": 1}]  # fmt: skip


def test_a_window_closes_after_its_grace_and_a_record_for_it_after_that_is_late() -> None:
    source = SourceQuality(GRACE)
    assert source.add(identity(1, T0 + timedelta(minutes=50)), CHECKS).summaries == []
    # 10 minutes into the next hour, within the grace: it still lands in its own window
    assert source.add(identity(2, T0 + HOUR + timedelta(minutes=10)), CHECKS).summaries == []
    assert source.add(identity(3, T0 + timedelta(minutes=59)), CHECKS).summaries == []
    closed = source.add(identity(4, T0 + HOUR + timedelta(minutes=15)), CHECKS)
    ((window, body),) = closed.summaries
    assert (window.start, body["window"], body["records"], body["late_records"]) == (
        T0,
        "HOUR",
        2,
        0,
    )
    source.add(identity(5, T0 + timedelta(minutes=30)), CHECKS)  # its hour has closed
    hour = next(w for w in source.open if w.size is Size.HOUR)
    day = next(w for w in source.open if w.size is Size.DAY)
    assert (hour.start, hour.late, hour.records) == (T0 + HOUR, 1, 2)
    assert day.records == 5  # the day is still open: it lands there


def test_the_state_round_trips() -> None:
    source = SourceQuality(GRACE)
    for n in range(30):
        source.add(identity(n, T0 + timedelta(minutes=2 * n), missing=n % 3 == 0), CHECKS)
    again = SourceQuality.from_state(source.to_state(), GRACE, 20)
    assert again == source


def test_an_alert_opens_once_and_resolves_when_the_source_recovers() -> None:
    source = SourceQuality(GRACE, alert_min_records=20)
    changes = []
    for hour in range(5):  # hours 1 and 2: a tenth without basic information (1 % allowed)
        for n in range(40):
            at = T0 + hour * HOUR + timedelta(minutes=n)
            bad = hour in (1, 2) and n % 10 == 0
            changes += source.add(identity(100 * hour + n, at, missing=bad), CHECKS).alerts
    changes += source.add(identity(9999, T0 + 6 * HOUR), CHECKS).alerts
    assert [(c.action, c.check_id, c.window.start, c.opened_at) for c in changes] == [
        ("OPENED", "basic-info-missing", T0 + HOUR, T0 + HOUR),
        ("RESOLVED", "basic-info-missing", T0 + 3 * HOUR, T0 + HOUR),
    ]
    opened, resolved = changes
    assert (opened.violated_pct, opened.previous_pct) == (10.0, 0.0)
    assert opened.alert_id("H1") == resolved.alert_id("H1") != opened.alert_id("H2")


def test_too_few_records_neither_open_nor_resolve_an_alert() -> None:
    source = SourceQuality(GRACE, alert_min_records=20)
    changes = []
    for n in range(10):
        changes += source.add(identity(n, T0 + timedelta(minutes=n), missing=True), CHECKS).alerts
    changes += source.add(identity(99, T0 + 2 * HOUR), CHECKS).alerts
    assert changes == []


def test_a_quiet_source_closes_its_windows_by_the_clock_as_time_passes() -> None:
    source = SourceQuality(GRACE)
    heard = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)  # the record's Kafka time
    source.add(identity(1, T0 + timedelta(minutes=50)), CHECKS, heard)
    provisional = source.tick(heard + timedelta(minutes=24), CHECKS).summaries  # 10:14 < 10:15
    assert [(w.size, body["final"], body["records"]) for w, body in provisional] == [
        (Size.DAY, False, 1),
        (Size.HOUR, False, 1),
    ]  # how the open windows stand
    assert source.tick(heard + timedelta(minutes=24, seconds=30), CHECKS).summaries == []
    ((window, body),) = source.tick(heard + timedelta(minutes=25), CHECKS).summaries
    assert (window.start, body["records"], body["final"]) == (T0, 1, True)
    assert source.tick(heard, CHECKS).summaries == []  # a tick from the past changes nothing
    # a record for the closed hour, arriving now, is late
    source.add(identity(2, T0 + timedelta(minutes=55)), CHECKS, heard + timedelta(minutes=26))
    assert next(w for w in source.open if w.size is Size.HOUR).late == 1
    assert SourceQuality(GRACE).tick(heard, CHECKS).summaries == []  # nothing heard yet
