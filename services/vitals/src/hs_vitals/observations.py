"""Vital-sign observations (hs.clinical.Observation, category VITAL_SIGNS) as readings, so
charted vital signs (respiration, consciousness, oxygen) join device readings in one
patient's monitor. Pure."""

from __future__ import annotations

from typing import Any

from hs_vitals.monitor import Metric, Reading

LOINC = "http://loinc.org"
HS_ANALYTE = "urn:hs:analyte"
METRIC_OF: dict[tuple[str, str], Metric] = {
    (LOINC, "8867-4"): Metric.HEART_RATE,
    (LOINC, "9279-1"): Metric.RESPIRATORY_RATE,
    (LOINC, "59408-5"): Metric.SPO2,
    (LOINC, "8480-6"): Metric.SYSTOLIC_BP,
    (LOINC, "8462-4"): Metric.DIASTOLIC_BP,
    (LOINC, "8310-5"): Metric.BODY_TEMPERATURE,
    (LOINC, "80288-4"): Metric.CONSCIOUSNESS,
    (HS_ANALYTE, "supplemental_oxygen"): Metric.SUPPLEMENTAL_OXYGEN,
}
# The UCUM unit ingestion converts each charted quantity into; a value in any other unit (or
# none: a temperature sent without one) is not used.
UNIT_OF = {
    Metric.HEART_RATE: "/min", Metric.RESPIRATORY_RATE: "/min", Metric.SPO2: "%",
    Metric.SYSTOLIC_BP: "mm[Hg]", Metric.DIASTOLIC_BP: "mm[Hg]", Metric.BODY_TEMPERATURE: "Cel",
}  # fmt: skip
ALERT = {"A"}  # ACVPU: Alert; C, V, P and U score 3
ON_OXYGEN = {"Y", "O2", "1"}


def observation_reading(observation: dict[str, Any]) -> Reading | None:
    """The reading a vital-sign observation is, or None when it is not one the rules use."""
    if observation["category"] != "VITAL_SIGNS" or observation["status"] not in (
        "FINAL",
        "CORRECTED",
    ):
        return None
    result = observation["result"]
    code = result["code"]
    metric = METRIC_OF.get((code["system"], code["code"])) if code else None
    if metric is None:
        return None
    answer = (result["value_coding"] or {}).get("code")
    if metric is Metric.CONSCIOUSNESS:
        value: float | None = None if answer is None else 0.0 if answer in ALERT else 1.0
    elif metric is Metric.SUPPLEMENTAL_OXYGEN:
        value = None if answer is None else 1.0 if answer in ON_OXYGEN else 0.0
    elif result["unit"] == UNIT_OF[metric]:
        value = result["value_quantity"]
    else:
        value = None
    if value is None:
        return None
    source = observation["envelope"]["source"]
    return Reading(
        f"{source['institution']}:{source['system']}",
        metric,
        float(value),
        observation["effective_at"],
    )
