"""NEWS2: the National Early Warning Score 2.

Source: Royal College of Physicians, National Early Warning Score (NEWS) 2, December 2017,
Chart 1 (the scoring system) and Chart 4 (clinical response). Pure.

Scale 2 for SpO2 is only for patients with confirmed hypercapnic respiratory failure and a
prescribed target of 88-92%; everyone else is scored on Scale 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Band(StrEnum):
    """Chart 4 clinical risk and response."""

    ZERO = "ZERO"  # 0: minimum 12-hourly monitoring
    LOW = "LOW"  # 1-4: minimum 4-6-hourly; assessment by a registered nurse
    LOW_MEDIUM = "LOW_MEDIUM"  # a 3 in any single parameter: minimum 1-hourly; medical review
    MEDIUM = "MEDIUM"  # 5-6: urgent response threshold; minimum 1-hourly
    HIGH = "HIGH"  # >= 7: emergency response threshold; continuous monitoring


@dataclass(frozen=True)
class VitalSigns:
    respiration_rate: float  # breaths/min
    spo2: float  # %
    on_oxygen: bool
    systolic: float  # mmHg
    pulse: float  # beats/min
    alert: bool  # ACVPU: True for Alert; False for new Confusion, Voice, Pain or Unresponsive
    temperature: float  # degrees Celsius
    scale_2: bool = False  # hypercapnic respiratory failure with a prescribed 88-92% target


@dataclass(frozen=True)
class News2:
    scores: dict[str, int]  # per parameter
    total: int
    band: Band


def respiration_score(rate: float) -> int:
    if rate <= 8:
        return 3
    if rate <= 11:
        return 1
    if rate <= 20:
        return 0
    if rate <= 24:
        return 2
    return 3


def spo2_score(spo2: float, on_oxygen: bool, scale_2: bool) -> int:
    if not scale_2:
        return 3 if spo2 <= 91 else 2 if spo2 <= 93 else 1 if spo2 <= 95 else 0
    if spo2 <= 83:
        return 3
    if spo2 <= 85:
        return 2
    if spo2 <= 87:
        return 1
    if spo2 <= 92 or not on_oxygen:  # 88-92, or >= 93 on air
        return 0
    return 1 if spo2 <= 94 else 2 if spo2 <= 96 else 3  # on oxygen: 93-94, 95-96, >= 97


def systolic_score(systolic: float) -> int:
    if systolic <= 90:
        return 3
    if systolic <= 100:
        return 2
    if systolic <= 110:
        return 1
    if systolic <= 219:
        return 0
    return 3


def pulse_score(pulse: float) -> int:
    if pulse <= 40:
        return 3
    if pulse <= 50:
        return 1
    if pulse <= 90:
        return 0
    if pulse <= 110:
        return 1
    if pulse <= 130:
        return 2
    return 3


def temperature_score(celsius: float) -> int:
    if celsius <= 35.0:
        return 3
    if celsius <= 36.0:
        return 1
    if celsius <= 38.0:
        return 0
    if celsius <= 39.0:
        return 1
    return 2


def news2(signs: VitalSigns) -> News2:
    scores = {
        "respiration_rate": respiration_score(signs.respiration_rate),
        "spo2": spo2_score(signs.spo2, signs.on_oxygen, signs.scale_2),
        "air_or_oxygen": 2 if signs.on_oxygen else 0,
        "systolic": systolic_score(signs.systolic),
        "pulse": pulse_score(signs.pulse),
        "consciousness": 0 if signs.alert else 3,
        "temperature": temperature_score(signs.temperature),
    }
    total = sum(scores.values())
    return News2(scores, total, band(total, max(scores.values())))


def band(total: int, highest_single: int) -> Band:
    if total >= 7:
        return Band.HIGH
    if total >= 5:
        return Band.MEDIUM
    if highest_single >= 3:
        return Band.LOW_MEDIUM
    return Band.LOW if total >= 1 else Band.ZERO
