"""Code tables every service shares, each written once; where a table is read both ways its
inverse is derived here, not re-typed by the service that needs it."""

from __future__ import annotations

# WS/T 500 names the resident ID card number 2.16.156.10011.1.3; 1.2 (the health record
# number there) is read too, as sources (and hs-synth, before) used it for the ID.
RESIDENT_ID_SYSTEM = "urn:oid:2.16.156.10011.1.3"
RESIDENT_ID_SYSTEMS = frozenset({RESIDENT_ID_SYSTEM, "urn:oid:2.16.156.10011.1.2"})

# HL7 v2 table 0078 (OBX-8) and FHIR v3-ObservationInterpretation share these codes:
# (code, hs.clinical.Interpretation symbol, display).
_INTERPRETATIONS = (
    ("N", "NORMAL", "Normal"), ("L", "LOW", "Low"), ("H", "HIGH", "High"),
    ("LL", "CRITICAL_LOW", "Critical low"), ("HH", "CRITICAL_HIGH", "Critical high"),
    ("A", "ABNORMAL", "Abnormal"), ("AA", "CRITICAL_ABNORMAL", "Critical abnormal"),
    ("<", "BELOW_SCALE", "Off scale low"), (">", "ABOVE_SCALE", "Off scale high"),
    ("POS", "POSITIVE", "Positive"), ("NEG", "NEGATIVE", "Negative"),
    ("DET", "DETECTED", "Detected"), ("ND", "NOT_DETECTED", "Not detected"),
)  # fmt: skip
INTERPRETATION_OF_CODE = {code: symbol for code, symbol, _ in _INTERPRETATIONS}
CODE_OF_INTERPRETATION = {symbol: (code, display) for code, symbol, display in _INTERPRETATIONS}

# HL7 v2 table 0085 (OBX-11) to hs.clinical.ResultStatus, and that to FHIR ObservationStatus
# as the HL7 v2-to-FHIR concept map does it.
RESULT_STATUS_OF_HL7 = {
    "F": "FINAL", "P": "PRELIMINARY", "C": "CORRECTED", "D": "DELETED", "W": "WITHDRAWN",
    "X": "CANNOT_OBTAIN", "R": "NOT_VERIFIED", "I": "PENDING", "S": "PENDING", "A": "PRELIMINARY",
    "O": "PENDING", "U": "FINAL",
}  # fmt: skip
FHIR_STATUS_OF_RESULT = {
    "FINAL": "final", "PRELIMINARY": "preliminary", "CORRECTED": "corrected",
    "DELETED": "entered-in-error", "WITHDRAWN": "entered-in-error",
    "CANNOT_OBTAIN": "cancelled", "NOT_VERIFIED": "preliminary", "PENDING": "registered",
    "UNKNOWN": "unknown",
}  # fmt: skip
# FHIR ObservationStatus to ResultStatus: the first status mapping to each FHIR code, plus
# the FHIR codes v2 has no status of its own for.
RESULT_STATUS_OF_FHIR = {
    **{fhir: status for status, fhir in reversed(FHIR_STATUS_OF_RESULT.items())},
    "amended": "CORRECTED",
}
