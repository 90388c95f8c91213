"""A source's quality over windows of event time, and its alerts. Pure: the service keeps a
SourceQuality per source in its state store and writes what `add` returns.

A window's checks: each check's pass rate against its threshold (OHDSI DQD: a check fails for
the source when the share of its records violating it is above the threshold), the seed's
indicators, the change from the previous window, the delays per data type and the top
unmapped local codes. The time is when the source sent the record (envelope.received_at): a
window is what a source sent in that hour or day, so an upgrade of its HIS shows in the window
it happened. A window closes once the source has sent something `grace` after its end; a
record for a closed window is counted as late in the window open at the time.

A source that sends nothing would keep its last window open: the service's clock ticks, and
a source's time advances by as long as it has been quiet (from when its last result was
scored to the tick, both times written in the records, so that a replay decides the same).

An alert opens when an hourly window fails a check that the previous state did not fail, and
is resolved by the first hourly window in which the check passes again."""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
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
TOP_UNMAPPED = 10
# upper edges of the delay buckets, in minutes (the last bucket is open)
DELAY_EDGES = (1, 2, 5, 10, 30, 60, 120, 360, 720, 1440, 2880, 10080)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Size(StrEnum):
    HOUR = "HOUR"
    DAY = "DAY"

    @property
    def length(self) -> timedelta:
        return timedelta(hours=1) if self is Size.HOUR else timedelta(days=1)


def window_start(moment: datetime, size: timedelta) -> datetime:
    """The start of the tumbling window of `size` (an hour, a day) that holds `moment`."""
    return EPOCH + (moment - EPOCH) // size * size


@dataclass(frozen=True)
class Tallied:
    """What a window takes from one quality result."""

    event_id: str
    scored_type: str
    received_at: datetime
    occurred_at: datetime
    applied: tuple[str, ...]
    failed: tuple[str, ...]
    unmapped_code: str | None = None


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

    size: Size
    start: datetime
    records: int = 0
    late: int = 0
    tallies: dict[str, Tally] = field(default_factory=dict)
    delays: dict[str, list[int]] = field(default_factory=dict)  # per type: bucket counts
    unmapped: dict[str, int] = field(default_factory=dict)
    changed: bool = False  # since its last provisional summary

    @property
    def end(self) -> datetime:
        return self.start + self.size.length

    def add(self, result: Tallied) -> None:
        self.records += 1
        self.changed = True
        failing = set(result.failed)
        for check_id in result.applied:
            tally = self.tallies.setdefault(check_id, Tally())
            tally.applied += 1
            if check_id in failing:
                tally.failed += 1
                if len(tally.examples) < EXAMPLES:
                    tally.examples.append(result.event_id)
        minutes = (result.received_at - result.occurred_at).total_seconds() / 60
        buckets = self.delays.setdefault(result.scored_type, [0] * (len(DELAY_EDGES) + 1))
        buckets[bisect_left(DELAY_EDGES, minutes)] += 1
        if result.unmapped_code:
            self.unmapped[result.unmapped_code] = self.unmapped.get(result.unmapped_code, 0) + 1


def _delay(buckets: list[int], share: float) -> float | None:
    """The bucket edge (minutes) at or below which `share` of the delays fall; None when the
    share falls in the open last bucket."""
    wanted, seen = share * sum(buckets), 0
    for edge, count in zip(DELAY_EDGES, buckets, strict=False):
        seen += count
        if seen >= wanted:
            return float(edge)
    return None


def summary(
    window: SourceWindow,
    checks: Mapping[str, Check],
    previous: Mapping[str, float] | None = None,
    final: bool = True,
) -> dict[str, Any]:
    """The window's checks (applied, failed, % violated, threshold, passed, change in % from
    the previous window), the seed's indicators, delays and unmapped codes."""
    rows = []
    for check_id, tally in sorted(window.tallies.items()):
        check = checks.get(check_id)
        before = (previous or {}).get(check_id)
        rows.append({
            "check_id": check_id,
            "kahn": check.kahn.value if check else "",
            "dimension": check.dimension.value if check else "",
            "severity": check.severity.value if check else "",
            "applied": tally.applied, "failed": tally.failed,
            "violated_pct": round(tally.violated_pct, 3),
            "threshold_pct": check.threshold_pct if check else 0.0,
            "passed": tally.violated_pct <= (check.threshold_pct if check else 0.0),
            "change_pct": None if before is None else round(tally.violated_pct - before, 3),
            "examples": list(tally.examples),
        })  # fmt: skip
    by_id = {r["check_id"]: r for r in rows}
    indicators = [
        {"check_id": name,
         "status": "NOT_MEASURED" if name not in by_id else
                   "PASSED" if by_id[name]["passed"] else "FAILED"}
        for name in INDICATORS
    ]  # fmt: skip
    delays = [
        {"scored_type": kind, "records": sum(buckets),
         "within_10_minutes_pct": round(100.0 * sum(buckets[: DELAY_EDGES.index(10) + 1])
                                        / sum(buckets), 3),
         "median_minutes_at_most": _delay(buckets, 0.5),
         "p90_minutes_at_most": _delay(buckets, 0.9)}
        for kind, buckets in sorted(window.delays.items())
    ]  # fmt: skip
    unmapped = sorted(Counter(window.unmapped).items(), key=lambda cn: (-cn[1], cn[0]))
    return {
        "window": window.size.value, "window_start": window.start, "window_end": window.end,
        "final": final,
        "records": window.records, "late_records": window.late, "checks": rows,
        "indicators": indicators, "delays": delays,
        "unmapped_codes": [{"code": c, "count": n} for c, n in unmapped[:TOP_UNMAPPED]],
    }  # fmt: skip


@dataclass(frozen=True)
class AlertChange:
    action: str  # OPENED or RESOLVED
    check_id: str
    window: SourceWindow
    violated_pct: float
    previous_pct: float | None
    opened_at: datetime  # the start of the window that opened the alert

    def alert_id(self, institution: str) -> str:
        key = f"{institution}|{self.check_id}|{self.opened_at.isoformat()}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass
class Closed:
    """What a record or a tick gave: summaries (with the window: those closed, and on a
    tick the open windows' provisional ones) and alert changes."""

    summaries: list[tuple[SourceWindow, dict[str, Any]]] = field(default_factory=list)
    alerts: list[AlertChange] = field(default_factory=list)


@dataclass
class SourceQuality:
    """One source's open windows, watermark, previous windows' rates and open alerts."""

    grace: timedelta
    alert_min_records: int = 20
    watermark: datetime | None = None
    heard: datetime | None = None  # when its last result was scored, or the last tick
    open: list[SourceWindow] = field(default_factory=list)
    previous: dict[str, dict[str, float]] = field(default_factory=dict)  # size -> check -> %
    alerts: dict[str, str] = field(default_factory=dict)  # check id -> opening window start

    def add(
        self, result: Tallied, checks: Mapping[str, Check], heard: datetime | None = None
    ) -> Closed:
        """A result, scored at `heard`."""
        moment = result.received_at
        self.watermark = moment if self.watermark is None else max(self.watermark, moment)
        if heard is not None:
            self.heard = heard if self.heard is None else max(self.heard, heard)
        for size in Size:
            start = window_start(moment, size.length)
            window = next((w for w in self.open if w.size is size and w.start == start), None)
            if window is None and start + size.length + self.grace <= self.watermark:
                self._current(size).late += 1  # its window has closed
                continue
            if window is None:
                window = SourceWindow(size, start)
                self.open.append(window)
            window.add(result)
        return self._close(checks)

    def tick(self, at: datetime, checks: Mapping[str, Check]) -> Closed:
        """The clock at `at`: the source's time advances by as long as it has been quiet
        since it was last heard."""
        if self.watermark is None or self.heard is None or at <= self.heard:
            return Closed()
        self.watermark += at - self.heard
        self.heard = at
        closed = self._close(checks)
        for window in sorted(self.open, key=lambda w: (w.start, w.size.value)):
            if window.changed:  # so far: a report shows the window in progress
                window.changed = False
                previous = self.previous.get(window.size.value)
                closed.summaries.append((window, summary(window, checks, previous, final=False)))
        return closed

    def _current(self, size: Size) -> SourceWindow:
        assert self.watermark is not None
        start = window_start(self.watermark, size.length)
        window = next((w for w in self.open if w.size is size and w.start == start), None)
        if window is None:
            window = SourceWindow(size, start)
            self.open.append(window)
        return window

    def _close(self, checks: Mapping[str, Check]) -> Closed:
        closed = Closed()
        assert self.watermark is not None
        due = sorted((w for w in self.open if w.end + self.grace <= self.watermark),
                     key=lambda w: (w.start, w.size.value))  # fmt: skip
        for window in due:
            self.open.remove(window)
            previous = self.previous.get(window.size.value)
            closed.summaries.append((window, summary(window, checks, previous)))
            rates = {c: t.violated_pct for c, t in window.tallies.items()}
            if window.size is Size.HOUR:
                closed.alerts.extend(self._alerts(window, checks, previous or {}))
            self.previous[window.size.value] = rates
        return closed

    def _alerts(
        self, window: SourceWindow, checks: Mapping[str, Check], previous: Mapping[str, float]
    ) -> Iterable[AlertChange]:
        for check_id, tally in sorted(window.tallies.items()):
            check = checks.get(check_id)
            if check is None or tally.applied < self.alert_min_records:
                continue
            failing = tally.violated_pct > check.threshold_pct
            opened = self.alerts.get(check_id)
            if failing and opened is None:
                self.alerts[check_id] = window.start.isoformat()
                yield AlertChange("OPENED", check_id, window, tally.violated_pct,
                                  previous.get(check_id), window.start)  # fmt: skip
            elif not failing and opened is not None:
                del self.alerts[check_id]
                since = datetime.fromisoformat(opened)
                yield AlertChange("RESOLVED", check_id, window, tally.violated_pct,
                                  previous.get(check_id), since)  # fmt: skip

    # --- the state store's form (JSON) ----------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "watermark": self.watermark.isoformat() if self.watermark else None,
            "heard": self.heard.isoformat() if self.heard else None,
            "open": [{**asdict(w), "size": w.size.value, "start": w.start.isoformat()}
                     for w in self.open],
            "previous": self.previous, "alerts": self.alerts,
        }  # fmt: skip

    @classmethod
    def from_state(
        cls, data: Mapping[str, Any], grace: timedelta, min_records: int
    ) -> SourceQuality:
        windows = [
            SourceWindow(Size(w["size"]), datetime.fromisoformat(w["start"]), w["records"],
                         w["late"], {c: Tally(**t) for c, t in w["tallies"].items()},
                         {k: list(v) for k, v in w["delays"].items()}, dict(w["unmapped"]),
                         w.get("changed", False))
            for w in data["open"]
        ]  # fmt: skip
        watermark, heard = (datetime.fromisoformat(data[k]) if data.get(k) else None
                            for k in ("watermark", "heard"))  # fmt: skip
        return cls(grace, min_records, watermark, heard, windows, dict(data["previous"]),
                   dict(data["alerts"]))  # fmt: skip
