"""Cohort threshold files: overrides applied, bad entries refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from hs_vitals.thresholds import DEFAULT, ThresholdFileError, load_cohorts


def test_a_cohort_overrides_only_what_it_names(tmp_path: Path) -> None:
    path = tmp_path / "cohorts.toml"
    path.write_text("[cohorts.copd]\nspo2_low = 88.0\n[cohorts.pregnancy]\nglucose_high = 7.8\n")
    cohorts = load_cohorts(path)
    assert cohorts["copd"].spo2_low == 88.0
    assert cohorts["copd"].glucose_high == DEFAULT.glucose_high
    assert cohorts["pregnancy"].glucose_high == 7.8


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ("[cohorts.copd]\nspo2_lo = 88.0\n", "cohorts.copd: spo2_lo"),
        ("[cohorts.copd]\nspo2_low = 'low'\n", "cohorts.copd: spo2_low"),
        ("[cohorts.copd]\nspo2_low = 140.0\n", "cohorts.copd: spo2_low"),
        ("[cohorts.kids]\nglucose_low_level_2 = 4.0\n", "glucose_low_level_2 must be below"),
        ("[cohorts.copd\nspo2_low = 88.0\n", "not a readable TOML file"),
        ("copd = 1\n", "expected [cohorts.<name>] tables"),
    ],
)
def test_an_invalid_file_is_refused_naming_the_bad_entry(
    tmp_path: Path, body: str, named: str
) -> None:
    path = tmp_path / "cohorts.toml"
    path.write_text(body)
    with pytest.raises(ThresholdFileError) as refused:
        load_cohorts(path)
    assert named in str(refused.value)
