"""Data-quality defects injected at configurable rates, each written to the truth
(truth/quality_defects.csv), so that hs-quality's checks can be measured against it.

Each defect is one a sender really makes:
- implausible_value: a decimal slip (a lab value x100, a pulse x10);
- wrong_unit: a hospital lab result sent with another test's unit (mmol/L for HbA1c);
- duplicate_result: a hospital's result message sent twice (a new message id, the same results);
- late_result: a hospital lab report sent 2 to 12 hours after it was issued (a stuck queue);
- missing_birth_date: a registration without the patient's birth date;
- degrading source: from a day of the run, one hospital's nursing system sends vital signs
  under new local codes that nobody mapped (an upgrade of its HIS).
Inconsistent demographics across institutions come from the registrations' own noise
(dob_transposed in truth/records.csv)."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from hs_synth import institutions as inst
from hs_synth.events import Feed, LabResult, VitalSigns
from hs_synth.registrations import Registration

WRONG_UNIT = {"glucose": "%", "creatinine": "%", "potassium": "%", "hba1c": "mmol/L"}
IMPLAUSIBLE_FACTOR = 100.0  # labs: mmol/L read as a hundredth, a dropped decimal point
PULSE_FACTOR = 10  # a pulse of 78 keyed as 780


@dataclass(frozen=True)
class DefectConfig:
    implausible_value: float = 0.0
    wrong_unit: float = 0.0
    duplicate_result: float = 0.0
    late_result: float = 0.0
    missing_birth_date: float = 0.0
    degrading_source: str = ""  # a hospital's code; empty: none
    degrading_from_day: int = 0

    @property
    def any(self) -> bool:
        rates = (self.implausible_value, self.wrong_unit, self.duplicate_result,
                 self.late_result, self.missing_birth_date)  # fmt: skip
        return any(rates) or bool(self.degrading_source)


@dataclass(frozen=True)
class Defect:
    """One injected defect: where it is (the record, and for a result its local code and
    time) and what it is."""

    kind: str
    institution: str
    local_id: str
    code: str = ""  # the result's local code as sent; empty for a record-level defect
    at: str = ""  # the result's time (ISO); for the degrading source, when it starts
    detail: str = ""


def _hospital(r: Registration) -> bool:
    return r.institution.channel is inst.Channel.HL7


def spoil_registrations(
    rng: random.Random, registrations: list[Registration], config: DefectConfig
) -> tuple[list[Registration], list[Defect]]:
    defects, kept = [], []
    for registration in registrations:
        r = registration
        if r.birth_date is not None and rng.random() < config.missing_birth_date:
            r = replace(r, birth_date=None)
            defects.append(Defect("missing_birth_date", r.institution.code, r.local_id))
        kept.append(r)
    return kept, defects


def _lab_code(result: LabResult) -> str:
    labs = result.registration.institution.labs
    return labs[result.test].code if result.test in labs else result.test


def _spoil_lab(
    rng: random.Random, result: LabResult, config: DefectConfig
) -> tuple[LabResult, Defect | None]:
    r = result.registration
    where = (r.institution.code, r.local_id, _lab_code(result), result.at.isoformat())
    if rng.random() < config.implausible_value:
        spoiled = replace(result, value=result.value * IMPLAUSIBLE_FACTOR)
        return spoiled, Defect("implausible_value", *where, result.test)
    if _hospital(r) and rng.random() < config.wrong_unit:
        unit = WRONG_UNIT[result.test]
        return replace(result, unit_sent=unit), Defect("wrong_unit", *where, unit)
    return result, None


def _spoil_signs(
    rng: random.Random, signs: VitalSigns, config: DefectConfig, degrading_from: datetime
) -> tuple[VitalSigns, list[Defect]]:
    r = signs.registration
    code, local_id, at = r.institution.code, r.local_id, signs.at.isoformat()
    defects = []
    if rng.random() < config.implausible_value:
        signs = replace(signs, pulse=signs.pulse * PULSE_FACTOR)
        defects.append(Defect("implausible_value", code, local_id, "HR", at, "pulse"))
    if code == config.degrading_source and signs.at >= degrading_from:
        signs = replace(signs, upgraded_codes=True)
    elif _hospital(r) and rng.random() < config.duplicate_result:
        signs = replace(signs, copies=2)
        defects.append(Defect("duplicate_result", code, local_id, "", at, "vital signs"))
    return signs, defects


def spoil_feed(
    rng: random.Random, feed: Feed, config: DefectConfig, start: datetime
) -> list[Defect]:
    """The feed's labs and vital signs with defects, in place; the defects."""
    defects: list[Defect] = []
    labs = []
    for result in feed.labs:
        spoiled, defect = _spoil_lab(rng, result, config)
        labs.append(spoiled)
        defects += [defect] if defect else []
    feed.labs = _spoil_orders(rng, labs, config, defects)
    degrading_from = start + timedelta(days=config.degrading_from_day)
    vitals = []
    for signs in feed.vitals:
        spoiled_signs, found = _spoil_signs(rng, signs, config, degrading_from)
        vitals.append(spoiled_signs)
        defects += found
    feed.vitals = vitals
    if config.degrading_source:
        defects.append(Defect("degrading_source", config.degrading_source, "", "",
                              degrading_from.isoformat(), "vital-sign codes changed"))  # fmt: skip
    return defects


def _spoil_orders(
    rng: random.Random, labs: list[LabResult], config: DefectConfig, defects: list[Defect]
) -> list[LabResult]:
    """Duplicate and late sending are of a whole order's message."""
    orders: dict[str, list[int]] = {}
    for index, result in enumerate(labs):
        if _hospital(result.registration):
            orders.setdefault(result.order_id, []).append(index)
    spoiled = list(labs)
    for order, indices in orders.items():
        first = labs[indices[0]]
        r = first.registration
        if rng.random() < config.duplicate_result:
            change: dict[str, object] = {"copies": 2}
            kind = "duplicate_result"
        elif rng.random() < config.late_result:
            change = {"sent_late": timedelta(minutes=rng.randint(120, 720))}
            kind = "late_result"
        else:
            continue
        for index in indices:
            spoiled[index] = replace(labs[index], **change)  # type: ignore[arg-type]
        defects.append(Defect(kind, r.institution.code, r.local_id, "", first.at.isoformat(),
                              order))  # fmt: skip
    return spoiled


UPGRADED_CODES = {"RR": "N01", "SPO2": "N02", "O2": "N03", "SBP": "N04", "DBP": "N05",
                  "HR": "N06", "ACVPU": "N07", "TEMP": "N08"}  # fmt: skip


def vital_code(code: str, signs: VitalSigns) -> str:
    return UPGRADED_CODES[code] if signs.upgraded_codes else code
