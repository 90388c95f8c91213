"""Blood-pressure grades of the Chinese guideline (中国高血压防治指南 2018, kept in the 2024
revision): the higher of the systolic and diastolic grades. Pure.

The grades are defined on office readings; a day's mean of home readings is graded the same way
for the summary, and the 2024 revision's home threshold (>= 135/85) is a separate question for the
clinician. Hypertensive crisis (> 180/120) is an alert rule, not a grade (hs_vitals.monitor).
"""

from __future__ import annotations

from enum import StrEnum


class Grade(StrEnum):
    NORMAL = "NORMAL"  # < 120 and < 80
    HIGH_NORMAL = "HIGH_NORMAL"  # 正常高值: 120-139 and/or 80-89
    GRADE_1 = "GRADE_1"  # 140-159 and/or 90-99
    GRADE_2 = "GRADE_2"  # 160-179 and/or 100-109
    GRADE_3 = "GRADE_3"  # >= 180 and/or >= 110


ORDER = tuple(Grade)
SYSTOLIC_FROM = (120.0, 140.0, 160.0, 180.0)  # where each grade above NORMAL starts
DIASTOLIC_FROM = (80.0, 90.0, 100.0, 110.0)


def _step(value: float, starts: tuple[float, ...]) -> int:
    return sum(value >= start for start in starts)


def grade(systolic: float, diastolic: float) -> Grade:
    return ORDER[max(_step(systolic, SYSTOLIC_FROM), _step(diastolic, DIASTOLIC_FROM))]


def isolated_systolic(systolic: float, diastolic: float) -> bool:
    """单纯收缩期高血压: SBP >= 140 with DBP < 90."""
    return systolic >= 140.0 and diastolic < 90.0
