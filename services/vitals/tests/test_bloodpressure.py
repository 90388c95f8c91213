"""Chinese guideline blood-pressure grades at each boundary."""

from __future__ import annotations

import pytest

from hs_vitals.bloodpressure import Grade, grade, isolated_systolic


@pytest.mark.parametrize(
    ("systolic", "diastolic", "expected"),
    [
        (119, 79, Grade.NORMAL),
        (120, 79, Grade.HIGH_NORMAL),
        (119, 80, Grade.HIGH_NORMAL),
        (139, 89, Grade.HIGH_NORMAL),
        (140, 70, Grade.GRADE_1),
        (130, 90, Grade.GRADE_1),
        (159, 99, Grade.GRADE_1),
        (160, 85, Grade.GRADE_2),
        (150, 100, Grade.GRADE_2),
        (180, 70, Grade.GRADE_3),
        (125, 110, Grade.GRADE_3),  # the higher of the two grades decides
    ],
)
def test_grades_at_their_boundaries(systolic: float, diastolic: float, expected: Grade) -> None:
    assert grade(systolic, diastolic) is expected


def test_isolated_systolic_hypertension() -> None:
    assert isolated_systolic(150, 85)
    assert not isolated_systolic(150, 90)
    assert not isolated_systolic(139, 70)
