"""CGM summary on a trace whose figures are worked out by hand."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta

import pytest

from hs_vitals.cgm import GlucoseCounts, summarise, summarise_readings

START = datetime(2026, 3, 1, tzinfo=UTC)
FIVE_MINUTES = timedelta(minutes=5)
READINGS_14_DAYS = 14 * 288  # 4,032 possible readings


def trace(counts: list[tuple[float, int]], start: datetime = START) -> list[tuple[datetime, float]]:
    values = [value for value, count in counts for _ in range(count)]
    return [(start + i * FIVE_MINUTES, value) for i, value in enumerate(values)]


def test_a_14_day_trace_gives_the_hand_worked_figures() -> None:
    # 4,000 readings of 4,032 possible: 70% at 6.0, 3% at 3.5, 1% at 2.8, 20% at 12.0, 6% at 15.0
    counts = [(6.0, 2800), (3.5, 120), (2.8, 40), (12.0, 800), (15.0, 240)]
    summary = summarise_readings(trace(counts), START, START + timedelta(days=14))
    assert summary.sufficient
    assert summary.wear == pytest.approx(4000 / READINGS_14_DAYS, abs=1e-4)
    assert summary.time_in_range == 70.0
    assert summary.time_below_level_1 == 3.0
    assert summary.time_below_level_2 == 1.0
    assert summary.time_above_level_1 == 20.0
    assert summary.time_above_level_2 == 6.0
    mean = (6.0 * 2800 + 3.5 * 120 + 2.8 * 40 + 12.0 * 800 + 15.0 * 240) / 4000  # 7.633
    assert summary.mean_mmol == round(mean, 2)
    values = [v for v, n in counts for _ in range(n)]
    assert summary.cv_percent == round(100 * statistics.stdev(values) / mean, 1)
    assert summary.gmi_percent == round(3.31 + 0.02392 * mean * 18.0182, 2)  # 6.60
    assert summary.gmi_mmol_mol == round(12.71 + 4.70587 * mean, 1)  # 48.6


def test_metrics_are_withheld_without_14_days_or_70_percent_wear() -> None:
    short = summarise_readings(trace([(6.0, 13 * 288)]), START, START + timedelta(days=13))
    assert not short.sufficient
    assert short.time_in_range is None
    assert short.gmi_percent is None
    sparse = summarise_readings(trace([(6.0, 2700)]), START, START + timedelta(days=14))  # 67% wear
    assert not sparse.sufficient
    assert sparse.wear < 0.70


def test_days_add_up_to_the_period_s_figures() -> None:
    values = [6.0] * 200 + [3.5] * 40 + [12.0] * 48
    whole, first, second = GlucoseCounts(), GlucoseCounts(), GlucoseCounts()
    for i, value in enumerate(values):
        whole.add(value)
        (first if i % 3 else second).add(value)
    assert GlucoseCounts.from_list((first + second).to_list()) == whole
    day = summarise(whole, days=1, minimum_days=1)  # 288 of 288 possible readings
    assert day.sufficient
    assert day.wear == 1.0
    assert day.time_in_range == round(100 * 200 / 288, 2)
    assert day.cv_percent == round(100 * statistics.stdev(values) / statistics.fmean(values), 1)
