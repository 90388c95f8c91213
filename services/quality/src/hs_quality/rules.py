"""The rules file: data-quality checks declared as data, one line each (OHDSI Data Quality
Dashboard style). A line names its check type, the level it applies at (record, field or
concept), the event type and field, the code it is limited to, its parameters, the threshold
("% of records violating" above which the check fails for a source) and severity, and its
Kahn 2016 category with the dimension Chinese evaluation standards use. A new check on a field
is a new line, not new code. A file with an error is refused, naming the line."""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path


class Kahn(StrEnum):
    """Kahn et al. 2016, eGEMs 4(1):1244: categories and subcategories."""

    CONFORMANCE_VALUE = "conformance.value"
    CONFORMANCE_RELATIONAL = "conformance.relational"
    CONFORMANCE_COMPUTATIONAL = "conformance.computational"
    COMPLETENESS = "completeness"
    PLAUSIBILITY_ATEMPORAL = "plausibility.atemporal"
    PLAUSIBILITY_TEMPORAL = "plausibility.temporal"
    PLAUSIBILITY_UNIQUENESS = "plausibility.uniqueness"


class Dimension(StrEnum):
    """The dimensions of China's evaluation standards: 完整性, 准确性, 一致性, 及时性."""

    COMPLETENESS = "completeness"  # 完整性
    ACCURACY = "accuracy"  # 准确性
    CONSISTENCY = "consistency"  # 一致性
    TIMELINESS = "timeliness"  # 及时性


class Level(StrEnum):
    RECORD = "record"
    FIELD = "field"
    CONCEPT = "concept"


class Severity(StrEnum):
    FATAL = "fatal"  # the record cannot be used as it is
    ERROR = "error"
    WARNING = "warning"


# Each check type: the parameters it needs, and whether it names a field.
CHECK_TYPES: Mapping[str, tuple[frozenset[str], bool]] = {
    "isRequired": (frozenset(), True),  # the field (each of a+b+c) is present and not blank
    "valuePattern": (frozenset({"pattern"}), True),  # the field's text matches a regex
    "residentIdValid": (frozenset(), False),  # a resident ID's form and GB 11643 check digit
    "codeMapped": (frozenset(), False),  # the result's local code was mapped to LOINC
    "unitConforms": (frozenset(), False),  # the result's unit fits the analyte's property
    "plausibleValue": (frozenset({"low", "high", "unit"}), False),  # within [low, high] in unit
    "flagAgrees": (frozenset(), False),  # the sender's abnormal flag agrees with value and range
    "notInFuture": (frozenset({"skew_minutes"}), True),  # the time is not after receipt
    "timeOrder": (frozenset({"before"}), True),  # the field's time is not after `before`'s
    "timely": (frozenset({"within_minutes", "from"}), False),  # received within minutes of `from`
    # these two need what the service remembers (hs_quality.checks.Context)
    "unique": (frozenset(), False),  # not the same result as an earlier event of the patient
    "crossSourceConsistent": (frozenset(), True),  # the fields agree with the person's other
    # institutions' records (through the EMPI's links)
    "afterBirth": (frozenset(), True),  # the field's time is not before the patient's birth
    "sexSpecific": (frozenset({"sex"}), False),  # the analyte is for patients of this sex
}
SCHEMAS = frozenset((
    "hs.clinical.Observation", "hs.clinical.Condition", "hs.clinical.Encounter",
    "hs.identity.PatientIdentity", "hs.identity.PersonLink",
))  # fmt: skip
COLUMNS = (
    "check_id", "check_type", "level", "schema", "field", "code", "parameters",
    "threshold_pct", "severity", "kahn", "dimension", "description",
)  # fmt: skip


class RulesError(ValueError):
    """A rules file that cannot be used; the message names the file and the line."""


@dataclass(frozen=True)
class Check:
    check_id: str
    check_type: str
    level: Level
    schema: str
    field: str  # a dotted path in the decoded event ("" when the type names none)
    code: str | None  # "<system>|<code>": only results of this code; None: every record
    parameters: Mapping[str, str] = dataclasses.field(default_factory=dict)
    threshold_pct: float = 0.0
    severity: Severity = Severity.ERROR
    kahn: Kahn = Kahn.CONFORMANCE_VALUE
    dimension: Dimension = Dimension.ACCURACY
    description: str = ""
    line: int = 0  # in the rules file


def default_rules_text() -> str:
    return resources.files("hs_quality").joinpath("data/rules.csv").read_text(encoding="utf-8")


def load(path: Path | None = None) -> list[Check]:
    """The checks of a rules file (the shipped one when None), or RulesError naming the line."""
    text = default_rules_text() if path is None else path.read_text(encoding="utf-8")
    return parse(text, str(path) if path else "rules.csv")


def parse(text: str, name: str = "rules.csv") -> list[Check]:
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1)
             if line.strip() and not line.lstrip().startswith("#")]  # fmt: skip
    if not lines or next(csv.reader([lines[0][1]])) != list(COLUMNS):
        raise RulesError(f"{name} line {lines[0][0] if lines else 1}: the header is not "
                         f"{','.join(COLUMNS)}")  # fmt: skip
    checks: list[Check] = []
    seen: dict[str, int] = {}
    for number, line in lines[1:]:
        where = f"{name} line {number}"
        cells = next(csv.reader(io.StringIO(line)))
        if len(cells) != len(COLUMNS):
            raise RulesError(f"{where}: {len(cells)} cells, not {len(COLUMNS)}")
        check = _check(dict(zip(COLUMNS, (c.strip() for c in cells), strict=True)), where, number)
        if check.check_id in seen:
            raise RulesError(f"{where}: check_id {check.check_id!r} is also on line "
                             f"{seen[check.check_id]}")  # fmt: skip
        seen[check.check_id] = number
        checks.append(check)
    return checks


def _check(row: dict[str, str], where: str, number: int) -> Check:
    kind = row["check_type"]
    if kind not in CHECK_TYPES:
        raise RulesError(f"{where}: unknown check type {kind!r}")
    needed, names_field = CHECK_TYPES[kind]
    parameters = _parameters(row["parameters"], where)
    missing = needed - parameters.keys()
    if missing:
        raise RulesError(f"{where}: {kind} needs the parameter(s) {', '.join(sorted(missing))}")
    if names_field and not row["field"]:
        raise RulesError(f"{where}: {kind} needs a field")
    if row["schema"] not in SCHEMAS:
        raise RulesError(f"{where}: unknown event type {row['schema']!r}")
    code = row["code"] or None
    if code is not None and "|" not in code:
        raise RulesError(f"{where}: a code is <system>|<code>, not {code!r}")
    threshold = _threshold(row["threshold_pct"], where)
    try:
        for numeric in ("low", "high", "skew_minutes", "within_minutes"):
            if numeric in parameters:
                float(parameters[numeric])
        return Check(
            row["check_id"], kind, Level(row["level"]), row["schema"], row["field"], code,
            parameters, threshold, Severity(row["severity"]), Kahn(row["kahn"]),
            Dimension(row["dimension"]), row["description"], number,
        )  # fmt: skip
    except ValueError as error:
        raise RulesError(f"{where}: {_why(row, error)}") from None


def _parameters(text: str, where: str) -> dict[str, str]:
    """`k=v; k=v` (a value may hold '=' but not ';')."""
    parameters = {}
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        key, equals, value = part.partition("=")
        if not equals or not key.strip():
            raise RulesError(f"{where}: a parameter is key=value, not {part!r}")
        parameters[key.strip()] = value.strip()
    return parameters


def _threshold(text: str, where: str) -> float:
    try:
        threshold = float(text)
    except ValueError:
        threshold = -1.0
    if not 0 <= threshold <= 100:
        raise RulesError(f"{where}: threshold_pct {text!r} is not a number from 0 to 100")
    return threshold


def _why(row: dict[str, str], error: ValueError) -> str:
    for column, kind in (("level", Level), ("severity", Severity), ("kahn", Kahn),
                         ("dimension", Dimension)):  # fmt: skip
        if row[column] not in {member.value for member in kind}:
            return f"{column} {row[column]!r} is not one of {', '.join(m.value for m in kind)}"
    return f"a number is wanted ({error})"
