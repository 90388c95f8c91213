"""A source's window: pass rates against the rules' thresholds, the seed's indicators, the
change from the window before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hs_quality import rules
from hs_quality.summary import SourceWindow, summary, window_start

CHECKS = {c.check_id: c for c in rules.load()}
HOUR = timedelta(hours=1)
T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def test_windows_are_tumbling_in_event_time() -> None:
    assert window_start(T0 + timedelta(minutes=59, seconds=59), HOUR) == T0
    assert window_start(T0 + HOUR, HOUR) == T0 + HOUR
    assert window_start(T0 + timedelta(hours=5), timedelta(days=1)) == T0 - timedelta(hours=9)


def window(missing: int, of: int, start: datetime = T0) -> SourceWindow:
    """`of` identities of one source, `missing` of them without their basic information."""
    kept = SourceWindow("H330102", start, HOUR)
    for n in range(of):
        failed = ["basic-info-missing"] if n < missing else []
        kept.add(f"ev-{n}", ["basic-info-missing", "patient-id-present"], failed)
    return kept


def test_a_check_fails_for_a_source_above_its_threshold_only() -> None:
    within = summary(window(missing=1, of=100), CHECKS)  # 1 % allowed
    assert within["indicators"]["basic-info-missing"] == "passed"
    above = summary(window(missing=2, of=100), CHECKS)
    (row,) = [r for r in above["checks"] if r["check_id"] == "basic-info-missing"]
    assert (row["failed"], row["violated_pct"], row["passed"]) == (2, 2.0, False)
    assert row["examples"] == ["ev-0", "ev-1"]
    assert above["indicators"] == {
        "basic-info-missing": "failed", "reference-deviation": "not_measured",
        "cross-source-consistency": "not_measured", "lab-timeliness": "not_measured",
    }  # fmt: skip


def test_the_change_from_the_window_before() -> None:
    before = window(missing=0, of=50)
    after = summary(window(missing=10, of=50, start=T0 + HOUR), CHECKS, before)
    (row,) = [r for r in after["checks"] if r["check_id"] == "basic-info-missing"]
    assert row["change_pct"] == 20.0 and after["records"] == 50
    assert after["window_end"] == (T0 + 2 * HOUR).isoformat()
