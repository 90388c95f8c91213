"""The rules file: the shipped checks, a new check as a new line, and every kind of error
refused with the line that holds it."""

from __future__ import annotations

from pathlib import Path

import pytest

from hs_quality import rules
from hs_quality.checks import Checker
from hs_quality.service import main

HEADER = ",".join(rules.COLUMNS)
GOOD = (
    "sodium,plausibleValue,concept,hs.clinical.Observation,,http://loinc.org|2951-2,"
    "low=90;high=200;unit=mmol/L,0.1,error,plausibility.atemporal,accuracy,serum sodium"
)


def test_the_shipped_rules_name_the_seed_s_indicators_with_their_thresholds() -> None:
    checks = {c.check_id: c for c in rules.load()}
    assert checks["basic-info-missing"].threshold_pct == 1
    assert checks["reference-deviation"].threshold_pct == 2
    assert checks["lab-timeliness"].parameters["within_minutes"] == "10"
    assert {c.dimension for c in checks.values()} == set(rules.Dimension)
    assert {c.kahn for c in checks.values()} >= {
        rules.Kahn.COMPLETENESS, rules.Kahn.CONFORMANCE_VALUE, rules.Kahn.PLAUSIBILITY_ATEMPORAL,
        rules.Kahn.PLAUSIBILITY_TEMPORAL, rules.Kahn.CONFORMANCE_COMPUTATIONAL,
    }  # fmt: skip


def test_a_new_check_is_a_new_line() -> None:
    potassium = GOOD.replace("sodium,", "potassium-low-k,").replace("2951-2", "2823-3")
    checker = Checker(rules.parse(f"{HEADER}\n# a comment\n{GOOD}\n{potassium}\n"))
    assert [c.check_id for c in checker.checks] == ["sodium", "potassium-low-k"]
    assert checker.checks[1].line == 4


@pytest.mark.parametrize(("line", "says"), [
    (GOOD.replace("plausibleValue", "plausibleValu"), "unknown check type 'plausibleValu'"),
    (GOOD.replace("low=90;", ""), "needs the parameter(s) low"),
    (GOOD.replace(",0.1,", ",150,"), "threshold_pct '150'"),
    (GOOD.replace(",0.1,", ",many,"), "threshold_pct 'many'"),
    (GOOD.replace(",error,", ",bad,"), "severity 'bad'"),
    (GOOD.replace("plausibility.atemporal", "plausible"), "kahn 'plausible'"),
    (GOOD.replace(",accuracy,", ",speed,"), "dimension 'speed'"),
    (GOOD.replace("hs.clinical.Observation", "hs.clinical.Visit"), "unknown event type"),
    (GOOD.replace("http://loinc.org|2951-2", "2951-2"), "a code is <system>|<code>"),
    (GOOD.replace("low=90", "low=ninety"), "a number is wanted"),
    (GOOD.replace("low=90;", "low;"), "a parameter is key=value"),
    (GOOD + ",extra", "13 cells, not 12"),
    (GOOD.replace("plausibleValue,concept,hs.clinical.Observation,",
                  "isRequired,field,hs.clinical.Observation,"), "isRequired needs a field"),
])  # fmt: skip
def test_a_rules_file_with_an_error_is_refused_naming_its_line(line: str, says: str) -> None:
    with pytest.raises(rules.RulesError) as refused:
        rules.parse(f"{HEADER}\n{GOOD.replace('sodium,', 'first,')}\n\n{line}\n", "site.csv")
    assert str(refused.value).startswith("site.csv line 4: ") and says in str(refused.value)


def test_a_check_id_twice_and_a_wrong_header_are_refused() -> None:
    with pytest.raises(rules.RulesError, match="line 3: check_id 'sodium' is also on line 2"):
        rules.parse(f"{HEADER}\n{GOOD}\n{GOOD}\n")
    with pytest.raises(rules.RulesError, match="line 1: the header is not"):
        rules.parse(f"check,type\n{GOOD}\n")


def test_check_rules_names_the_bad_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "rules.csv"
    path.write_text(f"{HEADER}\n{GOOD.replace(',error,', ',oops,')}\n")
    assert main(["check-rules", "--rules", str(path)]) == 1
    assert "line 2: severity 'oops'" in capsys.readouterr().err
    assert main(["check-rules"]) == 0
