"""Which code a result is reported under: the sender's own LOINC as sent, a local code the
source's file maps, or nothing yet (the local code is kept and the result marked UNMAPPED,
never dropped). The code's properties (canonical UCUM unit, molar mass, vital sign or not)
come from the LOINC table in hs_terminology. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hs_terminology import loinc

LOINC = loinc.LOINC_SYSTEM
HS_ANALYTE = "urn:hs:analyte"  # for a fact LOINC has no single code for (on oxygen: yes/no)
# How senders name LOINC: HL7 table 0396 'LN', its OID, the FHIR URI.
LOINC_SYSTEMS = frozenset(
    {"LN", "LOINC", LOINC, "2.16.840.1.113883.6.1", "urn:oid:2.16.840.1.113883.6.1"}
)
# Names source files used before codes could be mapped to LOINC directly; still accepted.
ALIASES = {
    "glucose": "14749-6", "creatinine": "14682-9", "hba1c": "4548-4", "potassium": "2823-3",
    "heart_rate": "8867-4", "respiratory_rate": "9279-1", "spo2": "59408-5",
    "systolic_bp": "8480-6", "diastolic_bp": "8462-4", "body_temperature": "8310-5",
    "consciousness": "80288-4", "supplemental_oxygen": f"{HS_ANALYTE}|supplemental_oxygen",
}  # fmt: skip
UNITLESS = {"80288-4", "supplemental_oxygen"}  # ordinal answers: reported without a unit
VITAL_SIGNS_EXTRA = {"80288-4", "supplemental_oxygen"}  # charted in NEWS2 though not in the table


@dataclass(frozen=True)
class Term:
    code: dict[str, Any] | None  # hs.common.Coding, None when unmapped
    origin: str  # hs.clinical.CodeOrigin symbol
    unit: str | None  # canonical UCUM unit; '' reported without a unit; None unknown
    molar_mass: float | None = None
    vital_sign: bool = False

    @property
    def code_value(self) -> str | None:
        return self.code["code"] if self.code else None


UNMAPPED = Term(None, "UNMAPPED", None)


def mapped_code(target: str) -> str:
    """A source file's mapping target (a LOINC code, system|code, or an old alias) as
    'system|code'; raises ValueError for one that names nothing."""
    target = ALIASES.get(target, target)
    if "|" in target:
        return target
    if loinc.is_loinc_code(target):
        return f"{LOINC}|{target}"
    raise ValueError(f"{target!r} is neither a LOINC code nor system|code")


def of_code(system: str, code: str, display: str | None, origin: str) -> Term:
    coding = {"system": system, "code": code, "display": display or None, "version": None}
    if system != LOINC:
        unit = "" if code in UNITLESS else None
        return Term(coding, origin, unit, vital_sign=code in VITAL_SIGNS_EXTRA)
    known = loinc.lookup(code)
    if known is None:
        unit = "" if code in UNITLESS else None
        return Term(coding, origin, unit, vital_sign=code in VITAL_SIGNS_EXTRA)
    coding["display"] = known.long_common_name
    unit = "" if code in UNITLESS or known.scale != "Qn" else known.ucum
    return Term(coding, origin, unit, known.molar_mass, known.vital_sign)


def resolve(mappings: Mapping[str, str], codings: list[tuple[str, str, str | None]]) -> Term:
    """The term for a result coded as `codings` [(code, system as sent, display), ...] (OBX-3
    with its alternate, FHIR code.coding): a mapping of the source's file for the first
    coding wins, then any coding the sender made in LOINC, else UNMAPPED."""
    for code, _system, display in codings[:1]:
        target = mappings.get(code)
        if target is not None:
            system, _, mapped = target.partition("|")
            return of_code(system, mapped, display, "SOURCE_MAP")
    for code, system, display in codings:
        if system in LOINC_SYSTEMS and loinc.is_loinc_code(code):
            return of_code(LOINC, code, display, "SENDER")
    return UNMAPPED
