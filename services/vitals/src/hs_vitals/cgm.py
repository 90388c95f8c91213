"""CGM summaries: time in ranges, variability and GMI, reported only on sufficient data.

Sources: International Consensus on Time in Range (Battelino et al., Diabetes Care
2019;42(8):1593-1603) for the ranges, the %CV target and the data-sufficiency rule (at least
14 days of wear, CGM active at least 70% of the possible time); Bergenstal et al., Diabetes
Care 2018;41(11):2275-2280 for GMI. Pure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta

MG_PER_MMOL = 18.0182
SUFFICIENT_DAYS = 14
SUFFICIENT_WEAR = 0.70
CV_TARGET = 36.0  # %, at or below: stable glucose


@dataclass(frozen=True)
class CgmSummary:
    readings: int
    days: float
    wear: float  # share of the possible readings in the period that arrived
    sufficient: bool  # enough days and wear: the metrics below are reported only then
    time_in_range: float | None = None  # % 3.9-10.0 mmol/L (target > 70%)
    time_below_level_1: float | None = None  # % 3.0-3.8 (target < 4%)
    time_below_level_2: float | None = None  # % < 3.0 (target < 1%)
    time_above_level_1: float | None = None  # % 10.1-13.9 (target < 25%)
    time_above_level_2: float | None = None  # % > 13.9 (target < 5%)
    mean_mmol: float | None = None
    cv_percent: float | None = None  # SD / mean x 100 (target <= 36%)
    gmi_percent: float | None = None  # 3.31 + 0.02392 x mean mg/dL
    gmi_mmol_mol: float | None = None  # 12.71 + 4.70587 x mean mmol/L


@dataclass
class GlucoseCounts:
    """Readings counted per consensus range, with the sums for mean and SD: what a day keeps,
    and what days add up to for a longer period."""

    readings: int = 0
    below_level_2: int = 0  # < 3.0
    below_level_1: int = 0  # 3.0-3.8
    in_range: int = 0  # 3.9-10.0
    above_level_1: int = 0  # 10.1-13.9
    above_level_2: int = 0  # > 13.9
    total: float = 0.0
    total_squares: float = 0.0

    def add(self, mmol: float) -> None:
        self.readings += 1
        self.total += mmol
        self.total_squares += mmol * mmol
        # readings come to one decimal: the bounds sit between the published values
        if mmol < 3.0:
            self.below_level_2 += 1
        elif mmol < 3.9:
            self.below_level_1 += 1
        elif mmol < 10.05:
            self.in_range += 1
        elif mmol < 13.95:
            self.above_level_1 += 1
        else:
            self.above_level_2 += 1

    def __add__(self, other: GlucoseCounts) -> GlucoseCounts:
        return GlucoseCounts(
            *(getattr(self, f.name) + getattr(other, f.name) for f in fields(self))
        )

    def to_list(self) -> list[float]:
        return [getattr(self, f.name) for f in fields(self)]

    @classmethod
    def from_list(cls, values: Sequence[float]) -> GlucoseCounts:
        readings, below_2, below_1, in_range, above_1, above_2, total, squares = values
        return cls(
            int(readings), int(below_2), int(below_1), int(in_range), int(above_1), int(above_2),
            float(total), float(squares),
        )  # fmt: skip


def summarise(
    counts: GlucoseCounts,
    days: float,
    interval: timedelta = timedelta(minutes=5),
    minimum_days: float = SUFFICIENT_DAYS,
) -> CgmSummary:
    """The summary of a period of `days` in which a reading was possible every `interval`."""
    possible = max(1, int(days * timedelta(days=1) / interval))
    wear = round(min(1.0, counts.readings / possible), 4)
    n = counts.readings
    if not (days >= minimum_days and wear >= SUFFICIENT_WEAR and n):
        return CgmSummary(n, days, wear, False)
    mean = counts.total / n
    variance = max(0.0, (counts.total_squares - n * mean * mean) / (n - 1)) if n > 1 else 0.0

    def share(count: int) -> float:
        return round(100 * count / n, 2)

    return CgmSummary(
        readings=n,
        days=days,
        wear=wear,
        sufficient=True,
        time_in_range=share(counts.in_range),
        time_below_level_1=share(counts.below_level_1),
        time_below_level_2=share(counts.below_level_2),
        time_above_level_1=share(counts.above_level_1),
        time_above_level_2=share(counts.above_level_2),
        mean_mmol=round(mean, 2),
        cv_percent=round(100 * math.sqrt(variance) / mean, 1),
        gmi_percent=round(3.31 + 0.02392 * mean * MG_PER_MMOL, 2),
        gmi_mmol_mol=round(12.71 + 4.70587 * mean, 1),
    )


def summarise_readings(
    readings: Sequence[tuple[datetime, float]],
    start: datetime,
    end: datetime,
    interval: timedelta = timedelta(minutes=5),
) -> CgmSummary:
    """The summary of the mmol/L readings taken between `start` and `end`."""
    counts = GlucoseCounts()
    for at, value in readings:
        if start <= at < end:
            counts.add(value)
    return summarise(counts, (end - start) / timedelta(days=1), interval)
