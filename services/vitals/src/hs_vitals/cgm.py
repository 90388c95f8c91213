"""CGM summaries: time in ranges, variability and GMI, reported only on sufficient data.

Sources: International Consensus on Time in Range (Battelino et al., Diabetes Care
2019;42(8):1593-1603) for the ranges, the %CV target and the data-sufficiency rule (at least
14 days of wear, CGM active at least 70% of the possible time); Bergenstal et al., Diabetes
Care 2018;41(11):2275-2280 for GMI. Pure.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

MG_PER_MMOL = 18.0182
SUFFICIENT_DAYS = 14
SUFFICIENT_WEAR = 0.70
CV_TARGET = 36.0  # %, at or below: stable glucose


@dataclass(frozen=True)
class CgmSummary:
    readings: int
    wear: float  # share of the possible readings in the period that arrived
    days: float
    sufficient: bool  # >= 14 days and >= 70% wear: the metrics below are reported only then
    time_in_range: float | None = None  # % 3.9-10.0 mmol/L (target > 70%)
    time_below_level_1: float | None = None  # % 3.0-3.8 (target < 4%)
    time_below_level_2: float | None = None  # % < 3.0 (target < 1%)
    time_above_level_1: float | None = None  # % 10.1-13.9 (target < 25%)
    time_above_level_2: float | None = None  # % > 13.9 (target < 5%)
    mean_mmol: float | None = None
    cv_percent: float | None = None  # SD / mean x 100 (target <= 36%)
    gmi_percent: float | None = None  # 3.31 + 0.02392 x mean mg/dL
    gmi_mmol_mol: float | None = None  # 12.71 + 4.70587 x mean mmol/L


def summarise(
    readings: Sequence[tuple[datetime, float]],
    start: datetime,
    end: datetime,
    interval: timedelta = timedelta(minutes=5),
) -> CgmSummary:
    """A summary of mmol/L readings taken every `interval` between `start` and `end`."""
    values = [value for at, value in readings if start <= at < end]
    days = (end - start) / timedelta(days=1)
    possible = max(1, int((end - start) / interval))
    wear = min(1.0, len(values) / possible)
    sufficient = days >= SUFFICIENT_DAYS and wear >= SUFFICIENT_WEAR
    if not sufficient or not values:
        return CgmSummary(len(values), round(wear, 4), days, False)
    mean = statistics.fmean(values)

    def share(low: float, high: float) -> float:
        return round(100 * sum(low <= v < high for v in values) / len(values), 2)

    return CgmSummary(
        readings=len(values),
        wear=round(wear, 4),
        days=days,
        sufficient=True,
        time_in_range=share(3.9, 10.05),
        time_below_level_1=share(3.0, 3.9),
        time_below_level_2=share(float("-inf"), 3.0),
        time_above_level_1=share(10.05, 13.95),
        time_above_level_2=share(13.95, float("inf")),
        mean_mmol=round(mean, 2),
        cv_percent=round(100 * statistics.stdev(values) / mean, 1) if len(values) > 1 else 0.0,
        gmi_percent=round(3.31 + 0.02392 * mean * MG_PER_MMOL, 2),
        gmi_mmol_mol=round(12.71 + 4.70587 * mean, 1),
    )
