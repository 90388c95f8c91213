"""A patient's day, summarised when it has ended in event time: CGM metrics for the day and the
14 days ending with it (hs_vitals.cgm, with the data-sufficiency rule), and the day's mean blood
pressure with its grade (hs_vitals.bloodpressure). Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from hs_vitals.bloodpressure import Grade, grade, isolated_systolic
from hs_vitals.cgm import SUFFICIENT_DAYS, CgmSummary, GlucoseCounts, summarise

PERIOD_DAYS = SUFFICIENT_DAYS


@dataclass
class DayTotals:
    glucose: GlucoseCounts = field(default_factory=GlucoseCounts)
    systolic: list[float] = field(default_factory=lambda: [0, 0.0])  # count, total
    diastolic: list[float] = field(default_factory=lambda: [0, 0.0])

    def to_list(self) -> list[Any]:
        return [self.glucose.to_list(), self.systolic, self.diastolic]

    @classmethod
    def from_list(cls, stored: list[Any]) -> DayTotals:
        glucose, systolic, diastolic = stored
        return cls(GlucoseCounts.from_list(glucose), list(systolic), list(diastolic))


@dataclass(frozen=True)
class BloodPressure:
    readings: int
    mean_systolic: float
    mean_diastolic: float
    grade: Grade
    isolated_systolic: bool


@dataclass(frozen=True)
class DaySummary:
    day: date
    glucose_day: CgmSummary | None
    glucose_period: CgmSummary | None  # the 14 days ending with `day`
    blood_pressure: BloodPressure | None


def summarise_day(
    days: Mapping[date, DayTotals], day: date, first_glucose: date | None
) -> DaySummary:
    """`days` holds at least the 14 days ending with `day`; `first_glucose` is the first day
    the patient wore a CGM, so that a period before it is not counted as missing wear."""
    today = days[day]
    glucose_day = glucose_period = None
    if today.glucose.readings and first_glucose is not None:
        glucose_day = summarise(today.glucose, days=1, minimum_days=1)
        start = max(first_glucose, day - timedelta(days=PERIOD_DAYS - 1))
        period = GlucoseCounts()
        for offset in range((day - start).days + 1):
            totals = days.get(start + timedelta(days=offset))
            if totals is not None:
                period += totals.glucose
        glucose_period = summarise(period, days=(day - start).days + 1)
    blood_pressure = None
    (systolic_n, systolic_total), (diastolic_n, diastolic_total) = today.systolic, today.diastolic
    if systolic_n and diastolic_n:
        systolic, diastolic = systolic_total / systolic_n, diastolic_total / diastolic_n
        blood_pressure = BloodPressure(
            int(systolic_n), round(systolic, 1), round(diastolic, 1),
            grade(systolic, diastolic), isolated_systolic(systolic, diastolic),
        )  # fmt: skip
    return DaySummary(day, glucose_day, glucose_period, blood_pressure)
