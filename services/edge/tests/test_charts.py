"""Trend charts: values placed by value and time, results outside the reference range marked,
eGFR on the KDIGO categories, text escaped; SVG and PNG from one layout."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from PIL import Image

from hs_edge import charts
from hs_edge.trends import Point

T0 = datetime(2026, 1, 1, tzinfo=UTC)
GLUCOSE = [Point(T0 + timedelta(days=10 * i), v) for i, v in enumerate([5.1, 6.8, 3.5, 6.0])]


def test_results_are_placed_by_value_and_time_and_those_outside_the_range_marked() -> None:
    chart = charts.layout("Glucose", "mmol/L", GLUCOSE, charts.reference_bands(3.9, 6.1))
    xs, ys = [d.x for d in chart.dots], [d.y for d in chart.dots]
    assert xs == sorted(xs) and len(set(xs)) == 4  # later is further right
    assert ys[1] < ys[3] < ys[0] < ys[2]  # a higher value is higher up (smaller y)
    assert [d.outside for d in chart.dots] == [False, True, True, False]
    [(top, bottom, band)] = chart.bands
    assert top < ys[0] < bottom and ys[1] < top and ys[2] > bottom  # 6.8 above, 3.5 below
    assert band.label == "reference 3.9-6.1"


def test_egfr_is_drawn_on_the_kdigo_categories() -> None:
    egfr = [Point(T0 + timedelta(days=90 * i), v) for i, v in enumerate([72, 58, 41])]
    chart = charts.layout("eGFR", "mL/min/1.73m2", egfr, charts.kdigo_bands())
    labels = [band.label for _, _, band in chart.bands]
    assert labels == [g for g in ("G1", "G2", "G3a", "G3b", "G4", "G5") if g in labels]
    assert {"G2", "G3a", "G3b"} <= set(labels)  # the categories the values reach
    assert not any(d.outside for d in chart.dots)  # categories, not a normal range
    by_label = {band.label: (top, bottom) for top, bottom, band in chart.bands}
    top, bottom = by_label["G3a"]  # 45-59: 58 is in it
    assert top <= chart.dots[1].y <= bottom


def test_the_svg_escapes_what_it_shows_and_the_png_is_the_same_canvas() -> None:
    chart = charts.layout('<script>alert("x")</script>', "mg/dL", GLUCOSE)
    document = charts.svg(chart)
    assert "<script>" not in document and "&lt;script&gt;" in document
    assert document.count("<circle") == 4
    image = Image.open(io.BytesIO(charts.png(chart)))
    assert image.format == "PNG" and image.size == (charts.WIDTH, charts.HEIGHT)


def test_no_results_draw_an_empty_chart() -> None:
    chart = charts.layout("Glucose", "mmol/L", [], charts.reference_bands(None, None))
    assert chart.dots == () and chart.bands == () and "<circle" not in charts.svg(chart)
