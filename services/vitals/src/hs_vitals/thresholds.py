"""Alert thresholds, their clinical sources, and per-cohort overrides from a file. Pure.

Defaults:
- glucose: level 1 hypoglycaemia < 3.9 mmol/L, level 2 < 3.0 (ADA Standards of Care, Table
  6.3; International Hypoglycaemia Study Group 2017), sustained >= 15 minutes on CGM (the
  consensus episode definition); hyperglycaemia > 13.9 mmol/L (TAR level 2, Battelino 2019);
- blood pressure: hypertensive crisis SBP > 180 and/or DBP > 120 (ACC/AHA 2017; 中国高血压
  防治指南 2018/2024 修订版, 高血压急症 "generally > 180/120"), confirmed by a repeat reading;
- SpO2 below the patient's target: 94-98% (scale 1) or 88-92% (scale 2, hypercapnic
  respiratory failure), BTS oxygen guideline 2017 and NEWS2;
- heart rate outside 40-130/min, the NEWS2 score-3 bounds (RCP 2017), sustained.

A cohort file (TOML) overrides any of these per cohort:

    [cohorts.copd]
    spo2_low = 88.0
    [cohorts.pregnancy_t1d]
    glucose_high = 7.8

An unknown cohort field, a value of the wrong type or out of its physiological range, or an
inconsistent pair (level 2 not below level 1) is refused when the file is loaded, naming the
entry.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hs_common.errors import HealthStreamError


class ThresholdFileError(HealthStreamError):
    """A cohort threshold file that cannot be used; the message names the bad entry."""


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    glucose_low_level_1: float = Field(3.9, gt=1.0, lt=10.0)  # mmol/L
    glucose_low_level_2: float = Field(3.0, gt=1.0, lt=10.0)
    glucose_high: float = Field(13.9, gt=5.0, lt=40.0)
    glucose_sustained_minutes: float = Field(15.0, ge=0, le=240)
    systolic_crisis: float = Field(180.0, gt=100, lt=300)  # mmHg, above
    diastolic_crisis: float = Field(120.0, gt=60, lt=200)
    crisis_confirm_minutes: float = Field(15.0, gt=0, le=120)  # a repeat within this confirms
    spo2_low: float = Field(94.0, gt=70, lt=100)  # %, below: under target (scale 1)
    spo2_sustained_minutes: float = Field(5.0, ge=0, le=120)
    heart_rate_low: float = Field(40.0, gt=20, lt=100)  # /min, at or below
    heart_rate_high: float = Field(130.0, gt=60, lt=250)  # /min, above
    heart_rate_sustained_minutes: float = Field(5.0, ge=0, le=120)
    escalate_after_minutes: float = Field(15.0, gt=0, le=1440)  # unacknowledged open alert

    @model_validator(mode="after")
    def consistent(self) -> Self:
        if self.glucose_low_level_2 >= self.glucose_low_level_1:
            raise ValueError("glucose_low_level_2 must be below glucose_low_level_1")
        if self.glucose_high <= self.glucose_low_level_1:
            raise ValueError("glucose_high must be above glucose_low_level_1")
        if self.heart_rate_low >= self.heart_rate_high:
            raise ValueError("heart_rate_low must be below heart_rate_high")
        return self


DEFAULT = Thresholds()


def load_cohorts(path: Path) -> dict[str, Thresholds]:
    """Cohort name -> thresholds (defaults overridden by the file's entries)."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ThresholdFileError(f"{path}: not a readable TOML file ({exc})") from None
    cohorts = document.get("cohorts")
    if not isinstance(cohorts, dict):
        raise ThresholdFileError(f"{path}: expected [cohorts.<name>] tables")
    loaded = {}
    for name, overrides in cohorts.items():
        if not isinstance(overrides, dict):
            raise ThresholdFileError(f"{path}: cohorts.{name} must be a table")
        try:
            loaded[name] = Thresholds.model_validate(DEFAULT.model_dump() | overrides)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'entry'}: {e['msg']}"
                for e in error.errors()
            )
            raise ThresholdFileError(f"{path}: cohorts.{name}: {problems}") from None
    return loaded
