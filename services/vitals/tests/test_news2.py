"""NEWS2 against the RCP 2017 chart: every band edge, the aggregate and the response bands."""

from __future__ import annotations

import pytest

from hs_vitals.news2 import (
    Band,
    VitalSigns,
    news2,
    pulse_score,
    respiration_score,
    spo2_score,
    systolic_score,
    temperature_score,
)

NORMAL = VitalSigns(
    respiration_rate=16,
    spo2=97,
    on_oxygen=False,
    systolic=120,
    pulse=70,
    alert=True,
    temperature=37.0,
)


@pytest.mark.parametrize(
    ("rate", "score"), [(8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3)]
)
def test_respiration_rate_chart(rate: float, score: int) -> None:
    assert respiration_score(rate) == score


@pytest.mark.parametrize(
    ("spo2", "score"), [(91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0)]
)
def test_spo2_scale_1_chart(spo2: float, score: int) -> None:
    assert spo2_score(spo2, on_oxygen=False, scale_2=False) == score


@pytest.mark.parametrize(
    ("spo2", "on_oxygen", "score"),
    [(83, True, 3), (84, True, 2), (85, False, 2), (86, True, 1), (87, True, 1), (88, True, 0),
     (92, True, 0), (93, False, 0), (97, False, 0), (93, True, 1), (94, True, 1), (95, True, 2),
     (96, True, 2), (97, True, 3)],
)  # fmt: skip
def test_spo2_scale_2_chart(spo2: float, on_oxygen: bool, score: int) -> None:
    assert spo2_score(spo2, on_oxygen=on_oxygen, scale_2=True) == score


@pytest.mark.parametrize(
    ("systolic", "score"),
    [(90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3)],
)
def test_systolic_chart(systolic: float, score: int) -> None:
    assert systolic_score(systolic) == score


@pytest.mark.parametrize(
    ("pulse", "score"),
    [(40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2), (130, 2), (131, 3)],
)
def test_pulse_chart(pulse: float, score: int) -> None:
    assert pulse_score(pulse) == score


@pytest.mark.parametrize(
    ("celsius", "score"),
    [(35.0, 3), (35.1, 1), (36.0, 1), (36.1, 0), (38.0, 0), (38.1, 1), (39.0, 1), (39.1, 2)],
)
def test_temperature_chart(celsius: float, score: int) -> None:
    assert temperature_score(celsius) == score


def test_a_well_patient_scores_zero() -> None:
    result = news2(NORMAL)
    assert (result.total, result.band) == (0, Band.ZERO)


def test_a_deteriorating_patient_reaches_the_emergency_band() -> None:
    # RR 22 (2), SpO2 93 (2), on oxygen (2), SBP 105 (1), pulse 115 (2), alert (0), 38.5 (1)
    signs = VitalSigns(22, 93, True, 105, 115, True, 38.5)
    result = news2(signs)
    assert result.total == 10
    assert result.band is Band.HIGH


def test_a_single_red_parameter_is_low_medium_and_five_is_urgent() -> None:
    confused = VitalSigns(16, 97, False, 120, 70, False, 37.0)
    assert (news2(confused).total, news2(confused).band) == (3, Band.LOW_MEDIUM)
    five = VitalSigns(21, 95, False, 105, 95, True, 37.0)  # 2 + 1 + 1 + 1
    assert (news2(five).total, news2(five).band) == (5, Band.MEDIUM)
    four = VitalSigns(21, 95, False, 105, 70, True, 37.0)
    assert (news2(four).total, news2(four).band) == (4, Band.LOW)
