"""eGFR (CKD-EPI 2021), KDIGO categories and progression, and plain series trends."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from hs_edge.trends import Point, egfr, kidney_trend, stage, trend

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_worked_example_and_the_female_term() -> None:
    assert egfr(1.2, 55, female=False) == pytest.approx(71, abs=1)  # about 71: G2
    assert stage(egfr(1.2, 55, female=False)) == "G2"
    # below kappa the alpha exponent applies: 0.6 mg/dL, 40, female
    expected = 142 * (0.6 / 0.7) ** -0.241 * 0.9938**40 * 1.012
    assert egfr(0.6, 40, female=True) == round(expected, 1)


@pytest.mark.parametrize(
    ("gfr", "category"),
    [(90, "G1"), (89.9, "G2"), (60, "G2"), (59.9, "G3a"), (45, "G3a"), (44.9, "G3b"),
     (30, "G3b"), (29.9, "G4"), (15, "G4"), (14.9, "G5")],
)  # fmt: skip
def test_kdigo_categories_at_their_bounds(gfr: float, category: str) -> None:
    assert stage(gfr) == category


def test_a_series_change_and_least_squares_slope() -> None:
    points = [Point(T0 + timedelta(days=d), v) for d, v in [(0, 10.0), (182, 8.0), (365, 6.0)]]
    series = trend(points)
    assert series.change == -4.0
    assert series.slope_per_year == pytest.approx(-4.0, abs=0.05)
    assert trend(points[:2]).slope_per_year is None  # two points are not a trend
    assert trend([]).change is None


def test_a_declining_kidney_is_flagged() -> None:
    birth = date(1960, 6, 1)
    creatinine = [  # µmol/L over a year: eGFR about 60 -> 35
        (T0, 106.0, "umol/L"), (T0 + timedelta(days=120), 130.0, "umol/L"),
        (T0 + timedelta(days=240), 150.0, "umol/L"), (T0 + timedelta(days=365), 1.9, "mg/dL"),
        (T0 + timedelta(days=370), 2.0, "mmol/L"),  # a unit it cannot convert: left out
    ]  # fmt: skip
    kidney = kidney_trend(creatinine, birth, female=False)
    assert len(kidney.trend.points) == 4
    assert kidney.stages[0] in ("G2", "G3a") and kidney.stages[-1] == "G3b"
    assert kidney.certain_drop and kidney.rapid_progression
    steady = kidney_trend([(T0 + timedelta(days=d), 80.0, "umol/L") for d in (0, 200, 400)],
                          birth, female=True)  # fmt: skip
    assert not steady.certain_drop and not steady.rapid_progression


def test_children_are_left_out() -> None:
    assert kidney_trend([(T0, 50.0, "umol/L")], date(2015, 1, 1), female=True).trend.points == ()
