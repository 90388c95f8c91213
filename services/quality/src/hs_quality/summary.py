"""A source's quality over a window of event time: each check's pass rate against its
threshold (OHDSI DQD: a check fails for the source when the share of its records violating it
is above the threshold), the seed's indicators, and the change from the previous window.
Pure: the service keeps the windows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hs_quality.rules import Check

# The seed's four indicators, as named checks of the rules file.
INDICATORS = (
    "basic-info-missing",  # basic patient information missing: at most 1 %
    "reference-deviation",  # deviation from the reference value: at most 2 %
    "cross-source-consistency",  # one person's data consistent across systems: at least 99 %
    "lab-timeliness",  # lab results transmitted within 10 minutes
)
EXAMPLES = 5  # record ids kept per failed check, for a report


def window_start(moment: datetime, size: timedelta) -> datetime:
    """The start of the tumbling window of `size` (an hour, a day) that holds `moment`."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + (moment - epoch) // size * size


@dataclass
class Tally:
    applied: int = 0
    failed: int = 0
    examples: list[str] = field(default_factory=list)  # event ids of failed records

    @property
    def violated_pct(self) -> float:
        return 100.0 * self.failed / self.applied if self.applied else 0.0


@dataclass
class SourceWindow:
    """One source's results in one window."""

    institution: str
    start: datetime
    size: timedelta
    records: int = 0
    tallies: dict[str, Tally] = field(default_factory=dict)

    def add(self, event_id: str, applied: Iterable[str], failed: Iterable[str]) -> None:
        self.records += 1
        failing = set(failed)
        for check_id in applied:
            tally = self.tallies.setdefault(check_id, Tally())
            tally.applied += 1
            if check_id in failing:
                tally.failed += 1
                if len(tally.examples) < EXAMPLES:
                    tally.examples.append(event_id)


def summary(
    window: SourceWindow, checks: Mapping[str, Check], previous: SourceWindow | None = None
) -> dict[str, Any]:
    """The window's checks (applied, failed, % violated, threshold, passed, change in % from
    the previous window) and the seed's indicators (passed, failed, or not measured)."""
    rows = []
    for check_id, tally in sorted(window.tallies.items()):
        check = checks.get(check_id)
        threshold = check.threshold_pct if check else 0.0
        before = previous.tallies.get(check_id) if previous else None
        rows.append({
            "check_id": check_id, "applied": tally.applied, "failed": tally.failed,
            "violated_pct": round(tally.violated_pct, 3), "threshold_pct": threshold,
            "passed": tally.violated_pct <= threshold,
            "change_pct": round(tally.violated_pct - before.violated_pct, 3)
            if before and before.applied else None,
            "examples": list(tally.examples),
        })  # fmt: skip
    by_id = {r["check_id"]: r for r in rows}
    indicators = {
        name: ("not_measured" if name not in by_id else
               "passed" if by_id[name]["passed"] else "failed")
        for name in INDICATORS
    }  # fmt: skip
    return {
        "institution": window.institution, "window_start": window.start.isoformat(),
        "window_end": (window.start + window.size).isoformat(), "records": window.records,
        "checks": rows, "indicators": indicators,
    }  # fmt: skip
