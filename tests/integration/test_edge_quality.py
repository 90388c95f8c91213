"""A source's data-quality report served by the edge from hs-quality's windows and alerts:
as JSON, as FHIR MeasureReports (valid R4, by HAPI's validator) and as a page with a chart per
indicator that headless Chromium renders; platform staff see every source, a source's own
staff theirs only, other roles none."""

from __future__ import annotations

import copy
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
from google.protobuf import timestamp_pb2
from healthstream.edge.v1 import edge_pb2 as pb
from PIL import Image

from hs_common.codec import Codec
from hs_common.schemas import SchemaCatalogue
from hs_common.testing import golden_example
from hs_edge.projector import Consumed, Projector
from tests.integration.test_edge_api import (  # noqa: F401 (edge_url: a fixture, used by name)
    Running,
    edge_url,
    fhir_get,
    get,
    grpc_call,
    token,
    valid_r4,
)

DAY0 = datetime(2026, 11, 20, tzinfo=UTC)
DAYS = 5
QUALITY = "user/MeasureReport.read"
ADMIN = {"role": "administrator", "client_id": "admin-console", "scope": QUALITY}
HZ01_STAFF = {"role": "source_staff", "client_id": "hz01-it", "scope": QUALITY,
              "institution": "HZ01"}  # fmt: skip


def check(check_id: str, applied: int, failed: int, threshold: float, **extra: Any) -> dict:  # type: ignore[type-arg]
    violated = round(100.0 * failed / applied, 3)
    return {
        "check_id": check_id, "kahn": "completeness", "dimension": "completeness",
        "severity": "error", "applied": applied, "failed": failed, "violated_pct": violated,
        "threshold_pct": threshold, "passed": violated <= threshold, "change_pct": None,
        "examples": [f"0b9f6c1e-2d3a-4b5c-8d7e-6f5a4b3c2d{n:02d}" for n in range(min(failed, 5))],
    } | extra  # fmt: skip


def project(running: Running, codec: Codec, catalogue: SchemaCatalogue, root: Path) -> None:
    """Five days of HZ01 (its HIS upgrade on day 4 leaves birth dates out) and one of SH02."""
    golden = golden_example(catalogue.get("hs.quality.SourceSummary"), root)
    values = []
    for day in range(DAYS):
        start = DAY0 + timedelta(days=day)
        for kind, rows in (
            ("hs.identity.PatientIdentity",
             [check("basic-info-missing", 200, 1 if day < 3 else 24, 1.0)]),
            ("hs.clinical.Observation",
             [check("reference-deviation", 1000, 5 + day, 2.0),
              check("lab-timeliness", 900, 9, 5.0, dimension="timeliness")]),
        ):  # fmt: skip
            summary = copy.deepcopy(golden) | {
                "institution": "HZ01", "scored_type": kind, "window": "DAY",
                "window_start": start, "window_end": start + timedelta(days=1),
                "records": rows[0]["applied"], "late_records": day, "checks": rows,
                "unmapped_codes": [{"code": "urn:hs:local:HZ01:obs|N06", "count": 3 * day}],
            }  # fmt: skip
            summary["envelope"]["occurred_at"] = start + timedelta(days=1)
            values.append(codec.encode("hs.quality.SourceSummary", summary))
    first: dict[str, Any] = {"window": "DAY", "window_start": DAY0,
                             "window_end": DAY0 + timedelta(days=1)}  # fmt: skip
    other = copy.deepcopy(golden) | first | {"institution": "SH02"}
    values.append(codec.encode("hs.quality.SourceSummary", other))
    alert = golden_example(catalogue.get("hs.quality.QualityAlert"), root) | {
        "institution": "HZ01", "scored_type": "hs.identity.PatientIdentity",
        "window_start": DAY0 + timedelta(days=3, hours=9),
        "window_end": DAY0 + timedelta(days=3, hours=10),
    }  # fmt: skip
    values.append(codec.encode("hs.quality.QualityAlert", alert))
    Projector(running.store, codec).apply(
        Consumed("t", 0, i, None, v) for i, v in enumerate(values)
    )


def test_platform_staff_see_every_source_and_a_sources_staff_only_theirs(
    edge_url: Running, codec: Codec, catalogue: SchemaCatalogue, schema_root: Path,  # noqa: F811
) -> None:  # fmt: skip
    project(edge_url, codec, catalogue, schema_root)
    url, since = edge_url.url, DAY0.isoformat()
    assert get(url, "/quality/sources", token(**ADMIN)).json() == {"sources": ["HZ01", "SH02"]}
    staff = token(**HZ01_STAFF)
    assert get(url, "/quality/sources", staff).json() == {"sources": ["HZ01"]}
    other = get(url, "/quality/sources/SH02", staff, since=since)
    assert other.status_code == 403 and other.json()["title"] == "source.other_institution"
    for refused in (token(role="clinician", scope="user/*.read"),
                    token(role="source_staff", scope=QUALITY)):  # fmt: skip
        assert get(url, "/quality/sources", refused).status_code == 403
    # a source's staff token carries no scope beyond its data quality
    assert (
        get(url, "/persons/P1", token(**HZ01_STAFF | {"scope": "user/*.read"})).status_code == 403
    )

    answer = get(url, "/quality/sources/HZ01", staff, since=since)
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert (report["windows"], report["late_records"]) == (2 * DAYS, 2 * sum(range(DAYS)))
    indicators = {i["check_id"]: i for i in report["indicators"]}
    missing = indicators["basic-info-missing"]
    assert missing["status"] == "FAILED"  # 51 of 1000 over the five days
    assert [s["violated_pct"] for s in missing["series"]] == [0.5, 0.5, 0.5, 12.0, 12.0]
    assert indicators["lab-timeliness"]["status"] == "PASSED"
    assert indicators["cross-source-consistency"]["status"] == "NOT_MEASURED"
    worst = report["worst_checks"]
    assert [c["check_id"] for c in worst] == ["basic-info-missing"]  # 5.0 > 1; deviation 0.7 < 2
    assert len(set(worst[0]["examples"])) == 5 and "0b9f6c1e" in worst[0]["examples"][0]
    assert report["unmapped_codes"] == [{"code": "urn:hs:local:HZ01:obs|N06", "count": 60}]
    assert [a["check_id"] for a in report["open_alerts"]] == ["basic-info-missing"]
    assert get(url, "/quality/sources/HZ01", staff, since=since, window="WEEK").status_code == 422


def test_each_day_is_a_valid_fhir_measure_report(
    edge_url: Running, codec: Codec, catalogue: SchemaCatalogue, schema_root: Path,  # noqa: F811
) -> None:  # fmt: skip
    project(edge_url, codec, catalogue, schema_root)
    status, bundle = fhir_get(edge_url.url, "/fhir/MeasureReport", token(**HZ01_STAFF),
                              reporter="Organization/HZ01", period=f"ge{DAY0.date()}")  # fmt: skip
    assert status == 200
    valid_r4(bundle)
    reports = [e["resource"] for e in bundle["entry"]]
    assert len(reports) == 2 * DAYS and all(valid_r4(r) for r in reports)
    day4 = next(r for r in reports if r["period"]["start"].startswith("2026-11-23")
                and r["group"][0]["code"]["coding"][0]["code"] == "basic-info-missing")  # fmt: skip
    counts = {p["code"]["coding"][0]["code"]: p["count"] for p in day4["group"][0]["population"]}
    assert counts == {"initial-population": 200, "denominator": 200, "numerator": 24}
    assert day4["group"][0]["measureScore"]["value"] == 12.0
    assert day4["reporter"]["identifier"]["value"] == "HZ01"
    refused, _ = fhir_get(edge_url.url, "/fhir/MeasureReport", token(**HZ01_STAFF),
                          reporter="Organization/SH02")  # fmt: skip
    assert refused == 403


def _shot(html: str, folder: Path) -> Image.Image:
    page, shot = folder / "report.html", folder / "report.png"
    page.write_text(html, encoding="utf-8")
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--window-size=1200,1800", f"--screenshot={shot}", page.as_uri()],
        capture_output=True, timeout=90, check=True,
    )  # fmt: skip
    return Image.open(shot).convert("RGB")


def _reddish(pixel: tuple[int, int, int]) -> bool:
    r, g, b = pixel
    return r > 170 and g < 90 and b < 90


def test_the_report_page_renders_with_a_chart_per_indicator(
    edge_url: Running, codec: Codec, catalogue: SchemaCatalogue, schema_root: Path,  # noqa: F811
    tmp_path: Path,
) -> None:  # fmt: skip
    project(edge_url, codec, catalogue, schema_root)
    answer = get(edge_url.url, "/quality/sources/HZ01/report", token(**ADMIN),
                 since=DAY0.isoformat())  # fmt: skip
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    html = answer.text
    assert len(re.findall(r'<div class="card (\w+)"', html)) == 4
    assert len(re.findall(r"<svg ", html)) == 3  # the measured indicators
    # basic-info-missing above its 1 % on its last two days: marked outside the allowed band
    assert len(re.findall(r'<circle class="outside"', html)) == 2
    downloaded = get(edge_url.url, "/quality/sources/HZ01/report", token(**ADMIN),
                     since=DAY0.isoformat(), download="true")  # fmt: skip
    assert downloaded.headers["content-disposition"].startswith("attachment")
    image = _shot(html, tmp_path)
    red = len([p for p in list(image.getdata()) if _reddish(p)])
    assert red > 200  # the failed indicators' cards and the points above their thresholds
    unauthenticated = httpx.get(f"{edge_url.url}/quality/sources/HZ01/report", timeout=10)
    assert unauthenticated.status_code == 401


def test_grpc_serves_the_same_report_with_the_same_refusals(
    edge_url: Running, codec: Codec, catalogue: SchemaCatalogue, schema_root: Path,  # noqa: F811
) -> None:  # fmt: skip
    project(edge_url, codec, catalogue, schema_root)
    since = timestamp_pb2.Timestamp()
    since.FromDatetime(DAY0)
    request = pb.GetQualityReportRequest(institution="HZ01", window="DAY", since=since)
    reply, code, _ = grpc_call(edge_url.grpc_target, "GetQualityReport", request,
                               token(**HZ01_STAFF))  # fmt: skip
    assert code == grpc.StatusCode.OK
    rest = get(edge_url.url, "/quality/sources/HZ01", token(**HZ01_STAFF),
               since=DAY0.isoformat()).json()  # fmt: skip
    assert [(c.check_id, c.applied, c.failed, c.violated_pct, list(c.examples))
            for c in reply.worst_checks] == [
        (c["check_id"], c["applied"], c["failed"], c["violated_pct"], c["examples"])
        for c in rest["worst_checks"]
    ]  # fmt: skip
    assert [i.status for i in reply.indicators] == [i["status"] for i in rest["indicators"]]
    other = pb.GetQualityReportRequest(institution="SH02", since=since)
    _, refused, _ = grpc_call(edge_url.grpc_target, "GetQualityReport", other, token(**HZ01_STAFF))
    assert refused == grpc.StatusCode.PERMISSION_DENIED
