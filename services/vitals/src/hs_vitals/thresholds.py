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

A cohort file (TOML) overrides any of these for everyone ([defaults]) and per cohort. A
patient joins a cohort when a diagnosis with one of its ICD-10 codes (or code prefixes) arrives;
when several match, the first cohort in the file wins, so list them by priority:

    [defaults]
    escalate_after_minutes = 10.0
    [cohorts.copd]  # hypercapnic respiratory failure risk: SpO2 scale 2 (target 88-92%)
    conditions = ["J44", "J96.1"]
    spo2_low = 88.0
    [cohorts.pregnancy_t1d]
    conditions = ["O24.0"]
    glucose_high = 7.8

An unknown field, a value of the wrong type or out of its physiological range, or an
inconsistent pair (level 2 not below level 1) is refused when the file is loaded, naming the
entry.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Cohort:
    name: str
    thresholds: Thresholds
    conditions: tuple[str, ...]  # ICD-10 codes or prefixes that place a patient in it


@dataclass(frozen=True)
class Cohorts:
    """The defaults and the cohorts of a file, in the file's (priority) order."""

    defaults: Thresholds = DEFAULT
    cohorts: tuple[Cohort, ...] = ()

    def thresholds(self, cohort: str | None) -> Thresholds:
        chosen = next((c for c in self.cohorts if c.name == cohort), None)
        return chosen.thresholds if chosen else self.defaults

    def for_diagnosis(self, icd10: str) -> str | None:
        code = icd10.upper()
        return next(
            (c.name for c in self.cohorts if any(code.startswith(p) for p in c.conditions)), None
        )

    def preferred(self, current: str | None, candidate: str) -> str:
        """The cohort a patient in `current` is judged by once `candidate` also applies."""
        names = [c.name for c in self.cohorts]
        if current not in names:
            return candidate
        return min(current, candidate, key=names.index)


def load_cohorts(path: Path) -> Cohorts:
    """The file's defaults and cohorts (each: the defaults overridden by its entries)."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ThresholdFileError(f"{path}: not a readable TOML file ({exc})") from None
    unknown = set(document) - {"defaults", "cohorts"}
    cohorts = document.get("cohorts", {})
    if unknown or not isinstance(cohorts, dict):
        raise ThresholdFileError(f"{path}: expected [defaults] and [cohorts.<name>] tables")
    defaults = _thresholds(path, "defaults", DEFAULT, document.get("defaults", {}))
    loaded = []
    for name, entry in cohorts.items():
        if not isinstance(entry, dict):
            raise ThresholdFileError(f"{path}: cohorts.{name} must be a table")
        overrides = dict(entry)
        conditions = overrides.pop("conditions", [])
        if not isinstance(conditions, list) or not all(
            isinstance(c, str) and c.strip() for c in conditions
        ):
            raise ThresholdFileError(
                f"{path}: cohorts.{name}.conditions must be a list of ICD-10 codes"
            )
        thresholds = _thresholds(path, f"cohorts.{name}", defaults, overrides)
        loaded.append(Cohort(name, thresholds, tuple(c.strip().upper() for c in conditions)))
    return Cohorts(defaults, tuple(loaded))


def _thresholds(path: Path, entry: str, base: Thresholds, overrides: object) -> Thresholds:
    if not isinstance(overrides, dict):
        raise ThresholdFileError(f"{path}: {entry} must be a table")
    try:
        return Thresholds.model_validate(base.model_dump() | overrides)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'entry'}: {e['msg']}" for e in error.errors()
        )
        raise ThresholdFileError(f"{path}: {entry}: {problems}") from None


NO_COHORTS = Cohorts()
