"""A source's data-quality report, from hs-quality's closed windows (hs.quality.summary.v1)
and alerts: the seed's four indicators over time, the worst checks with example record ids,
delays per data type, the top unmapped local codes and the open alerts; as JSON, as FHIR R4
MeasureReports (one per window) and as an HTML page with a chart per indicator. Pure. Counts,
check ids and event ids only: no personal data is in a summary, so none is in a report."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from html import escape
from typing import Any

from hs_edge import charts
from hs_edge.trends import Point

Record = dict[str, Any]
INDICATORS = {  # the seed's indicators: check id -> what it measures, and the target
    "basic-info-missing": "Basic patient information missing (at most 1 %)",
    "reference-deviation": "Deviation from the reference value (at most 2 %)",
    "cross-source-consistency": "One person's data consistent across systems (at least 99 %)",
    "lab-timeliness": "Lab results transmitted within 10 minutes",
}
SIZE_WORDS = {"HOUR": "hourly", "DAY": "daily"}
WORST = 10
TOP_UNMAPPED = 10
MEASURE = "https://healthstream.example.org/fhir/Measure/data-quality"
CHECK_SYSTEM = "urn:hs:quality:check"
INSTITUTION_SYSTEM = "urn:hs:institution"
POPULATION = "http://terminology.hl7.org/CodeSystem/measure-population"


def _rate(applied: int, failed: int) -> float:
    return round(100.0 * failed / applied, 3) if applied else 0.0


def report(
    institution: str, size: str, windows: Sequence[Record], alerts: Sequence[Record]
) -> Record:
    """The source's report over the windows given (oldest first)."""
    totals: dict[str, Record] = {}
    series: dict[str, list[Record]] = {}
    unmapped: Counter[str] = Counter()
    delays: dict[str, Record] = {}
    for window in windows:
        for row in window["checks"]:
            total = totals.setdefault(row["check_id"], {
                "check_id": row["check_id"], "scored_type": window["scored_type"],
                "kahn": row["kahn"], "dimension": row["dimension"], "severity": row["severity"],
                "threshold_pct": row["threshold_pct"], "applied": 0, "failed": 0, "examples": [],
            })  # fmt: skip
            total["applied"] += row["applied"]
            total["failed"] += row["failed"]
            total["examples"] = list(dict.fromkeys([*total["examples"], *row["examples"]]))[:5]
            series.setdefault(row["check_id"], []).append({
                "window_start": window["window_start"], "violated_pct": row["violated_pct"],
                "applied": row["applied"], "passed": row["passed"], "final": window["final"],
            })  # fmt: skip
        unmapped.update({u["code"]: u["count"] for u in window["unmapped_codes"]})
        for delay in window["delays"]:
            delays[delay["scored_type"]] = delay | {"window_start": window["window_start"]}
    checks = []
    for total in totals.values():
        violated = _rate(total["applied"], total["failed"])
        checks.append(total | {"violated_pct": violated,
                               "passed": violated <= total["threshold_pct"]})  # fmt: skip
    checks.sort(key=lambda c: (c["passed"], -(c["violated_pct"] - c["threshold_pct"]),
                               c["check_id"]))  # fmt: skip
    by_id = {c["check_id"]: c for c in checks}
    indicators = [
        {"check_id": check_id, "title": title,
         "status": "NOT_MEASURED" if check_id not in by_id else
                   "PASSED" if by_id[check_id]["passed"] else "FAILED",
         "violated_pct": by_id[check_id]["violated_pct"] if check_id in by_id else None,
         "threshold_pct": by_id[check_id]["threshold_pct"] if check_id in by_id else None,
         "series": series.get(check_id, [])}
        for check_id, title in INDICATORS.items()
    ]  # fmt: skip
    opened: dict[str, Record] = {}
    for alert in alerts:
        if alert["action"] == "OPENED":
            opened[alert["alert_id"]] = alert
        else:
            opened.pop(alert["alert_id"], None)
    return {
        "institution": institution,
        "window": size,
        "period_start": windows[0]["window_start"] if windows else None,
        "period_end": max(w["window_end"] for w in windows) if windows else None,
        "windows": len(windows),
        "in_progress": any(not w["final"] for w in windows),
        "records": sum(w["records"] for w in windows),
        "late_records": sum(w["late_records"] for w in windows),
        "indicators": indicators,
        "worst_checks": [c for c in checks if not c["passed"]][:WORST],
        "checks": checks,
        "delays": sorted(delays.values(), key=lambda d: d["scored_type"]),
        "unmapped_codes": [
            {"code": c, "count": n}
            for c, n in sorted(unmapped.items(), key=lambda cn: (-cn[1], cn[0]))[:TOP_UNMAPPED]
        ],
        "open_alerts": [_alert(a) for a in opened.values()],
        "alerts": [_alert(a) | {"action": a["action"]} for a in alerts[-20:]],
    }


ALERT_FIELDS = ("alert_id", "check_id", "scored_type", "severity", "window_start", "window_end",
                "violated_pct", "threshold_pct")  # fmt: skip


def as_json(report: Record) -> Record:
    """The report with its times as RFC 3339 text (for JSON and gRPC)."""
    return json.loads(json.dumps(report, default=lambda at: at.isoformat()))  # type: ignore[no-any-return]


def _alert(alert: Record) -> Record:
    return {k: alert[k] for k in ALERT_FIELDS}


def measure_report(window: Record) -> Record:
    """One window as a FHIR R4 MeasureReport (type summary): a group per check, its
    denominator the records it applied to, its numerator those that violated it, its score
    the share violating in % (lower is better)."""
    start: datetime = window["window_start"]
    groups = [
        {"code": {"coding": [{"system": CHECK_SYSTEM, "code": row["check_id"]}],
                  "text": f"{row['check_id']} ({row['dimension']}, {row['kahn']})"},
         "population": [
             {"code": {"coding": [{"system": POPULATION, "code": code}]}, "count": count}
             for code, count in (("initial-population", row["applied"]),
                                 ("denominator", row["applied"]), ("numerator", row["failed"]))
         ],
         "measureScore": {"value": row["violated_pct"], "unit": "%",
                          "system": "http://unitsofmeasure.org", "code": "%"}}
        for row in window["checks"]
    ]  # fmt: skip
    return {
        "resourceType": "MeasureReport",
        "id": measure_report_id(window),
        "status": "complete",
        "type": "summary",
        "measure": MEASURE,
        "date": window["window_end"].isoformat(),
        "reporter": {
            "identifier": {"system": INSTITUTION_SYSTEM, "value": window["institution"]},
            "display": window["institution"],
        },
        "period": {"start": start.isoformat(), "end": window["window_end"].isoformat()},
        "improvementNotation": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/measure-improvement-notation",
                    "code": "decrease",
                }
            ]
        },
        **({"group": groups} if groups else {}),
    }


def measure_report_id(window: Record) -> str:
    kind = window["scored_type"].rsplit(".", 1)[-1].lower()
    return f"{window['institution']}-{kind}-{window['window']}-{window['window_start']:%Y%m%d%H}"


def indicator_chart(indicator: Record) -> str:
    """An indicator's % violated per window as SVG, the allowed share shaded."""
    points = [Point(s["window_start"], s["violated_pct"]) for s in indicator["series"]]
    threshold = indicator["threshold_pct"] or 0.0
    allowed = charts.Band(0.0, threshold, f"allowed: at most {threshold:g} %",
                          charts.REFERENCE_FILL)  # fmt: skip
    chart = charts.layout(indicator["check_id"], "% violated", points, (allowed,))
    return charts.svg(chart)


STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1100px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
.cards { display: flex; gap: 1em; flex-wrap: wrap; }
.card { border: 1px solid #ccc; border-radius: 6px; padding: 0.8em; width: 240px; }
.PASSED { border-left: 8px solid #2e7d32; } .FAILED { border-left: 8px solid #c62828; }
.NOT_MEASURED { border-left: 8px solid #9e9e9e; }
table { border-collapse: collapse; margin-top: 0.5em; }
td, th { border: 1px solid #ddd; padding: 4px 8px; text-align: left; font-size: 0.9em; }
.chart { display: inline-block; margin: 0.5em 1em 0.5em 0; }
code { font-size: 0.85em; }
@media print { .chart { page-break-inside: avoid; } }
"""


def _cell(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return escape(f"{value:%Y-%m-%d %H:%M} UTC")
    return escape(str(value))


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]], empty: str) -> str:
    if not rows:
        return f"<p>{escape(empty)}</p>"
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _card(indicator: Record) -> str:
    status = indicator["status"]
    measured = indicator["violated_pct"]
    figure = "" if measured is None else f": {measured} % violated"
    return (
        f'<div class="card {status}" data-indicator="{escape(indicator["check_id"])}">'
        f"<strong>{escape(indicator['title'])}</strong><br>"
        f"{escape(status.replace('_', ' ').lower())}{figure}</div>"
    )


def page(shown: Record) -> str:
    """The report as a standalone HTML page (printable: the browser saves it as a PDF)."""
    institution = escape(shown["institution"])
    cards = "".join(_card(i) for i in shown["indicators"])
    pictures = "".join(
        f'<div class="chart">{indicator_chart(i)}</div>'
        for i in shown["indicators"] if i["series"]
    )  # fmt: skip
    worst = _table(
        ("check", "data type", "dimension", "severity", "applied", "violated", "% violated",
         "allowed %", "example record ids"),
        [(c["check_id"], c["scored_type"], c["dimension"], c["severity"], c["applied"],
          c["failed"], c["violated_pct"], c["threshold_pct"], " ".join(c["examples"]))
         for c in shown["worst_checks"]],
        "Every check is within its threshold.",
    )  # fmt: skip
    delays = _table(
        ("data type", "records (last window)", "within 10 min %", "median at most (min)",
         "90th percentile at most (min)"),
        [(d["scored_type"], d["records"], d["within_10_minutes_pct"],
          d["median_minutes_at_most"], d["p90_minutes_at_most"]) for d in shown["delays"]],
        "No delays measured.",
    )  # fmt: skip
    unmapped = _table(("local code", "results"),
                      [(u["code"], u["count"]) for u in shown["unmapped_codes"]],
                      "Every local code was mapped.")  # fmt: skip
    alerts = _table(
        ("check", "data type", "since window", "% violated", "allowed %"),
        [(a["check_id"], a["scored_type"], a["window_start"], a["violated_pct"],
          a["threshold_pct"]) for a in shown["open_alerts"]],
        "No open alerts.",
    )  # fmt: skip
    period = f"{_cell(shown['period_start'])} to {_cell(shown['period_end'])}"
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Data quality: {institution}</title><style>{STYLE}</style></head><body>"
        f"<h1>Data quality of {institution}</h1>"
        f"<p>{shown['windows']} {SIZE_WORDS.get(shown['window'], '')} windows "
        f"(each data type has its own), {period}: "
        f"{shown['records']} records scored, {shown['late_records']} arrived late"
        f"{'; the last window is still open' if shown['in_progress'] else ''}.</p>"
        f'<h2>Indicators</h2><div class="cards">{cards}</div>{pictures}'
        f"<h2>Open alerts</h2>{alerts}<h2>Worst checks</h2>{worst}"
        f"<h2>Delays (event to receipt)</h2>{delays}<h2>Top unmapped local codes</h2>{unmapped}"
        "</body></html>\n"
    )
