"""Cohort threshold files: overrides applied, bad entries refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from hs_vitals.thresholds import DEFAULT, ThresholdFileError, load_cohorts


def test_a_cohort_overrides_only_what_it_names(tmp_path: Path) -> None:
    path = tmp_path / "cohorts.toml"
    path.write_text("[cohorts.copd]\nspo2_low = 88.0\n[cohorts.pregnancy]\nglucose_high = 7.8\n")
    cohorts = load_cohorts(path)
    assert cohorts.thresholds("copd").spo2_low == 88.0
    assert cohorts.thresholds("copd").glucose_high == DEFAULT.glucose_high
    assert cohorts.thresholds("pregnancy").glucose_high == 7.8
    assert cohorts.thresholds(None) == DEFAULT


def test_diagnoses_place_patients_in_cohorts_by_file_order(tmp_path: Path) -> None:
    path = tmp_path / "cohorts.toml"
    path.write_text(
        "[defaults]\nescalate_after_minutes = 10.0\n"
        '[cohorts.copd]\nconditions = ["J44", "j96.1"]\nspo2_low = 88.0\n'
        '[cohorts.diabetes]\nconditions = ["E11"]\nglucose_high = 15.0\n'
    )
    cohorts = load_cohorts(path)
    assert cohorts.for_diagnosis("J44.1") == "copd"
    assert cohorts.for_diagnosis("J96.10") == "copd"
    assert cohorts.for_diagnosis("E11.9") == "diabetes"
    assert cohorts.for_diagnosis("I10") is None
    assert cohorts.preferred("diabetes", "copd") == "copd"  # earlier in the file
    assert cohorts.preferred("copd", "diabetes") == "copd"
    assert cohorts.thresholds("diabetes").escalate_after_minutes == 10.0  # defaults apply
    assert cohorts.thresholds(None).escalate_after_minutes == 10.0


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ("[cohorts.copd]\nspo2_lo = 88.0\n", "cohorts.copd: spo2_lo"),
        ("[cohorts.copd]\nspo2_low = 'low'\n", "cohorts.copd: spo2_low"),
        ("[cohorts.copd]\nspo2_low = 140.0\n", "cohorts.copd: spo2_low"),
        ("[cohorts.kids]\nglucose_low_level_2 = 4.0\n", "glucose_low_level_2 must be below"),
        ("[cohorts.copd\nspo2_low = 88.0\n", "not a readable TOML file"),
        ("copd = 1\n", "expected [defaults] and [cohorts.<name>] tables"),
        ("[defaults]\nspo2_low = 101.0\n", "defaults: spo2_low"),
        ("[cohorts.copd]\nconditions = 'J44'\n", "cohorts.copd.conditions must be a list"),
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
