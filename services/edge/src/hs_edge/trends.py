"""Trends of a person's results: the series, its change and slope; eGFR from creatinine with
the KDIGO category and progression flags. Pure.

Sources: CKD-EPI 2021 creatinine equation, race-free (Inker et al., NEJM 2021;385:1737-49);
KDIGO 2012 CKD guideline (reaffirmed 2024): GFR categories G1-G5; recommendation 2.1.3 on
progression: a "certain drop" is a fall in GFR category with a >= 25% drop from baseline;
rapid progression is a sustained decline of more than 5 mL/min/1.73 m2 a year.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

UMOL_PER_MG_DL = 88.4  # creatinine
YEAR = timedelta(days=365.25)
STAGES = ((90.0, "G1"), (60.0, "G2"), (45.0, "G3a"), (30.0, "G3b"), (15.0, "G4"), (0.0, "G5"))
RAPID_DECLINE_PER_YEAR = -5.0
CERTAIN_DROP = 0.25
MIN_SPAN = timedelta(days=90)  # a slope is a trend only over at least this, with 3 points


@dataclass(frozen=True)
class Point:
    at: datetime
    value: float


@dataclass(frozen=True)
class Trend:
    points: tuple[Point, ...]
    change: float | None  # last - first
    slope_per_year: float | None  # least squares; None with fewer than 3 points over 90 days


@dataclass(frozen=True)
class KidneyTrend:
    trend: Trend
    stages: tuple[str, ...]  # KDIGO category of each point
    certain_drop: bool  # a category fall with >= 25% below the first value
    rapid_progression: bool  # slope below -5 per year


def trend(points: Sequence[Point]) -> Trend:
    ordered = tuple(sorted(points, key=lambda p: p.at))
    if not ordered:
        return Trend((), None, None)
    change = ordered[-1].value - ordered[0].value
    span = ordered[-1].at - ordered[0].at
    if len(ordered) < 3 or span < MIN_SPAN:
        return Trend(ordered, round(change, 2), None)
    years = [(p.at - ordered[0].at) / YEAR for p in ordered]
    values = [p.value for p in ordered]
    mean_x, mean_y = sum(years) / len(years), sum(values) / len(values)
    spread = sum((x - mean_x) ** 2 for x in years)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(years, values, strict=True)) / spread
    return Trend(ordered, round(change, 2), round(slope, 2))


def creatinine_mg_dl(value: float, unit: str | None) -> float | None:
    if unit in ("mg/dL", "mg/dl"):
        return value
    if unit in ("umol/L", "µmol/L", "umol/l"):
        return value / UMOL_PER_MG_DL
    return None


def egfr(creatinine_mg_per_dl: float, age: float, female: bool) -> float:
    """CKD-EPI 2021 (creatinine), mL/min/1.73 m2; for adults."""
    kappa, alpha = (0.7, -0.241) if female else (0.9, -0.302)
    ratio = creatinine_mg_per_dl / kappa
    value = 142 * min(ratio, 1.0) ** alpha * max(ratio, 1.0) ** -1.200 * 0.9938**age
    return float(round(value * (1.012 if female else 1.0), 1))


def stage(gfr: float) -> str:
    return next(name for floor, name in STAGES if gfr >= floor)


def age_at(birth: date, moment: datetime) -> float:
    return (moment.date() - birth).days / 365.25


def kidney_trend(
    creatinine: Sequence[tuple[datetime, float, str | None]], birth: date, female: bool
) -> KidneyTrend:
    """eGFR at each adult creatinine result (value, unit) whose unit is known."""
    points = []
    for at, value, unit in creatinine:
        mg_dl, age = creatinine_mg_dl(value, unit), age_at(birth, at)
        if mg_dl is not None and mg_dl > 0 and age >= 18:
            points.append(Point(at, egfr(mg_dl, age, female)))
    series = trend(points)
    stages = tuple(stage(p.value) for p in series.points)
    order = [name for _, name in STAGES]
    dropped = bool(series.points) and any(
        order.index(s) > order.index(stages[0])
        and p.value <= (1 - CERTAIN_DROP) * series.points[0].value
        for s, p in zip(stages, series.points, strict=True)
    )
    rapid = series.slope_per_year is not None and series.slope_per_year < RAPID_DECLINE_PER_YEAR
    return KidneyTrend(series, stages, dropped, rapid)
